"""Shot detection and keyframe collection in a single decode pass.

This is the only module that imports PySceneDetect. Its detectors see the small BGR frames its
own command line makes (the longer side auto-downscaled to about 256 px); keyframes are taken
from the same decoded frames (``scenecut.keyframes``), so the file is read through once (only
the middle frame of a shot too long to keep in memory is decoded a second time).
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
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from scenecut.errors import UsageError
from scenecut.evidence import AudioTrack, Evidence
from scenecut.keyframes import KeyframeCollector, ShotKeyframes
from scenecut.profile import Stages
from scenecut.result import Shot, VideoInfo
from scenecut.video import (
    Damage,
    DecodedFrame,
    Rewind,
    damage_warnings,
    decode,
    scaled_size,
    stage_threads,
    upright_size,
)

if TYPE_CHECKING:
    import av
    import numpy as np

    from scenecut.shotclips import ClipCollector

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Detector:
    """A shot detector ``--detector`` can name: its class (PySceneDetect's, or "module:Class"
    for one with the same interface elsewhere), the name and default of its threshold argument,
    and what ``--help`` says of it. ``options`` are further arguments to its class: those of
    PySceneDetect's ``detect-*`` command where they differ from the class's own defaults, so that
    a detector finds the cuts ``scenedetect`` finds."""

    cls: str
    threshold_arg: str
    default_threshold: float
    note: str = ""
    probability: bool = False  # the threshold is a probability, in (0, 1)
    options: dict[str, object] = field(default_factory=dict)
    wants_fps: bool = False  # built with the film's frame rate (``fps=``)


DETECTORS: dict[str, Detector] = {
    "adaptive": Detector("AdaptiveDetector", "adaptive_threshold", 3.0),
    "content": Detector("ContentDetector", "threshold", 27.0),
    "threshold": Detector(
        "ThresholdDetector",
        "threshold",
        12.0,
        "fades",
        # detect-threshold's add-last-scene and min-out-length: a video that ends faded out
        # ends its last shot where the fade-out began.
        options={"add_final_scene": True, "min_out_length": "0.1s"},
    ),
    "histogram": Detector("HistogramDetector", "threshold", 0.20),
    "hash": Detector("HashDetector", "threshold", 0.35),
    "dissolve": Detector(
        "scenecut.dissolves:DissolveDetector",
        "adaptive_threshold",
        3.0,
        "adaptive plus cross-dissolves",
        wants_fps=True,
    ),
    "transnetv2": Detector(
        "scenecut.models.transnet:TransNetV2Detector",
        "threshold",
        0.5,
        "learned; finds fades and dissolves",
        probability=True,
    ),
}
DETECTION_WIDTH = 256  # PySceneDetect's DEFAULT_MIN_WIDTH, for the longer side
_QUEUE_BYTES = 40 << 20  # decoded frames queued for the detector
_SPLIT_PIXELS = 1920 * 1088  # up to this size the BGR frame is shrunk in the detector's thread


@dataclass(frozen=True)
class ShotDetection:
    video: VideoInfo
    shots: list[Shot]
    decoded_frames: int
    rewound: int = 0  # middle keyframes decoded a second time (shots too long to keep)
    inexact: int = 0  # keyframes not found again: the nearest kept frame stands in
    chunks: int = 1  # decoded in this many chunks by worker processes (``scenecut.parallel``)


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


def make_detector(
    name: str, threshold: float | None, min_shot_frames: int, fps: float | None = None
):
    """Build the detector called ``name`` with our threshold override (and the film's frame
    rate, for a detector that wants it)."""
    detector = check_detector(name, threshold)
    module, _, class_name = detector.cls.rpartition(":")
    kwargs = {
        detector.threshold_arg: detector.default_threshold if threshold is None else threshold,
        "min_scene_len": min_shot_frames,
        **detector.options,
    }
    if detector.wants_fps and fps:
        kwargs["fps"] = float(fps)
    return getattr(importlib.import_module(module or "scenedetect.detectors"), class_name)(**kwargs)


def detect_shots(
    path: Path,
    *,
    detector: str = "adaptive",
    threshold: float | None = None,
    min_shot_seconds: float = 0.6,
    keyframe_height: int = 128,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    on_shot: Callable[[ShotKeyframes], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stages: Stages | None = None,
    evidence: Evidence | None = None,
    clips: ClipCollector | None = None,
    skip_transitions: bool = False,
) -> ShotDetection:
    """Decode ``path`` once: detect shot cuts and hand each finished shot's keyframes to
    ``on_shot`` (in shot order, as soon as the shot is known to be complete).

    Keyframes follow MovieNet: the shot's first frame, its middle frame and its last frame
    (``keyframes.keyframe_indices``), scaled to ``keyframe_height`` rows, or with ``prepare``
    full-size RGB handed to it (a model's own resize and crop).
    ``progress(frames_done, frames_estimated)`` is called every few frames.
    ``stages`` collects busy seconds per stage (decode, downscale, detect, keyframes).
    ``evidence`` (``scenecut.evidence``) collects, in the same pass, each frame's luma and
    contrast from the detector's image and the audio stream's features.
    ``clips`` (``scenecut.shotclips``) also takes each shot's clips, handed on with its keyframes.
    ``skip_transitions``: where the detector tells the fade or dissolve a cut lies in
    (``transnetv2``, ``dissolve``), keyframes are taken outside it (``keyframes.clean_span``):
    a blend of two shots in both of their keyframes makes them look alike.
    """
    import time

    from scenedetect import FrameTimecode

    damage = Damage()
    sound = AudioTrack() if evidence is not None else None
    probe, frames = decode(path, damage, sound)
    if evidence is not None:
        evidence.sound = sound if probe.has_audio else None
    min_frames = max(1, round(min_shot_seconds * probe.fps))
    det = make_detector(detector, threshold, min_frames, probe.fps)
    transition = getattr(det, "transition", None) if skip_transitions else None
    lag = int(det.event_buffer_length)
    kf_w, kf_h = scaled_size(probe.width, probe.height, keyframe_height)
    stages = stages if stages is not None else Stages()
    collector = KeyframeCollector(
        (kf_w, kf_h), probe.fps, on_shot, stages, prepare=prepare, rewind=Rewind(path), clips=clips
    )

    ring: deque[DecodedFrame] = deque()
    total = probe.frame_count_estimate
    last: DecodedFrame | None = None
    first_pts: Fraction | None = None
    # Decoding and the full-size BGR conversion run in a thread (PyAV and swscale release the
    # GIL) while this thread shrinks the BGR frame (cv2 releases it too) and runs the detector:
    # the two threads share the work about equally, as in PySceneDetect. Above 1080p the BGR
    # frames would fill memory while they wait (4K: 25 MB each), so the decode thread shrinks
    # them too.
    # A detector may make its own input from the decoded frame (TransNetV2 takes 48x27 pixels).
    own = getattr(det, "detection_image", None)
    images = None if own else _DetectionImages(probe.width, probe.height)
    split = images is not None and probe.width * probe.height <= _SPLIT_PIXELS
    convert = images.convert if split else (own or images)
    clock = time.perf_counter

    def downscale(item: DecodedFrame) -> tuple[DecodedFrame, np.ndarray]:
        start = clock()
        image = convert(item.frame)
        stages.add("downscale", clock() - start)
        return item, image

    # Decoded frames waiting for the detector, each with its BGR copy: fewer when they are
    # large (4K: 2).
    queued = probe.width * probe.height * (9 if split else 3) // 2 or 1  # I420 (+ BGR)
    depth = max(2, min(8, _QUEUE_BYTES // queued))
    decoded = stages.timed("decode", frames)
    staged = _in_thread(decoded, downscale, depth) if stage_threads() else map(downscale, decoded)
    keyframe_times = array("d")
    for item, image in staged:
        last = item
        if item.key:
            keyframe_times.append(float(item.time))
        if first_pts is None:
            first_pts = Fraction(item.pts) * probe.time_base
            turns = rotation_turns(item.frame)
            collector.turn(turns, upright_size(probe.width, probe.height, keyframe_height, turns))
            if evidence is not None:
                evidence.video_start = float(first_pts)
        if split:
            start = clock()
            image = images.shrink(image)
            stages.add("shrink", clock() - start)
        start = clock()
        if evidence is not None:
            evidence.picture.add(image)
        cuts = det.process_frame(FrameTimecode(item.index, fps=probe.fps), image)
        stages.add("detect", clock() - start)
        for cut in cuts:
            collector.add_cut(cut.frame_num, transition and transition(cut.frame_num))
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
        collector.add_cut(cut.frame_num, transition and transition(cut.frame_num))
    while ring:
        collector.push(ring.popleft())
    shots = collector.finish(frame_count)
    if collector.inexact:
        log.warning(
            "%s: %d keyframe(s) could not be decoded a second time (seeking in this file is "
            "unreliable); the nearest frame held stands in for each",
            path,
            collector.inexact,
        )
    if progress:
        progress(frame_count, frame_count)

    end_time = last.time + _frame_duration(last, probe.fps, probe.time_base)
    video = decoded_video(
        path, probe, frame_count, turns, first_pts, collector.starts, end_time, keyframe_times
    )
    return ShotDetection(
        video, shots, frame_count - damage.filled_frames, collector.rewound, collector.inexact
    )


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


class _DetectionImages:
    """Small BGR frames for the detector, made as PySceneDetect makes them, to the pixel.

    As ``scenedetect`` does: the whole frame in BGR (swscale, which OpenCV's decoder also calls),
    turned upright as OpenCV turns it, then ``cv2.resize`` (linear) by the auto-downscale factor
    of the longer side. With these pixels its detectors find the cuts ``scenedetect`` finds;
    swscale's fast bilinear scaling straight to the small size (cheaper from 1080p up: 0.4 against
    2.4 ms per 4K frame) changed the hash detector's cuts on most real clips and the content and
    histogram detectors' on some.
    One reformatter serves every frame: it keeps its scaling context, which
    ``VideoFrame.reformat`` would build anew per frame.
    """

    def __init__(self, width: int, height: int):
        from av.video.reformatter import VideoReformatter

        self.factor = _downscale_factor(width, height)
        self.reformatter = VideoReformatter()
        self.turns: int | None = None  # taken from the first frame, as OpenCV takes the stream's

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        return self.shrink(self.convert(frame))

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        """The full-size BGR frame, as OpenCV's decoder converts it."""
        # SWS_BICUBIC is OpenCV's flag: plain YUV 4:2:0 converts the same under any flag, but
        # layouts swscale resamples (NV12) differ by up to 100 levels under another.
        image = self.reformatter.reformat(
            frame, format="bgr24", interpolation="BICUBIC"
        ).to_ndarray()
        if self.turns is None:
            self.turns = rotation_turns(frame)
        return image

    def shrink(self, image: np.ndarray) -> np.ndarray:
        """Upright, then shrunk by PySceneDetect's auto-downscale factor."""
        import cv2

        if self.turns:
            image = cv2.rotate(image, _CV2_TURNS[self.turns])
        if self.factor > 1:
            h, w = image.shape[:2]
            size = (max(1, round(w / self.factor)), max(1, round(h / self.factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return image


# Quarter turns counter-clockwise -> cv2.rotate's code.
_CV2_TURNS = {1: 2, 2: 1, 3: 0}  # ROTATE_90_COUNTERCLOCKWISE, ROTATE_180, ROTATE_90_CLOCKWISE


def _downscale_factor(width: int, height: int) -> float:
    """PySceneDetect's auto-downscale factor: the longer side becomes about 256 px (1: none)."""
    from scenedetect.scene_manager import compute_downscale_factor

    return compute_downscale_factor(max(width, height), DETECTION_WIDTH)


def _frame_duration(item: DecodedFrame, fps: Fraction, time_base: Fraction) -> Fraction:
    duration = getattr(item.frame, "duration", None)
    nominal = 1 / fps
    if duration and duration * time_base >= nominal / 4:  # AVI says 1 tick: not a duration
        return duration * time_base
    return nominal


def decoded_video(
    path: Path, probe, frame_count: int, turns: int, first_pts, starts: dict, end_time,
    keyframe_times,
) -> VideoInfo:  # fmt: skip
    """The ``VideoInfo`` of a file decoded through: ``probe``'s stream facts, the frames
    counted, the quarter ``turns`` that show it upright, and each frame's start time
    (``starts``; kept only when the frame rate varies)."""
    vfr = _is_vfr(starts, probe.fps, frame_count, end_time)
    return VideoInfo(
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
        start_timecode=probe.timecode,
        frame_times={**starts, frame_count: end_time} if vfr else {},
        keyframe_times=keyframe_times,
    )


def _is_vfr(starts: dict[int, Fraction], fps: Fraction, frames: int, end: Fraction) -> bool:
    """True when presentation times drift from ``index / fps`` by more than half a frame."""
    half = 1 / (2 * fps)
    checks = [*starts.items(), (frames, end)]
    return any(abs(t - Fraction(i) / fps) > half for i, t in checks)
