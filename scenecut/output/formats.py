"""Scene lists in every format: JSON, CSV, chapters, WebVTT, SubRip, and the editor timelines
of ``editors`` (EDL, OTIO, FCPXML, FCP7 XML, MLT).

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
from scenecut.output.editors import to_edl, to_fcp7, to_fcpxml, to_mlt, to_otio
from scenecut.output.timecode import clock, millis, seconds_str, timecode, truncated_seconds
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
            # The SMPTE timecode of frame 0 editor files count from ("HH:MM:SS;FF": drop-frame).
            "start_timecode": video.start_timecode,
            # Seconds from the container's start to frame 0 (ffmpeg's -ss origin), exact.
            "start_offset": f"{video.start_offset.numerator}/{video.start_offset.denominator}",
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
        # Exact, not rounded: `scenecut export` re-thresholds them as `segment` would have.
        "boundary_scores": list(result.boundary_scores),
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
    "fcp7": Format("xml", to_fcp7),
    "mlt": Format("mlt", to_mlt),
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
