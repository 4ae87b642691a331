"""``--detector dissolve``: the adaptive detector's cuts plus the cross-dissolves it misses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from scenecut.dissolves import SIZE, Dissolves
from scenecut.keyframes import keyframe_indices
from scenecut.segment import segment
from scenecut.shots import detect_shots
from scenecut.video import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "sintel_trailer_480x204.mp4"
FPS = 24


def _texture(seed: int) -> np.ndarray:
    """A smooth random grey picture of SIZE (blurred noise, full range)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 220, (9, 16))
    return np.kron(coarse, np.ones((4, 4)))[: SIZE[1], : SIZE[0]]


def _found(frames) -> list[tuple[int, int, int]]:
    finder = Dissolves(FPS)
    out = []
    for frame in frames:
        out += finder.push(frame)
    return out + finder.finish()


def test_a_dissolve_gives_one_cut_at_its_middle():
    a, b = _texture(1), _texture(2)
    frames = [a] * 40 + [a + (b - a) * (i + 1) / 19 for i in range(18)] + [b] * 40
    found = _found(frames)
    assert len(found) == 1, found
    cut, first, last = found[0]
    assert abs(cut - 49) <= 2  # the blends are frames 40..57
    assert first <= 41 and last >= 56 and first > 30 and last < 67


def test_cuts_pans_titles_and_fades_through_black_are_not_dissolves():
    a, b = _texture(1), _texture(2)
    hard = [a] * 40 + [b] * 40
    wide = np.kron(np.random.default_rng(3).uniform(40, 220, (9, 40)), np.ones((4, 4)))
    pan = [wide[: SIZE[1], i : i + SIZE[0]] for i in range(80)]  # a pan, a pixel a frame
    title = a.copy()
    title[14:22, 8:56] = 250  # a title over a quarter of the picture
    titled = [a] * 30 + [a + (title - a) * i / 18 for i in range(18)] + [title] * 30
    black = np.zeros_like(a)
    fade = [a] * 30 + [a * (1 - i / 12) for i in range(12)] + [black] * 6
    fade += [b * i / 12 for i in range(12)] + [b] * 30
    for frames in (hard, pan, titled, fade, [a] * 80):
        assert _found(frames) == []


@pytest.fixture(scope="module")
def dissolve_film(tmp_path_factory) -> Path:
    """Two stills of the demo film (20 s and 40 s in), 60 frames each at 24 fps, the second
    dissolving in over 0.75 s from frame 42: its blends are frames 42..59, the middle 51."""
    out = tmp_path_factory.mktemp("dissolve") / "dissolve.mp4"
    still = "[0:v]trim=start={},setpts=PTS-STARTPTS,select=eq(n\\,0),loop=loop=59:size=1,"
    still += "setpts=N/24/TB[{}]"
    graph = ";".join(
        [
            still.format(20, "a"),
            still.format(40, "b"),
            "[a][b]xfade=transition=fade:duration=0.75:offset=1.75,fps=24,format=yuv420p[v]",
        ]
    )
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-i", str(DEMO), "-filter_complex", graph]
    subprocess.run([*cmd, "-map", "[v]", "-c:v", "libx264", "-crf", "18", str(out)], check=True)
    return out


def test_the_dissolve_detector_cuts_where_the_adaptive_one_cannot(dissolve_film):
    adaptive = detect_shots(dissolve_film)
    assert not any(abs(s.start - 51) <= 9 for s in adaptive.shots[1:])  # why it exists
    found = detect_shots(dissolve_film, detector="dissolve")
    assert len(found.shots) == len(adaptive.shots) + 1
    cut = next(s.start for s in found.shots[1:] if abs(s.start - 51) <= 3)
    assert {s.start for s in adaptive.shots} < {s.start for s in found.shots}
    plain = found.shots
    assert all(s.keyframes == keyframe_indices(s.start, s.end) for s in plain)
    # a training-free model takes the keyframes outside the blend
    result = segment(dissolve_film, detector="dissolve", model="classic")
    shots = result.shots
    assert [s.start for s in shots] == [s.start for s in plain]
    around = [s for s in shots if s.end == cut or s.start == cut]
    assert len(around) == 2
    assert not any(42 <= k <= 59 for s in around for k in s.keyframes), around
    assert result.settings.detector == "dissolve"
