"""The console side of every command: stderr, one-line errors, progress bars, warnings.

stdout carries only machine-readable output; everything meant for a person goes to stderr.
"""

from __future__ import annotations

import logging
import sys


def stderr():
    """A Rich console on stderr, with no automatic highlighting."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def error(console, message: str) -> None:
    """One line on stderr; the message is printed as is (paths may contain [brackets])."""
    from rich.text import Text

    console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def bug_message(exc: BaseException) -> str:
    """What an unexpected exception says to the user: it is ours to fix, and how to report it."""
    return (
        f"{type(exc).__name__}: {exc} "
        "(this is a bug; set SCENECUT_DEBUG=1 for the traceback and please report it)"
    )


def log_warnings_to_stderr(debug: bool) -> None:
    """Library warnings (e.g. an undecodable packet skipped) as ``warning: ...`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("scenecut")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.addLevelName(logging.WARNING, "warning")


class ProgressBars:
    """Rich progress bars on stderr, or a no-op when quiet or stderr is not a terminal."""

    def __init__(self, console, quiet: bool, label: str):
        self.enabled = not quiet and console.is_terminal
        self.console = console
        self.label = label
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.__enter__()
        return self.update

    def update(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(f"{self.label}: {stage}", total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False


class DownloadBar:
    """A Rich byte-count bar on stderr, or nothing when quiet or stderr is not a terminal.

    The bar appears with the first byte count, so a block that downloads nothing (the file
    is already in the cache) draws nothing."""

    def __init__(self, console, quiet: bool, label: str):
        self.enabled = not quiet and console.is_terminal
        self.console = console
        self.label = label
        self.bar = None

    def __enter__(self):
        return self.update if self.enabled else None

    def update(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=None)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def say(console):
    """A callback printing one line on stderr as is (URLs and paths may hold [brackets])."""
    return lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)
