"""Cross-dissolves: the shot changes PySceneDetect's adaptive detector cannot see.

A dissolve changes each frame only a little, so a detector that compares a frame with the one
before (``adaptive``, ``content``) often puts no cut there at all; a film that changes scene by
dissolving then merges the two scenes. ``DissolveDetector`` (``--detector dissolve``) is the
adaptive detector plus ``Dissolves``, which looks in the same small frames for the signature of
a dissolve from picture A to picture B over L frames (0.5 to 1.5 s):

- A and B differ over most of the picture (a title fading in over a still shot does not);
- the frames a quarter, half and three quarters of the way are blends of A and B, about that
  far along (motion, a pan or a zoom, is no blend of its two ends);
- before A and after B the picture holds still for half of L (otherwise it is a change within
  moving footage);
- it is no fade (fades are the threshold detector's and the evidence's): neither end is black,
  A and B are not one picture (correlation above FADE), and neither end is much darker and
  flatter than the other (DIMMER of its mean and contrast).

A dissolve gives one cut, at its middle, when no cut lies within it, and its frames are told to
the keyframe collector (``transition``), so the two shots' keyframes are taken outside the
blend. An adaptive cut inside a dissolve keeps its place and its keyframes (taking them outside
the blend there cost false alarms on the judged trailers, whose title cards dissolve).

It keeps 64x36 grey copies of the last 3 s of frames (700 KB at 24 fps), and every cut waits
about 3.5 s for its verdict, so the keyframe collector holds that many decoded frames (85 at
24 fps: 120 MB at 720p, 270 MB at 1080p; it holds about 100 for TransNetV2).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SIZE = (64, 36)  # the grey picture compared
LENGTHS_S = (0.5, 0.75, 1.0, 1.5)  # dissolve lengths looked for
MIN_CHANGE = 20.0  # RMS grey levels between A and B
SPREAD = 0.5  # share of pixels that change by more than SPREAD_LEVEL grey levels
SPREAD_LEVEL = 15.0
BLEND_RESIDUAL = 0.2  # off the A-B line, relative to the change
BLEND_SLACK = 0.15  # how far along, off the expected quarter
CALM = 0.3  # change before A and after B, relative to the change
DARK = 30.0  # mean grey level: an end darker than this is a fade through black
FADE = 0.9  # A and B correlated this much: one picture fading, not two
DIMMER = 0.6  # an end this much darker and flatter than the other: a fade to or from dark
GAP = 12  # frames without a candidate that end a group of candidates (one dissolve)
FPS_UNKNOWN = 30.0  # the frame rate assumed when the detector is not told it


class Dissolves:
    """Streaming finder: ``push`` each frame's grey picture, get ``(cut, first, last)`` for
    each dissolve found: the cut at its middle, the blended frames ``first..last``. A dissolve
    is told at most ``lag`` frames after its cut (unless dissolves follow each other closer
    than GAP frames)."""

    def __init__(self, fps: float):
        self.lengths = sorted({max(4, round(s * fps)) for s in LENGTHS_S})
        # a cut is told once its longest window has passed and GAP frames without a candidate
        # have followed the latest window that still overlaps it
        self.lag = 2 * self.lengths[-1] + GAP + 1
        # a window reaches half its length before A and after B
        self._frames: deque[np.ndarray] = deque(
            maxlen=max(L + 2 * (L // 2) for L in self.lengths) + 1
        )
        self._next = 0  # index of the next frame
        self._group: list[tuple[float, int, int, int]] = []  # (strength, cut, a, b)
        self._last_candidate = -GAP - 1

    def push(self, grey: np.ndarray) -> list[tuple[int, int, int]]:
        import numpy as np

        index = self._next
        self._next += 1
        self._frames.append(np.asarray(grey, dtype=np.float32).ravel())
        for length in self.lengths:
            found = self._test(index, length)
            if found is not None:
                self._group.append(found)
                self._last_candidate = index
        if self._group and index - self._last_candidate > GAP:
            return self._flush()
        return []

    def finish(self) -> list[tuple[int, int, int]]:
        return self._flush() if self._group else []

    def _flush(self) -> list[tuple[int, int, int]]:
        _, cut, a, b = max(self._group)
        self._group.clear()
        return [(cut, a + 1, b - 1)]

    def _frame(self, index: int) -> np.ndarray:
        return self._frames[index - (self._next - len(self._frames))]

    def _test(self, index: int, length: int) -> tuple[float, int, int, int] | None:
        """Whether frames ``a = index - length - half .. b = index - half`` dissolve (with
        ``half`` calm frames before a and after b)."""
        import numpy as np

        half = length // 2
        b = index - half
        a = b - length
        if a - half < self._next - len(self._frames) or a - half < 0:
            return None
        first, last = self._frame(a), self._frame(b)
        change = last - first
        size = float(np.sqrt((change**2).mean()))
        if size < MIN_CHANGE or first.mean() < DARK or last.mean() < DARK:
            return None
        if (np.abs(change) > SPREAD_LEVEL).mean() < SPREAD:
            return None
        # one picture fading: B is A scaled and shifted, or one end is much darker and flatter
        ca, cb = first - first.mean(), last - last.mean()
        sa, sb = float(np.sqrt(ca @ ca)), float(np.sqrt(cb @ cb))
        if float(ca @ cb) > FADE * sa * sb:
            return None
        dim, bright = sorted([(first.mean(), sa), (last.mean(), sb)])
        if dim[0] < DIMMER * bright[0] and dim[1] < DIMMER * bright[1]:
            return None
        norm = float(change @ change)
        for q in (0.25, 0.5, 0.75):
            off = self._frame(a + round(q * length)) - first
            along = float(off @ change) / norm
            rest = float(np.sqrt(((off - along * change) ** 2).mean()))
            if rest > BLEND_RESIDUAL * size or abs(along - q) > BLEND_SLACK:
                return None
        before = float(np.sqrt(((self._frame(a - half) - first) ** 2).mean()))
        after = float(np.sqrt(((self._frame(index) - last) ** 2).mean()))
        if before > CALM * size or after > CALM * size:
            return None
        return size, a + half, a, b


def small_grey(frame_bgr: np.ndarray) -> np.ndarray:
    """The 64x36 grey picture ``Dissolves`` compares, from the detector's BGR frame."""
    import cv2

    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, SIZE, interpolation=cv2.INTER_AREA)


