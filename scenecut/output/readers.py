"""Reading back what users hand us: a saved ``.scenes.json``, and scene lists used as truth."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

from scenecut.errors import InputError
from scenecut.output.formats import SCHEMA_VERSION
from scenecut.result import Scene, SegmentResult, Settings, Shot, VideoInfo

# --- reading a saved result ------------------------------------------------------------------


def load_result(path: str | Path) -> SegmentResult:
    """Read a ``.scenes.json`` written by scenecut back into a ``SegmentResult``.

    Scores come back as written (rounded to 4 decimals); VFR frame times come back truncated to
    the millisecond, as the JSON stores them. The container start offset is not stored and is 0.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a scenecut JSON file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return _result_from_dict(data)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise InputError(
            f"{path}: not a scenecut result ({type(exc).__name__}: {exc}); "
            "pass the .scenes.json that `scenecut segment` wrote"
        ) from exc


def _result_from_dict(data: dict) -> SegmentResult:
    if not isinstance(data, dict) or "video" not in data or "scenes" not in data:
        raise ValueError("missing 'video' or 'scenes'")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r}, this scenecut reads {SCHEMA_VERSION}")
    v = data["video"]
    fps = Fraction(v["frame_rate"])
    if fps <= 0:
        raise ValueError(f"frame_rate {v['frame_rate']!r} is not positive")
    shots = [
        Shot(s["index"], s["start_frame"], s["end_frame"], tuple(s["keyframes"]))
        for s in data["shots"]
    ]
    frame_times: dict[int, Fraction] = {}
    if v.get("vfr"):
        # Shot starts and ends are the only times a VFR result records.
        for s in data["shots"]:
            frame_times[s["start_frame"]] = Fraction(str(s["start_s"]))
            frame_times[s["end_frame"]] = Fraction(str(s["end_s"]))
        frame_times[v["frame_count"]] = Fraction(str(v["duration_s"]))
    video = VideoInfo(
        path=Path(v["path"]),
        fps=fps,
        frame_count=v["frame_count"],
        width=v["width"],
        height=v["height"],
        codec=v["codec"],
        has_audio=v["has_audio"],
        vfr=bool(v.get("vfr", False)),
        frame_times=frame_times,
    )
    scenes = [
        Scene(
            s["index"],
            s["first_shot"],
            s["last_shot"],
            s["start_frame"],
            s["end_frame"],
            None if s["score"] is None else float(s["score"]),
        )
        for s in data["scenes"]
    ]
    return SegmentResult(
        video=video,
        shots=shots,
        boundary_scores=[float(s) for s in data["boundary_scores"]],
        scenes=scenes,
        settings=Settings(**data["settings"]),
        decoded_frames=data.get("decoded_frames", 0),
    )


# --- scene lists given as the truth -----------------------------------------------------------


def read_truth(path, fps) -> list[float]:
    """Scene start times (seconds) from a ground-truth file: our ``.scenes.json``, a
    PySceneDetect-style CSV (``Start Time (seconds)`` column), or text with one start per line
    as seconds (``12.5``) or a timecode (``00:01:02.500``); ``#`` starts a comment.
    The start of the film (0) is implied and may be omitted."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the truth file ({exc.strerror})") from exc
    try:
        if path.suffix == ".json":
            starts = [float(s["start_s"]) for s in json.loads(text)["scenes"]]
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(line for line in text.splitlines() if line.strip()))
            starts = [float(row["Start Time (seconds)"]) for row in rows]
        else:
            starts = [_parse_time(line.split("#")[0]) for line in text.splitlines()]
            starts = [s for s in starts if s is not None]
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(
            f"{path}: not a scene list (expected scenecut JSON, a scene CSV, or one start time "
            f"per line): {exc}"
        ) from exc
    return sorted({s for s in starts if s > 0.5 / float(fps)})


def _parse_time(token: str) -> float | None:
    token = token.strip()
    if not token:
        return None
    parts = token.split(":")
    if len(parts) > 3:
        raise ValueError(f"bad time {token!r}")
    value = 0.0
    for part in parts:
        value = value * 60 + float(part)
    return value


def read_scene_starts(path: str | Path, fps) -> list[int]:
    """Scene start frames from the same files as ``read_truth``, at ``fps`` frames per second;
    frame-exact from our scenes JSON."""
    path = Path(path)
    if path.suffix == ".json":
        return sorted({scene.start for scene in load_result(path).scenes})
    return sorted({round(seconds * fps) for seconds in read_truth(path, fps)})
