"""Substitute scanpaths for an action tree that has none (Saccade-VSSL spec, section 2.5).

The reference's scanpaths came from G-Eymol, whose conversion to fixations is not released. The
substitute, per video (numpy only):

1. every frame as grey at 85x64 px; motion ``|I_t - I_(t-2)|`` box-blurred, plus the
   spectral-residual static saliency of Hou & Zhang (CVPR 2007) at half weight;
2. both averaged onto the ``grid`` x ``grid`` cells (motion scaled by the video's largest cell
   motion, static saliency by each frame's largest cell), smoothed over 5 frames;
3. the best cell of each frame, with inhibition of return: a cell held for ``min_frames``
   frames is weighted by ``ior`` (0.3) and recovers over ``recover`` frames (1 s at 25 fps);
4. runs of one cell of at least ``min_frames`` frames become fixations ``cell start end``
   (``end`` included), at least ``min_rows`` of them: shorter runs of other cells first, then
   the cells most salient over the whole video, spanning it.

``method="random"`` writes random fixations instead (the baseline to compare against), drawn
from ``seed`` and the video's name, so reruns write the same files.

Files are written one video at a time, atomically; a video whose file exists is skipped unless
``overwrite``, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scenecut.data.actions import FRAMES_DIR, check_grid, frame_files, scan_dir, video_folders
from scenecut.errors import InputError, OutputError, ScenecutError, UsageError
from scenecut.files import atomic_write, make_dir

log = logging.getLogger(__name__)

METHODS = ("saliency", "random")
SIZE = (85, 64)  # width, height the saliency is computed at
_TEMP_RE = re.compile(r"\..*\.tmp\.txt")


@dataclass(frozen=True)
class ScanpathParams:
    grid: int = 7
    min_frames: int = 8  # shortest fixation: about 3 a second at 25 fps, as G-Eymol's
    min_rows: int = 3  # the reference reads 3 fixations a video
    ior: float = 0.3  # weight of a cell just left by inhibition of return
    recover: int = 25  # frames for an inhibited cell to recover
    static_weight: float = 0.5
    smooth: int = 5  # frames the cell scores are averaged over
    motion_floor: float = 4.0  # grey levels: a video whose cells move less is taken as still


# --- saliency ----------------------------------------------------------------------------------


def box_blur(image: np.ndarray, radius: int, mode: str = "edge") -> np.ndarray:
    """Mean over a ``(2 radius + 1)`` square around each pixel of a 2-D array."""
    out = np.asarray(image, dtype=np.float64)
    width = 2 * radius + 1
    for axis in (0, 1):
        pad = [(radius, radius) if a == axis else (0, 0) for a in range(2)]
        total = np.cumsum(np.pad(out, pad, mode=mode), axis=axis)
        total = np.moveaxis(total, axis, 0)
        window = np.concatenate([total[width - 1 : width], total[width:] - total[:-width]])
        out = np.moveaxis(window, 0, axis) / width
    return out


def spectral_residual(gray: np.ndarray) -> np.ndarray:
    """Static saliency of a grey image (Hou & Zhang 2007): what its log spectrum has beyond
    the local average of the log spectrum, transformed back, squared and blurred."""
    spectrum = np.fft.fft2(gray)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amplitude - box_blur(log_amplitude, 1, mode="wrap")
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    return box_blur(saliency, 3)


def pool(image: np.ndarray, grid: int) -> np.ndarray:
    """Mean of each cell of a ``grid`` x ``grid`` split of a 2-D array, row-major, ``[grid²]``."""
    h, w = image.shape
    rows, cols = (np.arange(grid + 1) * h) // grid, (np.arange(grid + 1) * w) // grid
    sums = np.add.reduceat(np.add.reduceat(image, rows[:-1], axis=0), cols[:-1], axis=1)
    return (sums / np.outer(np.diff(rows), np.diff(cols))).ravel()


def load_gray(path: Path) -> np.ndarray:
    """One frame as grey float at ``SIZE`` (JPEGs decoded at a reduced scale: quick)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("L", (SIZE[0] * 2, SIZE[1] * 2))
            small = image.convert("L").resize(SIZE, Image.Resampling.BILINEAR)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot read frame ({exc}); run `scenecut data check`") from exc
    return np.asarray(small, dtype=np.float64)


