"""The keyframes of each shot, as MovieNet takes them: its first, middle and last frame.

A shot's middle frame is known only once the shot ends, at its cut. While a shot is open, the
frames that can still become its middle (from the middle so far to the newest) are kept, as
the decoder gave them, while they fit in ``_BUFFER_BYTES``; the middle of a shot too long
for that is decoded once more from the keyframe before it (``video.Rewind``), so memory stays
flat however long the shot is and the file is still read through once.

Keyframes go to the scorer either small (scaled from the YUV planes, for the training-free
encoders) or as the network's own input: the full-resolution RGB frame, converted as OpenCV's
``VideoCapture`` converts it, handed to ``prepare`` (the model's resize and crop).
"""

from __future__ import annotations

import logging
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from scenecut.profile import Stages
from scenecut.result import Shot
from scenecut.video import DecodedFrame, Rewind

if TYPE_CHECKING:
    import av
    import numpy as np

    from scenecut.shotclips import ClipCollector

log = logging.getLogger(__name__)

KEYFRAMES_PER_SHOT = 3
_BUFFER_BYTES = 96 << 20  # the open shot's possible middle frames held (1080p: 31, 4K: 7)
_MIN_BUFFER = 4  # frames, however large
_LOOKBACK_FRAMES = 2000  # the most frames decoded again to find one middle frame
_NO_SOURCE = -(1 << 63)  # a frame whose timestamp the file does not give


# A transition of at least this many frames (a fade, a dissolve) is kept out of keyframes.
MIN_TRANSITION = 3


def keyframe_indices(start: int, end: int) -> tuple[int, int, int]:
    """First, middle and last frame of the half-open shot ``[start, end)`` (LGSS's saver:
    ``start + (end - 1 - start) // 2`` is the middle)."""
    last = end - 1
    return start, start + (last - start) // 2, last


