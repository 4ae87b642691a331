"""Reading back what users hand us: a saved ``.scenes.json``, and scene lists used as truth.

Both are untrusted files: read to a size limit, decoded strictly, and checked field by field,
so a damaged or foreign file is one ``InputError`` naming it, never a crash further on.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
from fractions import Fraction
from pathlib import Path

from scenecut.errors import InputError
from scenecut.output.editors import start_frame
from scenecut.output.formats import SCHEMA_VERSION
from scenecut.output.timecode import parse_timecode
from scenecut.result import Scene, SegmentResult, Settings, Shot, VideoInfo

MAX_BYTES = 64 * 2**20  # a result of a 100-hour film is a few tens of MB
MAX_FRAME = 2**53  # frame numbers stay exact as floats
MAX_SECONDS = 1e8  # three years: a time beyond any film, but far from float overflow
_RATE = re.compile(r"\d{1,12}(/\d{1,12})?|\d{1,12}\.\d{1,12}")


class _Shape(ValueError):
    """A field of an untrusted file has the wrong type or an impossible value."""


def read_bytes(path: Path, limit: int, what: str) -> bytes:
    """The file's bytes, at most ``limit``; one clear ``InputError`` for a file that is missing,
    a folder, unreadable or larger."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise InputError(f"{path}: over {limit // 2**20} MiB, too large for {what}")
    return data


def _read_text(path: Path, what: str) -> str:
    """The file's text (UTF-8, a byte-order mark allowed), at most ``MAX_BYTES`` of it."""
    data = read_bytes(path, MAX_BYTES, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start} is {data[exc.start : exc.start + 1]!r}), "
            f"so not {what}"
        ) from None


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(value, where: str, low: int = 0, high: int = MAX_FRAME) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Shape(f"{where} is {_show(value)}, not a whole number")
    if not low <= value <= high:
        raise _Shape(f"{where} is {_show(value)}, outside {low}..{high}")
    return value


def _real(value, where: str, low: float = 0.0, high: float = MAX_SECONDS) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Shape(f"{where} is {_show(value)}, not a number")
    if not (isinstance(value, int) or math.isfinite(value)):
        raise _Shape(f"{where} is {_show(value)}, not a finite number")
    if not low <= value <= high:
        raise _Shape(f"{where} is {_show(value)}, outside {low:g}..{high:g}")
    return float(value)


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise _Shape(f"{where} is {_show(value)}, not a string")
    return value


def _path(value, where: str) -> Path:
    """A path a file system could hold: no NUL, no name over 255 bytes, 4096 bytes in all."""
    text = _text(value, where)
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate: not a name this system can spell
        raw = b"\0"
    names = raw.replace(b"\\", b"/").split(b"/")
    if b"\0" in raw or len(raw) > 4096 or any(len(name) > 255 for name in names):
        raise _Shape(f"{where} is {_show(value)}, not a file path")
    return Path(text)


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Shape(f"{where} is {_show(value)}, not true or false")
    return value


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise _Shape(f"{where} is {_show(value)}, not a list")
    return value


def _get(data, key: str, where: str):
    if not isinstance(data, dict):
        raise _Shape(f"{where} is {_show(data)}, not an object")
    if key not in data:
        raise _Shape(f"{where} has no {key!r}")
    return data[key]


# --- reading a saved result ------------------------------------------------------------------


def load_result(path: str | Path) -> SegmentResult:
    """Read a ``.scenes.json`` written by scenecut back into a ``SegmentResult``.

    Boundary scores and the container start offset come back exact (files from before they were
    exact: scores rounded to 4 decimals, offset 0); scene scores come back rounded to 4 decimals
    and VFR frame times truncated to the millisecond, as the JSON stores them.
    ``InputError`` for a file that is not such a result, damaged or edited into one that
    contradicts itself (a shot past the last frame, a scene of shots that don't exist...).
    """
    path = Path(path)
    text = _read_text(path, "a scenecut JSON file")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, too many digits, nesting
        raise InputError(f"{path}: not a JSON file ({exc})") from None
    try:
        return _result_from_dict(data)
    except (
        KeyError,
        TypeError,
        ValueError,
        ZeroDivisionError,
        OverflowError,
        AttributeError,
    ) as exc:
        detail = str(exc) if isinstance(exc, _Shape) else f"{type(exc).__name__}: {exc}"
        raise InputError(
            f"{path}: not a scenecut result ({detail}); "
            "pass the .scenes.json that `scenecut segment` wrote"
        ) from exc


