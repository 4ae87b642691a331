"""The ``scenecut`` command: parse options, call the library, render results.

Machine-readable output goes to stdout (written file paths, or the JSON with ``--stdout``);
tables, progress and errors go to stderr. Exit codes: 0 success, 1 an input failed, 2 bad usage,
130 interrupted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut import __version__
from scenecut.errors import ScenecutError, UsageError

app = typer.Typer(
    name="scenecut",
    help="Cut long videos into scenes: shots, boundary scores, scene lists and clips.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ModelOption = Annotated[
    str,
    typer.Option(
        help="Boundary model: auto (best installed), effnet-lite0, classic, "
        "a weights name or a checkpoint path."
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")]
BatchOption = Annotated[
    int,
    typer.Option(
        help="Keyframe images per network call; 0 = auto (16 on CPUs, 64 on GPUs).", min=0
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the shot encoder: 10-25 s once, then faster (worth it on long films).",
    ),
]
PrecisionOption = Annotated[
    str, typer.Option(help="auto (bf16/fp16 where fast), fp32, bf16 or fp16.")
]

FORMATS_HELP = (
    "Comma-separated scene-list formats: json, csv, edl, otio, fcpxml, chapters, vtt, srt."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scenecut {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """Cut long videos into scenes."""


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@app.command()
def segment(
    inputs: Annotated[
        list[str], typer.Argument(help="Video files; '-' reads more paths from stdin.")
    ],
    output_dir: Annotated[
        Path | None,
        typer.Option("-o", "--output-dir", help="Where outputs go [default: ./<stem>_scenes/]."),
    ] = None,
    formats: Annotated[str, typer.Option("--format", "-f", help=FORMATS_HELP)] = "json",
    stdout: Annotated[
        bool, typer.Option("--stdout", help="Write the JSON result to stdout instead of files.")
    ] = False,
    save_clips: Annotated[
        bool, typer.Option("--save-clips", help="Export one clip per scene with ffmpeg.")
    ] = False,
    copy: Annotated[
        bool,
        typer.Option("--copy", help="Stream-copy clips: fast, but cuts snap to keyframes."),
    ] = False,
    clip_template: Annotated[
        str,
        typer.Option(
            "--clip-template",
            help="Clip file name; macros $VIDEO_NAME $SCENE_NUMBER $START_FRAME $END_FRAME.",
        ),
    ] = "$VIDEO_NAME-Scene-$SCENE_NUMBER",
    report: Annotated[
        bool,
        typer.Option(
            "--report", help="Write <stem>.report.html: timeline, score curve, thumbnails."
        ),
    ] = False,
    save_images: Annotated[
        int,
        typer.Option(
            "--save-images",
            metavar="N",
            help="Save N JPEGs per scene ($VIDEO_NAME-Scene-$SCENE_NUMBER-$IMAGE_NUMBER.jpg).",
        ),
    ] = 0,
    images_per: Annotated[
        str, typer.Option("--images-per", help="--save-images per 'scene' or per 'shot'.")
    ] = "scene",
    detector: Annotated[
        str,
        typer.Option(
            help="Shot detector: adaptive, content, threshold, histogram, hash, or transnetv2 "
            "(learned; finds fades and dissolves)."
        ),
    ] = "adaptive",
    detector_threshold: Annotated[
        float | None,
        typer.Option(help="Shot detector threshold [default: the detector's own]."),
    ] = None,
    min_shot_len: Annotated[float, typer.Option(help="Minimum shot length in seconds.")] = 0.6,
    model: ModelOption = "auto",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 0,
    precision: PrecisionOption = "auto",
    compile_net: CompileOption = False,
    threshold: Annotated[
        float, typer.Option(help="Boundary score above which a shot gap starts a new scene.")
    ] = 0.5,
    scenes: Annotated[
        int | None, typer.Option(help="Ask for this many scenes instead of using --threshold.")
    ] = None,
    min_scene_len: Annotated[float, typer.Option(help="Minimum scene length in seconds.")] = 0.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing output files.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")
    ] = False,
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Print where the time went, stage by stage, to stderr."),
    ] = False,
) -> None:
    """Detect shots, score every shot gap, write the scenes (frames: 0-based, end-exclusive)."""
    import time

    from scenecut.profile import Stages
    from scenecut.scoring import choose_model, load_scorer
    from scenecut.segment import ExportOptions, SegmentOptions, segment_to_files

    options = SegmentOptions(
        detector=detector,
        detector_threshold=detector_threshold,
        min_shot_seconds=min_shot_len,
        model=model,
        device=device,
        batch_size=batch_size,
        precision=precision,
        compile=compile_net,
        threshold=threshold,
        scenes=scenes,
        min_scene_seconds=min_scene_len,
    )
    export = ExportOptions(
        formats=[f.strip() for f in formats.split(",") if f.strip()],
        save_clips=save_clips,
        copy=copy,
        clip_template=clip_template,
        overwrite=overwrite,
        to_stdout=stdout,
        report=report,
        save_images=save_images,
        images_per=images_per,
    )
    options.check()
    export.check()
    paths = _expand_inputs(inputs)
    if stdout and len(paths) > 1:
        raise UsageError("--stdout takes a single input (its JSON goes to stdout)")
    console = _stderr()
    choice = choose_model(model)
    note = None if quiet else choice.note  # said once, after the first scene table
    start = time.perf_counter()
    scorer = load_scorer(choice, device, batch_size, precision, compile_net)
    load_seconds = time.perf_counter() - start
    failures = 0
    for path in paths:
        out_dir = output_dir or Path(f"{Path(path).stem}_scenes")
        stages = Stages()
        if load_seconds:  # the model is loaded once: its time goes with the first input
            stages.add("load model", load_seconds)
            stages.wall, load_seconds = load_seconds, 0.0
        try:
            with _progress(console, quiet, Path(path).name) as progress:
                done = segment_to_files(
                    path, options, export, out_dir, progress=progress, scorer=scorer, stages=stages
                )
        except ScenecutError as exc:
            if os.environ.get("SCENECUT_DEBUG") == "1":
                raise
            failures += 1
            _error(console, str(exc))
            continue
        if stdout:
            sys.stdout.write(done.json)
            sys.stdout.flush()
        else:
            for written in done.files:
                typer.echo(str(written))
        if not quiet:
            _scene_table(console, done.result)
        if profile:
            console.print(f"profile of {path}:\n{stages.table()}", markup=False)
        if note:
            console.print(note)
            note = None
    if failures:
        raise typer.Exit(1)


@app.command("report")
def report_command(
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
    from scenecut.report import rebuild_report

    typer.echo(str(rebuild_report(result_json, output, overwrite=overwrite)))


@app.command("eval")
def eval_video(
    video: Annotated[
        Path | None,
        typer.Argument(
            help="The video to segment and score, or a .json written by `scenecut segment` "
            "(its scenes are scored as they are). Leave out with --data."
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="True scene starts for VIDEO: scenecut JSON, a scene CSV, or one time per "
            "line (seconds or HH:MM:SS.mmm)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Evaluate on a labelled split of this MovieNet-style tree instead of a video.",
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="The split of --data to evaluate.")] = "test",
    tolerance: Annotated[
        float, typer.Option(help="Seconds within which a boundary counts as found.")
    ] = 1.0,
    model: ModelOption = "auto",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 0,
    precision: PrecisionOption = "auto",
    compile_net: CompileOption = False,
    detector: Annotated[str, typer.Option(help="Shot detector.")] = "adaptive",
    threshold: Annotated[float, typer.Option(help="Boundary score threshold.")] = 0.5,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the JSON here instead of stdout.")
    ] = None,
    pr_curve: Annotated[
        Path | None,
        typer.Option(
            "--pr-curve", help="Write a threshold sweep to FILE.png (plot) and FILE.csv (data)."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing output files.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
) -> None:
    """Score scenes against the truth: one video with --truth, or a dataset split with --data.

    Metrics as the papers compute them: AP pooled over all shot gaps (BaSSL), per-film mean AP
    (LGSS mAP, SCRL AP), F1 at --threshold, mIoU (LGSS), Recall and Recall@3s. JSON on stdout.
    """

    from scenecut.evaluate import evaluate_video, read_truth, report_dict
    from scenecut.segment import SegmentOptions, segment

    options = SegmentOptions(
        detector=detector,
        model=model,
        device=device,
        batch_size=batch_size,
        precision=precision,
        compile=compile_net,
        threshold=threshold,
    )
    options.check()
    if tolerance <= 0:
        raise UsageError(f"--tolerance must be positive, got {tolerance}")
    if (data is None) == (video is None):
        raise UsageError("give either a VIDEO (with --truth) or --data ROOT, not both")
    if video is not None and truth is None:
        raise UsageError("--truth is required when scoring a video")
    targets = [output] if output else []
    if pr_curve is not None:
        targets += [pr_curve.with_suffix(".png"), pr_curve.with_suffix(".csv")]
    for target in targets:
        if target.exists() and not overwrite:
            raise UsageError(f"{target} exists; pass --overwrite to replace it")
    console = _stderr()
    if data is not None:
        _eval_split(console, data, split, options, output, overwrite, quiet)
        return
    if video.suffix.lower() == ".json":
        from scenecut.report import load_result

        result = load_result(video)
    else:
        with _progress(console, quiet, video.name) as progress:
            result = segment(video, options, progress=progress)
    truth_s = read_truth(truth, result.video.fps)
    evaluation = evaluate_video(result, truth_s, tolerance)
    if pr_curve is not None:
        from scenecut.evaluate import pr_plot_png, sweep_csv, threshold_sweep
        from scenecut.export import atomic_write

        points = threshold_sweep(result, truth_s, tolerance)
        atomic_write(pr_curve.with_suffix(".csv"), sweep_csv(points), overwrite=overwrite)
        png = pr_plot_png(points, threshold, f"{video.name} ({result.settings.model})")
        atomic_write(pr_curve.with_suffix(".png"), png, overwrite=overwrite)
    _write_json(report_dict(result, evaluation), output, overwrite)
    if not quiet:
        _evaluation_table(console, evaluation)


def _write_json(data: dict, output: Path | None, overwrite: bool) -> None:
    """A JSON report to stdout, or atomically to ``output``."""
    import json

    text = json.dumps(data, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        from scenecut.export import atomic_write

        atomic_write(output, text, overwrite=overwrite)


def _eval_split(console, data: Path, split: str, options, output, overwrite, quiet) -> None:

    from scenecut.evaluate import evaluate_split
    from scenecut.scoring import choose_model, load_scorer

    choice = choose_model(options.model)
    scorer = load_scorer(
        choice, options.device, options.batch_size, options.precision, options.compile
    )
    with _progress(console, quiet, f"{data.name}:{split}") as progress:
        films = (lambda done, total: progress("films", done, total)) if progress else None
        evaluation = evaluate_split(data, split, scorer, options.threshold, progress=films)
    _write_json(evaluation.to_dict(), output, overwrite)
    if not quiet:
        _split_table(console, evaluation)
        if choice.note:
            console.print(choice.note)


def _split_table(console, evaluation) -> None:
    from rich.table import Table

    s = evaluation.scores
    title = (
        f"{evaluation.model} on {evaluation.split} of {evaluation.root}: "
        f"{s.films} films, {s.gaps} gaps, threshold {evaluation.threshold}"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("definition")
    unit = "frames" if evaluation.frame_spans else "shots (no frame ranges in the tree)"
    rows = [
        ("AP", s.ap, "pooled over all gaps (BaSSL)"),
        ("mAP", s.mean_ap, "per-film AP averaged (LGSS mAP, SCRL 'AP')"),
        ("F1", s.f1, "pooled at the threshold (BaSSL)"),
        ("mean F1", s.mean_f1, "per-film F1 averaged (SCRL)"),
        ("mIoU", s.miou, f"LGSS scene coverage, per film, in {unit}"),
        ("Recall", s.recall, "per film"),
        ("Recall@3s", s.recall_at_3s, "LGSS/BaSSL, 24 fps assumed as they do"),
    ]
    for name, value, what in rows:
        table.add_row(name, f"{100 * value:.2f}", what)
    console.print(table)


weights_app = typer.Typer(
    help="Pretrained checkpoints: list, describe and download them into the cache.",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")

# Sub-command groups living in their own modules (each a typer.Typer named ``app``).
# data: scenecut/cli_data.py
from scenecut.cli_data import app as data_app  # noqa: E402

app.add_typer(data_app, name="data")
from scenecut.cli_train import app as train_app  # noqa: E402

app.add_typer(train_app, name="train")


@weights_app.command("list")
def weights_list(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
) -> None:
    """Registered weights: names on stdout, a table on stderr."""
    from scenecut import hub

    records = list(hub.REGISTRY.values())
    imported = hub.imported_names()
    for name in [r.name for r in records] + imported:
        typer.echo(name)
    if not quiet:
        console = _stderr()
        _weights_table(console, records, [hub.is_installed(r) for r in records])
        if imported:
            console.print(f"imported (scenecut weights import): {', '.join(imported)}")


@weights_app.command("import")
def weights_import(
    path: Annotated[
        Path,
        typer.Argument(
            help="An official checkpoint: BaSSL Lightning .ckpt (or its .tar.gz), ModelScope "
            ".pt, SCRL .pth.tar, torchvision .pth."
        ),
    ],
    name: Annotated[str, typer.Option("--as", help="The name to use it by (--model NAME).")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace imported weights of that name.")
    ] = False,
) -> None:
    """Convert a checkpoint into scenecut's safetensors format; print its path on stdout."""
    from scenecut import hub

    done = hub.import_weights(path, name, overwrite=overwrite)
    typer.echo(str(done.path))
    usable = "scores boundaries" if "head_sbd" in done.parts else "initialises training"
    _stderr().print(
        f"{name}: {done.source} checkpoint, {done.encoder} with {', '.join(done.parts)}; {usable}"
    )


