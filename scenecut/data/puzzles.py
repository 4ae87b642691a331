"""SCRL's pre-training input: 16 consecutive shots of a film stitched into one JPEG, a "puzzle".

As SCRL's ``data/data_preparation.py`` makes them: for every film, shots ``16p .. 16p + 15``
(the remainder, fewer than 16 shots, is dropped) make puzzle ``p``, an image of 16 rows (shots,
in order) by 3 columns (keyframes ``img_0``, ``img_1``, ``img_2``) at the keyframes' own size, so
a 240P MovieNet puzzle is ``3 W x 16 H``. Written as::

    OUT/<video_id>/<pppp>.jpg      puzzle p, 4 digits (JPEG quality 95, OpenCV's default)
    OUT/shot_num.json              {"train": {video_id: shot count}}: SCRL's MovieNet_shot_num.json;
                                   its loader reads the "train" key and makes shot count // 16
                                   puzzles of each film
    OUT/puzzles.json               what was made from what: tree, split, tile size, counts

SCRL pre-trains on the ``train`` films only, so that is the default split. Each puzzle is
written atomically and kept when a later run finds it, so an interrupted run resumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scenecut.data.tree import load_keyframes, read_tree
from scenecut.errors import OutputError
from scenecut.files import replacing, write_json

log = logging.getLogger(__name__)


PUZZLE_SHOTS = 16  # rows: shots per puzzle
PUZZLE_FRAMES = 3  # columns: keyframes per shot
INDEX_FILE = "shot_num.json"
META_FILE = "puzzles.json"
QUALITY = 95


Progress = Callable[[int, int], None]  # (puzzles done, puzzles in all)


@dataclass
class PuzzleSummary:
    out: Path
    split: str
    movies: int  # films of the split
    puzzles: int  # puzzles of those films, in all
    written: int  # puzzles this run wrote (the others were there)
    tile: tuple[int, int] | None  # width, height of one keyframe in the first puzzle
    too_short: list[str] = field(default_factory=list)  # films with fewer than 16 shots


def puzzle_path(out: str | Path, video_id: str, puzzle: int) -> Path:
    return Path(out) / video_id / f"{puzzle:04d}.jpg"


def make_puzzles(
    root: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    overwrite: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> PuzzleSummary:
    """Stitch the films of ``split`` in the MovieNet tree ``root`` into puzzles under ``out``.

    ``split`` is ``train`` (SCRL's choice), ``val``, ``test`` or ``pretrain`` (every film).
    Puzzles already in ``out`` are kept unless ``overwrite``. ``workers`` threads decode and
    encode JPEGs [default: one per CPU core]. Raises ``InputError`` for a tree without that split
    or with unreadable keyframes.
    """
    from concurrent.futures import ThreadPoolExecutor

    root, out = Path(root), Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; give a folder for the puzzles")
    if out.resolve() == root.resolve():
        raise OutputError(f"{out}: write puzzles next to the tree, not into it")
    tree = read_tree(root)
    movies = tree.split(split)
    jobs = [(movie.video_id, p) for movie in movies for p in range(movie.num_shots // PUZZLE_SHOTS)]
    todo = [job for job in jobs if overwrite or not puzzle_path(out, *job).is_file()]
    if progress:
        progress(len(jobs) - len(todo), len(jobs))

    def work(job: tuple[str, int]) -> None:
        _save_jpeg(puzzle_path(out, *job), puzzle_image(root, *job))

    # PIL decodes and encodes without the GIL, so threads use every core.
    with ThreadPoolExecutor(max(1, workers or os.cpu_count() or 1)) as pool:
        try:
            for done, _ in enumerate(pool.map(work, todo), len(jobs) - len(todo) + 1):
                if progress:
                    progress(done, len(jobs))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # fail now, not after the other puzzles
            raise
    tile = _tile_of(puzzle_path(out, *jobs[0])) if jobs else None
    shot_num = {"train": {m.video_id: m.num_shots for m in movies}}
    write_json(out / INDEX_FILE, shot_num)
    meta = {
        "tree": str(root.resolve()),
        "split": split,
        "rows": PUZZLE_SHOTS,
        "columns": PUZZLE_FRAMES,
        "tile": list(tile) if tile else None,
        "quality": QUALITY,
        "puzzles": len(jobs),
        "movies": {m.video_id: m.num_shots // PUZZLE_SHOTS for m in movies},
    }
    write_json(out / META_FILE, meta)
    return PuzzleSummary(
        out=out,
        split=split,
        movies=len(movies),
        puzzles=len(jobs),
        written=len(todo),
        tile=tile,
        too_short=[m.video_id for m in movies if m.num_shots < PUZZLE_SHOTS],
    )


def puzzle_image(root: str | Path, video_id: str, puzzle: int):
    """Puzzle ``puzzle`` of a film as a ``[16 H, 3 W, 3]`` uint8 RGB array.

    Keyframes of another size than the puzzle's first are resized to it (MovieNet's are all one
    size per film; SCRL's code would fail on them).
    """
    import numpy as np

    rows = []
    size = None
    for shot in range(puzzle * PUZZLE_SHOTS, (puzzle + 1) * PUZZLE_SHOTS):
        frames = load_keyframes(root, video_id, shot)
        if size is None:
            size = frames.shape[1:3]
        elif frames.shape[1:3] != size:
            log.debug("%s shot %d: keyframes %s resized to %s", video_id, shot, frames.shape, size)
            frames = np.stack([_resize(f, size) for f in frames])
        rows.append(np.concatenate(list(frames), axis=1))
    return np.concatenate(rows, axis=0)


def split_puzzle(image):
    """The inverse, as SCRL's loader cuts a puzzle: ``[16, 3, H, W, 3]``."""
    import numpy as np

    return np.stack(
        [np.stack(np.hsplit(row, PUZZLE_FRAMES)) for row in np.vsplit(image, PUZZLE_SHOTS)]
    )


def _resize(rgb, size: tuple[int, int]):
    import numpy as np
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


def _tile_of(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.width // PUZZLE_FRAMES, image.height // PUZZLE_SHOTS
    except OSError:
        return None


def _save_jpeg(path: Path, rgb) -> None:
    from PIL import Image

    with replacing(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=QUALITY)
