"""The per-video core every engine shares: what to run (``plan``, ``decide``), running one
video with one loaded model (``run_one``, which never raises) and the records it returns."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scenecut.errors import InputError, ScenecutError, UsageError
from scenecut.models.scorers import ModelChoice
from scenecut.segment import ExportOptions, FilesResult, SegmentOptions, segment_to_files
from scenecut.version import __version__

log = logging.getLogger(__name__)

# What a folder given as input contributes; a file named on its own is taken whatever its name.
VIDEO_SUFFIXES = frozenset(
    [
        ".3gp",
        ".avi",
        ".dv",
        ".flv",
        ".m2ts",
        ".m4v",
        ".mkv",
        ".mov",
        ".mp4",
        ".mpeg",
        ".mpg",
        ".mts",
        ".mxf",
        ".ogv",
        ".ts",
        ".vob",
        ".webm",
        ".wmv",
    ]
)
MAX_LIST_BYTES = 1 << 30  # --from-list and stdin
STATUSES = ("ok", "failed", "skipped", "started")
CRASH_HOOK = "SCENECUT_TEST_CRASH"


@dataclass(frozen=True)
class Job:
    """One video: ``path`` absolute (as given, links kept), ``key`` its path under the mirror
    root (the shard hash and the manifest's identity), outputs to ``out_dir``."""

    path: Path
    key: str
    out_dir: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based, as SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX count
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N`` with 0 <= I < N."""
        left, _, right = text.partition("/")
        try:
            shard = cls(int(left), int(right))
        except ValueError:
            shard = cls(-1, 0)
        if not 0 <= shard.index < shard.count:
            raise UsageError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
        return shard

    def holds(self, job: Job) -> bool:
        """Stable across machines and runs: a hash of the video's path under the root."""
        digest = hashlib.sha256(job.key.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    @property
    def manifest_name(self) -> str:
        return f"manifest.shard-{self.index}-of-{self.count}.jsonl"


@dataclass(frozen=True)
class Record:
    """One manifest line: an attempt at a video (or a skip), as the driver saw it."""

    path: str
    status: str  # ok, failed, skipped; "started" when handed to a worker
    settings_hash: str
    size: int
    mtime_ns: int
    attempt: int = 1
    worker: str = ""
    device: str = ""
    error_type: str | None = None
    error: str | None = None
    bug: bool = False  # failed with an exception that is not a ScenecutError
    will_retry: bool = False  # its worker died and the video is tried again
    seconds: float = 0.0
    frames: int = 0
    video_seconds: float = 0.0
    shots: int = 0
    scenes: int = 0
    model: str = ""
    outputs: list[str] = field(default_factory=list)
    version: str = __version__
    time: str = ""

    def to_line(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data) -> Record | None:
        """The record in a parsed line, or None when a field is missing or of the wrong type."""
        if not isinstance(data, dict) or data.get("status") not in STATUSES:
            return None
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.name in ("path", "status", "settings_hash", "size", "mtime_ns"):
                    return None
                continue
            value = data[f.name]
            kind = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(
                str(f.type).split(" |")[0]
            )
            if f.name == "outputs":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    return None
            elif value is None and "None" in str(f.type):
                pass
            elif (
                kind is None
                or not isinstance(value, kind)
                or isinstance(value, bool) != (kind is bool)
            ):
                return None
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class Task:
    job: Job
    attempt: int
    overwrite: bool  # the outputs there are this batch's own (recorded or in flight)


@dataclass(frozen=True)
class WorkSpec:
    """What every worker needs to run any video of the batch."""

    options: SegmentOptions
    export: ExportOptions
    choice: ModelChoice
    settings_hash: str


# --- planning ---


def read_list(text: str, null: bool = False) -> list[str]:
    """Paths one per line (blank lines skipped), or NUL-separated with ``null``."""
    if null:
        return [p for p in text.split("\0") if p]
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_list_file(path: Path, null: bool = False) -> list[str]:
    """``read_list`` of a file (at most 1 GiB); ``InputError`` naming it if unreadable."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_LIST_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read --from-list {path} ({exc.strerror or exc})") from None
    if len(raw) > MAX_LIST_BYTES:
        raise InputError(f"--from-list {path} is larger than 1 GiB; split it")
    return read_list(raw.decode("utf-8", "surrogateescape"), null)


def plan(
    inputs: Iterable[str], out: Path, *, flat: bool = False, root: Path | None = None
) -> list[Job]:
    """The videos ``inputs`` name (files as given, folders searched for ``VIDEO_SUFFIXES``),
    each once by real path, with their output folders: ``out`` mirrors the tree under ``root``
    (default: the folder all inputs share), or with ``flat`` every output goes in ``out``.
    ``UsageError`` before any work when two videos would write the same outputs."""
    found: list[tuple[Path, Path]] = []  # (absolute path, the folder that roots it)
    for item in inputs:
        path = Path(os.path.abspath(item))
        if path.is_dir():
            videos = [
                Path(d, name)
                for d, dirs, names in os.walk(path)
                for name in names
                if Path(name).suffix.lower() in VIDEO_SUFFIXES and not name.startswith(".")
            ]
            found += [(p, path) for p in sorted(videos)]
        else:
            found.append((path, path.parent))
    if not found:
        raise UsageError("no videos found in the inputs given")
    if root is None:
        root = Path(os.path.commonpath([str(base) for _, base in found]))
    root = Path(os.path.abspath(root))
    out = Path(os.path.abspath(out))
    seen: set[str] = set()
    jobs: list[Job] = []
    writes: dict[Path, Path] = {}
    for path, _ in found:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            key = path.relative_to(root).as_posix()
        except ValueError:
            raise UsageError(f"{path} is not under --root {root}") from None
        out_dir = out if flat else out / Path(key).parent
        stem_path = out_dir / path.stem
        if stem_path in writes:
            hint = "" if flat else "; rename one of them"
            hint = "; drop --flat, or rename one of them" if flat else hint
            raise UsageError(
                f"{writes[stem_path]} and {path} would both write {stem_path}.scenes.*{hint}"
            )
        writes[stem_path] = path
        try:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, 0  # fails when run, with the reader's own message
        jobs.append(Job(path, key, out_dir, size, mtime))
    return jobs


def settings_hash(options: SegmentOptions, export: ExportOptions, choice: ModelChoice) -> str:
    """A hash of everything that changes a video's outputs: the segment and export options and
    the model (its checkpoint's size and mtime too). Not the device, batch size or version."""
    model: dict = {"name": choice.name, "path": str(choice.path) if choice.path else None}
    if choice.path is not None:
        try:
            st = Path(choice.path).stat()
            model |= {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        except OSError:
            pass
    seg = dataclasses.asdict(options)
    seg.pop("decode_workers")  # how shots are found, never what is found
    if seg.get("hwaccel") is None:  # software decoding: the hash of manifests before --hwaccel
        seg.pop("hwaccel", None)
    seg["inference"] = {"model": model, "precision": options.inference.precision}
    out = dataclasses.asdict(export)
    for name in ("overwrite", "to_stdout"):
        out.pop(name)
    text = json.dumps({"segment": seg, "export": out}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def decide(
    job: Job, history: dict[str, list[Record]], spec_hash: str, *, rerun_failed: bool = False
) -> Record | Task:
    """A ``skipped`` record when the manifest says ``job`` is done (ok, with its outputs still
    there) or failed (unless ``rerun_failed``) with this input and these settings; else the
    task, allowed to replace outputs this batch recorded or had in flight."""
    earlier = [r for r in history.get(str(job.path), []) if r.status != "skipped"]
    last = earlier[-1] if earlier else None
    same = (
        last is not None
        and (last.size, last.mtime_ns, last.settings_hash) == (job.size, job.mtime_ns, spec_hash)
        and job.size >= 0
    )
    if same and last.status == "ok" and all(Path(p).exists() for p in last.outputs):
        return _skipped(job, spec_hash, last)
    if same and last.status == "failed" and not rerun_failed:
        return _skipped(job, spec_hash, last)
    ours = any(r.status in ("ok", "started") for r in earlier)
    return Task(job, 1, overwrite=ours)


def _skipped(job: Job, spec_hash: str, last: Record) -> Record:
    return Record(
        path=str(job.path),
        status="skipped",
        settings_hash=spec_hash,
        size=job.size,
        mtime_ns=job.mtime_ns,
        error_type=last.error_type,
        error=None if last.error is None else f"failed before: {last.error}",
        model=last.model,
        outputs=last.outputs,
        time=_now(),
    )


# --- one video ---


def run_one(task: Task, spec: WorkSpec, scorer, *, worker: str = "", progress=None) -> Record:
    """Segment ``task``'s video with the loaded ``scorer`` and write its outputs (as
    ``segment_to_files`` does); the record says how it went. Never raises an ``Exception``."""
    job = task.job
    _crash_hook(job.path, task.attempt)

    def run(export: ExportOptions) -> FilesResult:
        return segment_to_files(
            job.path, spec.options, export, job.out_dir, scorer=scorer, progress=progress
        )

    record, _ = attempt(
        task,
        spec,
        run,
        worker=worker or worker_name(),
        device=device_of(scorer),
        model=getattr(scorer, "name", ""),
    )
    return record


def attempt(
    task: Task,
    spec: WorkSpec,
    run: Callable[[ExportOptions], FilesResult],
    *,
    worker: str,
    device: str,
    model: str,
) -> tuple[Record, FilesResult | Exception]:
    """``run(export)`` (``export`` allowed to replace the outputs when the task's are this
    batch's own) and its record, with what it returned or raised."""
    job = task.job
    export = spec.export
    if task.overwrite and not export.overwrite:
        export = dataclasses.replace(export, overwrite=True)
    base = dict(
        path=str(job.path),
        settings_hash=spec.settings_hash,
        size=job.size,
        mtime_ns=job.mtime_ns,
        attempt=task.attempt,
        worker=worker,
        device=device,
        model=model,
    )
    start = time.perf_counter()
    try:
        done = run(export)
    except Exception as exc:  # one video's failure, of any kind, is recorded
        log.debug("%s failed", job.path, exc_info=True)
        record = Record(
            status="failed",
            error_type=type(exc).__name__,
            error=str(exc),
            bug=not isinstance(exc, ScenecutError),
            seconds=round(time.perf_counter() - start, 3),
            time=_now(),
            **base,
        )
        return record, exc
    result = done.result
    record = Record(
        status="ok",
        seconds=round(time.perf_counter() - start, 3),
        frames=result.decoded_frames,
        video_seconds=round(float(result.video.duration), 3),
        shots=len(result.shots),
        scenes=len(result.scenes),
        outputs=[str(Path(p).absolute()) for p in done.files],
        time=_now(),
        **base,
    )
    return record, done


def job_for(path: str | Path, out_dir: Path) -> Job:
    """The job of one video whose outputs go to ``out_dir`` (``segment --skip-existing``)."""
    absolute = Path(os.path.abspath(path))
    try:
        st = absolute.stat()
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size, mtime = -1, 0
    return Job(absolute, absolute.name, Path(os.path.abspath(out_dir)), size, mtime)


def device_of(scorer) -> str:
    """Where ``scorer``'s network runs; ``cpu`` for the models without one."""
    for owner in (scorer, getattr(scorer, "encoder", None)):
        runner = getattr(owner, "runner", None)
        if runner is not None:
            return str(runner.device)
    return "cpu"


def _crash_hook(path: Path, attempt: int) -> None:
    for rule in filter(None, os.environ.get(CRASH_HOOK, "").split(",")):
        when, _, stem = rule.partition(":")
        if stem == path.stem and (when == "always" or (when == "once" and attempt == 1)):
            os.kill(os.getpid(), signal.SIGKILL)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def died(task: Task, spec_hash: str, worker: str, why: str, *, will_retry: bool) -> Record:
    """The record of an attempt whose worker died (killed, out of memory, a crash in C)."""
    return Record(
        path=str(task.job.path),
        status="failed",
        settings_hash=spec_hash,
        size=task.job.size,
        mtime_ns=task.job.mtime_ns,
        attempt=task.attempt,
        worker=worker,
        error_type="WorkerDied",
        error=f"the worker died ({why}) while on this video",
        will_retry=will_retry,
        time=_now(),
    )


def started(task: Task, spec_hash: str, worker: str) -> Record:
    job = task.job
    return Record(
        path=str(job.path),
        status="started",
        settings_hash=spec_hash,
        size=job.size,
        mtime_ns=job.mtime_ns,
        attempt=task.attempt,
        worker=worker,
        time=_now(),
    )
