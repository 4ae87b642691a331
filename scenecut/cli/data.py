"""``scenecut data``: build and check training trees: MovieNet-style (shots, scene labels) and
UCF101-style (frames of action videos, class lists, scanpaths).

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
from scenecut.data.actions import ACTION_PROBLEM_KINDS, check_actions, is_action_tree
from scenecut.data.check import check_tree
from scenecut.data.corpus import CorpusSpec, make_corpus
from scenecut.data.ingest import ingest as ingest_videos
from scenecut.data.ingest import ingest_actions
from scenecut.data.motion import ActionSpec, make_actions
from scenecut.data.puzzles import make_puzzles
from scenecut.data.tree import PROBLEM_KINDS
from scenecut.errors import UsageError

app = typer.Typer(
    help="Training data: MovieNet-style trees of shot keyframes, labels and splits; "
    "UCF101-style trees of action-video frames, class lists and scanpaths.",
    no_args_is_help=True,
)


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")


@app.command("check")
def check(
    root: Annotated[
        Path,
        typer.Argument(
            help="Root of the tree (holds 240P_frames/, anno/... or jpegs_256/, split/)."
        ),
    ],
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
    clip_len: Annotated[
        int,
        typer.Option(help="Action trees: frames in a clip; a video needs one more frame."),
    ] = 16,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
) -> None:
    """Validate a tree; report every problem. Exit 0 when clean, 1 when problems were found.

    An action tree (jpegs_256/, split/) has its folders listed, not read: the first, middle and
    last frame of each video are checked.
    """
    _check_workers(workers)
    console = stderr()
    actions = is_action_tree(root)
    with ProgressBars(console, quiet, root.name or str(root)) as progress:
        unit = "videos" if actions else "films"
        on_items = (lambda done, total: progress(unit, done, total)) if progress else None
        if actions:
            report = check_actions(
                root, clip_len=clip_len, decode=not fast, workers=workers, progress=on_items
            )
        else:
            report = check_tree(root, decode=not fast, workers=workers, progress=on_items)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=1) + "\n")
    if not quiet:
        if actions:
            _actions_table(console, report)
        else:
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
    layout: Annotated[
        str,
        typer.Option(
            help="movienet (shots, keyframes, scene labels) or actions (every frame at 256 px, "
            "UCF101's layout; a video's class is the folder it is in; --split train or test).",
        ),
    ] = "movienet",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or table.")
    ] = False,
) -> None:
    """Cut videos into shots and add them to a tree (keyframes, shot files, labels, annotations),
    or with --layout actions add their frames to a UCF101-style tree.

    Re-running skips the videos already complete. stdout: one line per video,
    STATUS<TAB>VIDEO_ID<TAB>SHOTS<TAB>PATH (FRAMES instead of SHOTS with --layout actions).
    Exit 1 when a video failed.
    """
    if layout not in ("movienet", "actions"):
        raise UsageError(f"--layout must be movienet or actions, got {layout!r}")
    if layout == "actions" and scenes is not None:
        raise UsageError("--scenes labels scene boundaries; --layout actions has none")
    console = stderr()
    with ProgressBars(console, quiet, out.name or str(out)) as progress:
        if layout == "actions":
            result = ingest_actions(videos, out, split=split or "train", progress=progress)
        else:
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
        count = video.frames if layout == "actions" else video.shots
        typer.echo(f"{video.status}\t{video.video_id}\t{count}\t{video.path}")
    for video in result.failed:
        error(console, video.error or f"{video.path}: failed")
    if not quiet:
        _ingest_table(console, result, layout)
    if result.failed:
        raise typer.Exit(1)


@app.command("scanpaths")
def scanpaths(
    root: Annotated[Path, typer.Argument(help="Root of a UCF101-style tree (holds jpegs_256/).")],
    method: Annotated[
        str,
        typer.Option(
            help="saliency (motion and static saliency with inhibition of return) or random "
            "(the baseline: random cells and times, fixed per video)."
        ),
    ] = "saliency",
    grid: Annotated[int, typer.Option(help="Cells per side; files go to scan_idx_<grid>/.")] = 7,
    seed: Annotated[int, typer.Option(help="Seed of --method random.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write every video's file again.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Processes computing scanpaths [default: one per core].")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = (
        False
    ),
) -> None:
    """Write substitute scanpaths, scan_idx_<grid>/<video>.txt (rows: cell start end), for every
    video of an action tree.

    Re-running skips the videos that have a file. stdout: the scanpath folder. Exit 1 when a
    video failed.
    """
    from scenecut.data.scanpaths import write_scanpaths

    _check_workers(workers)
    console = stderr()
    with ProgressBars(console, quiet, root.name or str(root)) as progress:
        on_video = (lambda done, total: progress("videos", done, total)) if progress else None
        summary = write_scanpaths(
            root,
            grid=grid,
            method=method,
            seed=seed,
            overwrite=overwrite,
            workers=workers,
            progress=on_video,
        )
    for name, why in summary.failed:
        error(console, f"{name}: {why}")
    if not quiet:
        console.print(
            f"{summary.folder}: {summary.videos} videos, {summary.written} {summary.method} "
            f"scanpaths written now, {summary.skipped} already there, "
            f"{len(summary.failed)} failed",
            highlight=False,
        )
    typer.echo(str(summary.folder))
    if summary.failed:
        raise typer.Exit(1)


def _check_table(console, report) -> None:
    mode = "decoded" if report.decoded else "size and markers checked"
    title = (
        f"{report.root}: {report.movies} films, {report.shots} shots, "
        f"{report.keyframes} keyframes {mode}, {report.labelled} labelled; "
        + ", ".join(f"{name} {n}" for name, n in report.splits.items())
    )
    _problem_table(console, title, report, PROBLEM_KINDS)


def _actions_table(console, report) -> None:
    mode = "decoded" if report.decoded else "size and markers checked"
    lists = ", ".join(f"{name} {n}" for name, n in report.lists.items()) or "no lists"
    scans = ", ".join(f"{name} {n}" for name, n in report.scanpaths.items()) or "no scanpaths"
    title = (
        f"{report.root}: {report.classes} classes, {report.videos} videos, {report.frames} "
        f"frames, {report.sampled} sampled frames {mode}; {lists}; {scans}"
    )
    _problem_table(console, title, report, ACTION_PROBLEM_KINDS)


def _problem_table(console, title: str, report, kinds: dict[str, str]) -> None:
    """A check report's title, then its problems: count and first example of each kind, what
    each kind means below (or "no problems found")."""
    from rich.table import Table

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
    table.caption = "; ".join(f"{k}: {kinds[k]}" for k in report.counts())
    console.print(table)


def _ingest_table(console, result, layout: str = "movienet") -> None:
    from rich.table import Table

    splits = ", ".join(f"{name} {n}" for name, n in result.splits.items())
    unit = "videos" if layout == "actions" else "films"
    title = f"{result.root}: {result.movies} {unit} ({splits})"
    table = Table(title=title, title_justify="left")
    columns = ("video", "id", "status", "frames") if layout == "actions" else None
    for column in columns or ("video", "id", "status", "shots", "boundaries"):
        if column in ("video", "id"):
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="right")
    for video in result.videos:
        if layout == "actions":
            table.add_row(video.path.name, video.video_id, video.status, str(video.frames))
            continue
        table.add_row(
            video.path.name,
            video.video_id,
            video.status,
            str(video.shots),
            "" if video.boundaries is None else str(video.boundaries),
        )
    console.print(table)


# --- synth and puzzles (scenecut/data/corpus.py, scenecut/data/puzzles.py) --------------------


def _corpus_default(name: str, spec: type = CorpusSpec) -> str:
    """A ``CorpusSpec`` (or ``ActionSpec``) default as help text (defaults live in one place:
    the dataclass)."""
    import dataclasses

    value = next(f.default for f in dataclasses.fields(spec) if f.name == name)
    values = value if isinstance(value, tuple) else (value,)
    return ",".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values)


def _share(name: str) -> str:
    return f"{float(_corpus_default(name, ActionSpec)):.0%}"


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
            f"[default: {_corpus_default('width')}x{_corpus_default('height')}; "
            f"{_corpus_default('width', ActionSpec)}x{_corpus_default('height', ActionSpec)} "
            "with --actions]."
        ),
    ] = None,
    fps: Annotated[
        int | None, typer.Option(help=f"Frame rate [default: {_corpus_default('fps')}].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes rendering films [default: one per core].")
    ] = None,
    actions: Annotated[
        bool,
        typer.Option(
            "--actions",
            help="Write the action corpus instead: short videos of one textured object whose "
            "classes differ only in its motion, in UCF101's layout (jpegs_256/, split/).",
        ),
    ] = False,
    classes: Annotated[
        int | None,
        typer.Option(
            help="--actions: classes, 2-16 (9-16: 1-8 twice as fast) "
            f"[default: {_corpus_default('classes', ActionSpec)}]."
        ),
    ] = None,
    videos_per_class: Annotated[
        int | None,
        typer.Option(
            help=f"--actions: videos per class, {_share('test_share')} of them in the test list "
            f"[default: {_corpus_default('videos_per_class', ActionSpec)}]."
        ),
    ] = None,
    frames: Annotated[
        str | None,
        typer.Option(
            help="--actions: MIN,MAX frames per video "
            f"[default: {_corpus_default('frames', ActionSpec)}]."
        ),
    ] = None,
    scanpaths: Annotated[
        bool,
        typer.Option(
            "--scanpaths", help="--actions: write substitute scanpaths too (scan_idx_7/)."
        ),
    ] = False,
    textures: Annotated[
        int | None,
        typer.Option(
            help="--actions: draw every video's object texture and background from a pool of "
            "this many shared ones, so that appearance does not tell videos apart; 0: each its own "
            f"[default: {_corpus_default('textures', ActionSpec)}]."
        ),
    ] = None,
    flip_invariant: Annotated[
        bool,
        typer.Option(
            "--flip-invariant",
            help="--actions: classes a horizontal flip keeps: MoveUp, MoveDown, ZoomIn, "
            "ZoomOut, MoveSideways (left or right), Rotate (either way); 7-12 twice as fast.",
        ),
    ] = False,
    speed: Annotated[
        float | None,
        typer.Option(
            help="--actions: every motion this many times as fast (then at most 64/SPEED "
            f"frames a video) [default: {_corpus_default('speed', ActionSpec)}]."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Render every film again, whatever is there.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = (
        False
    ),
) -> None:
    """Render a synthetic benchmark corpus: videos with truth JSON, and a MovieNet tree of them;
    with --actions, an action-recognition tree whose classes only motion tells apart.

    Deterministic per seed; re-running resumes. stdout: the corpus root.
    """
    _check_workers(workers)
    action_params = {
        "--classes": classes,
        "--videos-per-class": videos_per_class,
        "--frames": frames,
        "--scanpaths": scanpaths or None,
        "--textures": textures,
        "--flip-invariant": flip_invariant or None,
        "--speed": speed,
    }
    if actions:
        film_params = {
            "--movies": movies,
            "--shots-per-movie": shots_per_movie,
            "--shots-per-scene": shots_per_scene,
            "--shot-frames": shot_frames,
            "--revisit": revisit,
            "--transitions": transitions,
            "--grading": grading,
            "--places": places,
            "--fps": fps,
            "--workers": workers,
        }
        given = [name for name, value in film_params.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: films only; --actions does not take it")
        _synth_actions(
            out, classes, videos_per_class, frames, size, seed, scanpaths, overwrite, quiet,
            textures=textures, flip_invariant=flip_invariant or None, speed=speed,
        )  # fmt: skip
        return
    given = [name for name, value in action_params.items() if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: only with --actions")
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


def _synth_actions(out, classes, videos_per_class, frames, size, seed, scanpaths, overwrite, quiet,
                   **more):  # fmt: skip
    params: dict = {"classes": classes, "videos_per_class": videos_per_class, "seed": seed, **more}
    if frames is not None:
        params["frames"] = _numbers(frames, 2, "--frames")
    if size is not None:
        params["width"], params["height"] = _numbers(size, 2, "--size")
    params = {k: v for k, v in params.items() if v is not None}
    console = stderr()
    with ProgressBars(console, quiet, out.name or str(out)) as progress:
        on_video = (lambda done, total: progress("videos", done, total)) if progress else None
        summary = make_actions(
            out, overwrite=overwrite, scanpaths=scanpaths, progress=on_video, **params
        )
    if not quiet:
        splits = ", ".join(f"{name} {n}" for name, n in summary.splits.items())
        scans = "" if summary.scanpaths is None else f"; {summary.scanpaths} scanpaths written"
        console.print(
            f"{summary.root}: {summary.classes} classes, {summary.videos} videos "
            f"({summary.written} rendered now), {summary.frames} frames; {splits}{scans}",
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
