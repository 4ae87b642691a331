"""Clips for a clip encoder, taken from each shot in the single decode pass.

A clip encoder (Saccade-VSSL, ``scenecut.models.saccade``) embeds clips of ``clip_len``
consecutive frames, each a ``size`` x ``size`` square. ``ClipCollector`` receives every frame
of the film once, keeps small copies of those that can still become part of the open shot's
clips, and at the shot's cut hands over its ``clips`` clips, evenly spaced inside it: clip i
centred on ``(i + 1/2) / clips`` of the shot (SACCADE.md section 6 spaces its ten from the
first frame to the last instead; here the clips stay clear of the cuts, where fades and
dissolves are). Shots shorter than ``clips x clip_len`` frames get overlapping clips, kept
inside the shot; a shot shorter than ``clip_len`` has its frames stretched over the clip,
each repeated in order (frame ``floor(i * length / clip_len)`` at position i), and all its
clips are that one.

Memory: an open shot's length is not known, so candidate clips start every ``stride`` frames,
with the stride at first ``clip_len`` (every frame kept, any start possible). When a new
candidate would make more than ``capacity``, the stride doubles and every other candidate is
dropped, so at most ``capacity x clip_len`` small frames are held, whatever the resolution and
the shot's length: ``max_bytes``, 4.8 MB for 16-frame 112-pixel clips. Shots of up to
``capacity x clip_len`` frames get their clips exactly where the rule puts them; a longer one
gets, for each, the nearest complete candidate: candidates are ``stride`` apart, with
``stride < 2 x length / capacity``, so a clip is less than that from its place.

Each frame is the centre square of ``crop`` times its shorter side, scaled to ``size`` (spec 6's
evaluation transform: the centre 196 of 256 rows, then 112 pixels), with an area filter, and
turned upright.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av
    import numpy as np

log = logging.getLogger(__name__)

CLIPS_PER_SHOT = 3  # spec 10 advises ~10 (spec 6's count); 3 keeps a long film's cost sane
CROP = 196 / 256  # spec 6: centre crop 196 of the 256-row UCF101 frames, then 112
CAPACITY = 8  # candidate clips held per open shot


@dataclass(frozen=True)
class ClipSpec:
    """What a clip scorer asks ``segment`` to collect per shot."""

    clips: int = CLIPS_PER_SHOT
    clip_len: int = 16
    size: int = 112
    crop: float = CROP
    capacity: int = CAPACITY

    def __post_init__(self) -> None:
        if not 1 <= self.clips <= self.capacity:
            raise ValueError(f"clips must be from 1 to {self.capacity}, got {self.clips}")
        if self.clip_len < 1 or self.size < 2 or self.size % 2 or not 0 < self.crop <= 1:
            raise ValueError(f"unusable clip settings {self}")

    @property
    def frame_bytes(self) -> int:
        return self.size * self.size * 3

    @property
    def max_bytes(self) -> int:
        """The most the frames of one open shot take."""
        return self.capacity * self.clip_len * self.frame_bytes


def clip_starts(length: int, clip_len: int, clips: int) -> list[int]:
    """Where ``clips`` clips start in a shot of ``length`` frames: clip i centred on
    ``(i + 1/2) / clips`` of the shot, kept inside it (all 0 when it is shorter than a clip)."""
    room = max(0, length - clip_len)
    centres = ((i + 0.5) * length / clips for i in range(clips))
    return [min(room, max(0, round(c - clip_len / 2))) for c in centres]


def stretch(length: int, clip_len: int) -> list[int]:
    """Which of ``length`` frames fills each of ``clip_len`` positions: each repeated, in
    order (``length >= clip_len``: the first ``clip_len``)."""
    if length >= clip_len:
        return list(range(clip_len))
    return [i * length // clip_len for i in range(clip_len)]


def square(image: np.ndarray, size: int, crop: float = CROP) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> its centre square of ``crop`` x the shorter side, scaled to
    ``size`` x ``size`` (area filter): the clip frame of an image (a tree's keyframe)."""
    import cv2

    h, w = image.shape[:2]
    side = max(1, round(min(h, w) * crop))
    top, left = (h - side) // 2, (w - side) // 2
    piece = image[top : top + side, left : left + side]
    if side == size:
        return piece.copy()
    area = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(piece, (size, size), interpolation=area)


