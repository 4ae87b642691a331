"""Scene lists in every format: JSON, CSV, EDL, OTIO, FCPXML, chapters, WebVTT, SubRip.

This package is the only place that turns frame indices into seconds and timecodes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scenecut.errors import UsageError
from scenecut.files import atomic_write, make_dir, refuse_existing
from scenecut.output.timecode import (
    clock,
    dropped_frames,
    millis,
    rational_seconds,
    seconds_str,
    smpte_timecode,
    timecode,
    truncated_seconds,
)
from scenecut.result import Scene, SegmentResult, VideoInfo
from scenecut.version import __version__

SCHEMA_VERSION = 1


def _span(video: VideoInfo, start: int, end: int) -> dict:
    t0, t1 = video.time_of(start), video.time_of(end)
    return {
        "start_s": truncated_seconds(t0),
        "end_s": truncated_seconds(t1),
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
        "scenecut_version": __version__,
        "video": {
            "path": str(video.path),
            "frame_rate": f"{video.fps.numerator}/{video.fps.denominator}",
            "fps": round(float(video.fps), 6),
            "frame_count": video.frame_count,
            "duration_s": truncated_seconds(video.duration),
            "width": video.width,
            "height": video.height,
            "rotation": video.rotation,
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
                "duration_s": truncated_seconds(
                    video.time_of(scene.end) - video.time_of(scene.start)
                ),
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
        (scene, millis(video.time_of(scene.start)), millis(video.time_of(scene.end)))
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
        lines += [f"{clock(start, '.')} --> {clock(end, '.')}", f"Scene {scene.index + 1}", ""]
    return "\n".join(lines)


def to_srt(result: SegmentResult) -> str:
    """SubRip scene markers: ``Scene N (shots a-b)``, shots 1-based like the CSV."""
    lines = []
    for scene, start, end in _scene_millis(result):
        first, last = scene.first_shot + 1, scene.last_shot + 1
        shots = f"shot {first}" if first == last else f"shots {first}-{last}"
        lines += [
            str(scene.index + 1),
            f"{clock(start, ',')} --> {clock(end, ',')}",
            f"Scene {scene.index + 1} ({shots})",
            "",
        ]
    return "\n".join(lines)


# --- writers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """One ``--format``: the file extension after ``<stem>.scenes.`` and its renderer."""

    extension: str
    render: Callable[[SegmentResult], str]


FORMATS: dict[str, Format] = {
    "json": Format("json", to_json),
    "csv": Format("csv", to_csv),
    "edl": Format("edl", to_edl),
    "otio": Format("otio", to_otio),
    "fcpxml": Format("fcpxml", to_fcpxml),
    "chapters": Format("ffmetadata", to_ffmetadata),
    "vtt": Format("vtt", to_vtt),
    "srt": Format("srt", to_srt),
}
FORMATS_HELP = f"Comma-separated scene-list formats: {', '.join(FORMATS)}."


def check_formats(names: list[str]) -> list[str]:
    """``names`` without repeats, in order; ``UsageError`` naming any unknown one."""
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format {', '.join(unknown)}; choose from: {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


def result_path(video_path: Path, out_dir: Path, name: str) -> Path:
    """Where format ``name`` of ``video_path``'s scenes goes: ``<stem>.scenes.<extension>``."""
    return out_dir / f"{video_path.stem}.scenes.{FORMATS[name].extension}"


def result_paths(video_path: Path, out_dir: Path, formats: list[str]) -> list[Path]:
    """The files ``write_results`` writes for ``video_path``, known before segmenting."""
    return [result_path(video_path, out_dir, name) for name in check_formats(formats)]


def write_results(
    result: SegmentResult, out_dir: Path, formats: list[str], overwrite: bool
) -> list[Path]:
    """Write one file per format into ``out_dir``; nothing is written if any target is refused."""
    names = check_formats(formats)
    targets = [result_path(result.video.path, out_dir, name) for name in names]
    if not overwrite:
        refuse_existing(targets)
    make_dir(out_dir)
    for name, target in zip(names, targets, strict=True):
        atomic_write(target, FORMATS[name].render(result), overwrite)
    return targets
