"""``scenecut config``: the settings in force and where each came from."""

from __future__ import annotations

import json

import typer

from scenecut.cli.console import emit
from scenecut.cli.options import current_settings
from scenecut.settings import DATA_ENV, DEFAULT_DATA, KEYS, Settings


def show_config(ctx: typer.Context) -> None:
    """Print the settings in force as TOML on stdout, each with where it came from.

    Sources, later ones winning: the defaults (the data root: $SCENECUT_DATA, else
    ./data/movienet if it exists), $XDG_CONFIG_HOME/scenecut/config.toml (else
    ~/.config/scenecut/config.toml), ./scenecut.toml, then `scenecut -c FILE config`. An option
    on a command line wins over all. Keys: data, output, model, device, threshold, formats, runs.
    """
    emit(settings_toml(current_settings(ctx)))


def settings_toml(settings: Settings) -> str:
    """The settings as a TOML file with comments: the files read, then one line per key."""
    lines = [
        "# The settings in force, from these sources, later ones winning "
        "(command-line options win over all):",
        f"#   defaults; data: ${DATA_ENV}, else ./{DEFAULT_DATA} if it exists",
    ]
    for file in settings.files:
        state = "read" if file.read else "not found"
        lines.append(_comment(f"#   {file.path} ({file.role}): {state}"))
    for key, what in KEYS.items():
        value = getattr(settings, key)
        if value is None:
            lines.append(f"# {key}: not set; {what}")
        else:
            lines.append(_comment(f"{key} = {_toml(value)}  # {settings.source(key)}"))
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    """A setting's value as TOML: a string, a float or a list of strings."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(str(value))  # JSON's string escapes are TOML's


def _comment(line: str) -> str:
    """One line, whatever a path in it holds."""
    return line.replace("\r", "\\r").replace("\n", "\\n")