class ClipCollector:
    """Receives every frame in order (``push``) and, at each cut (``close``), the clips of the
    shot that ends there. Shots follow one another from frame 0: a shot starts where the
    previous one ended. ``held_bytes`` is what its frames take now, ``peak_bytes`` the most
    they ever took (never above ``spec.max_bytes``)."""

    def __init__(self, spec: ClipSpec):
        from av.video.reformatter import VideoReformatter

        self.spec = spec
        self.start = 0  # the open shot's first frame
        self.stride = spec.clip_len
        self.held: dict[int, np.ndarray] = {}  # offset in the shot -> upright small frame
        self.pushed = 0  # frames received
        self.peak_bytes = 0
        self.frames_scaled = 0
        self._reformatter = VideoReformatter()  # keeps its scaling context across frames
        self._turns = 0

    @property
    def held_bytes(self) -> int:
        return len(self.held) * self.spec.frame_bytes

    def turn(self, turns: int) -> None:
        """Quarter turns counter-clockwise that show a frame upright (applied when scaled)."""
        self._turns = turns % 4

    def push(self, index: int, frame: av.VideoFrame) -> None:
        """Frame ``index`` of the film (each once, in order)."""
        self.pushed = index + 1
        offset = index - self.start
        if offset < 0 or not self._wanted(offset):
            return
        self.held[offset] = self.scale(frame)
        self.frames_scaled += 1
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)

    def close(self, end: int) -> np.ndarray:
        """The clips ``[clips, clip_len, size, size, 3]`` uint8 RGB of the shot ``[start,
        end)``; the next shot starts at ``end``. Frames from ``end`` on already received (a cut
        found late) stay, as the next shot's."""
        import numpy as np

        spec = self.spec
        length = max(1, end - self.start)
        if not self.held:  # nothing received (a shot past the last frame): black
            blank = np.zeros((spec.clip_len, spec.size, spec.size, 3), np.uint8)
            clips = [blank] * spec.clips
        else:
            available = self._available(length)
            clips = []
            for target in clip_starts(length, spec.clip_len, spec.clips):
                first = self._nearest(available, target) if available else target
                offsets = [first + i for i in stretch(length, spec.clip_len)]
                clips.append(np.stack([self._frame(o, length) for o in offsets]))
        later = {o - length: f for o, f in self.held.items() if o >= length}
        self.start, self.held, self.stride = self.start + length, later, spec.clip_len
        self._fit(spec.capacity)
        return np.stack(clips)

    def scale(self, frame: av.VideoFrame) -> np.ndarray:
        """One decoded frame -> its upright ``size`` x ``size`` RGB clip frame: the whole
        frame area-scaled so that its centre ``crop`` square is ``size`` wide, then cropped."""
        import numpy as np

        spec = self.spec
        w, h = frame.width, frame.height
        short = max(spec.size, round(spec.size / spec.crop))
        sw, sh = (short, max(short, round(h * short / w))) if w < h else (
            max(short, round(w * short / h)), short)  # fmt: skip
        rgb = self._reformatter.reformat(
            frame, width=sw, height=sh, format="rgb24", interpolation="AREA"
        ).to_ndarray()
        top, left = (sh - spec.size) // 2, (sw - spec.size) // 2
        piece = rgb[top : top + spec.size, left : left + spec.size]
        return np.ascontiguousarray(np.rot90(piece, self._turns))

    def _wanted(self, offset: int) -> bool:
        """Whether the frame at ``offset`` belongs to a candidate clip, doubling the stride
        first when it would open one candidate too many."""
        spec = self.spec
        while True:
            if offset % self.stride >= spec.clip_len:
                return False
            blocks = {o // self.stride for o in self.held}
            if offset // self.stride in blocks or len(blocks) < spec.capacity:
                return True
            self._fit(spec.capacity - 1)

    def _fit(self, blocks: int) -> None:
        """Double the stride until the frames held start at most ``blocks`` candidates."""
        clip_len = self.spec.clip_len
        while len({o // self.stride for o in self.held}) > blocks:
            self.stride *= 2
            self.held = {o: f for o, f in self.held.items() if o % self.stride < clip_len}

    def _available(self, length: int) -> list[int]:
        """Starts of the complete clips held inside the shot (its frames all held)."""
        clip_len = self.spec.clip_len
        if length < clip_len:
            return [0] if all(o in self.held for o in range(length)) else []
        return sorted(
            o
            for o in self.held
            if o + clip_len <= length and all(o + i in self.held for i in range(1, clip_len))
        )

    @staticmethod
    def _nearest(available: list[int], target: int) -> int:
        return min(available, key=lambda o: (abs(o - target), o))

    def _frame(self, offset: int, length: int) -> np.ndarray:
        """The held frame at ``offset``, else (frames lost to a cut found late) the nearest
        held one inside the shot, else any."""
        found = self.held.get(offset)
        if found is not None:
            return found
        inside = [o for o in self.held if o < length] or list(self.held)
        return self.held[min(inside, key=lambda o: (abs(o - offset), o))]