def cell_scores(frames: Sequence[Path], params: ScanpathParams = ScanpathParams()) -> np.ndarray:
    """Saliency of each cell in each frame, ``[frames, grid²]`` (steps 1-2 of the module doc).

    Frames are read one at a time, so memory does not grow with the video's length.
    """
    n, cells = len(frames), params.grid**2
    motion, static = np.zeros((n, cells)), np.zeros((n, cells))
    recent: list[np.ndarray] = []
    for t, path in enumerate(frames):
        gray = load_gray(path)
        recent = [*recent[-2:], gray]
        if t >= 2:
            motion[t] = pool(box_blur(np.abs(gray - recent[0]), 2), params.grid)
        static[t] = pool(spectral_residual(gray), params.grid)
    if n > 2:
        motion[:2] = motion[2]  # no frame 2 back: the first frames move as frame 2 does
    motion /= max(float(motion.max(initial=0.0)), params.motion_floor)
    static /= np.maximum(static.max(axis=1, keepdims=True), 1e-12)
    scores = motion + params.static_weight * static
    return _smooth(scores, params.smooth)


def _smooth(scores: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(scores) < 2:
        return scores
    half = window // 2
    padded = np.pad(scores, ((half, window - 1 - half), (0, 0)), mode="edge")
    total = np.insert(np.cumsum(padded, axis=0), 0, 0.0, axis=0)
    return (total[window:] - total[:-window]) / window


def select_cells(scores: np.ndarray, params: ScanpathParams = ScanpathParams()) -> np.ndarray:
    """The fixated cell of each frame: the best cell, with inhibition of return (step 3)."""
    weights = np.ones(scores.shape[1])
    cells = np.empty(len(scores), dtype=np.int64)
    current, held = -1, 0
    for t, row in enumerate(scores):
        weights = np.minimum(1.0, weights + (1.0 - params.ior) / max(params.recover, 1))
        cell = int(np.argmax(row * weights))
        held = held + 1 if cell == current else 1
        current = cell
        if held % params.min_frames == 0:
            weights[cell] = params.ior
        cells[t] = cell
    return cells


def fixation_rows(
    cells: np.ndarray, scores: np.ndarray, params: ScanpathParams = ScanpathParams()
) -> np.ndarray:
    """Runs of one cell as ``(n, 3)`` rows ``cell start end``, in time order (step 4)."""
    n = len(cells)
    bounds = np.flatnonzero(np.diff(cells)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    ends = np.concatenate([bounds, [n]]).astype(np.int64) - 1
    runs = [(int(cells[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
    rows = [r for r in runs if r[2] - r[1] + 1 >= params.min_frames]
    used = {r[0] for r in rows}
    for run in sorted(runs, key=lambda r: (r[1] - r[2], r[1])):  # longest short runs first
        if len(rows) >= params.min_rows:
            break
        if run[0] not in used:
            rows.append(run)
            used.add(run[0])
    for cell in np.argsort(-scores.mean(axis=0), kind="stable"):
        if len(rows) >= params.min_rows:
            break
        if int(cell) not in used:
            rows.append((int(cell), 0, n - 1))
            used.add(int(cell))
    return np.array(sorted(rows, key=lambda r: (r[1], r[2])), dtype=np.int64).reshape(-1, 3)


def saliency_scanpath(
    frames: Sequence[Path], params: ScanpathParams = ScanpathParams()
) -> np.ndarray:
    """The substitute scanpath of one video (its sorted frame files)."""
    if not frames:
        raise InputError("no frames to compute a scanpath from")
    scores = cell_scores(frames, params)
    return fixation_rows(select_cells(scores, params), scores, params)


def random_scanpath(
    frames: int, rng: np.random.Generator, params: ScanpathParams = ScanpathParams()
) -> np.ndarray:
    """Random fixations over ``frames`` frames: random cells (no two alike in a row), lengths
    of ``min_frames`` to 3 ``min_frames``, gaps of up to 4 frames; a video too short for
    ``min_rows`` of them is cut into ``min_rows`` equal fixations."""
    if frames < 1:
        raise InputError("no frames to place fixations on")
    spans, t = [], 0
    while t < frames:
        length = int(rng.integers(params.min_frames, 3 * params.min_frames + 1))
        spans.append((t, min(t + length, frames) - 1))
        t += length + int(rng.integers(0, 5))
    if len(spans) < params.min_rows:
        bounds = np.linspace(0, frames, params.min_rows + 1).astype(int)
        spans = [(int(a), max(int(a), int(b) - 1)) for a, b in itertools.pairwise(bounds)]
    cells = rng.permutation(params.grid**2)
    rows = [(int(cells[i % len(cells)]), start, end) for i, (start, end) in enumerate(spans)]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def scanpath_text(rows: np.ndarray) -> str:
    """Rows as the reference's files hold them: ``cell start end`` per line."""
    return "".join(f"{c} {s} {e}\n" for c, s, e in rows.tolist())


# --- writing a tree's scanpaths ----------------------------------------------------------------


@dataclass
class ScanpathSummary:
    root: Path
    folder: Path  # ROOT/scan_idx_<grid>
    method: str
    videos: int
    written: int  # by this run
    skipped: int  # already there
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, why)


def write_scanpaths(
    root: str | Path,
    *,
    grid: int = 7,
    method: str = "saliency",
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScanpathSummary:
    """Write ``scan_idx_<grid>/<video>.txt`` for every frame folder of the tree at ``root``.

    A video whose file exists is skipped unless ``overwrite``; a video that fails (no frames, a
    frame that does not decode) is listed in the result and the others still get their files.
    ``workers`` processes share the videos [default: one per core, and at most one per
    ``PER_PROCESS`` videos to write].
    """
    check_grid(grid)
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    root = Path(root)
    frames_dir = root / FRAMES_DIR
    if not frames_dir.is_dir():
        raise InputError(
            f"{root}: no {FRAMES_DIR}/ folder; pass the root of a UCF101/HMDB51-style tree"
        )
    folder = root / scan_dir(grid)
    make_dir(folder, "scanpath folder", "check the tree's permissions")
    _remove_stale_temporaries(folder)
    names = video_folders(frames_dir)
    summary = ScanpathSummary(root, folder, method, len(names), 0, 0)
    todo = [n for n in names if overwrite or not (folder / f"{n}.txt").exists()]
    summary.skipped = len(names) - len(todo)
    job = _Job(root, grid, method, seed, overwrite)
    # Processes: the work is many small numpy calls, which threads would run one at a time.
    # A few videos are not worth starting them.
    workers = min(workers or os.cpu_count() or 1, max(1, len(todo) // PER_PROCESS))
    done = summary.skipped
    if progress:
        progress(done, len(names))
    if workers == 1:
        results = map(job, todo)
        pool = None
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        pool = ProcessPoolExecutor(workers, mp_context=context)
        results = pool.map(job, todo, chunksize=4)
    try:
        for name, status in results:
            if status == "written":
                summary.written += 1
            elif status == "skipped":
                summary.skipped += 1
            else:
                summary.failed.append((name, status))
            done += 1
            if progress:
                progress(done, len(names))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return summary


PER_PROCESS = 16  # videos a worker process should have at least


@dataclass(frozen=True)
class _Job:
    """One video's scanpath, written; picklable for worker processes."""

    root: Path
    grid: int
    method: str
    seed: int
    overwrite: bool

    def __call__(self, name: str) -> tuple[str, str]:
        """(name, "written" | "skipped" | why it failed)."""
        try:
            return name, self.write(name)
        except ScenecutError as exc:
            log.debug("scanpath of %s failed", name, exc_info=True)
            return name, str(exc)

    def write(self, name: str) -> str:
        path = self.root / scan_dir(self.grid) / f"{name}.txt"
        if path.exists() and not self.overwrite:
            return "skipped"  # written meanwhile by another run
        params = ScanpathParams(grid=self.grid)
        frames = frame_files(self.root / FRAMES_DIR / name)
        if self.method == "random":
            rng = np.random.default_rng([self.seed, zlib.crc32(os.fsencode(name))])
            rows = random_scanpath(len(frames), rng, params)
        else:
            rows = saliency_scanpath(frames, params)
        try:
            atomic_write(path, scanpath_text(rows), overwrite=self.overwrite)
        except OutputError:
            if path.exists() and not self.overwrite:
                return "skipped"
            raise
        return "written"


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of runs killed while writing (a live run's are under a minute old)."""
    for entry in os.scandir(folder):
        if _TEMP_RE.fullmatch(entry.name):
            try:
                if time.time() - entry.stat().st_mtime > 60:
                    os.unlink(entry.path)
            except OSError:
                continue
