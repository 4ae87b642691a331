"""``OUT/manifest.jsonl``: one line per attempt, written by the driver only, flushed per line,
never rewritten; a lock file keeps a second driver out. Read back with size limits and checked
fields, since a manifest is a file anyone may have edited."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scenecut.batch.core import Record, Shard
from scenecut.errors import OutputError
from scenecut.files import make_dir

log = logging.getLogger(__name__)
MAX_LINE_BYTES = 1 << 20  # a manifest line longer than this is not ours


class Manifest:
    """``OUT/manifest.jsonl`` (``manifest.shard-I-of-N.jsonl`` for a shard), appended one
    flushed line per record, held by one driver at a time through ``<manifest>.lock``."""

    def __init__(self, out: Path, shard: Shard | None = None):
        self.path = out / (shard.manifest_name if shard else "manifest.jsonl")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock: int | None = None
        self._file = None

    def __enter__(self) -> Manifest:
        make_dir(self.path.parent)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {self.lock_path} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputError(
                f"{self.path.parent} is in use by another scenecut batch ({holder}); wait for "
                "it to finish, or choose another -o (each --shard has its own manifest)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._lock = fd
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def write(self, record: Record) -> None:
        self._file.write(record.to_line())
        self._file.flush()

    def __exit__(self, *exc) -> bool:
        if self._file is not None:
            self._file.close()
        if self._lock is not None:
            os.close(self._lock)
        return False


def read_history(out: Path) -> dict[str, list[Record]]:
    """Every record in ``out``'s manifests (all shards), by path, in the order written. Lines
    that are not records (cut short by a kill, too long, edited by hand) are left out."""
    history: dict[str, list[Record]] = {}
    for record in read_records(out):
        history.setdefault(record.path, []).append(record)
    return history


def read_records(out: Path) -> list[Record]:
    """The records of ``out``'s manifests, each file in order; see ``read_history``."""
    records: list[Record] = []
    try:
        files = sorted(out.glob("manifest*.jsonl"))
    except OSError:
        return records
    bad = 0
    for path in files:
        try:
            f = open(path, "rb")  # noqa: SIM115
        except OSError:
            continue
        with f:
            while line := f.readline(MAX_LINE_BYTES + 1):
                record = None
                if line.endswith(b"\n"):
                    with contextlib.suppress(ValueError):
                        record = Record.from_dict(json.loads(line))
                elif len(line) > MAX_LINE_BYTES:  # skip the rest of the long line
                    while (more := f.readline(MAX_LINE_BYTES)) and not more.endswith(b"\n"):
                        pass
                if record is None:
                    bad += 1
                else:
                    records.append(record)
    if bad:
        log.warning("%s: %d manifest lines are not records and were left out", out, bad)
    return records


@dataclass
class Counts:
    """How the batch stands, for the progress bar and the summary."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    bugs: int = 0
    retried: int = 0
    video_seconds: float = 0.0
    began: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> int:
        return self.ok + self.failed + self.skipped

    def add(self, record: Record) -> None:
        if record.status == "ok":
            self.ok += 1
            self.video_seconds += record.video_seconds
        elif record.status == "failed" and record.will_retry:
            self.retried += 1
        elif record.status == "failed":
            self.failed += 1
            self.bugs += record.bug
        elif record.status == "skipped":
            self.skipped += 1


Progress = Callable[[Record, Counts], None]
