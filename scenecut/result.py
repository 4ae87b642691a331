"""Typed results shared by the pipeline stages: the video, its shots and its scenes.

Time is frame-exact: every range is a 0-based, half-open ``[start, end)`` range of frame indices,
and each video carries one exact ``Fraction`` frame rate. Seconds are derived only when written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True)
class VideoInfo:
    """What probing and decoding learned about one video file."""

    path: Path
    fps: Fraction
    frame_count: int
    width: int
    height: int
    codec: str
    has_audio: bool
    # Offset of frame 0 from the container's start, the origin ffmpeg's ``-ss`` counts from.
    start_offset: Fraction = Fraction(0)
    vfr: bool = False
    # Degrees counter-clockwise the coded pictures are turned to be shown (a phone's display
    # matrix); ``width`` and ``height`` are the size as shown, like the clips ffmpeg cuts.
    rotation: int = 0
    # SMPTE timecode of frame 0 (``HH:MM:SS:FF``, ``HH:MM:SS;FF`` drop-frame): the container's
    # (QuickTime tmcd, MXF, a ``timecode`` tag) or the user's. Editor files count from it.
    start_timecode: str | None = None
    # Presentation times (seconds from frame 0) of shot-boundary frames, recorded while decoding.
    # For constant-frame-rate video they equal ``frame / fps`` and the dict may be empty.
    frame_times: dict[int, Fraction] = field(default_factory=dict, compare=False, repr=False)
    # Seconds from frame 0 of the frames the decoder marked as keyframes, ascending: where a
    # decoder can start. Clip export seeks to one, since a seek in a container without an index
    # (MPEG-TS) can land past the keyframe a scene's first frame needs. Not saved in the JSON.
    keyframe_times: Sequence[float] = field(default=(), compare=False, repr=False)

    @property
    def duration(self) -> Fraction:
        return self.time_of(self.frame_count)

    def time_of(self, frame: int) -> Fraction:
        """Seconds from the first frame to the start of ``frame`` (``frame_count`` = the end)."""
        if frame in self.frame_times:
            return self.frame_times[frame]
        return Fraction(frame) / self.fps


@dataclass(frozen=True)
class Shot:
    index: int
    start: int  # first frame
    end: int  # one past the last frame
    keyframes: tuple[int, ...] = ()  # frame indices of the keyframes taken for this shot

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Scene:
    index: int
    first_shot: int
    last_shot: int  # inclusive
    start: int  # first frame
    end: int  # one past the last frame
    # Boundary score of the cut that opens this scene (None for the first scene).
    score: float | None

    @property
    def shots(self) -> range:
        return range(self.first_shot, self.last_shot + 1)

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Settings:
    """Everything that decided the result, recorded in the output for reproducibility."""

    detector: str
    detector_threshold: float | None
    min_shot_frames: int
    model: str
    threshold: float
    scenes: int | None
    min_scene_frames: int
    start_timecode: str | None = None  # given by the user; None: the video's own


@dataclass(frozen=True)
class SegmentResult:
    video: VideoInfo
    shots: list[Shot]
    # One score per gap between consecutive shots: ``boundary_scores[i]`` scores the cut
    # between shot i and shot i + 1 (1 = certainly a scene boundary).
    boundary_scores: list[float]
    scenes: list[Scene]
    settings: Settings
    decoded_frames: int = 0


def scenes_from_boundaries(
    shots: list[Shot], boundaries: list[int], scores: list[float]
) -> list[Scene]:
    """Group shots into scenes. ``boundaries`` are gap indices: gap i lies after shot i."""
    scenes: list[Scene] = []
    first = 0
    for gap in [*sorted(boundaries), len(shots) - 1]:
        last = gap
        opening = scores[first - 1] if first > 0 else None
        scenes.append(Scene(len(scenes), first, last, shots[first].start, shots[last].end, opening))
        first = gap + 1
    return scenes


# The boundary threshold when neither the user nor the model gives one: the papers' argmax,
# ``P(boundary) > 0.5`` (BaSSL, SCRL, LGSS).
DEFAULT_THRESHOLD = 0.5


def pick_boundaries(
    scores: list[float],
    shot_frames: list[tuple[int, int]],
    *,
    threshold: float,
    scenes: int | None = None,
    min_scene_frames: int = 0,
) -> list[int]:
    """Choose boundary gaps, strongest first, keeping every scene >= ``min_scene_frames`` long.

    A gap is a boundary when its score is strictly above ``threshold``, both taken as float32
    like ModelScope's ``pred > save_threshold`` on the network's float32 probabilities: a model's
    0.8 (0.800000011920929 once widened to a Python float) does not pass a threshold of 0.8.
    With ``scenes`` set, the threshold is ignored and the ``scenes - 1`` strongest admissible gaps
    are taken (fewer if the constraint leaves fewer).
    """
    import numpy as np

    n = len(shot_frames)
    if n < 2:
        return []
    start, end = shot_frames[0][0], shot_frames[-1][1]
    order = sorted(range(n - 1), key=lambda g: (-scores[g], g))
    above = (np.asarray(scores[: n - 1], dtype=np.float32) > np.float32(threshold)).tolist()
    chosen: list[int] = []
    cut_frames = [start, end]
    wanted = None if scenes is None else max(0, scenes - 1)
    for gap in order:
        if wanted is None and not above[gap]:
            break
        if wanted is not None and len(chosen) >= wanted:
            break
        frame = shot_frames[gap][1]
        left = max(c for c in cut_frames if c <= frame)
        right = min(c for c in cut_frames if c >= frame)
        if frame - left >= min_scene_frames and right - frame >= min_scene_frames:
            chosen.append(gap)
            cut_frames.append(frame)
    return sorted(chosen)
