"""Substitute scanpaths (spec 2.5): saliency, inhibition of return, fixation rows, and
``scenecut data scanpaths`` writing them resumably."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenecut.data import scanpaths
from scenecut.data.actions import check_actions, read_scanpath
from scenecut.data.scanpaths import ScanpathParams

W, H = 171, 128
SQUARE = 22


def _square_film(folder: Path, frames: int = 60, seed: int = 0) -> list[set[int]]:
    """A bright textured square crossing a noisy grey background left to right (2 px a
    frame: about 12 frames a cell) on a slight diagonal. Returns the grid cells it covers in
    each frame (1 to 4: it is a little smaller than a cell)."""
    rng = np.random.default_rng(seed)
    background = 110 + rng.normal(0, 10, (H, W, 1)) * np.ones(3)
    texture = rng.integers(170, 256, (SQUARE, SQUARE, 3))
    folder.mkdir(parents=True)
    cells = []
    for t in range(frames):
        x, y = 4 + 2 * t, 30 + t // 2
        image = background + rng.normal(0, 3, (H, W, 3))
        image[y : y + SQUARE, x : x + SQUARE] = texture
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
            folder / f"frame{t + 1:06d}.jpg", quality=90
        )
        rows = range(y * 7 // H, (y + SQUARE - 1) * 7 // H + 1)
        cols = range(x * 7 // W, (x + SQUARE - 1) * 7 // W + 1)
        cells.append({r * 7 + c for r in rows for c in cols})
    return cells


@pytest.fixture(scope="module")
def square(tmp_path_factory) -> tuple[Path, list[set[int]]]:
    root = tmp_path_factory.mktemp("tree")
    return root, _square_film(root / "jpegs_256" / "v_square")


def test_fixations_follow_the_moving_object(square):
    root, truth = square
    rows = scanpaths.saliency_scanpath(sorted((root / "jpegs_256" / "v_square").glob("*.jpg")))
    assert len(rows) >= 3
    assert np.all(rows[:, 2] >= rows[:, 1]) and np.all(np.diff(rows[:, 1]) > 0)
    # The fixated cell is one the square covers, in most frames of the fixation (the gaze
    # leads a little: the square's front edge moves into the next cell first).
    on_object = [np.mean([cell in truth[t] for t in range(s, e + 1)]) for cell, s, e in rows]
    assert np.mean(np.array(on_object) >= 0.75) >= 0.8, (rows, truth)
    covered = sum(sum(cell in truth[t] for t in range(s, e + 1)) for cell, s, e in rows)
    assert covered >= 0.6 * len(truth)  # most frames are fixated, on the object


def test_spectral_residual_finds_the_odd_one_out():
    image = np.full((64, 85), 100.0) + np.random.default_rng(0).normal(0, 2, (64, 85))
    image[40:48, 10:18] = 220
    saliency = scanpaths.spectral_residual(image)
    y, x = np.unravel_index(np.argmax(saliency), saliency.shape)
    assert 36 <= y <= 52 and 6 <= x <= 22
    assert np.argmax(scanpaths.pool(saliency, 7)) == 4 * 7 + 1


def test_inhibition_of_return_moves_the_gaze_on():
    scores = np.zeros((64, 49))
    scores[:, 10], scores[:, 30] = 1.0, 0.9  # two salient cells, one a little more
    cells = scanpaths.select_cells(scores)
    assert set(cells) == {10, 30}
    no_ior = scanpaths.select_cells(scores, ScanpathParams(ior=1.0))
    assert set(no_ior) == {10}
    rows = scanpaths.fixation_rows(cells, scores)
    assert rows[0].tolist() == [10, 0, 7]  # held for min_frames, then inhibited
    assert [r[0] for r in rows[:4]] == [10, 30, 10, 30]
    assert np.all(rows[:, 2] - rows[:, 1] + 1 >= 8)


def test_rows_are_padded_to_three_distinct_cells():
    scores = np.zeros((20, 49))
    scores[:, 5] = 1.0
    scores[:, 6] = 0.5
    cells = np.array([5] * 14 + [6] * 3 + [5] * 3)  # one fixation, one short run of cell 6
    rows = scanpaths.fixation_rows(cells, scores, ScanpathParams(ior=1.0))
    assert rows.tolist() == [[5, 0, 13], [0, 0, 19], [6, 14, 16]]


def test_random_scanpaths_are_valid_and_short_videos_get_three_rows():
    for frames in (1, 2, 17, 40, 300):
        rows = scanpaths.random_scanpath(frames, np.random.default_rng(frames))
        assert len(rows) >= 3 and rows.shape[1] == 3
        assert np.all((rows[:, 1] <= rows[:, 2]) & (rows[:, 2] < frames))
        assert np.all((rows[:, 0] >= 0) & (rows[:, 0] < 49))
        assert np.all(rows[1:, 0] != rows[:-1, 0])


def _run(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "data", "scanpaths", *args], capture_output=True, text=True)


def test_cli_writes_resumes_and_reports_failures(square, tmp_path, scenecut_exe):
    root = tmp_path / "tree"
    source = square[0] / "jpegs_256" / "v_square"
    for name in ("v_a", "v_b", "v_broken"):
        (root / "jpegs_256" / name).mkdir(parents=True)
        for frame in sorted(source.glob("*.jpg"))[:20]:
            (root / "jpegs_256" / name / frame.name).write_bytes(frame.read_bytes())
    (root / "jpegs_256" / "v_broken" / "frame000005.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    proc = _run(scenecut_exe, str(root), "--workers", "1")
    assert proc.returncode == 1
    assert proc.stdout.strip() == str(root / "scan_idx_7")
    assert proc.stderr.startswith("error: v_broken: ") and "frame000005.jpg" in proc.stderr
    assert "2 saliency scanpaths written now" in " ".join(proc.stderr.split())
    scans = root / "scan_idx_7"
    assert sorted(p.name for p in scans.iterdir()) == ["v_a.txt", "v_b.txt"]
    assert len(read_scanpath(scans / "v_a.txt", frames=20)) >= 3
    # a rerun (after the broken video is fixed) writes only what is missing
    (root / "jpegs_256" / "v_broken" / "frame000005.jpg").write_bytes(
        (source / "frame000005.jpg").read_bytes()
    )
    (scans / "v_a.txt").write_text("1 0 3\n")  # kept: it exists
    (scans / ".v_b.abc123.tmp.txt").write_text("")  # a killed run's leftover, now stale
    import os

    os.utime(scans / ".v_b.abc123.tmp.txt", (0, 0))
    again = _run(scenecut_exe, str(root))
    assert again.returncode == 0, again.stderr
    assert "1 saliency scanpaths written now, 2 already there" in " ".join(again.stderr.split())
    assert (scans / "v_a.txt").read_text() == "1 0 3\n"
    assert not (scans / ".v_b.abc123.tmp.txt").exists()
    counts = check_actions(root, decode=False, clip_len=16).counts()
    assert "no_scanpath" not in counts and counts["one_row_scanpath"] == 1
    # the random baseline: its own folder with --grid, reproducible per seed
    first = _run(scenecut_exe, str(root), "--method", "random", "--grid", "4", "--seed", "3")
    assert first.returncode == 0, first.stderr
    text = (root / "scan_idx_4" / "v_a.txt").read_text()
    assert np.all(read_scanpath(root / "scan_idx_4" / "v_a.txt", grid=4)[:, 0] < 16)
    other = scanpaths.write_scanpaths(root, grid=4, method="random", seed=4, overwrite=True)
    assert other.written == 3 and (root / "scan_idx_4" / "v_a.txt").read_text() != text
    scanpaths.write_scanpaths(root, grid=4, method="random", seed=3, overwrite=True)
    assert (root / "scan_idx_4" / "v_a.txt").read_text() == text


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--method", "eyes"], 2, "--method must be one of saliency, random"),
        (["--grid", "0"], 2, "--grid must be 1 to 64"),
    ],
)
def test_cli_bad_usage(square, scenecut_exe, args, code, message):
    proc = _run(scenecut_exe, str(square[0]), *args)
    assert proc.returncode == code and proc.stderr.startswith(f"error: {message}")
    assert not (square[0] / "scan_idx_0").exists()


def test_cli_refuses_a_folder_that_is_not_a_tree(tmp_path, scenecut_exe):
    proc = _run(scenecut_exe, str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")
    assert "no jpegs_256/ folder" in proc.stderr and "Traceback" not in proc.stderr


def test_worker_processes_write_what_one_process_writes(tmp_path):
    root = tmp_path / "tree"
    for i in range(2 * scanpaths.PER_PROCESS):  # enough videos for two worker processes
        folder = root / "jpegs_256" / f"v_{i:02d}"
        folder.mkdir(parents=True)
        for t in range(1 + i):
            (folder / f"frame{t + 1:06d}.jpg").write_bytes(b"")  # random: frames are not read
    one = scanpaths.write_scanpaths(root, grid=5, method="random", workers=1)
    texts = {p.name: p.read_text() for p in (root / "scan_idx_5").iterdir()}
    two = scanpaths.write_scanpaths(root, grid=5, method="random", workers=2, overwrite=True)
    assert one.written == two.written == len(texts) == 2 * scanpaths.PER_PROCESS
    assert {p.name: p.read_text() for p in (root / "scan_idx_5").iterdir()} == texts
