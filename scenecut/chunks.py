"""One time chunk of a film, read by a worker process of ``scenecut.parallel``.

The worker seeks to the keyframe the chunk's replay starts at, checks every frame's timestamp
against the packet scan, feeds a fresh detector the replayed frames and then its own, and takes
the keyframes of the shots that begin and end inside the chunk (``KeyframeCollector``, as the
single pass takes them). It hands back the cuts reported while it read its own frames, the
detector's state on entering and leaving them (``detector_state``), digests of the frames it
shares with its neighbours, and its frames' evidence and keyframe times.
"""

from __future__ import annotations

import hashlib
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.evidence import PictureTrack
from scenecut.keyframes import KeyframeCollector, ShotKeyframes, _Frame
from scenecut.profile import Stages
from scenecut.shots import (
    _DetectionImages,
    _frame_duration,
    _in_thread,
    make_detector,
    rotation_turns,
)
from scenecut.video import (
    DecodedFrame,
    Rewind,
    _open,
    scaled_size,
    set_hwaccel,
    upright_size,
)

if TYPE_CHECKING:
    import numpy as np


class Unproven(Exception):
    """A chunk's result cannot be shown to equal the single pass's."""


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, end)`` are the chunk's own; decoding starts at keyframe ``replay``."""

    index: int
    replay: int
    start: int
    end: int


# --- the detector's state ----------------------------------------------------------------

_ADAPTIVE = {
    "_adaptive_ratio_key", "_buffer", "_flash_filter", "_frame_score", "_kernel", "_last_cut",
    "_last_frame", "_stats_manager", "_threshold", "_weights", "adaptive_threshold",
    "min_content_val", "min_scene_len", "window_width",
}  # fmt: skip
_CONTENT = {
    "_flash_filter", "_frame_score", "_kernel", "_last_frame", "_stats_manager", "_threshold",
    "_weights",
}  # fmt: skip
_FLASH = {
    "_filter_length", "_filter_secs", "_last_above", "_merge_enabled", "_merge_start",
    "_merge_triggered", "_mode",
}  # fmt: skip


def detector_state(det, frame: int) -> tuple | None:
    """What decides the cuts ``det`` reports after ``frame`` (the last frame it was given), in
    a form two processes can compare; None for a detector this does not know.

    A last cut or last frame above the threshold further back than the minimum shot length
    from every frame still to be judged acts the same wherever it lies, so it is clamped.
    """
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    if type(det) is AdaptiveDetector and set(vars(det)) == _ADAPTIVE:
        length = det.min_scene_len
        if not isinstance(length, int) or det._last_cut is None:
            return None
        content = _content_state(det, frame)
        # The next frame judged is frame + 1 - window; a last cut `length` before it is as old
        # as any older one.
        horizon = frame + 1 - det.window_width - length
        scores = tuple((tc.frame_num, score) for tc, score in det._buffer)
        return ("adaptive", content, scores, max(det._last_cut.frame_num, horizon))
    if type(det) is ContentDetector and set(vars(det)) == _CONTENT:
        return ("content", _content_state(det, frame))
    return None


def _content_state(det, frame: int) -> tuple | None:
    last = det._last_frame
    image = None
    if last is not None:
        digest = hashlib.blake2b(digest_size=16)
        for plane in (last.hue, last.sat, last.lum, last.edges):
            if plane is not None:
                digest.update(plane.tobytes())
        image = digest.digest()
    flash = det._flash_filter
    if set(vars(flash)) != _FLASH or flash._filter_secs is not None:
        return (image, "unknown", id(flash))  # never equal across processes
    length = flash._filter_length
    if length <= 0:
        return (image, "off")
    above = None if flash._last_above is None else flash._last_above.frame_num
    if flash._merge_triggered:
        start = flash._merge_start.frame_num
        return (image, flash._mode.value, True, above, start, flash._merge_enabled)
    if above is not None:
        above = max(above, frame + 1 - length)
    return (image, flash._mode.value, False, above, flash._merge_enabled)


