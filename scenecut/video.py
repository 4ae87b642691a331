"""Opening, probing and decoding video files (PyAV), and finding an ffmpeg binary."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from scenecut.errors import InputError, ScenecutError, UsageError

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
    cfr: bool = True  # constant frame rate by the container's word: a gap in time is damage
    exact_count: bool = False  # frame_count_estimate is the container's own count
    cut_short: bool = False  # an MPEG-TS file ending inside a packet: truncated
    timecode: str | None = None  # start timecode as the file gives it; checked where it is used


# Demuxers that read other files or streams (playlists, protocols), still images or text: a
# file detected as one of these is refused, so that only the file named is ever read.
_REFUSED_FORMATS = {
    "concat", "hls", "dash", "webm_dash_manifest", "sdp", "rtsp", "rtp", "lavfi", "tee",
    "image2", "image2pipe", "tty", "ffmetadata",
}  # fmt: skip
_PLAYLIST_STARTS = (b"ffconcat", b"#EXTM3U", b"<?xml", b"<MPD", b"v=0")
_IMAGE_STARTS = (b"\xff\xd8\xff", b"\x89PNG", b"BM", b"II*\0", b"MM\0*")


@functools.cache
def _allowed_formats() -> str:
    """Every demuxer this PyAV has, less the refused ones, for ``format_whitelist``."""
    import av
    import av.format

    names = []
    for name in sorted(av.formats_available):
        if name in _REFUSED_FORMATS or name.endswith("_pipe"):
            continue
        try:
            av.format.ContainerFormat(name, "r")
        except ValueError:  # a muxer only
            continue
        names.append(name)
    return ",".join(names)


# A hardware decoder ffmpeg offers PyAV (``--hwaccel cuda``: NVDEC), for the decoding passes
# (the single pass, the chunks); None: software. Where it cannot start (no such device here),
# one warning, then software decoding.
_hwaccel: str | None = None
_hwaccel_failed: set[str] = set()


def hwaccel_names() -> list[str]:
    """The hardware decoders this PyAV's ffmpeg was built with (``cuda`` is NVDEC)."""
    from av.codec.hwaccel import hwdevices_available

    return list(hwdevices_available())


def check_hwaccel(name: str | None) -> None:
    if name is not None and name not in hwaccel_names():
        raise UsageError(f"--hwaccel must be one of {', '.join(hwaccel_names())}, got {name!r}")


def set_hwaccel(name: str | None) -> None:
    """Decode with the hardware decoder ``name`` in this process (None: software)."""
    global _hwaccel
    check_hwaccel(name)
    _hwaccel = name


def hwaccel() -> str | None:
    return _hwaccel


def working_hwaccel(path: Path) -> str | None:
    """The hardware decoder set here when it starts (tried on ``path`` once: the warning is
    said here, not in every decode worker), else None."""
    if _hwaccel is None or _hwaccel in _hwaccel_failed:
        return None
    _open(path, decoding=True).close()
    return None if _hwaccel in _hwaccel_failed else _hwaccel


@contextlib.contextmanager
def using_hwaccel(name: str | None) -> Iterator[None]:
    """``set_hwaccel(name)`` for the block, then the previous setting again."""
    previous = _hwaccel
    set_hwaccel(name)
    try:
        yield
    finally:
        set_hwaccel(previous)


def _open(path: Path, decoding: bool = False) -> av.container.InputContainer:
    import av

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a video file")
    name = _hwaccel if decoding else None
    options = {"format_whitelist": _allowed_formats(), "protocol_whitelist": "file"}
    failed = None
    if name is not None and name not in _hwaccel_failed:
        from av.codec.hwaccel import HWAccel

        try:
            return av.open(
                f"file:{path}",
                metadata_errors="ignore",
                options=options,
                hwaccel=HWAccel(device_type=name, allow_software_fallback=True),
            )
        except (OSError, av.error.FFmpegError, ValueError) as exc:
            failed = exc  # the device, or the file: the software open below tells
    try:
        # "file:" so that a name like "take2:final.mp4" is never read as a protocol.
        container = av.open(f"file:{path}", metadata_errors="ignore", options=options)
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied") from exc
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: {_not_video(path, exc)}") from exc
    if failed is not None:  # the file opens: the hardware decoder is what failed
        _hwaccel_failed.add(name)
        log.warning("the %s hardware decoder cannot start here (%s); decoding in software",
                    name, failed)  # fmt: skip
    return container


