"""Writing results (JSON, CSV, EDL, OTIO, FCPXML, chapters, subtitles) and cutting clips.

This is the only module that turns frame indices into seconds and timecodes. Seconds and
timecodes are truncated to the millisecond, never rounded, so a written time never lies past the
frame it names.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
import string
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from fractions import Fraction
from pathlib import Path

import scenecut
from scenecut.errors import ExportError, OutputError, UsageError
from scenecut.result import Scene, SegmentResult, VideoInfo
from scenecut.video import ffmpeg_exe

SCHEMA_VERSION = 1
DEFAULT_TEMPLATE = "$VIDEO_NAME-Scene-$SCENE_NUMBER"
TEMPLATE_MACROS = ("VIDEO_NAME", "SCENE_NUMBER", "START_FRAME", "END_FRAME")
REENCODE_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "22", "-pix_fmt", "yuv420p"]


# --- time formatting -------------------------------------------------------------------------


def _millis(seconds: Fraction) -> int:
    return math.floor(seconds * 1000)


def seconds_str(seconds: Fraction) -> str:
    """Non-negative seconds with 3 decimals, truncated: ``Fraction(1001, 30000)`` -> ``"0.033"``."""
    ms = _millis(seconds)
    return f"{ms // 1000}.{ms % 1000:03d}"


def timecode(seconds: Fraction) -> str:
    """Non-negative seconds as ``HH:MM:SS.mmm``, truncated to the millisecond."""
    return _clock(_millis(seconds), ".")


def _clock(ms: int, separator: str) -> str:
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    return f"{hours:02d}:{minutes:02d}:{ms // 1000:02d}{separator}{ms % 1000:03d}"


def _seconds(seconds: Fraction) -> float:
    return _millis(seconds) / 1000


def _span(video: VideoInfo, start: int, end: int) -> dict:
    t0, t1 = video.time_of(start), video.time_of(end)
    return {
        "start_s": _seconds(t0),
        "end_s": _seconds(t1),
        "start_tc": timecode(t0),
        "end_tc": timecode(t1),
    }


def _score(score: float | None) -> float | None:
    return None if score is None else round(score, 4)


# --- JSON ------------------------------------------------------------------------------------


def result_to_dict(result: SegmentResult) -> dict:
    """The JSON document for ``result``: 0-based, end-exclusive frames; truncated seconds."""
    video = result.video
    return {
        "schema_version": SCHEMA_VERSION,
        "scenecut_version": scenecut.__version__,
        "video": {
            "path": str(video.path),
            "frame_rate": f"{video.fps.numerator}/{video.fps.denominator}",
            "fps": round(float(video.fps), 6),
            "frame_count": video.frame_count,
            "duration_s": _seconds(video.duration),
            "width": video.width,
            "height": video.height,
            "codec": video.codec,
            "has_audio": video.has_audio,
            "vfr": video.vfr,
        },
        "settings": dataclasses.asdict(result.settings),
        "shots": [
            {
                "index": shot.index,
                "start_frame": shot.start,
                "end_frame": shot.end,
                **_span(video, shot.start, shot.end),
                "keyframes": list(shot.keyframes),
            }
            for shot in result.shots
        ],
        "boundary_scores": [round(s, 4) for s in result.boundary_scores],
        "scenes": [
            {
                "index": scene.index,
                "first_shot": scene.first_shot,
                "last_shot": scene.last_shot,
                "shots": list(scene.shots),
                "start_frame": scene.start,
                "end_frame": scene.end,
                **_span(video, scene.start, scene.end),
                "duration_s": _seconds(video.time_of(scene.end) - video.time_of(scene.start)),
                "score": _score(scene.score),
            }
            for scene in result.scenes
        ],
        "decoded_frames": result.decoded_frames,
    }


def to_json(result: SegmentResult) -> str:
    return json.dumps(result_to_dict(result), indent=2) + "\n"


# --- CSV -------------------------------------------------------------------------------------

CSV_HEADER = [
    "Scene Number",
    "Start Frame",
    "Start Timecode",
    "Start Time (seconds)",
    "End Frame",
    "End Timecode",
    "End Time (seconds)",
    "Length (frames)",
    "Length (timecode)",
    "Length (seconds)",
    "First Shot",
    "Last Shot",
    "Boundary Score",
]


def to_csv(result: SegmentResult) -> str:
    """PySceneDetect's scene table (1-based, inclusive frames) plus shot and score columns.

    Scene and shot numbers are 1-based like PySceneDetect's; the JSON's indices are 0-based.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    video = result.video
    for scene in result.scenes:
        t0, t1 = video.time_of(scene.start), video.time_of(scene.end)
        writer.writerow(
            [
                scene.index + 1,
                scene.start + 1,
                timecode(t0),
                seconds_str(t0),
                scene.end,
                timecode(t1),
                seconds_str(t1),
                scene.length,
                timecode(t1 - t0),
                seconds_str(t1 - t0),
                scene.first_shot + 1,
                scene.last_shot + 1,
                "" if scene.score is None else f"{scene.score:.4f}",
            ]
        )
    return buffer.getvalue()


