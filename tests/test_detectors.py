"""Each of PySceneDetect's detectors finds the same shot cuts under scenecut as under
PySceneDetect itself (issue 15, point 9).

The clips are made here with the real ffmpeg: hard cuts, fades through black (one at the very
end), a white flash, and fine moving textures whose scores sit near the detectors' thresholds, so
that a pixel of difference in the detector's input changes the cuts. PySceneDetect runs on the
same file as its ``scenedetect`` command does: OpenCV decoding, auto-downscale, each
``detect-*`` command's defaults.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scenecut import shots
from scenecut.shots import detect_shots

FPS = 25
# Our detector name -> PySceneDetect's class and its CLI's options where they differ from the
# class's own defaults (scenedetect/_cli/config.py). min_scene_len is the CLI's 0.6 s.
PYSCENEDETECT = {
    "adaptive": ("AdaptiveDetector", {}),
    "content": ("ContentDetector", {}),
    "threshold": ("ThresholdDetector", {"add_final_scene": True, "min_out_length": "0.1s"}),
    "histogram": ("HistogramDetector", {}),
    "hash": ("HashDetector", {}),
}


def _encode(path: Path, frames: Iterator[np.ndarray], rotate: int = 0) -> Path:
    """``frames`` (RGB, float or uint8) as H.264; ``rotate`` degrees of display rotation."""
    import imageio_ffmpeg  # its ffmpeg is new enough for -display_rotation (6.0)

    first = next(frames)
    h, w = first.shape[:2]
    rotation = ["-display_rotation", str(rotate)] if rotate else []
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *rotation, "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-", "-c:v", "libx264",
           "-threads", "1", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
           str(path)]  # fmt: skip
    with subprocess.Popen(cmd, stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        for frame in (first, *frames):
            proc.stdin.write(np.clip(frame, 0, 255).astype(np.uint8).tobytes())
        proc.stdin.close()
    assert proc.returncode == 0
    return path


def _blobs(rng: np.random.Generator, n: int, w: int, h: int) -> list[np.ndarray]:
    """A shot of smooth colour blobs drifting from one random field to another."""
    import cv2

    a, b = (cv2.resize(rng.random((h // 12 + 2, w // 12 + 2, 3)), (w, h)) for _ in range(2))
    return [30 + 200 * ((1 - t) * a + t * b) for t in np.linspace(0, 0.3, n)]


def _fade(frames: list[np.ndarray], start: float, end: float) -> list[np.ndarray]:
    return [f * g for f, g in zip(frames, np.linspace(start, end, len(frames)), strict=True)]


def _fades(w: int = 320, h: int = 180) -> Iterator[np.ndarray]:
    """Hard cuts, a fade out and in through black, a 2-frame white flash, a final fade-out."""
    rng = np.random.default_rng(0)
    black = [np.zeros((h, w, 3))] * 6
    flashed = _blobs(rng, 30, w, h)
    flashed[12:14] = [np.full((h, w, 3), 250.0)] * 2
    yield from _blobs(rng, 30, w, h)
    yield from [*_fade(_blobs(rng, 10, w, h), 1, 0), *black, *_fade(_blobs(rng, 10, w, h), 0, 1)]
    yield from [*_blobs(rng, 30, w, h), *flashed, *_blobs(rng, 30, w, h)]
    yield from [*_fade(_blobs(rng, 12, w, h), 1, 0), *black]


def _textures(w: int = 320, h: int = 180) -> Iterator[np.ndarray]:
    """Fine stripes that speed up (content scores climb through the threshold), then shots of
    stripes whose period creeps (hash bits and luma histograms near their thresholds)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    pos = 0.0
    for i in range(60):
        pos += 0.05 + 0.02 * i
        v = 128 + 90 * np.sin(2 * np.pi * (x + pos) / 5) * np.sin(2 * np.pi * (0.7 * y + pos) / 7)
        yield np.stack([v, 0.5 * v + 60, 255 - v], -1)
    for k in range(4):
        for i in range(30):
            v = 128 + 100 * np.sin(
                2 * np.pi * (x + 0.5 * y + 0.3 * i * k) / (3 + 0.7 * k + 0.02 * i)
            )
            yield np.stack([v, np.roll(v, k, 1), 255 - v], -1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("detectors")
    return {
        "fades": _encode(folder / "fades.mp4", _fades()),
        "textures": _encode(folder / "textures.mp4", _textures()),
        # PySceneDetect scales by the longer side, and turns the picture upright first.
        "portrait": _encode(folder / "portrait.mp4", _textures(w=144, h=320)),
        "rotated": _encode(folder / "rotated.mp4", _textures(), rotate=90),
    }


def _pyscenedetect_cuts(path: Path, detector: str) -> list[int]:
    import scenedetect

    name, options = PYSCENEDETECT[detector]
    cls = getattr(scenedetect.detectors, name)
    scenes = scenedetect.detect(str(path), cls(min_scene_len=round(0.6 * FPS), **options))
    return [start.frame_num for start, _ in scenes[1:]]


def _our_cuts(path: Path, detector: str) -> list[int]:
    return [shot.start for shot in detect_shots(path, detector=detector).shots[1:]]


@pytest.mark.parametrize("large", [False, True], ids=["split", "large-frames"])
@pytest.mark.parametrize("detector", list(PYSCENEDETECT))
def test_cuts_equal_pyscenedetect(clips, detector, large, monkeypatch):
    if large:  # frames above 1080p are shrunk in the decode thread: the same pixels
        monkeypatch.setattr(shots, "_SPLIT_PIXELS", 0)
    theirs = {name: _pyscenedetect_cuts(path, detector) for name, path in clips.items()}
    ours = {name: _our_cuts(path, detector) for name, path in clips.items()}
    assert ours == theirs
    assert any(theirs.values())  # the clips give every detector something to find


def test_threshold_final_fade_out_is_a_cut_as_in_the_cli(clips, tmp_path):
    """PySceneDetect's ``detect-threshold`` command itself ends the last shot where the picture
    fades out for good (``add-last-scene``), unlike its class's default."""
    exe = Path(sys.executable).parent / "scenedetect"
    if not exe.exists():
        pytest.skip("the scenedetect console script is not installed in this environment")
    subprocess.run(
        [str(exe), "-q", "-i", str(clips["fades"]), "detect-threshold", "list-scenes", "-s",
         "-o", str(tmp_path), "-f", "scenes.csv"],
        check=True,
    )  # fmt: skip
    rows = (tmp_path / "scenes.csv").read_text().splitlines()[1:]
    cli = [int(row.split(",")[1]) - 1 for row in rows[1:]]  # the CSV counts frames from 1
    frames = 30 + 10 + 6 + 10 + 30 + 30 + 30 + 12 + 6
    assert cli[-1] > frames - 20  # the final fade-out
    assert _our_cuts(clips["fades"], "threshold") == cli