class DissolveDetector:
    """PySceneDetect's adaptive detector (its cuts unchanged) plus the dissolves it misses,
    with PySceneDetect's detector interface and TransNetV2Detector's ``transition``.

    Every cut is held back until the dissolve finder has seen far enough past it
    (``event_buffer_length`` covers that, so the keyframe collector still holds the frames),
    so that a dissolve with no cut inside it gets one at its middle, in order.
    """

    def __init__(
        self, adaptive_threshold: float = 3.0, min_scene_len: int = 15, fps: float | None = None
    ):
        from scenedetect.detectors import AdaptiveDetector

        self.adaptive = AdaptiveDetector(
            adaptive_threshold=adaptive_threshold, min_scene_len=min_scene_len
        )
        self.min_frames = max(1, int(min_scene_len))
        self._finder = Dissolves(fps or FPS_UNKNOWN)
        self._held: list[int] = []  # cuts waiting for the finder's verdict
        self._cuts: list[int] = []  # the last cuts handed out (in order: a dissolve found
        # now lies after all but the last few)
        self._runs: dict[int, tuple[int, int]] = {}

    @property
    def event_buffer_length(self) -> int:
        return self.adaptive.event_buffer_length + self._finder.lag

    def transition(self, cut: int) -> tuple[int, int] | None:
        """The blended frames of the dissolve a cut lies in; None for a plain cut."""
        return self._runs.get(cut)

    def process_frame(self, timecode: Any, frame_img: np.ndarray) -> list[Any]:
        self._held += [c.frame_num for c in self.adaptive.process_frame(timecode, frame_img)]
        found = self._finder.push(small_grey(frame_img))
        return self._release(timecode, found, int(timecode.frame_num) - self._finder.lag)

    def post_process(self, timecode: Any) -> list[Any]:
        self._held += [c.frame_num for c in self.adaptive.post_process(timecode)]
        return self._release(timecode, self._finder.finish(), None)

    def _release(self, timecode: Any, found: list, upto: int | None) -> list[Any]:
        for cut, first, last in found:
            inside = [c for c in self._held if first - 2 <= c <= last + 2]
            near = [c for c in (*self._held, *self._cuts) if abs(c - cut) < self.min_frames]
            if inside or near or cut < self.min_frames:
                continue
            self._held.append(cut)
            self._runs[cut] = (first, last)
        ready = sorted(c for c in self._held if upto is None or c <= upto)
        self._held = [c for c in self._held if c not in ready]
        self._cuts = [*self._cuts, *ready][-4:]
        frame = int(timecode.frame_num)
        return [timecode - (frame - c) for c in ready]

    def get_metrics(self) -> list[str]:
        return []