def _frame_rate(value) -> Fraction:
    if isinstance(value, str) and _RATE.fullmatch(value):
        fps = Fraction(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        fps = Fraction(repr(_real(value, "video.frame_rate", 0, 10**6)))
    else:
        raise _Shape(f"video.frame_rate is {_show(value)}, not a rate like '30000/1001'")
    if not Fraction(1, 10**6) <= fps <= 10**6:
        raise _Shape(f"video.frame_rate {value!r} is not a frame rate")
    return fps


def _start_offset(value) -> Fraction:
    if not (isinstance(value, str) and _RATE.fullmatch(value)):
        raise _Shape(f"video.start_offset is {_show(value)}, not seconds like '1001/24000'")
    offset = Fraction(value)
    if offset > MAX_SECONDS:
        raise _Shape(f"video.start_offset {value!r} is beyond any film")
    return offset


def _timecode(value, where: str) -> str | None:
    """An optional SMPTE timecode (files from before timecodes have none)."""
    if value is None:
        return None
    try:
        parse_timecode(_text(value, where))
    except ValueError as exc:
        raise _Shape(f"{where}: {exc}") from None
    return value


def _rotation(value) -> int:
    if isinstance(value, bool) or value not in (0, 90, 180, 270):
        raise _Shape(f"video.rotation is {_show(value)}, not 0, 90, 180 or 270")
    return int(value)


def _result_from_dict(data) -> SegmentResult:
    if not isinstance(data, dict) or "video" not in data or "scenes" not in data:
        raise _Shape("missing 'video' or 'scenes'")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _Shape(f"schema_version {_show(version)}, this scenecut reads {SCHEMA_VERSION}")
    v = data["video"]
    fps = _frame_rate(_get(v, "frame_rate", "video"))
    frame_count = _whole(_get(v, "frame_count", "video"), "video.frame_count")
    vfr = _flag(v.get("vfr", False), "video.vfr")
    shots = _shots(_list(_get(data, "shots", "the file"), "shots"), frame_count)
    frame_times: dict[int, Fraction] = {}
    if vfr:
        # Shot starts and ends are the only times a VFR result records.
        for i, s in enumerate(data["shots"]):
            for key, frame in (("start_s", "start_frame"), ("end_s", "end_frame")):
                seconds = _real(_get(s, key, f"shots[{i}]"), f"shots[{i}].{key}")
                frame_times[s[frame]] = Fraction(repr(seconds))
        duration = _real(_get(v, "duration_s", "video"), "video.duration_s")
        frame_times[frame_count] = Fraction(repr(duration))
        times = [frame_times[frame] for frame in sorted(frame_times)]
        if any(later < earlier for earlier, later in itertools.pairwise(times)):
            raise _Shape("the VFR shot times (start_s, end_s) go backwards")
    video = VideoInfo(
        path=_path(_get(v, "path", "video"), "video.path"),
        fps=fps,
        frame_count=frame_count,
        width=_whole(_get(v, "width", "video"), "video.width"),
        height=_whole(_get(v, "height", "video"), "video.height"),
        rotation=_rotation(v.get("rotation", 0)),  # files from before rotation: upright
        codec=_text(_get(v, "codec", "video"), "video.codec"),
        has_audio=_flag(_get(v, "has_audio", "video"), "video.has_audio"),
        start_offset=_start_offset(v.get("start_offset", "0")),
        vfr=vfr,
        frame_times=frame_times,
        start_timecode=_timecode(v.get("start_timecode"), "video.start_timecode"),
    )
    try:
        start_frame(video)
    except ValueError as exc:
        raise _Shape(f"video.start_timecode: {exc}") from None
    scores = _list(_get(data, "boundary_scores", "the file"), "boundary_scores")
    if len(scores) != len(shots) - 1:
        raise _Shape(f"{len(scores)} boundary_scores for {len(shots)} shots, not one per gap")
    return SegmentResult(
        video=video,
        shots=shots,
        boundary_scores=[_real(s, f"boundary_scores[{i}]", 0, 1) for i, s in enumerate(scores)],
        scenes=_scenes(_list(data["scenes"], "scenes"), len(shots), frame_count),
        settings=_settings(_get(data, "settings", "the file")),
        decoded_frames=_whole(data.get("decoded_frames", 0), "decoded_frames"),
    )


def _shots(items: list, frame_count: int) -> list[Shot]:
    if not items:
        raise _Shape("no shots")
    shots: list[Shot] = []
    end = 0
    for i, s in enumerate(items):
        where = f"shots[{i}]"
        start = _whole(_get(s, "start_frame", where), f"{where}.start_frame", end, frame_count)
        end = _whole(_get(s, "end_frame", where), f"{where}.end_frame", start + 1, frame_count)
        keyframes = _list(_get(s, "keyframes", where), f"{where}.keyframes")
        keys = tuple(
            _whole(k, f"{where}.keyframes[{j}]", start, end - 1) for j, k in enumerate(keyframes)
        )
        shots.append(Shot(_whole(_get(s, "index", where), f"{where}.index"), start, end, keys))
    return shots


def _scenes(items: list, shots: int, frame_count: int) -> list[Scene]:
    if not items:
        raise _Shape("no scenes")
    scenes: list[Scene] = []
    for i, s in enumerate(items):
        where = f"scenes[{i}]"
        first = _whole(_get(s, "first_shot", where), f"{where}.first_shot", 0, shots - 1)
        last = _whole(_get(s, "last_shot", where), f"{where}.last_shot", first, shots - 1)
        start = _whole(_get(s, "start_frame", where), f"{where}.start_frame", 0, frame_count)
        end = _whole(_get(s, "end_frame", where), f"{where}.end_frame", start + 1, frame_count)
        score = _get(s, "score", where)
        scenes.append(
            Scene(
                _whole(_get(s, "index", where), f"{where}.index"),
                first,
                last,
                start,
                end,
                None if score is None else _real(score, f"{where}.score", 0, 1),
            )
        )
    return scenes


def _settings(data) -> Settings:
    def optional(key: str, check, *args):
        value = _get(data, key, "settings")
        return None if value is None else check(value, f"settings.{key}", *args)

    return Settings(
        detector=_text(_get(data, "detector", "settings"), "settings.detector"),
        detector_threshold=optional("detector_threshold", _real, 0, 1e9),
        min_shot_frames=_whole(
            _get(data, "min_shot_frames", "settings"), "settings.min_shot_frames"
        ),
        model=_text(_get(data, "model", "settings"), "settings.model"),
        threshold=_real(_get(data, "threshold", "settings"), "settings.threshold", 0.0, 1.0),
        scenes=optional("scenes", _whole, 1),
        min_scene_frames=_whole(
            _get(data, "min_scene_frames", "settings"), "settings.min_scene_frames"
        ),
        start_timecode=_timecode(data.get("start_timecode"), "settings.start_timecode"),
    )


# --- scene lists given as the truth -----------------------------------------------------------

TRUTH_FORMATS = "scenecut JSON, a scene CSV, or one start time per line"
CSV_START = "Start Time (seconds)"


def read_truth(path, fps) -> list[float]:
    """Scene start times (seconds) from a ground-truth file (see ``read_truth_seconds``) after
    the film's first frame: the start of the film is implied and may be omitted."""
    return truth_starts(read_truth_seconds(path), fps)


def truth_starts(seconds: list[float], fps) -> list[float]:
    """``seconds`` without the film's own start (any time within half a frame of 0)."""
    return [s for s in seconds if s > 0.5 / float(fps)]


def read_truth_seconds(path) -> list[float]:
    """Every scene start time (seconds, sorted, each once) in a ground-truth file: our
    ``.scenes.json``, a PySceneDetect-style CSV (``Start Time (seconds)`` column), or text with
    one start per line as seconds (``12.5``) or a timecode (``00:01:02.500``); ``#`` starts a
    comment. ``InputError`` naming the file for anything else: not UTF-8 text, no start in it,
    a time that is not a finite number of seconds from 0."""
    path = Path(path)
    text = _read_text(path, "a scene list")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            starts = _json_starts(text)
        elif suffix == ".csv":
            starts = _csv_starts(text)
        else:
            starts = _text_starts(text)
    except (_Shape, csv.Error, RecursionError) as exc:
        raise InputError(f"{path}: not a scene list ({exc}); expected {TRUTH_FORMATS}") from None
    if not starts:
        hint = "; write 0 for a film that is one scene" if suffix not in (".json", ".csv") else ""
        raise InputError(f"{path}: no scene start in it{hint}")
    return sorted(set(starts))


def _json_starts(text: str) -> list[float]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _Shape(f"not JSON: {exc}") from None
    scenes = _list(_get(data, "scenes", "the file"), "scenes")
    return [
        _real(_get(s, "start_s", f"scenes[{i}]"), f"scenes[{i}].start_s")
        for i, s in enumerate(scenes)
    ]


def _csv_starts(text: str) -> list[float]:
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Timecode List:"):  # PySceneDetect's cut list row
        lines = lines[1:]
    reader = csv.DictReader(lines)
    if CSV_START not in (reader.fieldnames or ()):
        raise _Shape(f"no {CSV_START!r} column")
    return [_seconds(row[CSV_START] or "", f"row {n}") for n, row in enumerate(reader, 1)]


def _text_starts(text: str) -> list[float]:
    starts = []
    for number, line in enumerate(text.splitlines(), 1):
        token = line.split("#")[0].strip()
        if token:
            starts.append(_seconds(token, f"line {number}"))
    return starts


def _seconds(token: str, where: str) -> float:
    """Seconds (``12.5``) or a timecode (``00:01:02.500``) as seconds from 0."""
    parts = token.strip().split(":")
    try:
        numbers = [float(part) for part in parts] if len(parts) <= 3 else []
    except ValueError:
        numbers = []
    if not numbers:
        raise _Shape(f"{where}: {_show(token)} is not a time (seconds like 12.5, or HH:MM:SS.mmm)")
    if not all(math.isfinite(n) for n in numbers):
        raise _Shape(f"{where}: {_show(token)} is not a finite time")
    if any(n < 0 for n in numbers):
        raise _Shape(f"{where}: {_show(token)} is negative; times count from the film's start")
    value = 0.0
    for number in numbers:
        value = value * 60 + number
    if value > MAX_SECONDS:
        raise _Shape(f"{where}: {_show(token)} is beyond any film")
    return value


def read_scene_starts(path: str | Path, fps) -> list[int]:
    """Scene start frames from the same files as ``read_truth``, at ``fps`` frames per second;
    frame-exact from our scenes JSON."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return sorted({scene.start for scene in load_result(path).scenes})
    return sorted({round(seconds * fps) for seconds in read_truth(path, fps)})
