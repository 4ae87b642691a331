"""Where ``segment`` spends its time: busy seconds per pipeline stage (``--profile``).

Stages run in three threads that overlap: decoding and the detector's downscale in the decode
thread, shot detection and keyframe extraction in the calling thread, the shot encoder in the
embedding thread (all in the calling thread in a batch worker that shares the cores:
``video.set_cores``). Busy times therefore add up to more than the wall time; the stage
whose busy time is closest to the wall time is the one that sets the pace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

# Stage -> (thread, what it covers); also the order of the table.
STAGES: dict[str, tuple[str, str]] = {
    "load model": ("main", "building the scorer (weights read once per run)"),
    "decode": ("decode", "PyAV demuxing and decoding"),
    "downscale": ("decode", "the shot detector's input: full-size BGR (TransNetV2: 48x27)"),
    "shrink": ("main", "the BGR frame shrunk as PySceneDetect shrinks it"),
    "detect": ("main", "the shot detector (PySceneDetect)"),
    "keyframes": ("main", "copying candidate keyframes, scaling the chosen ones"),
    "embed": ("embed", "the shot encoder on each batch of keyframes"),
    "embed wait": ("main", "waiting for the encoder (its queue was full, or at the end)"),
    "score": ("main", "boundary scores and scene choice"),
    "write": ("main", "scene lists, report and images"),
    "clips": ("main", "ffmpeg clip export"),
}


@dataclass
class Stages:
    """Accumulated busy seconds and item counts per stage, plus the frames decoded."""

    seconds: dict[str, float] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    wall: float = 0.0

    def add(self, stage: str, seconds: float, items: int = 1) -> None:
        # Each stage is updated from one thread only, so this needs no lock.
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.items[stage] = self.items.get(stage, 0) + items

    @contextmanager
    def time(self, stage: str, items: int = 1) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start, items)

    def timed(self, stage: str, items: Iterator[T]) -> Iterator[T]:
        """``items``, with the time spent producing each one added to ``stage``."""
        clock = time.perf_counter
        while True:
            start = clock()
            try:
                item = next(items)
            except StopIteration:
                self.add(stage, clock() - start, 0)
                return
            self.add(stage, clock() - start)
            yield item

    def rows(self) -> list[dict]:
        """One dict per stage that ran, in pipeline order."""
        order = [s for s in STAGES if s in self.seconds]
        order += sorted(s for s in self.seconds if s not in STAGES)
        rows = []
        for stage in order:
            thread, what = STAGES.get(stage, ("main", ""))
            busy = self.seconds[stage]
            rows.append(
                {
                    "stage": stage,
                    "thread": thread,
                    "busy_s": round(busy, 3),
                    "share_of_wall": round(busy / self.wall, 3) if self.wall else None,
                    "ms_per_frame": round(1000 * busy / self.frames, 4) if self.frames else None,
                    "items": self.items.get(stage, 0),
                    "what": what,
                }
            )
        return rows

    def as_dict(self) -> dict:
        return {"wall_s": round(self.wall, 3), "frames": self.frames, "stages": self.rows()}

    def table(self) -> str:
        """A plain-text table for stderr."""
        lines = [f"{'stage':11s} {'thread':6s} {'busy s':>8s} {'of wall':>8s} {'ms/frame':>9s}"]
        for row in self.rows():
            share = "-" if row["share_of_wall"] is None else f"{100 * row['share_of_wall']:.0f}%"
            per = "-" if row["ms_per_frame"] is None else f"{row['ms_per_frame']:.3f}"
            lines.append(
                f"{row['stage']:11s} {row['thread']:6s} {row['busy_s']:8.2f} {share:>8s} {per:>9s}"
            )
        lines.append(
            f"wall {self.wall:.2f} s for {self.frames} decoded frames; stages in different "
            "threads overlap"
        )
        return "\n".join(lines)
