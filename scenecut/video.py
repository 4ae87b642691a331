"""Opening, probing and decoding video files (PyAV), and finding an ffmpeg binary."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import InputError, ScenecutError

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)


def ffmpeg_exe() -> str:
    """The ffmpeg to run: ``$SCENECUT_FFMPEG``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    env = os.environ.get("SCENECUT_FFMPEG")
    if env:
        return env
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise ScenecutError(
            "no ffmpeg found: install ffmpeg, reinstall scenecut (it bundles one through "
            "imageio-ffmpeg), or set SCENECUT_FFMPEG to an ffmpeg binary"
        ) from exc


@dataclass(frozen=True)
class Probe:
    """Container facts known before decoding. ``frame_count`` is an estimate until decoded."""

    path: Path
    fps: Fraction
    time_base: Fraction
    frame_count_estimate: int
    width: int
    height: int
    codec: str
    has_audio: bool
    container_start: Fraction  # seconds; the origin of ffmpeg's -ss


def _open(path: Path) -> av.container.InputContainer:
    import av

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a video file")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: not a readable video file ({exc.strerror or exc})") from exc
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied") from exc


def probe(path: Path) -> Probe:
    """Read the container header. Raises ``InputError`` for files with nothing to decode."""
    container = _open(path)
    with container:
        return _probe_open(path, container)


def _probe_open(path: Path, container: av.container.InputContainer) -> Probe:
    if not container.streams.video:
        raise InputError(f"{path}: has no video stream (audio-only or not a video file)")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise InputError(
            f"{path}: its video codec is not one this ffmpeg can decode; convert the file "
            "(e.g. to H.264) with a full ffmpeg first"
        )
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise InputError(f"{path}: the video stream has no usable frame rate")
    fps = Fraction(rate.numerator, rate.denominator)
    time_base = Fraction(stream.time_base.numerator, stream.time_base.denominator)
    estimate = stream.frames
    if not estimate and stream.duration:
        estimate = round(stream.duration * time_base * fps)
    if not estimate and container.duration:
        estimate = round(Fraction(container.duration, 1_000_000) * fps)
    start = Fraction(container.start_time or 0, 1_000_000)
    ctx = stream.codec_context
    return Probe(
        path=path,
        fps=fps,
        time_base=time_base,
        frame_count_estimate=int(estimate or 0),
        width=ctx.width,
        height=ctx.height,
        codec=ctx.name,
        has_audio=bool(container.streams.audio),
        container_start=start,
    )


def scaled_size(width: int, height: int, target_height: int) -> tuple[int, int]:
    """Width and height after scaling to ``target_height`` (never upscaling), both even."""
    if height <= target_height:
        return width - width % 2 or 2, height - height % 2 or 2
    w = max(2, round(width * target_height / height / 2) * 2)
    return w, target_height - target_height % 2


@dataclass
class DecodedFrame:
    index: int
    time: Fraction  # seconds from the first frame's presentation time
    frame: av.VideoFrame


def decode(path: Path) -> tuple[Probe, Iterator[DecodedFrame]]:
    """Probe ``path`` and return an iterator over its decoded frames, in presentation order.

    Frames are numbered 0, 1, 2... as decoded; presentation times come from the stream's pts so
    variable-frame-rate video keeps exact times. Undecodable packets in the middle of a stream are
    skipped with a warning; a file that yields no frame at all raises ``InputError``.
    """
    container = _open(path)
    try:
        info = _probe_open(path, container)
    except BaseException:
        container.close()
        raise
    return info, _frames(path, container, info)


def _frames(
    path: Path, container: av.container.InputContainer, info: Probe
) -> Iterator[DecodedFrame]:
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    index = 0
    origin: int | None = None
    last_pts: int | None = None
    errors = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                errors += 1
                log.warning("%s: skipped an undecodable packet (%s)", path, exc)
                if errors > 1000:
                    raise InputError(
                        f"{path}: too many decoding errors; the file is corrupt"
                    ) from exc
                continue
            for frame in frames:
                pts = frame.pts if frame.pts is not None else last_pts
                if pts is None:
                    pts = 0
                elif last_pts is not None and pts <= last_pts:
                    # Missing or repeated timestamps: step one nominal frame forward.
                    pts = last_pts + max(1, round(1 / (info.fps * info.time_base)))
                if origin is None:
                    origin = pts
                last_pts = pts
                yield DecodedFrame(index, (pts - origin) * info.time_base, frame)
                index += 1
    except av.error.FFmpegError as exc:
        if index == 0:
            raise InputError(f"{path}: cannot decode any frame ({exc})") from exc
        log.warning("%s: decoding stopped early at frame %d (%s)", path, index, exc)
    finally:
        container.close()
    if index == 0:
        raise InputError(f"{path}: the video stream has no decodable frames (empty or corrupt)")
