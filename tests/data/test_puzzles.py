"""SCRL puzzles: 16 shots x 3 keyframes per image, right tiles, right counts, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.data.puzzles import (
    INDEX_FILE,
    PUZZLE_FRAMES,
    PUZZLE_SHOTS,
    make_puzzles,
    puzzle_path,
    split_puzzle,
)
from scenecut.data.writer import MovieEntry, write_annotations, write_movie
from scenecut.errors import InputError

runner = CliRunner()
W, H = 64, 36
FILMS = {"tt01": 35, "tt02": 10, "tt03": 16}  # shots: 2 puzzles (3 left over), none, one


def _keyframe(video: int, shot: int, k: int) -> np.ndarray:
    """A keyframe no other one looks like: a colour from (film, shot, k) and a stripe."""
    img = np.zeros((H, W, 3), np.uint8)
    img[...] = ((37 * shot + 80 * k) % 256, (53 * shot + 90 * video) % 256, (200 - 60 * k) % 256)
    img[: H // 3, : W // 2] = 255 - img[0, 0]
    return img


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    entries = []
    for v, (video_id, n) in enumerate(FILMS.items()):
        shots = [(10 * i, 10 * i + 10) for i in range(n)]
        keyframes = (np.stack([_keyframe(v, s, k) for k in range(3)]) for s in range(n))
        labels = [int(i % 4 == 3) for i in range(n - 1)]
        entries.append(write_movie(root, video_id, shots, keyframes, labels))
    splits = {"train": ["tt01", "tt02"], "val": ["tt03"], "test": []}
    write_annotations(root, [MovieEntry(e.video_id, e.shots, e.labels) for e in entries], splits)
    return root


def test_puzzles_of_the_train_split(tree: Path, tmp_path: Path) -> None:
    seen = []
    summary = make_puzzles(tree, tmp_path, progress=lambda d, n: seen.append((d, n)))
    assert (summary.movies, summary.puzzles, summary.written) == (2, 2, 2)
    assert summary.tile == (W, H) and summary.too_short == ["tt02"]
    assert seen[-1] == (2, 2)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg")) == [
        "tt01/0000.jpg",
        "tt01/0001.jpg",
    ]
    # SCRL's MovieNet_shot_num.json: the loader reads the "train" key and makes n // 16 puzzles.
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert index == {"train": {"tt01": 35, "tt02": 10}}
    for p in range(2):
        image = np.asarray(Image.open(puzzle_path(tmp_path, "tt01", p)).convert("RGB"))
        assert image.shape == (PUZZLE_SHOTS * H, PUZZLE_FRAMES * W, 3)
        tiles = split_puzzle(image)
        for row in range(PUZZLE_SHOTS):
            for k in range(PUZZLE_FRAMES):
                expected = _keyframe(0, p * PUZZLE_SHOTS + row, k).astype(int)
                error = np.abs(tiles[row, k].astype(int) - expected).mean()
                assert error < 6, (p, row, k, error)
    assert not list(tmp_path.rglob(".*"))  # no temp files left behind


def test_rerun_skips_written_puzzles(tree: Path, tmp_path: Path) -> None:
    make_puzzles(tree, tmp_path)
    first = puzzle_path(tmp_path, "tt01", 0)
    stamp = first.stat().st_mtime_ns
    puzzle_path(tmp_path, "tt01", 1).unlink()
    summary = make_puzzles(tree, tmp_path)
    assert (summary.puzzles, summary.written) == (2, 1)
    assert first.stat().st_mtime_ns == stamp
    assert make_puzzles(tree, tmp_path, overwrite=True).written == 2


def test_other_splits(tree: Path, tmp_path: Path) -> None:
    summary = make_puzzles(tree, tmp_path, split="pretrain")
    assert (summary.movies, summary.puzzles) == (3, 3)
    assert json.loads((tmp_path / INDEX_FILE).read_text())["train"] == FILMS
    with pytest.raises(InputError, match="split"):
        make_puzzles(tree, tmp_path / "x", split="holdout")


def test_cli(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "puzzles"
    res = runner.invoke(app, ["data", "puzzles", str(tree), "--out", str(out), "--split", "val"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out)
    assert "1 puzzles" in res.stderr and f"{W}x{H}" in res.stderr
    assert puzzle_path(out, "tt03", 0).is_file()
