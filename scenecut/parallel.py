"""Shot detection and keyframes in time chunks, each decoded by its own worker process.

The film is split at frames just after a keyframe. A worker seeks to the keyframe, replays a
few frames into a fresh detector so that its history (the previous frame, the adaptive
detector's window of scores, the last cut) catches up, then owns every cut the detector reports
while it reads its own frames. The merge trusts a chunk only when it is proven to give what the
single pass (``shots.detect_shots``) gives:

- every frame a worker decodes has the timestamp a packet scan of the whole file said the frame
  of that number has (so frame numbers are those of the single pass: no damage, no gaps);
- the frames two neighbouring workers both decoded are the same, pixel for pixel;
- the detector's state after the last frame before the chunk is the same in the worker that
  replayed and in the worker that read up to there (``detector_state``); the detector is a
  function of its state and its frames, so it then reports the same cuts as the single pass.

A chunk whose state does not match yet is read again from an earlier keyframe (at worst from
the start); anything else unproven (a decoding error, a frame missing) sends the whole film to
the single pass, which skips the shots already handed on. Keyframes are taken by each worker
for the shots that begin and end in its chunk; a shot across a chunk edge gets its first frame
from one worker, its last from another and its middle frame decoded once more (``Rewind``).
The default model's evidence comes out the same: each worker measures its own frames, and the
sound is decoded in this process while the workers run.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.chunks import (
    Chunk,
    ChunkJob,
    ChunkResult,
    Unproven,
    init_worker,
    run_chunk,
)
from scenecut.errors import UsageError
from scenecut.evidence import AudioTrack, Evidence, PictureTrack
from scenecut.keyframes import (
    _LOOKBACK_FRAMES,
    KeyframeCollector,
    ShotKeyframes,
    _Frame,
    keyframe_indices,
)
from scenecut.profile import Stages
from scenecut.result import Shot
from scenecut.shots import (
    ShotDetection,
    decoded_video,
    detect_shots,
    make_detector,
)
from scenecut.spawning import without_main
from scenecut.video import (
    Damage,
    Probe,
    Rewind,
    _by_dts,
    _open,
    cores,
    damage_warnings,
    probe,
    upright_size,
    working_hwaccel,
)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# When the number of workers is left to us, films shorter than this keep the single pass:
# starting the workers (about a second each, in parallel) and the packet scan would not pay.
PARALLEL_MIN_SECONDS = 120.0
# Without --decode-workers, a film of at least PARALLEL_MIN_SECONDS goes to one worker per core
# of this process's share (``video.cores``: all of them, or what a Ray actor was given); a
# process started by multiprocessing (a batch worker) keeps the single pass.
PARALLEL_BY_DEFAULT = True
PARALLEL_MIN_CORES = 2  # on 2 cores, 2 workers took 0.72x the single pass's time (10-min film)
CHUNK_SECONDS = 300.0  # at most this much film per chunk: bounds what a worker hands back
MAX_WORKERS = 256
PARALLEL_DETECTORS = ("adaptive", "content")  # those whose state ``detector_state`` compares


def check_workers(workers: int | None) -> None:
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--decode-workers must be from 1 to {MAX_WORKERS}, got {workers}")


# --- the packet scan ---------------------------------------------------------------------


@dataclass(frozen=True)
class FrameIndex:
    """Every frame's presentation timestamp in frame order, and which frames are keyframes,
    from the packets alone (no decoding)."""

    pts: array  # "q", strictly increasing
    keys: list[int]  # frame numbers of keyframes, increasing


def index_frames(path: Path, info: Probe) -> FrameIndex | None:
    """The frame index of ``path``, or None when frame numbers could come out differently in
    the single pass (no timestamps, repeated ones, a gap it would fill, AVI's decode order)."""
    import av

    try:
        container = _open(path)
    except Exception:
        return None
    with container:
        if _by_dts(container):
            return None
        stream = container.streams.video[0]
        stamps = array("q")
        key_stamps = array("q")
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                if packet.pts is None:
                    return None
                if getattr(packet, "is_discard", False):  # dropped by the decoder (edit lists)
                    continue
                stamps.append(packet.pts)
                if packet.is_keyframe:
                    key_stamps.append(packet.pts)
        except (av.error.FFmpegError, IndexError):
            return None
    pts = array("q", sorted(stamps))
    steps = [b - a for a, b in itertools.pairwise(pts)]
    if not steps or min(steps) <= 0:
        return None
    # The single pass fills a gap of over 1.5 frames in CFR video (a whole number of pts units
    # is over 1.5 frames when it is over the floor of 1.5 frames).
    if info.cfr and max(steps) > math.floor(Fraction(3, 2) / (info.fps * info.time_base)):
        return None
    keys = sorted({bisect_right(pts, k) - 1 for k in key_stamps})
    if not keys or keys[0] != 0:
        return None
    return FrameIndex(pts, keys)


# --- the plan ----------------------------------------------------------------------------


def replay_frames(detector: str, min_frames: int, window: int = 2) -> int:
    """Frames read before a chunk's own: the ring of frames held for late cuts and the
    detectors' history fit in it. A fresh detector ignores cuts closer than the minimum shot
    length to its first frame: twice that length, and a cut found there is found as the single
    pass finds it (when not, the chunk is read again: ``_Run._proven``)."""
    lag = min_frames if detector == "content" else window
    return 2 * min_frames + 2 * lag + 8


def plan_chunks(
    frames: int, keys: Sequence[int], starts: Sequence[int], replay: int
) -> list[Chunk]:
    """Chunks beginning at ``starts`` (0 first), each replayed from the last keyframe at least
    ``replay`` frames before its start."""
    if not starts or starts[0] != 0 or list(starts) != sorted(set(starts)) or starts[-1] >= frames:
        raise ValueError(f"chunk starts must rise from 0 below {frames}: {list(starts)}")
    chunks = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else frames
        key = 0 if i == 0 else keys[max(0, bisect_right(keys, start - replay) - 1)]
        chunks.append(Chunk(i, key, start, end))
    return chunks


def even_starts(frames: int, keys: Sequence[int], count: int, replay: int) -> list[int]:
    """About ``count`` equal chunks, each starting ``replay`` frames after a keyframe."""
    starts = [0]
    least = max(4 * replay, 1)
    for i in range(1, count):
        at = bisect_right(keys, frames * i // count - replay) - 1
        if at < 0:
            continue
        start = keys[at] + replay
        if start - starts[-1] >= least and frames - start >= least:
            starts.append(start)
    return starts


# --- the merge ---------------------------------------------------------------------------


def parallel_plan(
    path: Path,
    *,
    workers: int | None,
    detector: str = "adaptive",
    min_shot_seconds: float = 0.6,
    prepare: Callable | None = None,
) -> tuple[Probe, FrameIndex] | None:
    """The probe and frame index when ``path`` goes to ``workers`` processes (None: as many as
    there are cores, for films of at least ``PARALLEL_MIN_SECONDS``); None for the single pass:
    one worker, a detector whose state cannot be compared, a ``prepare`` that cannot be sent to
    a process (a bound method of a loaded model), a short film or an irregular file."""
    import multiprocessing

    check_workers(workers)
    if workers is None and not PARALLEL_BY_DEFAULT:
        return None
    count = cores() if workers is None else workers
    if count < 2 or detector not in PARALLEL_DETECTORS:
        return None
    if workers is None and count < PARALLEL_MIN_CORES:
        return None
    if multiprocessing.parent_process() is not None:
        # A worker process of ours, or of the caller's: no processes started from there (a
        # script without the ``if __name__ == "__main__"`` guard re-runs itself in each one).
        return None
    if prepare is not None and not _sendable(prepare):
        return None
    info = probe(path)
    if workers is None and info.frame_count_estimate < PARALLEL_MIN_SECONDS * info.fps:
        return None
    index = index_frames(path, info)
    if index is None:
        log.info("%s: irregular frame timestamps; decoding in one pass", path)
        return None
    return info, index


def _sendable(function: Callable) -> bool:
    import functools
    import types

    if isinstance(function, functools.partial):
        return _sendable(function.func)
    # A worker does not import the caller's __main__ (``spawning``): nothing from there
    return (
        isinstance(function, types.FunctionType)
        and "<locals>" not in function.__qualname__
        and function.__module__ not in ("__main__", "__mp_main__")
    )


def detect_shots_parallel(
    path: Path,
    *,
    workers: int | None = None,
    chunk_starts: Sequence[int] | None = None,
    replay: int | None = None,
    detector: str = "adaptive",
    threshold: float | None = None,
    min_shot_seconds: float = 0.6,
    keyframe_height: int = 128,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    on_shot: Callable[[ShotKeyframes], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stages: Stages | None = None,
    evidence: Evidence | None = None,
    skip_transitions: bool = False,
) -> ShotDetection:
    """``shots.detect_shots``, the film decoded in chunks by ``workers`` processes where that
    pays and is proven to give the same result (see the module's note); otherwise the single
    pass itself. ``chunk_starts`` sets the chunks' first frames (0 first) and ``replay`` the
    frames read before each (default ``replay_frames``), for tests;
    otherwise chunks are about equal, at most ``CHUNK_SECONDS`` long."""
    path = Path(path)
    kwargs = dict(
        detector=detector,
        threshold=threshold,
        min_shot_seconds=min_shot_seconds,
        keyframe_height=keyframe_height,
        prepare=prepare,
        on_shot=on_shot,
        progress=progress,
        stages=stages,
        evidence=evidence,
        # only a detector that tells its transitions (transnetv2, dissolve: never chunked) uses it
        skip_transitions=skip_transitions,
    )
    plan = parallel_plan(
        path, workers=workers, detector=detector, min_shot_seconds=min_shot_seconds,
        prepare=prepare,
    )  # fmt: skip
    if plan is None:
        return detect_shots(path, **kwargs)
    info, index = plan
    count = cores() if workers is None else workers
    delivered = [0]

    def deliver(item: ShotKeyframes) -> None:
        delivered[0] += 1
        if on_shot:
            on_shot(item)

    try:
        return _Run(
            path, info, index, count, chunk_starts, replay, {**kwargs, "on_shot": deliver}
        ).run()
    except Unproven as exc:
        log.info("%s: %s; decoding in one pass", path, exc)
    # The shots handed on so far are the single pass's own (proven): it skips them.
    skip = delivered[0]
    seen = [0]

    def rest(item: ShotKeyframes) -> None:
        seen[0] += 1
        if seen[0] > skip and on_shot:
            on_shot(item)

    if evidence is not None:
        evidence.picture, evidence.sound, evidence.video_start = PictureTrack(), None, 0.0
    return detect_shots(path, **{**kwargs, "on_shot": rest})


class _Run:
    """One parallel detection: plan, workers, merge in chunk order."""

    def __init__(
        self,
        path: Path,
        info: Probe,
        index: FrameIndex,
        workers: int,
        chunk_starts: Sequence[int] | None,
        replay: int | None,
        kwargs: dict,
    ):
        self.path, self.info, self.index, self.workers = path, info, index, workers
        self.hwaccel = working_hwaccel(path)
        self.detector = kwargs["detector"]
        self.threshold = kwargs["threshold"]
        self.keyframe_height = kwargs["keyframe_height"]
        self.prepare = kwargs["prepare"]
        self.on_shot = kwargs["on_shot"]
        self.progress = kwargs["progress"]
        self.evidence = kwargs["evidence"]
        self.stages = kwargs["stages"] if kwargs["stages"] is not None else Stages()
        self.frames = len(index.pts)
        self.min_frames = max(1, round(kwargs["min_shot_seconds"] * info.fps))
        window = make_detector(self.detector, self.threshold, self.min_frames)
        width = getattr(window, "window_width", 2)
        self.replay = replay or replay_frames(self.detector, self.min_frames, width)
        if chunk_starts is None:
            longest = max(1, int(CHUNK_SECONDS * info.fps))
            count = max(workers, math.ceil(self.frames / longest))
            chunk_starts = even_starts(self.frames, index.keys, count, self.replay)
        if len(chunk_starts) < 2:
            raise Unproven("the film is too short to split")
        self.chunks = plan_chunks(self.frames, index.keys, chunk_starts, self.replay)

    def job(self, chunk: Chunk) -> ChunkJob:
        following = chunk.index + 1
        tail_from = self.chunks[following].replay if following < len(self.chunks) else chunk.end
        return ChunkJob(
            path=str(self.path),
            chunk=chunk,
            frames=self.frames,
            seek=self.index.pts[chunk.replay],
            pts=self.index.pts[chunk.replay : chunk.end].tobytes(),
            origin=self.index.pts[0],
            time_base=self.info.time_base,
            fps=self.info.fps,
            width=self.info.width,
            height=self.info.height,
            detector=self.detector,
            threshold=self.threshold,
            min_frames=self.min_frames,
            keyframe_height=self.keyframe_height,
            prepare=self.prepare,
            evidence=self.evidence is not None,
            tail_from=min(tail_from, chunk.end),
            threads=max(1, cores() // self.workers),
            hwaccel=self.hwaccel,
        )

    def run(self) -> ShotDetection:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        counters = context.Array("q", len(self.chunks), lock=False)
        sound = None
        if self.evidence is not None and self.info.has_audio:
            sound = _SoundThread(self.path)
        began = time.perf_counter()
        # An executor, not multiprocessing.Pool: a worker that cannot start breaks it (and the
        # film goes to the single pass) where a Pool would start it again and again.
        pool = ProcessPoolExecutor(
            min(self.workers, len(self.chunks)),
            mp_context=context,
            initializer=init_worker,
            initargs=(counters,),
        )
        try:
            results = self._merge(pool, counters)
        except BaseException:
            # Chunks still being read are not waited for (the executor has no public way).
            running = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in running:
                process.terminate()
            raise
        else:
            pool.shutdown()
        finally:
            if sound is not None:
                sound.join()
        self.stages.add("parallel wall", time.perf_counter() - began, 0)
        if sound is not None:
            if sound.error is not None:
                raise sound.error
            self.evidence.sound = sound.track
        return results

    def _merge(self, pool, counters) -> ShotDetection:
        import numpy as np

        chunks = self.chunks
        window = self.workers + 1  # chunks in flight: bounds the results waiting here
        pending = {c.index: self._submit(pool, c) for c in chunks[:window]}
        shots: list[Shot] = []
        cuts: list[int] = []
        starts: dict[int, Fraction] = {}
        keyframe_times = array("d")
        open_shot: tuple[int, np.ndarray] | None = None  # start and first frame of a shot
        previous: ChunkResult | None = None
        rewound = inexact = 0
        helper = KeyframeCollector((2, 2), self.info.fps, None, self.stages, prepare=self.prepare)
        rewind = Rewind(self.path)
        seen: set[int] = set()
        for chunk in chunks:
            result = self._wait(pending.pop(chunk.index), counters)
            following = chunk.index + window
            if following < len(chunks):
                pending[following] = self._submit(pool, chunks[following])
            if previous is not None:
                result = self._proven(pool, previous, result, counters)
            else:
                turns = result.turns
                helper.turn(
                    turns,
                    upright_size(self.info.width, self.info.height, self.keyframe_height, turns),
                )
            if result.turns != turns:
                raise Unproven("the frames' rotation changes")
            for name, seconds in result.seconds.items():
                self.stages.add(name, seconds, 0)
            rewound += result.rewound
            inexact += result.inexact
            for cut in result.cuts:
                if cut <= 0 or cut in seen:
                    continue
                seen.add(cut)
                if cuts and cut <= cuts[-1]:
                    raise Unproven(f"cut {cut} reported after cut {cuts[-1]}")
                cuts.append(cut)
            starts.update(result.starts)
            keyframe_times.extend(result.keyframe_times)
            if self.evidence is not None:
                self.evidence.picture.luma.extend(result.luma)
                self.evidence.picture.contrast.extend(result.contrast)
            for piece in result.pieces:
                if piece.true_start and piece.true_end:
                    self._emit(shots, piece.start, piece.end, piece.images)
                elif piece.true_start:
                    open_shot = (piece.start, piece.images[0])
                elif piece.true_end:
                    if open_shot is None:
                        raise Unproven(f"a shot ending at frame {piece.end} has no start")
                    start, first = open_shot
                    middle = keyframe_indices(start, piece.end)[1]
                    found = self._rewind(rewind, helper, middle)
                    rewound += 1
                    images = np.stack([first, found, piece.images[0]])
                    self._emit(shots, start, piece.end, images)
                    open_shot = None
            previous = result
        if open_shot is not None or previous is None or previous.end_time is None:
            raise Unproven("the last chunk did not end the last shot")
        return self._detection(shots, starts, keyframe_times, previous, rewound, inexact)

    def _submit(self, pool, chunk: Chunk):
        with without_main():  # a worker it starts skips the caller's script (``spawning``)
            return pool.submit(run_chunk, self.job(chunk))

    def _wait(self, pending, counters) -> ChunkResult:
        while not futures.wait([pending], timeout=0.2).done:
            if self.progress:
                done = sum(counters)
                self.progress(done, max(self.frames, done))
        try:
            return pending.result()
        except Unproven:
            raise
        except Exception as exc:  # the single pass decides what is wrong with the file
            raise Unproven(f"a worker failed ({type(exc).__name__}: {exc})") from exc

    def _proven(self, pool, previous: ChunkResult, result: ChunkResult, counters) -> ChunkResult:
        """``result``, or the chunk read again from earlier keyframes until it is proven."""
        chunk = result.chunk
        while True:
            shared = previous.tail.keys() & result.head.keys()
            if not shared or any(previous.tail[j] != result.head[j] for j in shared):
                raise Unproven(f"frames before frame {chunk.start} decode differently")
            if result.entry is not None and result.entry == previous.exit:
                return result
            if result.chunk.replay == 0:
                raise Unproven(f"the detector's state at frame {chunk.start} differs")
            further = max(0, chunk.start - 4 * (chunk.start - result.chunk.replay))
            replay = self.index.keys[bisect_right(self.index.keys, further) - 1]
            log.debug("chunk %d: replaying from frame %d", chunk.index, replay)
            again = Chunk(chunk.index, replay, chunk.start, chunk.end)
            result = self._wait(self._submit(pool, again), counters)

    def _rewind(self, rewind: Rewind, helper: KeyframeCollector, index: int) -> np.ndarray:
        keys = self.index.keys
        key = keys[bisect_right(keys, index) - 1]
        with self.stages.time("keyframes", 0):
            frame = rewind.frame(self.index.pts[key], self.index.pts[index], _LOOKBACK_FRAMES)
            if frame is None:
                raise Unproven(f"frame {index} could not be decoded again")
            return helper._image(_Frame(index, frame))

    def _emit(self, shots: list[Shot], start: int, end: int, images: np.ndarray) -> None:
        indices = keyframe_indices(start, end)
        shot = Shot(len(shots), start, end, indices)
        shots.append(shot)
        if self.on_shot:
            self.on_shot(ShotKeyframes(shot, images))

    def _detection(
        self,
        shots: list[Shot],
        starts: dict[int, Fraction],
        keyframe_times: array,
        last: ChunkResult,
        rewound: int,
        inexact: int,
    ) -> ShotDetection:
        info = self.info
        frames = self.frames
        turns = last.turns
        first_pts = Fraction(self.index.pts[0]) * info.time_base
        self.stages.frames += frames
        for note in damage_warnings(self.path, info, Damage(), frames):
            log.warning("%s", note)
        if self.evidence is not None:
            self.evidence.video_start = float(first_pts)
        if self.progress:
            self.progress(frames, frames)
        end_time = last.end_time
        video = decoded_video(
            self.path, info, frames, turns, first_pts, starts, end_time, keyframe_times
        )
        return ShotDetection(video, shots, frames, rewound, inexact, chunks=len(self.chunks))


class _SoundThread:
    """The audio stream's features (``AudioTrack``), decoded here while the workers decode the
    pictures: the same packets in the same order as in the single pass."""

    def __init__(self, path: Path):
        self.path = path
        self.track = AudioTrack()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="scenecut-sound", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            container = _open(self.path)
            with container:
                stream = container.streams.audio[0]
                for packet in container.demux(stream):
                    self.track.packet(packet)
        except Exception as exc:
            self.error = Unproven(f"the sound could not be read ({exc})")

    def join(self) -> None:
        self.thread.join()