def _not_video(path: Path, exc: Exception) -> str:
    """Why ``path`` cannot be opened, from its first bytes when they tell."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        head = b""
    if head.lstrip().startswith(_PLAYLIST_STARTS):
        return "is a playlist or stream description, not a video file (only the file named is read)"
    if head.startswith(_IMAGE_STARTS):
        return "is a still image, not a video"
    reason = getattr(exc, "strerror", None) or str(exc)
    return f"not a readable video file ({reason})"


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
    guessed = stream.guessed_rate
    # An average rate far above the guessed one comes from a container that counts something
    # else as frames (raw DV: 60000 for 25 fps; H.264 with B-frames stream-copied into AVI: 600
    # for 24); its frame count is then just as wrong.
    trusted = not (rate and guessed and guessed > 0 and rate > 1.5 * guessed)
    if not trusted:
        rate = guessed
    if not rate or rate <= 0:
        raise InputError(f"{path}: the video stream has no usable frame rate")
    fps = Fraction(rate.numerator, rate.denominator)
    time_base = Fraction(stream.time_base.numerator, stream.time_base.denominator)
    estimate = stream.frames if trusted else 0
    exact = bool(estimate)
    cfr = not trusted or bool(
        guessed and rate and abs(Fraction(rate) / Fraction(guessed) - 1) < Fraction(1, 100)
    )
    if not estimate and stream.duration:
        estimate = round(stream.duration * time_base * fps)
    if not estimate and container.duration:
        estimate = round(Fraction(container.duration, 1_000_000) * fps)
    start = Fraction(container.start_time or 0, 1_000_000)
    # MPEG-TS has no frame count to compare with; 188-byte packets (192 in M2TS) tell a
    # truncated file instead.
    size = path.stat().st_size
    cut_short = container.format.name == "mpegts" and bool(size % 188 and size % 192)
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
        cfr=cfr,
        exact_count=exact,
        cut_short=cut_short,
        timecode=_timecode(container, stream),
    )


def _timecode(container: av.container.InputContainer, stream: av.VideoStream) -> str | None:
    """The first ``timecode`` tag of the video stream, a QuickTime tmcd (data) stream or the
    container (MXF, Matroska), as ffmpeg reads it: ``HH:MM:SS:FF``, ``;`` for drop-frame."""
    sources = [stream, *container.streams.data, container]
    for source in sources:
        for key, value in source.metadata.items():
            if key.lower() == "timecode" and value.strip() and len(value) <= 32:
                return value.strip()
    return None


def scaled_size(width: int, height: int, target_height: int) -> tuple[int, int]:
    """Width and height after scaling to ``target_height`` (never upscaling), both even."""
    if height <= target_height:
        return width - width % 2 or 2, height - height % 2 or 2
    w = max(2, round(width * target_height / height / 2) * 2)
    return w, target_height - target_height % 2


def upright_size(width: int, height: int, target_height: int, turns: int) -> tuple[int, int]:
    """The coded-orientation size to scale a ``width`` x ``height`` frame to, so that turned
    ``turns`` quarter turns upright it is ``target_height`` high (``scaled_size`` rules)."""
    if turns % 2 == 0:
        return scaled_size(width, height, target_height)
    shown_w, shown_h = scaled_size(height, width, target_height)
    return shown_h, shown_w


@dataclass
class DecodedFrame:
    index: int
    time: Fraction  # seconds from the first frame's presentation time
    frame: av.VideoFrame
    key: bool = False  # a keyframe: decoding can start here
    pts: int = 0  # the presentation timestamp ``time`` counts from, in the stream's time base
    # The timestamp the file gives the frame shown (a filled frame: the one it repeats), as
    # ``Rewind`` finds it again; None when the file gives none.
    source: int | None = None


def decode(
    path: Path, damage: Damage | None = None, audio: AudioSink | None = None
) -> tuple[Probe, Iterator[DecodedFrame]]:
    """Probe ``path`` and return an iterator over its decoded frames, in presentation order.

    Frames are numbered 0, 1, 2... in presentation order; their times come from the stream's
    pts so variable-frame-rate video keeps exact times. Undecodable packets are skipped and
    frames lost in constant-frame-rate video are filled in, both counted in ``damage`` (see
    ``damage_warnings``); a file that yields no frame at all raises ``InputError``.
    With ``audio``, the first audio stream's packets, met in the same read of the file, are
    handed to ``audio.packet`` (it decodes them; its failures are its own).
    """
    container = _open(path, decoding=True)
    try:
        info = _probe_open(path, container)
    except BaseException:
        container.close()
        raise
    return info, _frames(path, container, info, damage or Damage(), audio)


# The longest run of missing frames that is filled in; a longer jump in time is taken as a
# timestamp discontinuity, and frame times then follow the timestamps (as for VFR video).
MAX_FILL_SECONDS = 60


class AudioSink(Protocol):
    """Takes the audio packets ``decode`` meets (``scenecut.evidence.AudioTrack``)."""

    def packet(self, packet: av.Packet) -> None: ...


@dataclass
class Damage:
    """What decoding had to work around, counted for one warning at the end."""

    undecodable_packets: int = 0
    filled_frames: int = 0
    fills: int = 0
    first_fill: int = -1  # frame number of the first filled frame
    jumps: int = 0
    unknown_streams: int = 0  # packets of streams the header did not announce, skipped
    unfilled_gaps: int = 0  # jumps in the timestamps of a stream said to be CFR, left as they are


def _packets(path: Path, container, streams: list, damage: Damage) -> Iterator:
    """``container.demux(*streams)``, going on past packets of streams that appear mid-file
    (damaged MPEG-TS tables announce new ones; PyAV raises ``IndexError`` for each)."""
    while True:
        try:
            yield from container.demux(*streams)
            return
        except IndexError:
            damage.unknown_streams += 1
            if damage.unknown_streams > 1000:
                raise InputError(
                    f"{path}: too many packets of unknown streams; the file is corrupt"
                ) from None


# Gaps in a constant-frame-rate stream are filled only once this many regular frame steps
# follow them; gaps close together are one damaged stretch, but more than MAX_GAPS of them
# without regular steps between means the rate varies (VFR video in a CFR container).
CONFIRM_STEPS = 4
MAX_GAPS = 8


def _frames(
    path: Path,
    container: av.container.InputContainer,
    info: Probe,
    damage: Damage,
    audio: AudioSink | None = None,
) -> Iterator[DecodedFrame]:
    """Decoded frames, numbered so that frame numbers keep their times: in constant frame rate
    video, a frame lost to damage (its packets unreadable, a block of the file zeroed) is
    replaced by the frame before it, so later frame numbers are not shifted."""
    import av

    nominal = 1 / (info.fps * info.time_base)  # one frame, in pts units
    max_fill = MAX_FILL_SECONDS * info.fps
    index = 0
    origin: int | None = None
    last: tuple[int, av.VideoFrame] | None = None  # the latest frame read
    # A damaged stretch not yet confirmed: frames read, and gaps (pts before, frames missing,
    # the frame that fills them), in order.
    held: list[tuple] = []
    gaps = regular = 0  # in the stretch: gaps, and regular steps since the last one
    varying = not info.cfr
    by_dts = _by_dts(container)

    def emit(pts: int, frame: av.VideoFrame, key: bool) -> DecodedFrame:
        nonlocal index
        item = DecodedFrame(
            index, (pts - origin) * info.time_base, frame, key, pts, _source(frame, by_dts)
        )
        index += 1
        return item

    def release(fill: bool) -> Iterator[DecodedFrame]:
        nonlocal gaps, regular
        for entry in held:
            if entry[0] == "frame":
                yield emit(entry[1], entry[2], entry[2].key_frame)
            elif fill:
                _, before, missing, filler = entry
                damage.filled_frames += missing
                damage.fills += 1
                if damage.first_fill < 0:
                    damage.first_fill = index
                for k in range(1, missing + 1):
                    yield emit(before + round(k * nominal), filler, False)
            else:
                damage.unfilled_gaps += 1
        held.clear()
        gaps = regular = 0

    try:
        for pts, frame in _timed(path, container, info, damage, audio):
            if origin is None:
                origin = pts
            jump = 0 if last is None else (pts - last[0]) / nominal
            if jump > 1.5 and info.cfr:
                missing = round(jump) - 1
                if missing > max_fill:
                    damage.jumps += 1
                elif varying:
                    damage.unfilled_gaps += 1
                else:
                    held.append(("gap", last[0], missing, last[1]))
                    gaps, regular = gaps + 1, 0
                    if gaps > MAX_GAPS:  # gap after gap: the frame rate varies
                        varying = True
                        yield from release(fill=False)
            elif held:
                regular += 1
            last = (pts, frame)
            if held:
                held.append(("frame", pts, frame))
                if regular >= CONFIRM_STEPS:
                    yield from release(fill=True)
            else:
                yield emit(pts, frame, frame.key_frame)
        yield from release(fill=True)  # the end came inside a damaged stretch
    except av.error.FFmpegError as exc:
        if index == 0 and not held:
            raise InputError(f"{path}: cannot decode any frame ({exc})") from exc
        yield from release(fill=True)
        log.warning("%s: decoding stopped early at frame %d (%s)", path, index, exc)
    finally:
        container.close()
    if index == 0:
        raise InputError(f"{path}: the video stream has no decodable frames (empty or corrupt)")


# The cores ``segment`` may keep busy in this process (None: all it may run on). A batch worker
# or a Ray actor sets its share (``set_cores``). With 2 or more, ``segment`` overlaps its stages
# in threads (decoding, with the decoder's own threads, alongside detection, and the shot encoder
# alongside both: the loop over files keeps about 1.45 of 2 cores busy) and splits a long film
# over that many decode workers (``parallel``). With 1, it runs the stages in turn and decodes in
# one thread: sharing the cores with other workers, threads only add hand-offs
# (bench/bench_batch.py).
_cores: int | None = None


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, where set)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def set_cores(count: int | None) -> None:
    """This process's share of the cores for ``segment`` (None: all of them)."""
    global _cores
    if count is not None and count < 1:
        raise ValueError(f"cores must be at least 1, got {count}")
    _cores = count