# --- SMPTE timecodes and rational seconds ----------------------------------------------------


def dropped_frames(fps: Fraction) -> int:
    """Frame numbers drop-frame timecode skips a minute: 2 at 29.97, 4 at 59.94 (8 at 119.88)."""
    base = round(fps)
    return base // 15 if fps.denominator == 1001 and base % 30 == 0 else 0


def smpte_timecode(frame: int, fps: Fraction) -> str:
    """Frame index as SMPTE ``HH:MM:SS:FF`` counting ``round(fps)`` frames a second.

    At 29.97 and 59.94 fps the timecode is drop-frame (``HH:MM:SS;FF``): frame numbers 00 and 01
    (00-03 at 59.94) are skipped at the start of every minute except each tenth, so the timecode
    keeps up with the clock. Frame 1800 at 29.97 fps is ``00:01:00;02``.
    """
    if frame < 0:
        raise ValueError(f"frame must be >= 0, not {frame}")
    base = round(fps)
    drop = dropped_frames(fps)
    if drop:
        per_minute = base * 60 - drop
        per_ten_minutes = per_minute * 10 + drop
        tens, rest = divmod(frame, per_ten_minutes)
        skipped = drop * 9 * tens
        if rest > drop:
            skipped += drop * ((rest - drop) // per_minute)
        frame += skipped
    seconds, frames = divmod(frame, base)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    separator = ";" if drop else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{frames:02d}"


def rational_seconds(frames: int, fps: Fraction) -> str:
    """Exact seconds for ``frames`` frames, FCPXML style: ``1001/24000s``, ``2s``, ``0s``."""
    seconds = Fraction(frames) / fps
    if seconds.denominator == 1:
        return f"{seconds.numerator}s"
    return f"{seconds.numerator}/{seconds.denominator}s"


def _scene_name(scene: Scene, count: int) -> str:
    return f"Scene {scene.index + 1:0{max(3, len(str(count)))}d}"


def _file_url(path: Path) -> str:
    return path.absolute().as_uri()


# --- EDL -------------------------------------------------------------------------------------


def to_edl(result: SegmentResult) -> str:
    """CMX 3600 EDL, one cut per scene; out points exclusive, record timeline from 00:00:00:00."""
    video = result.video
    fps = video.fps
    lines = [
        f"TITLE: {video.path.stem}",
        f"FCM: {'DROP FRAME' if dropped_frames(fps) else 'NON-DROP FRAME'}",
        "",
    ]
    record = 0
    for scene in result.scenes:
        times = [scene.start, scene.end, record, record + scene.length]
        tcs = " ".join(smpte_timecode(t, fps) for t in times)
        lines.append(f"{scene.index + 1:03d}  AX       V     C        {tcs}")
        # Editors relink the AX reel through the source clip's name.
        lines.append(f"* FROM CLIP NAME: {video.path.name}")
        lines.append("")
        record += scene.length
    return "\n".join(lines)


# --- OpenTimelineIO --------------------------------------------------------------------------


def to_otio(result: SegmentResult) -> str:
    """OpenTimelineIO JSON: a video track (and an audio track) with one clip per scene."""
    import opentimelineio as otio

    video = result.video
    rate = float(video.fps)
    url = _file_url(video.path)

    def frames(value: int):
        return otio.opentime.RationalTime(value, rate)

    def clip(scene: Scene):
        media = otio.schema.ExternalReference(
            target_url=url,
            available_range=otio.opentime.TimeRange(frames(0), frames(video.frame_count)),
        )
        return otio.schema.Clip(
            name=_scene_name(scene, len(result.scenes)),
            media_reference=media,
            source_range=otio.opentime.TimeRange(frames(scene.start), frames(scene.length)),
            metadata={
                "scenecut": {
                    "scene": scene.index,
                    "first_shot": scene.first_shot,
                    "last_shot": scene.last_shot,
                    "start_frame": scene.start,
                    "end_frame": scene.end,
                    "score": _score(scene.score),
                }
            },
        )

    timeline = otio.schema.Timeline(name=video.path.stem, global_start_time=frames(0))
    kinds = [("Video 1", otio.schema.TrackKind.Video)]
    if video.has_audio:
        kinds.append(("Audio 1", otio.schema.TrackKind.Audio))
    for name, kind in kinds:
        track = otio.schema.Track(name=name, kind=kind)
        track.extend(clip(scene) for scene in result.scenes)
        timeline.tracks.append(track)
    return otio.adapters.write_to_string(timeline, "otio_json") + "\n"


# --- FCPXML ----------------------------------------------------------------------------------


def to_fcpxml(result: SegmentResult) -> str:
    """FCPXML 1.9: one asset for the video and one asset-clip per scene on the spine."""
    import xml.etree.ElementTree as ET

    video = result.video
    fps = video.fps
    root = ET.Element("fcpxml", version="1.9")
    resources = ET.SubElement(root, "resources")
    ET.SubElement(
        resources,
        "format",
        id="r1",
        frameDuration=rational_seconds(1, fps),
        width=str(video.width),
        height=str(video.height),
    )
    asset = ET.SubElement(
        resources,
        "asset",
        id="r2",
        name=video.path.stem,
        start="0s",
        duration=rational_seconds(video.frame_count, fps),
        hasVideo="1",
        hasAudio="1" if video.has_audio else "0",
        format="r1",
    )
    # FCPXML 1.9 moved the asset's src attribute into <media-rep>.
    ET.SubElement(asset, "media-rep", kind="original-media", src=_file_url(video.path))
    library = ET.SubElement(root, "library")
    event = ET.SubElement(library, "event", name=video.path.stem)
    project = ET.SubElement(event, "project", name=video.path.stem)
    total = sum(scene.length for scene in result.scenes)
    sequence = ET.SubElement(
        project,
        "sequence",
        format="r1",
        duration=rational_seconds(total, fps),
        tcStart="0s",
        tcFormat="DF" if dropped_frames(fps) else "NDF",
    )
    spine = ET.SubElement(sequence, "spine")
    offset = 0
    for scene in result.scenes:
        ET.SubElement(
            spine,
            "asset-clip",
            ref="r2",
            name=_scene_name(scene, len(result.scenes)),
            offset=rational_seconds(offset, fps),
            start=rational_seconds(scene.start, fps),
            duration=rational_seconds(scene.length, fps),
        )
        offset += scene.length
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n{body}\n'


# --- chapters and subtitles ------------------------------------------------------------------


def _scene_millis(result: SegmentResult) -> list[tuple[Scene, int, int]]:
    video = result.video
    return [
        (scene, _millis(video.time_of(scene.start)), _millis(video.time_of(scene.end)))
        for scene in result.scenes
    ]


def to_ffmetadata(result: SegmentResult) -> str:
    """ffmpeg FFMETADATA1 chapters (``-i x.ffmetadata -map_chapters 1``), milliseconds."""
    lines = [";FFMETADATA1"]
    for scene, start, end in _scene_millis(result):
        lines += ["", "[CHAPTER]", "TIMEBASE=1/1000", f"START={start}", f"END={end}"]
        lines.append(f"title=Scene {scene.index + 1}")
    return "\n".join(lines) + "\n"


def to_vtt(result: SegmentResult) -> str:
    """WebVTT chapters: one ``Scene N`` cue per scene."""
    lines = ["WEBVTT", ""]
    for scene, start, end in _scene_millis(result):
        lines += [f"{_clock(start, '.')} --> {_clock(end, '.')}", f"Scene {scene.index + 1}", ""]
    return "\n".join(lines)


def to_srt(result: SegmentResult) -> str:
    """SubRip scene markers: ``Scene N (shots a-b)``, shots 1-based like the CSV."""
    lines = []
    for scene, start, end in _scene_millis(result):
        first, last = scene.first_shot + 1, scene.last_shot + 1
        shots = f"shot {first}" if first == last else f"shots {first}-{last}"
        lines += [
            str(scene.index + 1),
            f"{_clock(start, ',')} --> {_clock(end, ',')}",
            f"Scene {scene.index + 1} ({shots})",
            "",
        ]
    return "\n".join(lines)


# --- writers ---------------------------------------------------------------------------------


class ResultWriter:
    """Writes ``<video stem>.scenes.<extension>``; subclasses implement ``render``."""

    extension: str

    def render(self, result: SegmentResult) -> str:
        raise NotImplementedError

    def target(self, video_path: Path, out_dir: Path) -> Path:
        return out_dir / f"{video_path.stem}.scenes.{self.extension}"


class JsonWriter(ResultWriter):
    extension = "json"

    def render(self, result: SegmentResult) -> str:
        return to_json(result)


class CsvWriter(ResultWriter):
    extension = "csv"

    def render(self, result: SegmentResult) -> str:
        return to_csv(result)


class EdlWriter(ResultWriter):
    extension = "edl"

    def render(self, result: SegmentResult) -> str:
        return to_edl(result)


class OtioWriter(ResultWriter):
    extension = "otio"

    def render(self, result: SegmentResult) -> str:
        return to_otio(result)


class FcpxmlWriter(ResultWriter):
    extension = "fcpxml"

    def render(self, result: SegmentResult) -> str:
        return to_fcpxml(result)


class ChaptersWriter(ResultWriter):
    extension = "ffmetadata"

    def render(self, result: SegmentResult) -> str:
        return to_ffmetadata(result)


class VttWriter(ResultWriter):
    extension = "vtt"

    def render(self, result: SegmentResult) -> str:
        return to_vtt(result)


class SrtWriter(ResultWriter):
    extension = "srt"

    def render(self, result: SegmentResult) -> str:
        return to_srt(result)


WRITERS: dict[str, type[ResultWriter]] = {
    "json": JsonWriter,
    "csv": CsvWriter,
    "edl": EdlWriter,
    "otio": OtioWriter,
    "fcpxml": FcpxmlWriter,
    "chapters": ChaptersWriter,
    "vtt": VttWriter,
    "srt": SrtWriter,
}


def _writers(formats: list[str]) -> list[ResultWriter]:
    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise UsageError(
            f"unknown output format {', '.join(map(repr, unknown))}; "
            f"choose from: {', '.join(WRITERS)}"
        )
    return [WRITERS[name]() for name in dict.fromkeys(formats)]


def result_paths(video_path: Path, out_dir: Path, formats: list[str]) -> list[Path]:
    """The files ``write_results`` writes for ``video_path``, known before segmenting."""
    return [w.target(video_path, out_dir) for w in _writers(formats)]


def write_results(
    result: SegmentResult, out_dir: Path, formats: list[str], overwrite: bool
) -> list[Path]:
    """Write one file per format into ``out_dir``; nothing is written if any target is refused."""
    writers = _writers(formats)
    targets = [w.target(result.video.path, out_dir) for w in writers]
    if not overwrite:
        refuse_existing(targets)
    _make_dir(out_dir)
    for writer, target in zip(writers, targets, strict=True):
        atomic_write(target, writer.render(result), overwrite)
    return targets


# --- files -----------------------------------------------------------------------------------


def refuse_existing(paths: list[Path]) -> None:
    """Raise ``OutputError`` naming the paths that exist (call it unless overwriting)."""
    existing = [p for p in paths if p.exists()]
    if len(existing) == 1:
        raise OutputError(f"{existing[0]} already exists; pass --overwrite to replace it")
    if existing:
        shown = ", ".join(str(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise OutputError(f"{shown}{more} already exist; pass --overwrite to replace them")


def check_writable(out_dir: Path) -> None:
    """Raise ``OutputError`` unless ``out_dir`` is, or could be created as, a writable directory.

    Creates nothing, so it can run before a long job without leaving an empty directory behind.
    """
    existing = out_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"cannot create output directory {out_dir}: {existing} is not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {existing}; choose another output directory with -o")


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output directory {path} ({exc.strerror or exc}); choose another with -o"
        ) from exc


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it; do it once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: str | bytes, overwrite: bool) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file and ``os.replace``.

    Readers see the old file or the new one, never a partial one. Text is written as UTF-8.
    """
    if path.is_dir():
        raise OutputError(f"{path} is a directory; choose another output path")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it")
    _make_dir(path.parent)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(
            f"cannot write to {path.parent} ({exc.strerror or exc}); choose another directory"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp creates files as 0600
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from exc
        raise


# --- clips -----------------------------------------------------------------------------------


def _decimal(seconds: Fraction) -> str:
    """Seconds with 6 decimals, truncated, for ffmpeg's command line."""
    us = math.floor(seconds * 1_000_000)
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def clip_names(result: SegmentResult, template: str, extension: str) -> list[str]:
    """File names for each scene's clip; ``extension`` includes the dot."""
    width = max(3, len(str(len(result.scenes))))
    names = []
    for scene in result.scenes:
        values = {
            "VIDEO_NAME": result.video.path.stem,
            "SCENE_NUMBER": f"{scene.index + 1:0{width}d}",
            "START_FRAME": str(scene.start),
            "END_FRAME": str(scene.end),
        }
        try:
            name = string.Template(template).substitute(values)
        except (KeyError, ValueError) as exc:
            raise UsageError(
                f"bad clip name template {template!r} ({exc}); "
                f"macros: {', '.join('$' + m for m in TEMPLATE_MACROS)}"
            ) from exc
        if not name or "/" in name or (os.altsep and os.altsep in name):
            raise UsageError(f"clip name template {template!r} must give a plain file name")
        names.append(name + extension)
    if len(set(names)) < len(names):
        raise UsageError(
            f"clip name template {template!r} gives two clips the same name; add $SCENE_NUMBER"
        )
    return names