@weights_app.command("info")
def weights_info(name: Annotated[str, typer.Argument(help="A registered weights name.")]) -> None:
    """One record as JSON on stdout, with where it is (or would be) installed."""
    import json

    from scenecut import hub

    record = hub.get(name)
    data = record.to_dict()
    data["path"] = str(hub.installed_path(record))
    data["installed"] = hub.is_installed(record)
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@weights_app.command("pull")
def weights_pull(
    name: Annotated[str, typer.Argument(help="A registered weights name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if already installed.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download, verify and install weights; print the checkpoint's path on stdout."""
    from scenecut import hub

    record = hub.get(name)
    console = _stderr()
    with _download_bar(console, quiet, name) as progress:
        path = hub.download(record, force=force, progress=progress)
    typer.echo(str(path))


class _download_bar:
    """A Rich byte-count bar on stderr, or nothing when quiet or stderr is not a terminal."""

    def __init__(self, console, quiet: bool, label: str):
        self.enabled = not quiet and console.is_terminal
        self.console = console
        self.label = label

    def __enter__(self):
        if not self.enabled:
            return None
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
        return self.update

    def update(self, done: int, total: int | None) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False


def _weights_table(console, records, installed) -> None:
    from rich.table import Table

    table = Table(title="registered weights", title_justify="left")
    table.add_column("name", no_wrap=True, min_width=max(len(r.name) for r in records))
    for column in ("kind", "architecture", "size", "reported AP", "installed"):
        table.add_column(column, justify="right")
    for record, here in zip(records, installed, strict=True):
        # SCRL reports per-movie means; BaSSL/ModelScope pooled AP: not the same quantity.
        ap = next(((k, v) for k, v in record.metrics.items() if "_ap" in k), None)
        table.add_row(
            record.name,
            record.kind,
            record.architecture,
            "?" if record.size is None else f"{record.size / 1e6:.0f} MB",
            "" if ap is None else f"{ap[1]:.2f}" + (" per movie" if "per_movie" in ap[0] else ""),
            "yes" if here else "no",
        )
    console.print(table)


def _evaluation_table(console, evaluation) -> None:
    from rich.table import Table

    s = evaluation.scores
    summary = Table(title="scene boundaries", title_justify="left")
    for name in ("precision", "recall", "F1", "AP (gaps)", "mIoU", "Recall@3s"):
        summary.add_column(name, justify="right")
    summary.add_row(
        *(
            f"{100 * v:.1f}"
            for v in (
                evaluation.precision,
                evaluation.recall,
                evaluation.f1,
                s.ap,
                s.miou,
                s.recall_at_3s,
            )
        )
    )
    console.print(summary)
    listing = Table(title=f"within {evaluation.tolerance_s:g} s", title_justify="left")
    for name in ("", "truth s", "predicted s", "offset s"):
        listing.add_column(name, justify="right")
    for m in evaluation.boundaries:
        listing.add_row(
            m.kind,
            "" if m.truth_s is None else f"{m.truth_s:.3f}",
            "" if m.predicted_s is None else f"{m.predicted_s:.3f}",
            "" if m.offset_s is None else f"{round(m.offset_s, 3) + 0.0:+.3f}",
        )
    console.print(listing)


def _expand_inputs(inputs: list[str]) -> list[str]:
    paths: list[str] = []
    for item in inputs:
        if item == "-":
            paths.extend(line.strip() for line in sys.stdin if line.strip())
        else:
            paths.append(item)
    if not paths:
        raise UsageError("no input files given")
    return paths


class _progress:
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


def _scene_table(console, result) -> None:
    from rich.table import Table

    from scenecut.export import timecode

    video = result.video
    table = Table(
        title=f"{video.path.name}: {len(result.shots)} shots, {len(result.scenes)} scenes "
        f"({result.settings.model})",
        title_justify="left",
    )
    # Numbered from 1 like the CSV and PySceneDetect; frames stay 0-based, end-exclusive.
    for column in ("scene", "start", "end", "duration", "frames", "shots", "score"):
        table.add_column(column, justify="right")
    for scene in result.scenes:
        start, end = video.time_of(scene.start), video.time_of(scene.end)
        table.add_row(
            str(scene.index + 1),
            timecode(start),
            timecode(end),
            f"{float(end - start):.2f}s",
            f"{scene.start}-{scene.end}",
            f"{scene.first_shot + 1}-{scene.last_shot + 1}",
            "" if scene.score is None else f"{scene.score:.2f}",
        )
    console.print(table)


def _log_warnings_to_stderr(debug: bool) -> None:
    """Library warnings (e.g. an undecodable packet skipped) as ``warning: ...`` lines."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("scenecut")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.addLevelName(logging.WARNING, "warning")


def _error(console, message: str) -> None:
    """One line on stderr; the message is printed as is (paths may contain [brackets])."""
    from rich.text import Text

    console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def main() -> None:
    """Console-script entry: one red line and an exit code for expected errors."""
    debug = os.environ.get("SCENECUT_DEBUG") == "1"
    _log_warnings_to_stderr(debug)
    try:
        # Without standalone mode, click returns the exit code of typer.Exit instead of exiting.
        code = app(standalone_mode=False)
    except ScenecutError as exc:
        if debug:
            raise
        _error(_stderr(), str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # click's usage errors, as Typer re-exports them
        if debug:
            raise
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _error(_stderr(), message)
        sys.exit(getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        _stderr().print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        _error(
            _stderr(),
            f"{type(exc).__name__}: {exc} "
            "(this is a bug; set SCENECUT_DEBUG=1 for the traceback and please report it)",
        )
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)
