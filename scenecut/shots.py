"""Shot detection and keyframe collection in a single decode pass.

This is the only module that imports PySceneDetect. Its detectors see small BGR frames (about
256 px wide, as PySceneDetect's own auto-downscale does); keyframes are taken from the same decoded
frames at the resolution the scorer asks for, so the file is decoded exactly once.
"""

from __future__ import annotations

import importlib
import logging
import math
import queue
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from scenecut.errors import UsageError
from scenecut.profile import Stages
from scenecut.result import Shot, VideoInfo
from scenecut.video import (
    Damage,
    DecodedFrame,
    damage_warnings,
    decode,
    scaled_size,
    upright_size,
)

if TYPE_CHECKING:
    import av
    import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Detector:
    """A shot detector ``--detector`` can name: its class (PySceneDetect's, or "module:Class"
    for one with the same interface elsewhere), the name and default of its threshold argument,
    and what ``--help`` says of it."""

    cls: str
    threshold_arg: str
    default_threshold: float
    note: str = ""
    probability: bool = False  # the threshold is a probability, in (0, 1)


DETECTORS: dict[str, Detector] = {
    "adaptive": Detector("AdaptiveDetector", "adaptive_threshold", 3.0),
    "content": Detector("ContentDetector", "threshold", 27.0),
    "threshold": Detector("ThresholdDetector", "threshold", 12.0, "fades"),
    "histogram": Detector("HistogramDetector", "threshold", 0.20),
    "hash": Detector("HashDetector", "threshold", 0.35),
    "transnetv2": Detector(
        "scenecut.models.transnet:TransNetV2Detector",
        "threshold",
        0.5,
        "learned; finds fades and dissolves",
        probability=True,
    ),
}
DETECTION_WIDTH = 256  # PySceneDetect's DEFAULT_MIN_WIDTH
KEYFRAMES_PER_SHOT = 3
_SAMPLES_PER_SHOT = 16  # bounded buffer of candidate middle keyframes per open shot...
_QUEUE_BYTES = 40 << 20  # decoded frames queued for the detector
_SAMPLE_BYTES = 96 << 20  # ...fewer when their full-size copies would pass this (4K: 7)


@dataclass(frozen=True)
class ShotKeyframes:
    """A finished shot and its keyframes: ``images`` is ``[3, H, W, 3]`` uint8 RGB."""

    shot: Shot
    images: np.ndarray


@dataclass(frozen=True)
class ShotDetection:
    video: VideoInfo
    shots: list[Shot]
    decoded_frames: int


def detector_help() -> str:
    """``--detector``'s help, from the table."""
    names = [f"{name} ({d.note})" if d.note else name for name, d in DETECTORS.items()]
    return f"Shot detector: {', '.join(names[:-1])}, or {names[-1]}."


def detector_threshold_help() -> str:
    """``--detector-threshold``'s help, from the table."""
    defaults = ", ".join(f"{name} {d.default_threshold:g}" for name, d in DETECTORS.items())
    return f"Shot detector threshold [default: the detector's own: {defaults}]."


def check_detector(name: str, threshold: float | None = None) -> Detector:
    """The detector called ``name``; ``UsageError`` for an unknown one or a bad threshold."""
    if name not in DETECTORS:
        raise UsageError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    detector = DETECTORS[name]
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"--detector-threshold must be a finite number, got {threshold}")
    if threshold is not None and detector.probability and not 0 < threshold < 1:
        raise UsageError(
            f"--detector-threshold for {name} is a probability between 0 and 1, got {threshold}"
        )
    if threshold is not None and threshold <= 0:
        raise UsageError(f"--detector-threshold must be positive, got {threshold}")
    return detector


def make_detector(name: str, threshold: float | None, min_shot_frames: int):
    """Build the detector called ``name`` with our threshold override."""
    detector = check_detector(name, threshold)
    module, _, class_name = detector.cls.rpartition(":")
    kwargs = {
        detector.threshold_arg: detector.default_threshold if threshold is None else threshold,
        "min_scene_len": min_shot_frames,
    }
    return getattr(importlib.import_module(module or "scenedetect.detectors"), class_name)(**kwargs)