def _ffmpeg_args(video: VideoInfo, scene: Scene, copy: bool) -> list[str]:
    """Arguments between ``ffmpeg`` and the output file for one scene."""
    source = f"file:{video.path}"  # never a protocol ("http:...") or an option ("-...")
    start = video.start_offset + video.time_of(scene.start)
    duration = video.time_of(scene.end) - video.time_of(scene.start)
    common = ["-nostdin", "-v", "error", "-y"]
    if copy:
        # Stream copy can only start on a keyframe: ffmpeg starts at one near the scene start.
        return [
            *common,
            *("-ss", _decimal(start), "-i", source, "-t", _decimal(duration)),
            *("-map", "0:v:0", "-map", "0:a?", "-c", "copy", "-sn"),
        ]
    # Seek a little early so that rounded timestamps cannot drop the scene's first frame; ffmpeg
    # decodes from the keyframe before and discards frames before the seek point. CFR times are
    # computed (index / fps), so allow half a frame; VFR scene starts are the decoded pts, but a
    # VFR frame may be much shorter than 1 / fps, so allow 1 ms. The audio before the scene is
    # trimmed and both streams are shifted to start at 0.
    margin = 1 / (2 * video.fps)
    if video.vfr:
        margin = min(margin, Fraction(1, 1000))
    seek = Fraction(_decimal(max(Fraction(0), start - margin)))
    lead = _decimal(start - seek)
    args = [
        *common,
        *("-ss", _decimal(seek), "-i", source),
        *("-map", "0:v:0", "-map", "0:a?", "-sn"),
        *("-frames:v", str(scene.length), "-t", _decimal(duration)),
        *("-vf", "setpts=PTS-STARTPTS", *REENCODE_ARGS),
    ]
    if video.vfr:
        # Keep the source's timestamps; the default 1/fps encoder clock merges VFR frames.
        args += ["-enc_time_base", "demux"]
    if video.has_audio:
        args += ["-af", f"atrim=start={lead},asetpts=PTS-{lead}/TB", "-c:a", "aac"]
    return args


