"""``scenecut eval``: scenes scored against a trusted scene list, or on a labelled dataset.

The metrics live in ``scenecut.evaluate`` (numpy), imported when the command runs.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut.cli.console import ProgressBars, stderr
from scenecut.cli.options import (
    BatchOption,
    CompileOption,
    DetectorOption,
    DeviceOption,
    ModelOption,
    OfflineOption,
    PrecisionOption,
    current_settings,
    inference_options,
)
from scenecut.cli.weights import chosen_model
from scenecut.errors import UsageError
from scenecut.files import atomic_write
from scenecut.models.scorers import load_scorer
from scenecut.output.readers import load_result, read_truth_seconds, truth_starts
from scenecut.result import DEFAULT_THRESHOLD
from scenecut.segment import SegmentOptions, segment
from scenecut.settings import DATA_ENV, DEFAULT_DATA


def eval_video(
    ctx: typer.Context,
    video: Annotated[
        Path | None,
        typer.Argument(
            help="The video to segment and score, or a .json written by `scenecut segment` "
            "(its scenes are scored as they are). Leave out to evaluate a dataset split."
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
            help="Evaluate on a labelled split of this MovieNet-style tree instead of a video "
            f"[default: settings, else ${DATA_ENV}, else ./{DEFAULT_DATA} if it exists].",
            show_default=False,
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="The split of --data to evaluate.")] = "test",
    tolerance: Annotated[
        float, typer.Option(help="Seconds within which a boundary counts as found.")
    ] = 1.0,
    model: ModelOption = None,
    device: DeviceOption = None,
    batch_size: BatchOption = 0,
    precision: PrecisionOption = "auto",
    compile_net: CompileOption = False,
    offline: OfflineOption = False,
    detector: DetectorOption = "adaptive",
    threshold: Annotated[
        float | None,
        typer.Option(
            help=f"Boundary score threshold [default: settings, else {DEFAULT_THRESHOLD:g}].",
            show_default=False,
        ),
    ] = None,
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
    """Score scenes against the truth: one VIDEO with --truth, or a labelled split of the data
    root (--data, else the settings' data root, which `scenecut config` shows).

    Each paper's metrics as its own code computes them, under its name: BaSSL AP, F1, mIoU,
    Recall, Recall@3s (the last three also LGSS's); LGSS mAP; SCRL AP and F1. JSON on stdout.

    `scenecut eval retrieval --help`: a clip encoder's video retrieval on UCF101 / HMDB51.
    """
    settings = current_settings(ctx)
    model = model or settings.model
    device = device or settings.device
    if threshold is None:
        threshold = DEFAULT_THRESHOLD if settings.threshold is None else settings.threshold
    inference = inference_options(model, device, batch_size, precision, compile_net)
    options = SegmentOptions(detector=detector, inference=inference, threshold=threshold)
    options.check()
    if not math.isfinite(tolerance) or tolerance <= 0:
        raise UsageError(f"--tolerance must be a positive number of seconds, got {tolerance}")
    if data is not None and video is not None:
        raise UsageError("give either a VIDEO (with --truth) or --data ROOT, not both")
    if video is not None and truth is None:
        raise UsageError("--truth is required when scoring a video")
    if video is None and truth is not None:
        raise UsageError(
            "--truth needs the VIDEO it describes (without a VIDEO, eval scores a split of the "
            "data root)"
        )
    if video is None:
        data = data or settings.data_root()
    targets = [output] if output else []
    if pr_curve is not None:
        targets += [pr_curve.with_suffix(".png"), pr_curve.with_suffix(".csv")]
    for target in targets:
        if target.exists() and not overwrite:
            raise UsageError(f"{target} exists; pass --overwrite to replace it")
    console = stderr()
    if data is not None:
        _eval_split(console, data, split, options, output, overwrite, quiet, offline)
        return
    truth_seconds = read_truth_seconds(truth)  # a bad truth file fails before any decoding
    from scenecut.evaluate import (
        evaluate_video,
        pr_plot_png,
        report_dict,
        sweep_csv,
        threshold_sweep,
    )

    if video.suffix.lower() == ".json":
        result = load_result(video)
    else:
        scorer = load_scorer(inference, chosen_model(console, quiet, model, offline))
        with ProgressBars(console, quiet, video.name) as progress:
            result = segment(video, options, progress=progress, scorer=scorer)
    truth_s = truth_starts(truth_seconds, result.video.fps)
    evaluation = evaluate_video(result, truth_s, tolerance)
    if pr_curve is not None:
        points = threshold_sweep(result, truth_s, tolerance)
        atomic_write(pr_curve.with_suffix(".csv"), sweep_csv(points), overwrite=overwrite)
        png = pr_plot_png(points, threshold, f"{video.name} ({result.settings.model})")
        atomic_write(pr_curve.with_suffix(".png"), png, overwrite=overwrite)
    _write_json(report_dict(result, evaluation), output, overwrite)
    if not quiet:
        _evaluation_table(console, evaluation)


def _write_json(data: dict, output: Path | None, overwrite: bool) -> None:
    """A JSON report to stdout, or atomically to ``output``."""
    text = json.dumps(data, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write(output, text, overwrite=overwrite)


def _eval_split(
    console, data: Path, split: str, options, output, overwrite, quiet, offline
) -> None:
    from scenecut.evaluate import evaluate_split

    choice = chosen_model(console, quiet, options.inference.model, offline)
    scorer = load_scorer(options.inference, choice)
    with ProgressBars(console, quiet, f"{data.name}:{split}") as progress:
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
    table.add_column("paper metric")
    table.add_column("value", justify="right")
    table.add_column("as the paper's code computes it")
    unit = "frames" if evaluation.frame_spans else "shots (no frame ranges in the tree)"
    for name, value, what in _paper_rows(s, unit):
        table.add_row(name, _percent(value, 2), what)
    console.print(table)


def _evaluation_table(console, evaluation) -> None:
    from rich.table import Table

    s = evaluation.scores
    summary = Table(title="scene boundaries", title_justify="left")
    for name in ("precision", "recall", "F1", "BaSSL AP", "mIoU", "Recall@3s"):
        summary.add_column(name, justify="right")
    summary.add_row(
        *(
            _percent(v, 1)
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


def _paper_rows(s, unit: str) -> list[tuple[str, float | None, str]]:
    """The table rows of ``Scores``: name as the paper prints it, value, definition."""
    return [
        ("BaSSL AP", s.ap, "scikit-learn AP pooled over all gaps of all films"),
        ("BaSSL F1", s.f1, "pooled, boundary when prob >= threshold"),
        (
            "BaSSL mIoU",
            s.miou,
            f"per film (as LGSS), prob > threshold, scenes to their last frame, in {unit}; "
            "n/a if a film without true boundary has predicted ones",
        ),
        ("BaSSL Recall", s.recall, "per film (as LGSS), prob > threshold"),
        ("BaSSL Recall@3s", s.recall_at_3s, "per film (as LGSS), within 5 shots and 3 s at 24 fps"),
        ("LGSS mAP", s.lgss_map, "per-film AP rounded to 2 decimals, averaged"),
        ("SCRL AP", s.mean_ap, "per-film AP averaged, 0 for a film without boundary"),
        ("SCRL F1", s.mean_f1, "per-film F1 at prob > threshold, 1e-5 epsilons, averaged"),
    ]


def _percent(value: float | None, decimals: int) -> str:
    """x100 as the papers print; n/a where the reference has no number (None or NaN)."""
    if value is None or value != value:
        return "n/a"
    return f"{100 * value:.{decimals}f}"