# --- the worker --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkJob:
    path: str
    chunk: Chunk
    frames: int  # in the film
    seek: int  # pts of the keyframe ``chunk.replay``
    pts: bytes  # array("q") of frames [chunk.replay, chunk.end)
    origin: int  # pts of frame 0
    time_base: Fraction
    fps: Fraction
    width: int
    height: int
    detector: str
    threshold: float | None
    min_frames: int
    keyframe_height: int
    prepare: Callable | None
    evidence: bool
    tail_from: int  # own frames from here on are hashed for the next chunk's check
    threads: int  # decoder threads
    hwaccel: str | None = None  # video.set_hwaccel in the worker


@dataclass
class Piece:
    """A shot as the worker saw it: ``start``/``end`` are real cuts or the chunk's edges."""

    start: int
    end: int
    true_start: bool
    true_end: bool
    images: np.ndarray | None  # [3, ...] for a whole shot; [1, ...] (first or last) for a part


@dataclass
class ChunkResult:
    chunk: Chunk
    cuts: list[int]  # reported while reading the chunk's own frames, in order
    pieces: list[Piece]
    entry: tuple | None  # detector state after frame chunk.start - 1 (None for chunk 0)
    exit: tuple | None  # after frame chunk.end - 1
    head: dict[int, bytes]  # digests of frames [replay, start)
    tail: dict[int, bytes]  # digests of own frames [tail_from, end)
    luma: array
    contrast: array
    keyframe_times: array
    starts: dict[int, Fraction]
    turns: int
    end_time: Fraction | None  # after the film's last frame (last chunk only)
    seconds: dict[str, float] = field(default_factory=dict)
    rewound: int = 0
    inexact: int = 0


_progress = None  # shared frame counters, one per chunk, set in each worker


def init_worker(counters) -> None:
    import cv2

    global _progress
    _progress = counters
    cv2.setNumThreads(1)  # the workers share the cores


def _digest(frame) -> bytes:
    return hashlib.blake2b(frame.to_ndarray().tobytes(), digest_size=16).digest()


def _frames(job: ChunkJob) -> Iterator[DecodedFrame]:
    """The chunk's frames, numbered, each checked against the packet scan's timestamp."""
    import av

    chunk = job.chunk
    expected = array("q")
    expected.frombytes(job.pts)
    last = chunk.end == job.frames
    set_hwaccel(job.hwaccel)
    container = _open(Path(job.path), decoding=True)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = job.threads
        container.seek(job.seek, stream=stream, backward=True, any_frame=False)
        index = chunk.replay
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                raise Unproven(f"a packet could not be decoded ({exc})") from exc
            for frame in frames:
                if frame.pts is not None and frame.pts < expected[0]:
                    continue  # before the keyframe decoding started from
                if index >= chunk.end:
                    if last:
                        raise Unproven("more frames than packets")
                    return
                if frame.pts != expected[index - chunk.replay]:
                    raise Unproven(f"frame {index} has pts {frame.pts}, not the packets'")
                time = (frame.pts - job.origin) * job.time_base
                yield DecodedFrame(index, time, frame, frame.key_frame, frame.pts, frame.pts)
                index += 1
                if index == chunk.end and not last:
                    return
        if index != chunk.end:
            raise Unproven(f"decoding ended at frame {index}, not {chunk.end}")
    finally:
        container.close()


class _ChunkCollector(KeyframeCollector):
    """Keyframes of a chunk: the frames a shot cut off by the chunk's edges does not need (its
    first at the front edge, its middle, its last at the back edge) are never decoded again."""

    head: int | None = None  # the chunk's first frame, when it is no shot's start
    tail: int | None = None  # the chunk's end, when it is not the film's

    def _frame(self, index: int, end: int) -> _Frame:
        front = self._start == self.head and index != end - 1
        back = end == self.tail and index != self._start
        if (front or back) and (self._first or self._last) is not None:
            return self._first or self._last
        return super()._frame(index, end)


