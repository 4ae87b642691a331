"""Settings a user sets once instead of on every command line, read from TOML files.

Sources, later ones winning; a command-line option wins over all of them:

1. the defaults; the data root defaults to ``$SCENECUT_DATA``, else ``./data/movienet`` when
   that folder exists;
2. the user's file, ``$XDG_CONFIG_HOME/scenecut/config.toml`` (``~/.config/scenecut/...``);
3. ``scenecut.toml`` in the working folder;
4. the file named by ``scenecut -c FILE``.

A file is flat TOML holding any of the keys of ``KEYS``. Paths are taken as on the command
line: ``~`` expanded, relative ones from the working folder. Files are untrusted data: size
limited, every key and type checked, each problem one ``UsageError`` naming the file.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scenecut.errors import UsageError
from scenecut.models.options import check_device
from scenecut.output.formats import check_formats

FILE_NAME = "scenecut.toml"  # in the working folder
DATA_ENV = "SCENECUT_DATA"
DEFAULT_DATA = Path("data/movienet")
MAX_BYTES = 64 * 1024  # a settings file is a few lines

# Each key and what it sets, its default in brackets (the README and `scenecut config` say so).
KEYS = {
    "data": "the data root of eval and train, a MovieNet-style tree "
    f"[${DATA_ENV}, else ./{DEFAULT_DATA} if it exists]",
    "output": "segment's output folder [./<stem>_scenes/ per video]",
    "model": "segment's and eval's model [auto]",
    "device": "segment's and eval's device [auto]",
    "threshold": "segment's and eval's boundary threshold [the model's own; eval: 0.5]",
    "formats": "segment's and export's scene-list formats, a list or comma string [json]",
    "runs": "where train pretrain and finetune make a run folder when --out is left out [runs]",
}


@dataclass(frozen=True)
class SettingsFile:
    """A file the settings are read from, in order: ``role`` is ``user file``, ``working
    folder`` or ``-c``; ``read`` is false for a user or working-folder file that is absent."""

    path: Path
    role: str
    read: bool


@dataclass(frozen=True)
class Settings:
    """The settings in force; ``sources`` says where each key not at its default came from."""

    data: Path | None = None
    output: Path | None = None
    model: str = "auto"
    device: str = "auto"
    threshold: float | None = None
    formats: tuple[str, ...] = ("json",)
    runs: Path = Path("runs")
    sources: dict[str, str] = field(default_factory=dict)
    files: tuple[SettingsFile, ...] = ()

    def source(self, key: str) -> str:
        """Where ``key``'s value came from: ``default``, the variable, or the file and its role."""
        return self.sources.get(key, "default")

    def data_root(self) -> Path:
        """The data root of eval and train, or a ``UsageError`` naming every way to set one."""
        if self.data is None:
            raise UsageError(
                f'no data root: pass --data ROOT, set {DATA_ENV}=ROOT, or put data = "ROOT" in '
                f"a settings file (scenecut config lists them); ./{DEFAULT_DATA} does not exist"
            )
        return self.data

    def new_run_folder(self, name: str, now: datetime | None = None) -> Path:
        """``RUNS/NAME-YYYYMMDD-HHMMSS`` that does not exist yet (``-2``, ``-3``... appended
        when a run of the same name started in the same second)."""
        base = self.runs / f"{name}-{(now or datetime.now()):%Y%m%d-%H%M%S}"
        folder, n = base, 2
        while folder.exists():
            folder, n = base.with_name(f"{base.name}-{n}"), n + 1
        return folder

    def last_run_folder(self, name: str) -> Path | None:
        """The most recently changed ``RUNS/NAME-*`` folder, if any."""
        try:
            runs = [p for p in self.runs.iterdir() if p.name.startswith(f"{name}-") and p.is_dir()]
        except OSError:
            return None
        return max(runs, key=lambda p: p.stat().st_mtime, default=None)


def user_file() -> Path:
    """``$XDG_CONFIG_HOME/scenecut/config.toml``, else ``~/.config/scenecut/config.toml``."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "scenecut/config.toml"


def load_settings(config: str | Path | None = None) -> Settings:
    """The settings in force: defaults, the environment, the user's file, the working folder's
    ``scenecut.toml``, then ``config`` (which must exist), later ones winning."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if env := os.environ.get(DATA_ENV):
        values["data"], sources["data"] = Path(env).expanduser(), DATA_ENV
    elif DEFAULT_DATA.is_dir():
        values["data"], sources["data"] = DEFAULT_DATA, f"./{DEFAULT_DATA} exists"
    candidates = [(user_file(), "user file"), (Path.cwd() / FILE_NAME, "working folder")]
    if config is not None:
        candidates.append((Path(config), "-c"))
    files = []
    for path, role in candidates:
        read = role == "-c" or path.is_file()
        if read:
            for key, value in read_settings_file(path).items():
                values[key], sources[key] = value, f"{path} ({role})"
        files.append(SettingsFile(path, role, read))
    return Settings(**values, sources=sources, files=tuple(files))


def read_settings_file(path: Path) -> dict[str, Any]:
    """The checked settings of one file: ``{"model": "classic", "formats": ("json",)...}``."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read settings file {path} ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise UsageError(f"{path}: over {MAX_BYTES // 1024} KiB, too large for a settings file")
    try:
        table = tomllib.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text, so not a settings file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from None
    except RecursionError:  # arrays nested thousands deep
        raise UsageError(f"{path}: invalid TOML (nested too deeply)") from None
    checked = {}
    for key, value in table.items():
        if key not in KEYS:
            raise UsageError(
                f"{path}: unknown setting {_show(key)}; the settings are {', '.join(KEYS)} "
                "(training settings go in `scenecut train ... --config FILE`)"
            )
        try:
            checked[key] = _CHECKS[key](value)
        except UsageError as exc:
            raise UsageError(f"{path}: {key}: {exc}") from None
    return checked


def _show(value: Any) -> str:
    """A value as an error message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise UsageError(f"must be non-empty text, got {_show(value)}")
    return value


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


def _device(value: Any) -> str:
    check_device(_text(value))
    return value


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"must be a number from 0 to 1, got {_show(value)}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UsageError(f"must be a number from 0 to 1, got {value}")
    return float(value)


def _formats(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise UsageError(f'must be a list of format names or "json,csv", got {_show(value)}')
    names = [v.strip().lower() for v in items if v.strip()]
    if not names:
        raise UsageError("must name at least one format")
    return tuple(check_formats(names))


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "data": _path,
    "output": _path,
    "model": _text,
    "device": _device,
    "threshold": _threshold,
    "formats": _formats,
    "runs": _path,
}