def clean_span(start: int, end: int, transitions: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """The frames of shot ``[start, end)`` outside the transitions at its two cuts (``cut ->
    (first, last)`` frames of the transition the cut lies in): where keyframes show the shot
    itself rather than a blend with its neighbour. The whole shot when nothing is left."""
    lo, hi = start, end
    if start in transitions:
        lo = max(lo, transitions[start][1] + 1)
    if end in transitions:
        hi = min(hi, transitions[end][0])
    return (lo, hi) if hi > lo else (start, end)


@dataclass(frozen=True)
class ShotKeyframes:
    """A finished shot and its keyframes: ``images`` is ``[3, H, W, 3]`` uint8 RGB; ``clips``
    its clips for a clip encoder when asked for (``shotclips.ClipCollector``)."""

    shot: Shot
    images: np.ndarray
    clips: np.ndarray | None = None


class _Frame:
    """A decoded frame kept as the decoder gave it (holding it costs nothing measurable; a
    copy of a 4K frame costs 3 ms): converted only if it is chosen."""

    def __init__(self, index: int, frame: av.VideoFrame):
        self.index = index
        self.frame = frame

    @property
    def nbytes(self) -> int:
        return sum(plane.buffer_size for plane in self.frame.planes)

    def rgb(self) -> np.ndarray:
        """Full-size RGB as OpenCV's ``VideoCapture`` (and ffmpeg) convert it: swscale with
        its bicubic flag, from whatever pixel format the decoder gave."""
        return self.frame.reformat(format="rgb24", interpolation="BICUBIC").to_ndarray()

    def keyframe(self, width: int, height: int) -> np.ndarray:
        """RGB at ``width`` x ``height`` (both even), pixel-averaged."""
        import cv2
        import numpy as np

        i420 = _i420(self.frame)
        h = i420.shape[0] * 2 // 3
        w = i420.shape[1]
        # The chroma planes are h/2 rows of w/2 each, laid out flat after the luma: taken by
        # element count, since h/2 rows need not fill whole rows of w (640x266: 133 rows).
        flat = i420.reshape(-1)
        luma, chroma = h * w, (h // 2) * (w // 2)
        planes = (
            (flat[:luma].reshape(h, w), width, height),
            (flat[luma : luma + chroma].reshape(h // 2, w // 2), width // 2, height // 2),
            (flat[luma + chroma :].reshape(h // 2, w // 2), width // 2, height // 2),
        )
        small = [_shrink(p, pw, ph) for p, pw, ph in planes]
        i420 = np.concatenate([p.reshape(-1) for p in small]).reshape(height * 3 // 2, width)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


def _shrink(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """``plane`` pixel-averaged to ``width`` x ``height``.

    A large plane is first averaged over whole power-of-two blocks (OpenCV's fast path) down to
    at least twice the target, then to the target: on 4K one keyframe takes 5 ms, not 30.
    """
    import cv2

    h, w = plane.shape
    k = 1
    while (
        w % (2 * k) == 0
        and h % (2 * k) == 0
        and w // (2 * k) >= 2 * width
        and h // (2 * k) >= 2 * height
    ):
        k *= 2
    if k > 1:
        plane = cv2.resize(plane, (w // k, h // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(plane, (width, height), interpolation=cv2.INTER_AREA)


def _i420(frame: av.VideoFrame) -> np.ndarray:
    """Planar YUV 4:2:0 pixels of a PyAV frame (a copy); other formats are converted first."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return frame.to_ndarray()
    w, h = frame.width - frame.width % 2 or 2, frame.height - frame.height % 2 or 2
    return frame.reformat(width=w, height=h, format="yuv420p").to_ndarray()


class KeyframeCollector:
    """Receives frames after the detector can no longer place a cut before them, and hands
    each finished shot with its keyframes to ``on_shot``.

    ``size``: the small keyframes' size (coded orientation); with ``prepare``, keyframes are
    instead full-size RGB passed through it. ``rewind`` decodes a middle frame again when it
    was not kept (without one, the nearest kept frame stands in, counted in ``inexact``).
    ``clips`` also sees every frame and gives each shot its clips.
    """

    def __init__(
        self,
        size: tuple[int, int],
        fps: Fraction,
        on_shot: Callable[[ShotKeyframes], None] | None,
        stages: Stages,
        *,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
        rewind: Rewind | None = None,
        clips: ClipCollector | None = None,
    ):
        self.size = size
        self.turns = 0  # quarter turns counter-clockwise that show a frame upright
        self.stages = stages
        self.fps = fps
        self.on_shot = on_shot
        self.prepare = prepare
        self.rewind = rewind
        self.clips = clips
        self.cuts: set[int] = set()
        # cut -> (first, last) frame of the fade or dissolve it lies in, when the detector says
        # (add_cut): keyframes are taken outside it (``clean_span``)
        self.transitions: dict[int, tuple[int, int]] = {}
        self.shots: list[Shot] = []
        self.starts: dict[int, Fraction] = {}  # shot start frame -> presentation time
        self.rewound = 0  # middle frames decoded again
        self.inexact = 0  # keyframes that are not the frame the rule names (nearest kept)
        self._open = False
        self._start = 0
        self._first: _Frame | None = None
        self._clean_first: _Frame | None = None
        # The open shot's frames that can still become its middle, oldest first.
        self._held: deque[_Frame] = deque()
        self._capacity = 0
        # The file's timestamp of each frame of the open shot, and its keyframes (index,
        # timestamp), the last one before the shot included: where a rewind starts.
        self._sources = array("q")
        self._keys: deque[tuple[int, int]] = deque()
        self._last: _Frame | None = None
        self._last_pushed = -1

    def turn(self, turns: int, size: tuple[int, int]) -> None:
        """Keyframes are scaled to ``size`` (coded orientation), then turned upright."""
        self.turns, self.size = turns, size
        if self.clips is not None:
            self.clips.turn(turns)

    def add_cut(self, frame: int, transition: tuple[int, int] | None = None) -> None:
        if frame <= 0 or frame in self.cuts:
            return
        self.cuts.add(frame)
        if transition is not None and transition[1] - transition[0] + 1 >= MIN_TRANSITION:
            self.transitions[frame] = transition
        if frame - 1 <= self._last_pushed:
            self._late_cut(frame)

    def push(self, decoded: DecodedFrame) -> None:
        j = decoded.index
        self._last_pushed = j
        item = _Frame(j, decoded.frame)
        self._last = item
        if j == 0 or j in self.cuts:
            self._begin(j, decoded.time)
            self._first = item
        if self._start in self.transitions and j == self.transitions[self._start][1] + 1:
            self._clean_first = item  # the first frame after the transition that opened it
        source = decoded.source
        self._sources.append(_NO_SOURCE if source is None else source)
        if decoded.key and source is not None:
            self._keys.append((j, source))
        if not self._capacity:
            self._capacity = max(_MIN_BUFFER, _BUFFER_BYTES // max(1, item.nbytes))
        _, lowest, _ = keyframe_indices(self._start, j + 1)  # the middle if the shot ended here
        while self._held and self._held[0].index < lowest:
            self._held.popleft()
        if len(self._held) < self._capacity:
            self._held.append(item)
        if self.clips is not None:
            with self.stages.time("keyframes", 0):
                self.clips.push(j, decoded.frame)
        if j + 1 in self.cuts:
            self._close(j + 1)
            self._open = False

    def finish(self, frame_count: int) -> list[Shot]:
        if self._open:
            self._close(frame_count)
            self._open = False
        return self.shots

    def _begin(self, start: int, time: Fraction) -> None:
        self._open = True
        self._start = start
        self._clean_first = None
        self._held.clear()
        del self._sources[:]
        while len(self._keys) > 1 and self._keys[1][0] <= start:
            self._keys.popleft()
        self.starts[start] = time

    def _close(self, end: int) -> None:
        """Emit the open shot ``[start, end)`` with its first, middle and last frames."""
        import numpy as np

        span = clean_span(self._start, end, self.transitions)
        chosen = [self._frame(i, end) for i in keyframe_indices(*span)]
        shot = Shot(len(self.shots), self._start, end, tuple(f.index for f in chosen))
        self.shots.append(shot)
        clips = None
        if self.clips is not None:
            with self.stages.time("keyframes", 0):
                clips = self.clips.close(end)
        if self.on_shot:
            with self.stages.time("keyframes"):
                images = np.stack([self._image(f) for f in chosen])
            self.on_shot(ShotKeyframes(shot, images, clips))

    def _image(self, frame: _Frame) -> np.ndarray:
        import numpy as np

        if self.prepare is None:
            return np.rot90(frame.keyframe(*self.size), self.turns)
        return self.prepare(np.ascontiguousarray(np.rot90(frame.rgb(), self.turns)))

    def _frame(self, index: int, end: int) -> _Frame:
        """Frame ``index`` of the open shot ``[start, end)``: kept, decoded again, or (when
        neither works) the nearest frame kept."""
        if self._first is not None and self._first.index == index:
            return self._first
        if self._clean_first is not None and self._clean_first.index == index:
            return self._clean_first
        if self._last is not None and self._last.index == index:
            return self._last
        for frame in self._held:
            if frame.index == index:
                return frame
        found = self._rewind(index)
        if found is not None:
            return found
        self.inexact += 1
        kept = [f for f in (self._first, *self._held) if f is not None]
        if self._last is not None:
            kept.append(self._last)
        inside = [f for f in kept if self._start <= f.index < end] or kept
        nearest = min(inside, key=lambda f: (abs(f.index - index), f.index))
        log.debug("frame %d could not be decoded again; frame %d stands in", index, nearest.index)
        return nearest

    def _rewind(self, index: int) -> _Frame | None:
        offset = index - self._start
        if self.rewind is None or not 0 <= offset < len(self._sources):
            return None
        source = self._sources[offset]
        keys = [k for k in self._keys if k[0] <= index]
        if source == _NO_SOURCE or not keys:
            return None
        with self.stages.time("keyframes", 0):
            frame = self.rewind.frame(keys[-1][1], source, _LOOKBACK_FRAMES)
            if frame is None:
                return None
            self.rewound += 1
            return _Frame(index, frame)

    def _late_cut(self, frame: int) -> None:
        """A cut reported after its frame was passed on (e.g. the threshold detector placing
        a cut in the middle of a long fade): close the open shot there, and open the next."""
        if not self._open or frame <= self._start:
            log.debug("ignoring a cut at frame %d inside an already finished shot", frame)
            return
        start, last = self._start, self._last
        after = deque(f for f in self._held if f.index >= frame)
        sources = self._sources[frame - start :]
        self._held = deque(f for f in self._held if f.index < frame)
        if last is not None and last.index >= frame:
            self._last = None  # not a frame of the shot that closes
        self._close(frame)
        self._start, self._held, self._sources, self._last = frame, after, sources, last
        self.starts[frame] = Fraction(frame) / self.fps
        self._first = None
        self._first = self._frame(frame, self._last_pushed + 1)
