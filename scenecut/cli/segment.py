"""``scenecut segment`` and ``scenecut report``: videos in, scene lists, clips and reports out."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from scenecut.batch import WorkSpec, device_of, run_recorded, settings_hash
from scenecut.cli.console import ProgressBars, bug_message, emit, error, scene_table, stderr
from scenecut.cli.options import (
    BatchOption,
    ClipTemplateOption,
    CompileOption,
    CopyOption,
    DecodeWorkersOption,
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
    StdoutOption,
    ThresholdOption,
    current_settings,
    run_options,
)
from scenecut.cli.weights import chosen_model
from scenecut.errors import ScenecutError, UsageError
from scenecut.models.scorers import load_scorer
from scenecut.output.clips import DEFAULT_TEMPLATE
from scenecut.output.report import rebuild_report
from scenecut.profile import Stages
from scenecut.segment import segment_to_files


def segment(
    ctx: typer.Context,
    inputs: Annotated[
        list[str], typer.Argument(help="Video files; '-' reads more paths from stdin.")
    ],
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output-dir",
            help="Where outputs go [default: settings, else ./<stem>_scenes/].",
        ),
    ] = None,
    formats: FormatOption = None,
    stdout: StdoutOption = False,
    save_clips: SaveClipsOption = False,
    copy: CopyOption = False,
    clip_template: ClipTemplateOption = DEFAULT_TEMPLATE,
    report: ReportOption = False,
    save_images: SaveImagesOption = 0,
    images_per: ImagesPerOption = "scene",
    detector: DetectorOption = "adaptive",
    detector_threshold: DetectorThresholdOption = None,
    min_shot_len: MinShotLenOption = 0.6,
    decode_workers: DecodeWorkersOption = None,
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
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Skip a video whose outputs the output folder's manifest.jsonl records done "
            "with the same input (size, mtime) and settings; record what is done there.",
        ),
    ] = False,
    null: Annotated[
        bool,
        typer.Option(
            "-0",
            "--null",
            help="Paths on stdout end with NUL, not newline (for xargs -0), and '-' reads "
            "NUL-separated paths.",
        ),
    ] = False,
    quiet: QuietOption = False,
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Print where the time went, stage by stage, to stderr."),
    ] = False,
) -> None:
    """Detect shots, score every shot gap, write the scenes (JSON frames: 0-based,
    end-exclusive)."""
    settings = current_settings(ctx)
    output_dir = settings.output if output_dir is None else output_dir
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
        decode_workers=decode_workers,
        hwaccel=hwaccel,
        save_clips=save_clips,
        copy=copy,
        clip_template=clip_template,
        overwrite=overwrite,
        to_stdout=stdout,
        report=report,
        save_images=save_images,
        images_per=images_per,
    )
    paths = expand_inputs(inputs, "\0" if null else "\n")
    if stdout and len(paths) > 1:
        raise UsageError("--stdout takes a single input (its JSON goes to stdout)")
    if stdout and skip_existing:
        raise UsageError("--skip-existing needs output files; drop --stdout")
    console = stderr()
    choice = chosen_model(console, quiet, options.inference.model, offline)
    note = None if quiet else choice.note  # said once, after the first scene table
    start = time.perf_counter()
    scorer = load_scorer(options.inference, choice)
    load_seconds = time.perf_counter() - start
    spec = WorkSpec(options, export, choice, settings_hash(options, export, choice))
    failures = bugs = 0
    for path in paths:
        out_dir = output_dir or Path(f"{Path(path).stem}_scenes")
        stages = Stages()
        if load_seconds:  # the model is loaded once: its time goes with the first input
            stages.add("load model", load_seconds)
            stages.wall, load_seconds = load_seconds, 0.0
        try:
            with ProgressBars(console, quiet, Path(path).name) as progress:
                run = functools.partial(
                    segment_to_files,
                    path,
                    options,
                    out_dir=out_dir,
                    progress=progress,
                    scorer=scorer,
                    stages=stages,
                )
                if skip_existing:
                    done = run_recorded(
                        path, out_dir, spec, run, model=scorer.name, device=device_of(scorer)
                    )
                else:
                    done = run(export)
        except Exception as exc:  # one input's failure, of any kind, never stops the others
            if os.environ.get("SCENECUT_DEBUG") == "1":
                raise
            failures += 1
            if isinstance(exc, ScenecutError):
                error(console, str(exc))
            else:
                bugs += 1
                error(console, f"{path}: {bug_message(exc)}")
            continue
        if done is None:
            if not quiet:
                console.print(
                    f"{path}: done before, as recorded in {out_dir}; skipped", markup=False
                )
            continue
        end = "\0" if null else "\n"
        emit(done.json if stdout else "".join(f"{written}{end}" for written in done.files))
        if not quiet:
            scene_table(console, done.result)
        if profile:
            console.print(f"profile of {path}:\n{stages.table()}", markup=False)
        if note:
            console.print(note)
            note = None
    if failures:
        raise typer.Exit(3 if bugs else 1)


def report(
    result_json: Annotated[
        Path, typer.Argument(help="A .scenes.json written by `scenecut segment`.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="The HTML file [default: <stem>.report.html beside the JSON]."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing report.")
    ] = False,
) -> None:
    """Rebuild the HTML report from a saved result (the video must be where the JSON says)."""
    with ProgressBars(stderr(), False, result_json.name) as progress:
        on_frames = None if progress is None else lambda d, t: progress("report", d, t)
        written = rebuild_report(result_json, output, overwrite=overwrite, progress=on_frames)
    typer.echo(str(written))


def expand_inputs(inputs: list[str], separator: str = "\n") -> list[str]:
    """The paths given, with ``-`` replaced by the paths read from stdin (one per line, or
    NUL-separated: a name may hold a newline)."""
    paths: list[str] = []
    for item in inputs:
        if item == "-":
            text = sys.stdin.read()
            if separator == "\n":
                paths.extend(line.strip() for line in text.splitlines() if line.strip())
            else:
                paths.extend(p for p in text.split(separator) if p)
        else:
            paths.append(item)
    if not paths:
        raise UsageError("no input files given")
    return paths
