"""Writing files safely: refuse to clobber, check a folder is writable, write atomically.

Every output of scenecut goes through ``atomic_write`` (or ``replacing`` for writers that need
a path), so readers see the old file or the new one, never a partial one.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scenecut.errors import OutputError


def refuse_existing(paths: list[Path]) -> None:
    """Raise ``OutputError`` naming the paths that exist (call it unless overwriting)."""
    existing = [p for p in paths if p.exists()]
    if len(existing) == 1:
        raise OutputError(f"{existing[0]} already exists; pass --overwrite to replace it")
    if existing:
        shown = ", ".join(str(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise OutputError(f"{shown}{more} already exist; pass --overwrite to replace them")


def check_writable(out_dir: Path) -> None:
    """Raise ``OutputError`` unless ``out_dir`` is, or could be created as, a writable directory.

    Creates nothing, so it can run before a long job without leaving an empty directory behind.
    """
    existing = out_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"cannot create output directory {out_dir}: {existing} is not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {existing}; choose another output directory with -o")


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output directory {path} ({exc.strerror or exc}); choose another with -o"
        ) from exc


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it; do it once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def replacing(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A new temporary file beside ``path`` for the block to write (same suffix, hidden name).

    When the block ends without an error the file gets the umask's permissions, is fsynced and
    renamed onto ``path`` in one step; otherwise it is deleted. Readers see the old file or the
    new one, never a partial one, even after a crash or Ctrl-C.
    """
    if path.is_dir():
        raise OutputError(f"{path} is a directory; choose another output path")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it")
    make_dir(path.parent)
    try:
        # An absolute path, so that a tool given it cannot read a name like "-x/..." as an option.
        fd, name = tempfile.mkstemp(
            dir=path.parent.absolute(), prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
        )
    except OSError as exc:
        raise OutputError(
            f"cannot write to {path.parent} ({exc.strerror or exc}); choose another directory"
        ) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp creates files as 0600
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: str | bytes, overwrite: bool) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through ``replacing``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with replacing(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(raw)


def write_json(path: Path, data, *, sort_keys: bool = False) -> None:
    """``data`` as indented JSON, replacing ``path`` atomically (bookkeeping files)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=sort_keys) + "\n", overwrite=True)