def detect_shots(
    path: Path,
    *,
    detector: str = "adaptive",
    threshold: float | None = None,
    min_shot_seconds: float = 0.6,
    keyframe_height: int = 128,
    on_shot: Callable[[ShotKeyframes], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stages: Stages | None = None,
) -> ShotDetection:
    """Decode ``path`` once: detect shot cuts and hand each finished shot's keyframes to
    ``on_shot`` (in shot order, as soon as the shot is known to be complete).

    Keyframes follow MovieNet: the shot's first frame, its middle frame and its last frame. For
    shots longer than the candidate buffer, the middle keyframe is the buffered frame nearest the
    exact middle. ``progress(frames_done, frames_estimated)`` is called every few frames.
    ``stages`` collects busy seconds per stage (decode, downscale, detect, keyframes).
    """
    import time

    from scenedetect import FrameTimecode

    damage = Damage()
    probe, frames = decode(path, damage)
    min_frames = max(1, round(min_shot_seconds * probe.fps))
    det = make_detector(detector, threshold, min_frames)
    lag = int(det.event_buffer_length)
    det_w, det_h = _detection_size(probe.width, probe.height)
    kf_w, kf_h = scaled_size(probe.width, probe.height, keyframe_height)
    stages = stages if stages is not None else Stages()
    collector = _KeyframeCollector((kf_w, kf_h), probe.fps, on_shot, stages)

    ring: deque[DecodedFrame] = deque()
    total = probe.frame_count_estimate
    last: DecodedFrame | None = None
    first_pts: Fraction | None = None
    # Decoding and downscaling run in a thread (PyAV and swscale release the GIL) while this
    # thread runs the detector: the two stages overlap, as in PySceneDetect.
    # A detector may make its own input from the decoded frame (TransNetV2 takes 48x27 pixels).
    small = getattr(det, "detection_image", None) or _DetectionImages(det_w, det_h)
    clock = time.perf_counter

    def downscale(item: DecodedFrame) -> tuple[DecodedFrame, np.ndarray]:
        start = clock()
        image = small(item.frame)
        stages.add("downscale", clock() - start)
        return item, image

    # Decoded frames waiting for the detector: fewer of them when they are large (4K: 3).
    depth = max(2, min(8, _QUEUE_BYTES // (probe.width * probe.height * 3 // 2 or 1)))
    staged = _in_thread(stages.timed("decode", frames), downscale, depth)
    keyframe_times = array("d")
    for item, image in staged:
        last = item
        if item.key:
            keyframe_times.append(float(item.time))
        if first_pts is None:
            first_pts = Fraction(item.pts) * probe.time_base
            turns = rotation_turns(item.frame)
            collector.turn(turns, upright_size(probe.width, probe.height, keyframe_height, turns))
        start = clock()
        cuts = det.process_frame(FrameTimecode(item.index, fps=probe.fps), image)
        stages.add("detect", clock() - start)
        for cut in cuts:
            collector.add_cut(cut.frame_num)
        ring.append(item)
        # A cut at frame c arrives at most `lag` frames late; frame c - 1 must still be buffered
        # then, so that the shot before the cut can be closed with its true last frame.
        while len(ring) > lag + 2:
            collector.push(ring.popleft())
        if progress and item.index % 32 == 0:
            progress(item.index + 1, max(total, item.index + 1))
    assert last is not None and first_pts is not None  # decode() raises when there is no frame
    frame_count = last.index + 1
    stages.frames += frame_count
    for note in damage_warnings(path, probe, damage, frame_count):
        log.warning("%s", note)
    for cut in det.post_process(FrameTimecode(last.index, fps=probe.fps)):
        collector.add_cut(cut.frame_num)
    while ring:
        collector.push(ring.popleft())
    shots = collector.finish(frame_count)
    if progress:
        progress(frame_count, frame_count)

    end_time = last.time + _frame_duration(last, probe.fps, probe.time_base)
    vfr = _is_vfr(collector.starts, probe.fps, frame_count, end_time)
    times = {**collector.starts, frame_count: end_time} if vfr else {}
    video = VideoInfo(
        path=path,
        fps=probe.fps,
        frame_count=frame_count,
        width=probe.height if turns % 2 else probe.width,
        height=probe.width if turns % 2 else probe.height,
        rotation=90 * turns,
        codec=probe.codec,
        has_audio=probe.has_audio,
        start_offset=max(Fraction(0), first_pts - probe.container_start),
        vfr=vfr,
        frame_times=times,
        keyframe_times=keyframe_times,
    )
    return ShotDetection(video, shots, frame_count - damage.filled_frames)


@dataclass
class _Frame:
    """A decoded frame reduced to its planar YUV 4:2:0 pixels (``[H * 3 / 2, W]`` uint8), so
    the decoder's own frame is released at once (holding decoder frames slows decoding)."""

    index: int
    time: Fraction
    i420: np.ndarray

    def keyframe(self, width: int, height: int) -> np.ndarray:
        """RGB at ``width`` x ``height`` (both even), pixel-averaged."""
        import cv2
        import numpy as np

        h = self.i420.shape[0] * 2 // 3
        w = self.i420.shape[1]
        # The chroma planes are h/2 rows of w/2 each, laid out flat after the luma: taken by
        # element count, since h/2 rows need not fill whole rows of w (640x266: 133 rows).
        flat = self.i420.reshape(-1)
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


def rotation_turns(frame: av.VideoFrame) -> int:
    """Quarter turns counter-clockwise that show ``frame`` upright (its display matrix), 0-3."""
    degrees = getattr(frame, "rotation", 0) or 0
    return round(degrees / 90) % 4


def _in_thread(items: Iterator[T], work: Callable[[T], R], depth: int = 8) -> Iterator[R]:
    """``map(work, items)`` computed ``depth`` items ahead in a background thread."""
    done = object()
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                results.put((work(item), None))
        except BaseException as exc:  # handed to the consumer, raised there
            results.put((None, exc))
            return
        results.put((done, None))

    thread = threading.Thread(target=produce, name="scenecut-decode", daemon=True)
    thread.start()
    try:
        while True:
            value, error = results.get()
            if error is not None:
                raise error
            if value is done:
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                results.get_nowait()
            except queue.Empty:
                thread.join(0.01)


class _LazyFrame:
    """Copies a decoder frame into a ``_Frame`` on first use only."""

    def __init__(self, decoded: DecodedFrame, stages: Stages):
        self.decoded: DecodedFrame | None = decoded
        self.frame: _Frame | None = None
        self.stages = stages

    def get(self) -> _Frame:
        if self.frame is None:
            with self.stages.time("keyframes", 0):
                d = self.decoded
                self.frame = _Frame(d.index, d.time, _i420(d.frame))
                self.decoded = None
        return self.frame


class _DetectionImages:
    """Small BGR frames for the detector.

    swscale's fast bilinear downscale gives the same cut lists as PySceneDetect's own full-size
    conversion + ``cv2.resize`` (checked on the shared clips), so its detectors' thresholds keep
    their meaning. One reformatter serves every frame: it keeps its scaling context, which
    ``VideoFrame.reformat`` would build anew per frame (0.25 against 0.42 ms per 720p frame).
    """

    def __init__(self, width: int, height: int):
        from av.video.reformatter import VideoReformatter

        self.width, self.height = width, height
        self.reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        return self.reformatter.reformat(
            frame,
            width=self.width,
            height=self.height,
            format="bgr24",
            interpolation="FAST_BILINEAR",
        ).to_ndarray()


def _i420(frame: av.VideoFrame) -> np.ndarray:
    """Planar YUV 4:2:0 pixels of a PyAV frame (a copy); other formats are converted first."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return frame.to_ndarray()
    w, h = frame.width - frame.width % 2 or 2, frame.height - frame.height % 2 or 2
    return frame.reformat(width=w, height=h, format="yuv420p").to_ndarray()


def _detection_size(width: int, height: int) -> tuple[int, int]:
    """PySceneDetect's auto-downscale size (about 256 px wide)."""
    from scenedetect.scene_manager import compute_downscale_factor

    factor = compute_downscale_factor(width, DETECTION_WIDTH)
    return max(1, round(width / factor)), max(1, round(height / factor))


def _frame_duration(item: DecodedFrame, fps: Fraction, time_base: Fraction) -> Fraction:
    duration = getattr(item.frame, "duration", None)
    nominal = 1 / fps
    if duration and duration * time_base >= nominal / 4:  # AVI says 1 tick: not a duration
        return duration * time_base
    return nominal


def _is_vfr(starts: dict[int, Fraction], fps: Fraction, frames: int, end: Fraction) -> bool:
    """True when presentation times drift from ``index / fps`` by more than half a frame."""
    half = 1 / (2 * fps)
    checks = [*starts.items(), (frames, end)]
    return any(abs(t - Fraction(i) / fps) > half for i, t in checks)


class _KeyframeCollector:
    """Receives frames after the detector can no longer place a cut before them.

    Holds a bounded set of candidate keyframes for the open shot only, so memory does not grow
    with the length of the video.
    """

    def __init__(
        self,
        size: tuple[int, int],
        fps: Fraction,
        on_shot: Callable[[ShotKeyframes], None] | None,
        stages: Stages,
    ):
        self.size = size
        self.turns = 0  # quarter turns counter-clockwise that show a frame upright
        self.stages = stages
        self.fps = fps
        self.on_shot = on_shot
        self.cuts: set[int] = set()
        self.shots: list[Shot] = []
        self.starts: dict[int, Fraction] = {}  # shot start frame -> presentation time
        self._start = 0
        self._stride = 1
        # Candidate keyframes of the open shot, kept as decoded frames; only the three chosen
        # ones are scaled when the shot closes.
        self._samples: list[tuple[int, _Frame]] = []
        self._last_pushed = -1
        self._last_item: _LazyFrame | None = None

    def _capacity(self, frame: _Frame) -> int:
        return max(4, min(_SAMPLES_PER_SHOT, _SAMPLE_BYTES // frame.i420.nbytes))

    def turn(self, turns: int, size: tuple[int, int]) -> None:
        """Keyframes are scaled to ``size`` (coded orientation), then turned upright."""
        self.turns, self.size = turns, size

    def add_cut(self, frame: int) -> None:
        if frame <= 0 or frame in self.cuts:
            return
        self.cuts.add(frame)
        if frame - 1 <= self._last_pushed:
            self._late_cut(frame)

    def push(self, decoded: DecodedFrame) -> None:
        j = decoded.index
        self._last_pushed = j
        # Only candidate keyframes are copied out of the decoder's frame.
        item = _LazyFrame(decoded, self.stages)
        self._last_item = item
        if j == 0 or j in self.cuts:
            self._start = j
            self._stride = 1
            self._samples = []
            self.starts[j] = decoded.time
        if (j - self._start) % self._stride == 0:
            self._samples.append((j, item.get()))
            if len(self._samples) > self._capacity(item.get()):
                double = 2 * self._stride
                self._samples = [
                    (i, im) for i, im in self._samples if (i - self._start) % double == 0
                ]
                self._stride = double
        if j + 1 in self.cuts:
            if self._samples[-1][0] != j:
                self._samples.append((j, item.get()))
            self._close(j + 1)

    def finish(self, frame_count: int) -> list[Shot]:
        if self._samples:
            if self._samples[-1][0] != frame_count - 1:
                self._samples.append((frame_count - 1, self._last_item.get()))
            self._close(frame_count)
        return self.shots

    def _close(self, end: int) -> None:
        """Emit the open shot ``[start, end)`` with its first, middle and last candidates."""
        import numpy as np

        start = self._start
        middle = start + (end - 1 - start) // 2
        first_kf = self._samples[0]
        last_kf = self._samples[-1]
        mid_kf = min(self._samples, key=lambda s: (abs(s[0] - middle), s[0]))
        chosen = (first_kf, mid_kf, last_kf)
        shot = Shot(len(self.shots), start, end, tuple(i for i, _ in chosen))
        self.shots.append(shot)
        if self.on_shot:
            with self.stages.time("keyframes"):
                images = np.stack([np.rot90(f.keyframe(*self.size), self.turns) for _, f in chosen])
            self.on_shot(ShotKeyframes(shot, images))
        self._samples = []

    def _late_cut(self, frame: int) -> None:
        """A cut reported after its frame left the buffer (e.g. the threshold detector placing a
        cut in the middle of a long fade): split the open shot's candidates at the cut."""
        if frame <= self._start:
            log.debug("ignoring a cut at frame %d inside an already finished shot", frame)
            return
        before = [s for s in self._samples if s[0] < frame]
        after = [s for s in self._samples if s[0] >= frame]
        if not before:
            log.debug("cut at frame %d has no buffered keyframe before it; ignored", frame)
            self.cuts.discard(frame)
            return
        self._samples = before
        self._close(frame)
        self._start = frame
        self._stride = 1
        self._samples = after
        self.starts[frame] = Fraction(frame) / self.fps
