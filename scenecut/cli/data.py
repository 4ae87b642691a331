"""``scenecut data``: build and check MovieNet-style training trees.

Each command parses its options, makes one call into ``scenecut.data`` and renders the result:
machine-readable lines or JSON on stdout, tables and progress on stderr. Importing this module
is cheap (no torch, no av): ``scenecut.cli`` imports it for ``--help``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut.cli.console import ProgressBars, error, stderr
from scenecut.cli.options import DetectorOption, DetectorThresholdOption
from scenecut.data.check import check_tree
from scenecut.data.corpus import CorpusSpec, make_corpus
from scenecut.data.ingest import ingest as ingest_videos
from scenecut.data.puzzles import make_puzzles
from scenecut.data.tree import PROBLEM_KINDS
from scenecut.errors import UsageError

app = typer.Typer(
    help="Training data: MovieNet-style trees of shot keyframes, labels and splits.",
    no_args_is_help=True,
)


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")


@app.command("check")
def check(
    root: Annotated[Path, typer.Argument(help="Root of the tree (holds 240P_frames/, anno/...).")],
    fast: Annotated[
        bool,
        typer.Option("--fast", help="Check keyframes' size and JPEG markers only; don't decode."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Write the full report as JSON on stdout.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Threads decoding keyframes [default: one per core].")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
) -> None:
    """Validate a tree; report every problem. Exit 0 when clean, 1 when problems were found."""
    _check_workers(workers)
    console = stderr()
    with ProgressBars(console, quiet, root.name or str(root)) as progress:
        on_films = (lambda done, total: progress("films", done, total)) if progress else None
        report = check_tree(root, decode=not fast, workers=workers, progress=on_films)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=1) + "\n")
    if not quiet:
        _check_table(console, report)
    if not report.ok:
        raise typer.Exit(1)


@app.command("ingest")
def ingest(
    videos: Annotated[list[Path], typer.Argument(help="Video files to add to the tree.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Root of the tree to write.")],
    scenes: Annotated[
        Path | None,
        typer.Option(
            help="Scene starts giving labels: our scenes JSON, a scene CSV or one time per line "
            "(seconds or HH:MM:SS.mmm); a directory with one <stem>.* file per video.",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="train, val or test for labelled videos [default: test with --scenes]."),
    ] = None,
    detector: DetectorOption = "adaptive",
    detector_threshold: DetectorThresholdOption = None,
    min_shot_len: Annotated[float, typer.Option(help="Minimum shot length in seconds.")] = 0.6,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or table.")
    ] = False,
) -> None:
    """Cut videos into shots and add them to a tree (keyframes, shot files, labels, annotations).

    Re-running skips the videos already complete. stdout: one line per video,
    STATUS<TAB>VIDEO_ID<TAB>SHOTS<TAB>PATH. Exit 1 when a video failed.
    """
    console = stderr()
    with ProgressBars(console, quiet, out.name or str(out)) as progress:
        result = ingest_videos(
            videos,
            out,
            scenes=scenes,
            split=split,
            detector=detector,
            detector_threshold=detector_threshold,
            min_shot_seconds=min_shot_len,
            progress=progress,
        )
    for video in result.videos:
        typer.echo(f"{video.status}\t{video.video_id}\t{video.shots}\t{video.path}")
    for video in result.failed:
        error(console, video.error or f"{video.path}: failed")
    if not quiet:
        _ingest_table(console, result)
    if result.failed:
        raise typer.Exit(1)


def _check_table(console, report) -> None:
    from rich.table import Table

    mode = "decoded" if report.decoded else "size and markers checked"
    title = (
        f"{report.root}: {report.movies} films, {report.shots} shots, "
        f"{report.keyframes} keyframes {mode}, {report.labelled} labelled; "
        + ", ".join(f"{name} {n}" for name, n in report.splits.items())
    )
    if report.ok:
        console.print(f"{title}\n[green]no problems found[/green]", highlight=False)
        return
    table = Table(title=title, title_justify="left")
    table.add_column("problem", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("first example")
    for kind, count in report.counts().items():
        first = next(p for p in report.problems if p.kind == kind)
        table.add_row(kind, str(count), f"{first.path}: {first.message}")
    table.caption = "; ".join(f"{k}: {PROBLEM_KINDS[k]}" for k in report.counts())
    console.print(table)


def _ingest_table(console, result) -> None:
    from rich.table import Table

    splits = ", ".join(f"{name} {n}" for name, n in result.splits.items())
    table = Table(title=f"{result.root}: {result.movies} films ({splits})", title_justify="left")
    for column in ("video", "id", "status", "shots", "boundaries"):
        if column in ("video", "id"):
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="right")
    for video in result.videos:
        table.add_row(
            video.path.name,
            video.video_id,
            video.status,
            str(video.shots),
            "" if video.boundaries is None else str(video.boundaries),
        )
    console.print(table)


# --- synth and puzzles (scenecut/data/corpus.py, scenecut/data/puzzles.py) --------------------


def _corpus_default(name: str) -> str:
    """A ``CorpusSpec`` default as help text (defaults live in one place: the dataclass)."""
    import dataclasses

    value = next(f.default for f in dataclasses.fields(CorpusSpec) if f.name == name)
    values = value if isinstance(value, tuple) else (value,)
    return ",".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values)


def _numbers(text: str, count: int, option: str, kind=int) -> tuple:
    try:
        values = tuple(kind(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) for v in values if kind is float):
        raise UsageError(f"{option} {text!r}: expected {count} comma-separated finite numbers")
    return values


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Root of the corpus to write.")],
    movies: Annotated[
        int | None, typer.Option(help=f"Films [default: {_corpus_default('movies')}].")
    ] = None,
    shots_per_movie: Annotated[
        int | None,
        typer.Option(help=f"Shots per film [default: {_corpus_default('shots_per_movie')}]."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Seed of everything [default: {_corpus_default('seed')}].")
    ] = None,
    shots_per_scene: Annotated[
        str | None,
        typer.Option(
            help=f"MIN,MAX shots per scene [default: {_corpus_default('shots_per_scene')}]."
        ),
    ] = None,
    shot_frames: Annotated[
        str | None,
        typer.Option(help=f"MIN,MAX frames per shot [default: {_corpus_default('shot_frames')}]."),
    ] = None,
    revisit: Annotated[
        float | None,
        typer.Option(
            help="Chance a scene returns to an earlier place, 0-1 "
            f"[default: {_corpus_default('revisit_rate')}]."
        ),
    ] = None,
    transitions: Annotated[
        str | None,
        typer.Option(
            help="CUT,FADE,DISSOLVE weights of scene changes "
            f"[default: {_corpus_default('transitions')}]."
        ),
    ] = None,
    grading: Annotated[
        float | None,
        typer.Option(help=f"Per-shot colour grading, 0-1 [default: {_corpus_default('grading')}]."),
    ] = None,
    places: Annotated[
        str | None,
        typer.Option(
            help="photos (scikit-image's and Debian wallpapers, procedural when there are none) "
            f"or procedural [default: {_corpus_default('places')}]."
        ),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            help="WIDTHxHEIGHT of the films "
            f"[default: {_corpus_default('width')}x{_corpus_default('height')}]."
        ),
    ] = None,
    fps: Annotated[
        int | None, typer.Option(help=f"Frame rate [default: {_corpus_default('fps')}].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes rendering films [default: one per core].")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Render every film again, whatever is there.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = (
        False
    ),
) -> None:
    """Render a synthetic benchmark corpus: videos with truth JSON, and a MovieNet tree of them.

    Deterministic per seed; re-running resumes. stdout: the corpus root.
    """
    _check_workers(workers)
    params: dict = {
        "movies": movies,
        "shots_per_movie": shots_per_movie,
        "seed": seed,
        "revisit_rate": revisit,
        "grading": grading,
        "places": places,
        "fps": fps,
    }
    if shots_per_scene is not None:
        params["shots_per_scene"] = _numbers(shots_per_scene, 2, "--shots-per-scene")
    if shot_frames is not None:
        params["shot_frames"] = _numbers(shot_frames, 2, "--shot-frames")
    if transitions is not None:
        params["transitions"] = _numbers(transitions, 3, "--transitions", float)
    if size is not None:
        params["width"], params["height"] = _numbers(size, 2, "--size")
    params = {k: v for k, v in params.items() if v is not None}
    console = stderr()
    with ProgressBars(console, quiet, out.name or str(out)) as progress:
        on_film = (lambda done, total: progress("films", done, total)) if progress else None
        summary = make_corpus(out, workers=workers, overwrite=overwrite, progress=on_film, **params)
    if not quiet:
        splits = ", ".join(f"{name} {n}" for name, n in summary.splits.items())
        console.print(
            f"{summary.root}: {summary.movies} films ({summary.rendered} rendered now), "
            f"{summary.shots} shots, {summary.scenes} scenes, {summary.frames} frames; "
            f"{splits}; places: {summary.photo_source}; "
            f"{summary.disk_bytes / 1e6:.1f} MB on disk",
            highlight=False,
        )
    typer.echo(str(summary.root))


@app.command("puzzles")
def puzzles(
    root: Annotated[Path, typer.Argument(help="Root of a MovieNet-style tree.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the puzzles.")],
    split: Annotated[
        str, typer.Option(help="Films to use: train (SCRL's choice), val, test or pretrain (all).")
    ] = "train",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write every puzzle again, whatever is there.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Threads making puzzles [default: one per core].")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = (
        False
    ),
) -> None:
    """SCRL pre-training puzzles: each 16 shots of a film stitched into one 16 x 3 keyframe JPEG.

    Re-running skips puzzles already written. stdout: the puzzle folder.
    """
    _check_workers(workers)
    console = stderr()
    with ProgressBars(console, quiet, out.name or str(out)) as progress:
        on_puzzle = (lambda done, total: progress("puzzles", done, total)) if progress else None
        summary = make_puzzles(
            root, out, split=split, overwrite=overwrite, workers=workers, progress=on_puzzle
        )
    if not quiet:
        tile = f"{summary.tile[0]}x{summary.tile[1]} tiles" if summary.tile else "no tiles"
        short = f"; {len(summary.too_short)} films under 16 shots" if summary.too_short else ""
        console.print(
            f"{summary.out}: {summary.puzzles} puzzles ({summary.written} written now) from "
            f"{summary.movies} {summary.split} films, {tile}{short}",
            highlight=False,
        )
    typer.echo(str(summary.out))