def cores() -> int:
    """The cores ``segment`` may keep busy here (``set_cores``, else all available)."""
    return _cores if _cores is not None else available_cores()


def stage_threads() -> bool:
    """Whether ``segment`` overlaps its stages in threads (see ``set_cores``)."""
    return _cores is None or _cores >= 2


def _timed(
    path: Path, container, info: Probe, damage: Damage, audio: AudioSink | None = None
) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(pts, frame)`` of every decodable frame, pts strictly increasing."""
    import av

    stream = container.streams.video[0]
    if stage_threads():
        stream.thread_type = "AUTO"
    else:
        stream.codec_context.thread_count = 1
    streams = [stream]
    if audio is not None and container.streams.audio:
        streams.append(container.streams.audio[0])
    step = max(1, round(1 / (info.fps * info.time_base)))  # one frame, in pts units
    by_dts = _by_dts(container)
    last_pts: int | None = None
    for packet in _packets(path, container, streams, damage):
        if packet.stream.index != stream.index:
            audio.packet(packet)
            continue
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            damage.undecodable_packets += 1
            log.debug("%s: skipped an undecodable packet (%s)", path, exc)
            if damage.undecodable_packets > 1000:
                raise InputError(f"{path}: too many decoding errors; the file is corrupt") from exc
            continue
        for frame in frames:
            pts = _source(frame, by_dts)
            if pts is None:
                pts = 0 if last_pts is None else last_pts + step
            elif last_pts is not None and pts <= last_pts:
                # Missing or repeated timestamps: step one nominal frame forward.
                pts = last_pts + step
            last_pts = pts
            yield pts, frame


def _by_dts(container) -> bool:
    """AVI has no presentation times, only frame order: ffmpeg times its frames by dts, and the
    pts its parser makes up for B-frames packed into AVI go backwards. Clips are cut by ffmpeg,
    so frame times must be the ones ffmpeg sees."""
    return container.format.name == "avi"


def _source(frame: av.VideoFrame, by_dts: bool) -> int | None:
    return frame.dts if by_dts else frame.pts


class Rewind:
    """Decodes a frame already passed once more, by the timestamp the file gives it: seek to
    the keyframe at or before it, decode forward to it (at most ``limit`` frames). For the
    middle keyframe of a shot too long to keep every candidate in memory."""

    def __init__(self, path: Path):
        self.path = path

    def frame(self, key_source: int, source: int, limit: int) -> av.VideoFrame | None:
        """The frame whose timestamp is ``source``, decoding from the keyframe whose timestamp
        is ``key_source``; None when it is not found within ``limit`` frames (damaged files,
        unreliable seeking)."""
        import av

        container = None
        try:
            # Opened for each call: its decoder's reference frames and thread buffers
            # (hundreds of MB at 4K) are freed between shots; opening costs a few milliseconds.
            container = _open(self.path)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            by_dts = _by_dts(container)
            container.seek(key_source, stream=stream, backward=True, any_frame=False)
            count = 0
            for packet in _packets(self.path, container, [stream], Damage()):
                for frame in packet.decode():
                    count += 1
                    ts = _source(frame, by_dts)
                    if ts == source:
                        return frame
                    if count >= limit or (ts is not None and ts > source):
                        return None
        except (av.error.FFmpegError, InputError, OSError) as exc:
            log.debug("%s: cannot decode the frame at %s again (%s)", self.path, source, exc)
        finally:
            if container is not None:
                container.close()
        return None


def damage_warnings(path: Path, info: Probe, damage: Damage, frame_count: int) -> list[str]:
    """What the user must hear about a decode: frames lost, filled or missing at the end.

    Raises ``InputError`` when under 80% of the frames the container announces were decoded.
    """
    total = info.frame_count_estimate
    # Many jumps in the timestamps: the frame rate varies (VFR video in a container that states
    # one rate), and frames x duration says nothing about how many frames there are.
    varying = not info.cfr or damage.unfilled_gaps > max(4, frame_count // 10)
    if varying and not info.exact_count:
        total = 0
    # An estimate from the duration can be a frame or two off; a count from the container not.
    short = total - frame_count > (0 if info.exact_count else max(2, total // 100))
    decoded = frame_count - damage.filled_frames
    if total and decoded < 0.8 * total:
        raise InputError(
            f"{path}: only {decoded} of the {total} frames the container announces could be "
            "decoded; the file is truncated or corrupt"
        )
    notes = []
    if damage.filled_frames:
        notes.append(
            f"{path}: {_count(damage.filled_frames, 'frames')} could not be decoded "
            f"({_count(damage.fills, 'damaged spans')}, the first at frame {damage.first_fill}); "
            "each is replaced by the frame before it, so later frame numbers keep their times"
        )
    if damage.undecodable_packets:
        notes.append(
            f"{path}: {_count(damage.undecodable_packets, 'damaged packets')} could not be "
            "decoded; frames near them may be missing or damaged"
        )
    if damage.unfilled_gaps and not varying:
        notes.append(
            f"{path}: the timestamps skip {_count(damage.unfilled_gaps, 'times')}: frames are "
            "missing there (damage too close together to fill; frame times follow the timestamps)"
        )
    if damage.jumps:
        notes.append(
            f"{path}: the timestamps jump forward by over {MAX_FILL_SECONDS} s "
            f"{damage.jumps} times; frame times follow the timestamps across the jumps"
        )
    if info.cut_short and not short:
        notes.append(
            f"{path}: the file ends inside a transport-stream packet: it was cut short, and "
            "the frames after its end are missing"
        )
    if short:
        notes.append(
            f"{path}: only {frame_count} of the {total} frames the container announces could be "
            "decoded (a truncated or damaged file); the scenes cover the frames decoded"
        )
    return notes


def _count(n: int, plural: str) -> str:
    """``3 frames``, ``1 frame``."""
    return f"{n} {plural}" if n != 1 else f"1 {plural[:-1]}"
