"""Whole archives: plan the videos, skip the ones done, run the rest on workers, keep a manifest.

The per-video core every engine shares: ``plan`` (folders expanded, duplicates dropped, where
each video's outputs go), ``decide`` (skip a video only when the manifest records it done with
the same input size and mtime and the same settings hash), ``run_one`` (one video with one loaded
model; never raises, returns one ``Record``) and ``Manifest`` (``OUT/manifest.jsonl``, one line per
attempt, written by the driver only, flushed per line, never rewritten; a lock file keeps a second
driver out). ``run_batch`` drives local worker processes, one loaded model each;
``ray_engine`` drives Ray actors the same way.

A test-only hook: ``SCENECUT_TEST_CRASH="once:STEM,always:STEM"`` makes the worker that gets
the video named STEM kill itself (SIGKILL) on its first attempt, or on every attempt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

from scenecut.batch import ray_engine
from scenecut.batch.core import (
    CRASH_HOOK,
    VIDEO_SUFFIXES,
    Job,
    Record,
    Shard,
    Task,
    WorkSpec,
    attempt,
    decide,
    device_of,
    job_for,
    plan,
    read_list,
    read_list_file,
    run_one,
    settings_hash,
    worker_name,
)
from scenecut.batch.local import run_local
from scenecut.batch.manifest import Counts, Manifest, Progress, read_history, read_records
from scenecut.errors import ScenecutError, UsageError
from scenecut.segment import ExportOptions, FilesResult
from scenecut.video import using_hwaccel, working_hwaccel

__all__ = [
    "CRASH_HOOK",
    "VIDEO_SUFFIXES",
    "Counts",
    "Job",
    "Manifest",
    "Record",
    "Shard",
    "Task",
    "WorkSpec",
    "decide",
    "device_of",
    "plan",
    "read_history",
    "read_list",
    "read_list_file",
    "read_records",
    "run_batch",
    "run_one",
    "run_recorded",
    "settings_hash",
]


def run_batch(
    inputs: Iterable[str],
    out: Path,
    spec: WorkSpec,
    *,
    workers: int = 1,
    shard: Shard | None = None,
    retries: int = 1,
    rerun_failed: bool = False,
    flat: bool = False,
    root: Path | None = None,
    engine: str = "local",
    ray_options: dict | None = None,
    progress: Progress | None = None,
) -> Counts:
    """Segment every video ``inputs`` name into ``out`` (see the module's docstring), on
    ``workers`` local processes or on Ray (``engine="ray"``, ``ray_options`` for
    ``ray_engine.run_ray``). A worker that dies is replaced and its video tried again,
    up to ``retries`` more times. ``progress(record, counts)`` follows every manifest line."""
    if retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {retries}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    spec.options.check()
    spec.export.check()
    jobs = plan(inputs, out, flat=flat, root=root)
    if shard is not None:
        jobs = [job for job in jobs if shard.holds(job)]
    counts = Counts(total=len(jobs))
    with Manifest(out, shard) as manifest:
        history = read_history(out)

        def emit(record: Record) -> None:
            manifest.write(record)
            counts.add(record)
            if progress:
                progress(record, counts)

        tasks = []
        for job in jobs:
            decision = decide(job, history, spec.settings_hash, rerun_failed=rerun_failed)
            if isinstance(decision, Record):
                emit(decision)
            else:
                tasks.append(decision)
        # The largest files first: a long film started last would finish alone at the end
        tasks.sort(key=lambda task: -task.job.size)
        spec = _hardware_decoder_checked(spec, tasks)
        if engine == "ray":
            ray_engine.run_ray(tasks, spec, emit, retries=retries, **(ray_options or {}))
        elif engine == "local":
            run_local(tasks, spec, emit, workers=workers, retries=retries)
        else:
            raise UsageError(f"--engine must be local or ray, got {engine!r}")
    return counts


def _hardware_decoder_checked(spec: WorkSpec, tasks: list[Task]) -> WorkSpec:
    """``--hwaccel`` tried here on the first video: where it cannot start, the one warning is
    said here and the workers decode in software (rather than each warning on its own)."""
    name = spec.options.hwaccel
    if name is None or not tasks:
        return spec
    try:
        with using_hwaccel(name):
            works = working_hwaccel(tasks[0].job.path) is not None
    except ScenecutError:  # that file is broken: its worker will say so
        return spec
    return spec if works else dataclasses.replace(spec, options=spec.options.replace(hwaccel=None))


def run_recorded(
    path: str | Path,
    out_dir: Path,
    spec: WorkSpec,
    run: Callable[[ExportOptions], FilesResult],
    *,
    model: str,
    device: str = "cpu",
) -> FilesResult | None:
    """``segment --skip-existing`` for one video: None when ``out_dir``'s manifest records it
    done (the same input size and mtime, the same settings, its outputs there); else
    ``run(export)`` (allowed to replace outputs the manifest records as this video's), with its
    outcome added to ``out_dir/manifest.jsonl``. What ``run`` raises is raised again."""
    job = job_for(path, out_dir)
    with Manifest(job.out_dir) as manifest:
        decision = decide(job, read_history(job.out_dir), spec.settings_hash, rerun_failed=True)
        if isinstance(decision, Record):
            manifest.write(decision)
            return None
        record, outcome = attempt(
            decision, spec, run, worker=worker_name(), device=device, model=model
        )
        manifest.write(record)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
