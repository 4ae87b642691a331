"""Writing files safely: refuse to clobber, check a folder is writable, write atomically.

Every output of scenecut goes through ``atomic_write`` (or ``replacing`` for writers that need
a path), so readers see the old file or the new one, never a partial one.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import shutil
import tempfile
import time
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
    existing = _existing_parent(out_dir)
    if not existing.is_dir():
        raise OutputError(
            f"cannot create output directory {out_dir}: {existing} is not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {existing}; choose another output directory with -o")


def _existing_parent(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor (absolute)."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def make_dir(
    path: Path, what: str = "output directory", advice: str = "choose another with -o"
) -> None:
    """``path`` and its parents; ``OutputError`` saying what to do if they cannot be made."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise OutputError(f"cannot create {what} {path} ({reason}); {advice}") from None


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
            # At most 32 characters of the stem, so that any name that fits fits with the
            # temporary's additions too.
            dir=path.parent.absolute(),
            prefix=f".{path.stem[:32]}.",
            suffix=f".tmp{path.suffix[:16]}",
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


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A fresh folder ``.NAME.partial`` beside ``final`` for the block to fill; when the block
    ends without an error it takes ``final``'s place (an existing ``final`` is replaced),
    otherwise it is removed. Readers see a whole folder or none."""
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def atomic_write(path: Path, data: str | bytes, overwrite: bool) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through ``replacing``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with replacing(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(raw)


def write_json(path: Path, data, *, sort_keys: bool = False) -> None:
    """``data`` as indented JSON, replacing ``path`` atomically (bookkeeping files)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=sort_keys) + "\n", overwrite=True)


def check_names(paths: list[Path]) -> None:
    """``OutputError`` for a file name longer than the file system allows (before any work)."""
    for path in paths:
        try:
            limit = os.pathconf(_existing_parent(path.parent), "PC_NAME_MAX")
        except (OSError, ValueError):
            limit = 255
        if len(os.fsencode(path.name)) > limit:
            raise OutputError(
                f"output name {path.name!r} is longer than the {limit} bytes this file system "
                "allows; rename the video or choose shorter names"
            )


STAGE_PREFIX = ".scenecut-"
_STAGING, _STAGED = ".new", ".partial"  # a folder being made; one in use by a live run
_COMMIT = "commit.json"  # inside a staging folder: its files are being moved into place


class OutputSet:
    """A video's outputs as a unit: all or nothing, also when the run is killed.

    Every file is written into a private hidden folder in ``out_dir`` (``path(final)`` says
    where); ``commit`` moves them all into place, refusing existing files unless
    ``overwrite``. If the block ends any other way (an error, Ctrl-C, SIGTERM) the folder is
    deleted. A run holds a lock on its folder; a folder whose lock is free belongs to a run
    that was killed, and the next run in ``out_dir`` removes it, or finishes its moves if it was
    killed while committing, so a rerun after any interruption just works.
    """

    def __init__(self, out_dir: Path, *, overwrite: bool):
        self.out_dir = out_dir
        self.overwrite = overwrite
        self.dir: Path | None = None
        self._lock: int | None = None
        self._done = False

    def __enter__(self) -> OutputSet:
        make_dir(self.out_dir)
        recover(self.out_dir)
        try:
            new = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, suffix=_STAGING, dir=self.out_dir))
            self._lock = os.open(new, os.O_RDONLY)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.dir = new.with_suffix(_STAGED)
            os.rename(new, self.dir)
        except OSError as exc:
            self._release()
            raise OutputError(
                f"cannot write to {self.out_dir} ({exc.strerror or exc}); choose another with -o"
            ) from exc
        return self

    def path(self, final: Path) -> Path:
        """Where to write the file that ``commit`` moves to ``final`` (in ``out_dir``)."""
        assert self.dir is not None
        return self.dir / final.name

    def commit(self, finals: list[Path], stale: list[Path] = ()) -> None:
        """Move every staged file to its ``finals`` path, then delete ``stale`` files (earlier
        outputs this run replaces without naming them again)."""
        assert self.dir is not None
        if not self.overwrite:
            refuse_existing(finals)
        names = [p.name for p in finals]
        gone = [p.name for p in stale if p not in finals]
        try:
            plan = {"files": names, "stale": gone, "overwrite": self.overwrite}
            write_json(self.dir / _COMMIT, plan)
            if self.overwrite:
                for name in names:
                    os.replace(self.dir / name, self.out_dir / name)
            else:
                _link_all(self.dir, self.out_dir, names)
            for name in gone:
                (self.out_dir / name).unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write to {self.out_dir} ({exc.strerror or exc})") from exc
        self._done = True

    def __exit__(self, *exc) -> bool:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._release()
        return False

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _link_all(source: Path, target: Path, names: list[str]) -> None:
    """Move ``names`` without replacing anything: all of them, or none if one exists."""
    linked: list[Path] = []
    try:
        for name in names:
            os.link(source / name, target / name)
            linked.append(target / name)
    except FileExistsError as exc:  # made by another run since the check
        for path in linked:
            path.unlink(missing_ok=True)
        raise OutputError(
            f"{exc.filename2 or exc.filename} already exists; pass --overwrite"
        ) from exc


def recover(out_dir: Path) -> None:
    """Clean up after runs in ``out_dir`` that were killed: finish the moves of one killed
    while committing, delete the rest of what they left."""
    try:
        entries = [p for p in out_dir.iterdir() if p.name.startswith(STAGE_PREFIX)]
    except OSError:
        return
    for folder in entries:
        if folder.suffix == _STAGING:
            # Killed between making and locking its folder (which is then empty): wait a
            # minute, in case a live run is in that step now.
            if time.time() - _mtime(folder) > 60:
                shutil.rmtree(folder, ignore_errors=True)
            continue
        if folder.suffix != _STAGED or not folder.is_dir():
            continue
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live run holds it
        try:
            _finish_commit(folder, out_dir)
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def _finish_commit(folder: Path, out_dir: Path) -> None:
    try:
        plan = json.loads((folder / _COMMIT).read_text())
    except (OSError, ValueError):
        return  # it never began to commit: nothing of it is in place
    for name in plan.get("files", []):
        staged, final = folder / name, out_dir / name
        if not staged.exists():
            continue
        if final.exists() and (os.path.samefile(staged, final) or not plan.get("overwrite")):
            continue  # moved already, or made since by another run and not ours to replace
        os.replace(staged, final)
    for name in plan.get("stale", []):
        (out_dir / name).unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def own_files(out_dir: Path, pattern: str) -> list[Path]:
    """The plain files in ``out_dir`` whose whole name matches the regular expression."""
    regex = re.compile(pattern)
    try:
        return sorted(p for p in out_dir.iterdir() if regex.fullmatch(p.name) and p.is_file())
    except OSError:
        return []
