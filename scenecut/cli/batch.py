"""``scenecut batch``: whole archives on worker processes or Ray, with a manifest and resume."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut.batch import (
    Counts,
    Record,
    Shard,
    WorkSpec,
    read_list,
    read_list_file,
    read_records,
    run_batch,
    settings_hash,
)
from scenecut.cli.console import emit, error, stderr
from scenecut.cli.options import (
    BatchOption,
    ClipTemplateOption,
    CompileOption,
    CopyOption,
    DetectorOption,
    DetectorThresholdOption,
    DeviceOption,
    FormatOption,
    HwaccelOption,
    ImagesPerOption,
    MinSceneLenOption,
    MinShotLenOption,
    ModelOption,
    OfflineOption,
    OverwriteOption,
    PrecisionOption,
    QuietOption,
    ReportOption,
    SaveClipsOption,
    SaveImagesOption,
    ScenesOption,
    StartTimecodeOption,
    ThresholdOption,
    current_settings,
    run_options,
)
from scenecut.cli.weights import chosen_model
from scenecut.errors import UsageError
from scenecut.models.fusion import is_fusion_file
from scenecut.models.options import resolve_device
from scenecut.models.scorers import ModelChoice
from scenecut.output.clips import DEFAULT_TEMPLATE


def batch(
    ctx: typer.Context,
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PATHS...",
            help="Video files and folders (searched for videos); '-' reads paths from stdin. "
            "`scenecut batch status OUT` summarises OUT's manifests.",
            show_default=False,
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output-dir",
            help="Where outputs go, mirroring the input folders, with manifest.jsonl "
            "[default: settings].",
            show_default=False,
        ),
    ] = None,
    from_list: Annotated[
        Path | None,
        typer.Option("--from-list", metavar="FILE", help="Read more paths from FILE."),
    ] = None,
    null: Annotated[
        bool,
        typer.Option(
            "-0", "--null", help="Paths from stdin or --from-list are NUL-separated (find -print0)."
        ),
    ] = False,
    flat: Annotated[
        bool,
        typer.Option(
            "--flat", help="All outputs directly in -o; two videos with the same stem: refused."
        ),
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            help="The folder whose tree -o mirrors [default: the folder the inputs share].",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Local worker processes, one model each [default: one per 2 cores; 1 with a "
            "GPU model].",
            show_default=False,
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="Run only shard I of N (0-based; a stable hash of each path): one per "
            "Slurm array task or Kubernetes indexed job, each with its own manifest.",
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option(help="Tries again a video whose worker died, this many times.")
    ] = 1,
    rerun_failed: Annotated[
        bool,
        typer.Option("--rerun-failed", help="Try again the videos the manifest records failed."),
    ] = False,
    engine: Annotated[
        str, typer.Option(help="local (worker processes) or ray (needs scenecut[ray]).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: the cluster, auto or HOST:PORT [default: a local one].",
            show_default=False,
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float, typer.Option(help="--engine ray: GPUs per actor (0.5: two share a GPU).")
    ] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option(help="--engine ray: CPUs per actor.")] = 2.0,
    formats: FormatOption = None,
    save_clips: SaveClipsOption = False,
    copy: CopyOption = False,
    clip_template: ClipTemplateOption = DEFAULT_TEMPLATE,
    report: ReportOption = False,
    save_images: SaveImagesOption = 0,
    images_per: ImagesPerOption = "scene",
    detector: DetectorOption = "adaptive",
    detector_threshold: DetectorThresholdOption = None,
    min_shot_len: MinShotLenOption = 0.6,
    hwaccel: HwaccelOption = None,
    model: ModelOption = None,
    device: DeviceOption = None,
    batch_size: BatchOption = 0,
    precision: PrecisionOption = "auto",
    compile_net: CompileOption = False,
    offline: OfflineOption = False,
    threshold: ThresholdOption = None,
    scenes: ScenesOption = None,
    min_scene_len: MinSceneLenOption = 0.0,
    start_timecode: StartTimecodeOption = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Segment whole archives: worker processes (or Ray), a manifest per run, resume on rerun.

    Writes what `segment` writes (given the absolute path), byte for byte, mirroring the input
    folders under -o, and OUT/manifest.jsonl: a line per attempt. A rerun skips the videos done
    with the same input and settings, and those that failed (see --rerun-failed)."""
    inputs = inputs or []
    if inputs[:1] == ["status"]:
        if len(inputs) != 2:
            raise UsageError("usage: scenecut batch status OUT (a video named status: ./status)")
        status(Path(inputs[1]), quiet)
        return
    settings = current_settings(ctx)
    out = settings.output if output_dir is None else output_dir
    if out is None:
        raise UsageError("batch needs an output folder: -o OUT")
    options, export = run_options(
        settings,
        model=model,
        device=device,
        batch_size=batch_size,
        precision=precision,
        compile_net=compile_net,
        detector=detector,
        detector_threshold=detector_threshold,
        min_shot_len=min_shot_len,
        threshold=threshold,
        scenes=scenes,
        min_scene_len=min_scene_len,
        start_timecode=start_timecode,
        formats=formats,
        hwaccel=hwaccel,
        save_clips=save_clips,
        copy=copy,
        clip_template=clip_template,
        overwrite=overwrite,
        report=report,
        save_images=save_images,
        images_per=images_per,
    )
    paths = [p for p in inputs if p != "-"]
    if "-" in inputs:
        paths += read_list(sys.stdin.read(), null)
    if from_list is not None:
        paths += read_list_file(from_list, null)
    if not paths:
        raise UsageError("no inputs given: name videos or folders, '-' or --from-list FILE")
    parsed_shard = Shard.parse(shard) if shard is not None else None
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got {engine!r}")
    console = stderr()
    choice = chosen_model(console, quiet, options.inference.model, offline)
    spec = WorkSpec(options, export, choice, settings_hash(options, export, choice))
    ray_options = None
    if engine == "ray":
        ray_options = dict(
            address=address,
            gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker,
            actors=workers,
        )
    if workers is None:
        workers = default_workers(choice, options.inference.device)
    bar = _Bar(console, quiet)
    with bar:
        counts = run_batch(
            paths,
            out,
            spec,
            workers=workers,
            shard=parsed_shard,
            retries=retries,
            rerun_failed=rerun_failed,
            flat=flat,
            root=root,
            engine=engine,
            ray_options=ray_options,
            progress=bar.update,
        )
    for record in bar.failures:
        error(console, failure(record))
    if not quiet:
        console.print(_summary(counts), markup=False)
    if counts.failed:
        raise typer.Exit(3 if counts.bugs else 1)