def run_chunk(job: ChunkJob) -> ChunkResult:
    """Detect cuts in one chunk and take the keyframes of its shots (in a worker process)."""
    from scenedetect import FrameTimecode

    chunk = job.chunk
    stages = Stages()
    det = make_detector(job.detector, job.threshold, job.min_frames)
    lag = int(det.event_buffer_length)
    images = _DetectionImages(job.width, job.height)
    pieces: list[Piece] = []
    owned: list[int] = []

    def on_shot(item: ShotKeyframes) -> None:
        shot = item.shot
        first = shot.start in cut_set or shot.start == chunk.start == 0
        final = shot.end in cut_set or shot.end == job.frames
        if first and final:
            kept = item.images
        elif first or final:
            kept = item.images[:1] if first else item.images[2:]
        else:
            kept = None
        pieces.append(Piece(shot.start, shot.end, first, final, kept))

    cut_set: set[int] = set()
    size = scaled_size(job.width, job.height, job.keyframe_height)
    collector = _ChunkCollector(
        size, job.fps, on_shot, stages, prepare=job.prepare, rewind=Rewind(Path(job.path))
    )
    if chunk.start:
        collector.head = chunk.replay
        collector.add_cut(chunk.replay)  # the first frame decoded opens a (partial) shot
    if chunk.end < job.frames:
        collector.tail = chunk.end
    clock = time.perf_counter

    def downscale(item: DecodedFrame):
        start = clock()
        image = images.convert(item.frame)
        stages.add("downscale", clock() - start)
        return item, image

    head: dict[int, bytes] = {}
    tail: dict[int, bytes] = {}
    picture = PictureTrack()
    keyframe_times = array("d")
    entry = exit_ = None
    turns = 0
    ring: deque[DecodedFrame] = deque()
    last: DecodedFrame | None = None
    decoded = stages.timed("decode", _frames(job))
    # With a core per worker or fewer, a second thread per worker only adds hand-overs.
    staged = _in_thread(decoded, downscale, 4) if job.threads > 1 else map(downscale, decoded)
    for item, image in staged:
        j = item.index
        if last is None:
            turns = rotation_turns(item.frame)
            collector.turn(turns, upright_size(job.width, job.height, job.keyframe_height, turns))
        last = item
        start = clock()
        image = images.shrink(image)
        stages.add("shrink", clock() - start)
        own = j >= chunk.start
        if not own:
            head[j] = _digest(item.frame)
        elif j >= job.tail_from:
            tail[j] = _digest(item.frame)
        if own and item.key:
            keyframe_times.append(float(item.time))
        start = clock()
        if own and job.evidence:
            picture.add(image)
        cuts = det.process_frame(FrameTimecode(j, fps=job.fps), image)
        stages.add("detect", clock() - start)
        if own:
            for cut in cuts:
                owned.append(cut.frame_num)
                if cut.frame_num <= chunk.replay and chunk.start:
                    raise Unproven(f"a cut at frame {cut.frame_num}, before the replay")
                if cut.frame_num > 0:
                    cut_set.add(cut.frame_num)
                collector.add_cut(cut.frame_num)
        if j == chunk.start - 1:
            entry = detector_state(det, j)
        ring.append(item)
        while len(ring) > lag + 2:
            collector.push(ring.popleft())
        if _progress is not None and own and (j - chunk.start) % 32 == 31:
            _progress[chunk.index] = j + 1 - chunk.start
    assert last is not None
    end_time = None
    if chunk.end == job.frames:
        for cut in det.post_process(FrameTimecode(last.index, fps=job.fps)):
            owned.append(cut.frame_num)
            if cut.frame_num > 0:
                cut_set.add(cut.frame_num)
            collector.add_cut(cut.frame_num)
        end_time = last.time + _frame_duration(last, job.fps, job.time_base)
    else:
        exit_ = detector_state(det, chunk.end - 1)
    while ring:
        collector.push(ring.popleft())
    collector.finish(chunk.end)
    if _progress is not None:
        _progress[chunk.index] = chunk.end - chunk.start
    starts = {s: t for s, t in collector.starts.items() if s in cut_set or s == chunk.start == 0}
    return ChunkResult(
        chunk=chunk,
        cuts=owned,
        pieces=pieces,
        entry=entry,
        exit=exit_,
        head=head,
        tail=tail,
        luma=picture.luma,
        contrast=picture.contrast,
        keyframe_times=keyframe_times,
        starts=starts,
        turns=turns,
        end_time=end_time,
        seconds=stages.seconds,
        rewound=collector.rewound,
        inexact=collector.inexact,
    )