def _export_one(exe: str, args: list[str], target: Path, scene_number: int) -> None:
    try:
        # An absolute path, so that ffmpeg cannot read a name like "-x/..." as an option.
        fd, tmp = tempfile.mkstemp(
            dir=target.parent.absolute(), prefix=f".{target.stem}.", suffix=target.suffix
        )
    except OSError as exc:
        raise OutputError(f"cannot write to {target.parent} ({exc.strerror or exc})") from exc
    os.close(fd)
    try:
        try:
            proc = subprocess.run(
                [exe, *args, tmp], stdin=subprocess.DEVNULL, capture_output=True, check=False
            )
        except OSError as exc:
            raise ExportError(
                f"cannot run ffmpeg ({exe}: {exc.strerror or exc}); install ffmpeg or set "
                "SCENECUT_FFMPEG"
            ) from exc
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            reason = lines[-1] if lines else f"exit status {proc.returncode}"
            raise ExportError(f"scene {scene_number}: ffmpeg failed: {reason}")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_clips(
    result: SegmentResult,
    out_dir: Path,
    *,
    template: str = DEFAULT_TEMPLATE,
    copy: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    jobs: int | None = None,
) -> list[Path]:
    """Cut one clip per scene with ffmpeg, in parallel; returns the clip paths in scene order.

    By default each clip is re-encoded (H.264/AAC .mp4) and frame accurate: it holds exactly the
    scene's frames, with audio for the same span. ``copy=True`` copies the streams instead (fast,
    original container) but is keyframe-aligned, not frame accurate: a clip starts at a keyframe
    near the scene start. Template macros: ``$VIDEO_NAME``, ``$SCENE_NUMBER`` (1-based, at least 3
    digits), ``$START_FRAME`` and ``$END_FRAME`` (0-based, end exclusive). ``progress(done,
    total)`` is called from the calling thread. If any clip fails, the others still finish and
    one ``ExportError`` lists the failures.
    """
    video = result.video
    extension = (video.path.suffix or ".mkv") if copy else ".mp4"
    targets = [out_dir / name for name in clip_names(result, template, extension)]
    if not overwrite:
        refuse_existing(targets)
    check_writable(out_dir)
    _make_dir(out_dir)
    if jobs is None:
        cpus = os.cpu_count() or 1
        # x264 is itself multithreaded; a stream copy is bound by I/O instead.
        jobs = min(8, cpus) if copy else max(1, cpus // 2)
    exe = ffmpeg_exe()
    total = len(targets)
    failures: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            pool.submit(
                _export_one, exe, _ffmpeg_args(video, scene, copy), target, scene.index + 1
            ): scene.index
            for scene, target in zip(result.scenes, targets, strict=True)
        }
        try:
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    future.result()
                except ExportError as exc:
                    failures[futures[future]] = str(exc)
                if progress:
                    progress(done, total)
        except BaseException:
            # Ctrl-C or a raising progress callback: drop the queued scenes, let running ones end.
            pool.shutdown(cancel_futures=True)
            raise
    if failures:
        # Sorted by scene; identical messages (ffmpeg missing) are shown once.
        reasons = dict.fromkeys(failures[i] for i in sorted(failures))
        raise ExportError(f"{len(failures)} of {total} clips failed: " + "; ".join(reasons))
    return targets