def default_workers(choice: ModelChoice, device: str) -> int:
    """One worker per 2 cores; one when the model runs on a GPU (it holds the GPU's memory)."""
    if choice.path is None:
        network = choice.name == "effnet-lite0"
    else:
        network = not is_fusion_file(choice.path)
    if network and resolve_device(device) != "cpu":
        return 1
    return max(1, (os.cpu_count() or 2) // 2)


class _Bar:
    """One bar over the videos: done, failed, skipped, ETA, hours of video per hour; written
    paths go to stdout as each video finishes."""

    def __init__(self, console, quiet: bool):
        self.enabled = not quiet and console.is_terminal
        self.console = console
        self.failures: list[Record] = []
        self.task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("videos"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[line]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.__enter__()
        return self

    def update(self, record: Record, counts: Counts) -> None:
        if record.status == "ok":
            emit("".join(f"{p}\n" for p in record.outputs))
        elif record.status == "failed" and not record.will_retry:
            self.failures.append(record)
        if not self.enabled:
            return
        if self.task is None:
            self.task = self.bar.add_task("videos", total=counts.total, line="")
        self.bar.update(self.task, completed=counts.finished, line=_line(counts))

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False


def _line(counts: Counts) -> str:
    import time

    hours = (time.perf_counter() - counts.began) / 3600
    speed = f", {counts.video_seconds / 3600 / hours:.1f} h of video/h" if hours > 0 else ""
    return f"{counts.ok} done, {counts.failed} failed, {counts.skipped} skipped{speed}"


def _summary(counts: Counts) -> str:
    text = f"{counts.total} videos: {_line(counts)}"
    if counts.retried:
        text += f"; {counts.retried} worker deaths"
    return text


def failure(record: Record) -> str:
    """A failed record as the one line ``segment`` would have printed for it."""
    if record.bug:
        return (
            f"{record.path}: {record.error_type}: {record.error} (this is a bug; set "
            "SCENECUT_DEBUG=1 and run segment on it for the traceback, and please report it)"
        )
    if record.error_type == "WorkerDied":
        return f"{record.path}: {record.error}"
    return record.error or record.path


def status(out: Path, quiet: bool = False) -> None:
    """Each video's latest record in OUT's manifests: counts on stderr, failures listed."""
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder; give the -o folder of a batch")
    records = read_records(out)
    if not records:
        raise UsageError(f"{out} has no manifest*.jsonl; give the -o folder of a batch")
    latest: dict[str, Record] = {}
    for record in records:
        if record.status != "skipped" or record.path not in latest:
            latest[record.path] = record
    by = {s: [r for r in latest.values() if r.status == s] for s in ("ok", "failed", "started")}
    hours = sum(r.video_seconds for r in by["ok"]) / 3600
    busy = sum(r.seconds for r in records if r.status in ("ok", "failed")) / 3600
    emit(
        f"videos {len(latest)}\nok {len(by['ok'])}\nfailed {len(by['failed'])}\n"
        f"unfinished {len(by['started'])}\nvideo_hours {hours:.3f}\nworker_hours {busy:.3f}\n"
    )
    if not quiet:
        console = stderr()
        for record in by["failed"]:
            console.print(f"failed: {failure(record)}", markup=False, soft_wrap=True)
        for record in by["started"]:
            console.print(
                f"unfinished (a rerun does it): {record.path}", markup=False, soft_wrap=True
            )
