"""Exceptions the library raises. Each message says what went wrong and what to do next.

The CLI turns any ``ScenecutError`` into one line on stderr and a non-zero exit code.
"""


class ScenecutError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 1


class UsageError(ScenecutError):
    """A bad option value or combination."""

    exit_code = 2


class InputError(ScenecutError):
    """The input file is missing, unreadable, not a video, or has nothing to segment."""


class OutputError(ScenecutError):
    """An output cannot be written (exists without --overwrite, unwritable directory...)."""


class ExportError(ScenecutError):
    """ffmpeg failed to export a clip."""
