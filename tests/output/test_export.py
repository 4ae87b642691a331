"""Writers and clip export, on small generated videos with known colour changes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import time
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest

from scenecut.errors import ExportError, OutputError, UsageError
from scenecut.files import atomic_write, check_writable, refuse_existing
from scenecut.output.clips import export_clips
from scenecut.output.formats import (
    CSV_HEADER,
    result_paths,
    result_to_dict,
    to_csv,
    to_json,
    write_results,
)
from scenecut.output.timecode import seconds_str, timecode
from scenecut.result import SegmentResult, Settings, Shot, VideoInfo, scenes_from_boundaries
from scenecut.video import ffmpeg_exe

PALETTE = {"red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}
SETTINGS = Settings(
    detector="content",
    detector_threshold=27.0,
    min_shot_frames=15,
    model="tiny",
    threshold=0.5,
    scenes=None,
    min_scene_frames=0,
)


def make_result(
    path: Path,
    fps: Fraction,
    frame_count: int,
    cuts: list[int],
    boundaries: list[int],
    **video_fields,
) -> SegmentResult:
    """Shots split at ``cuts``; scenes open after the gaps in ``boundaries``."""
    edges = [0, *cuts, frame_count]
    shots = [Shot(i, a, b, (a, b - 1)) for i, (a, b) in enumerate(pairwise(edges))]
    scores = [round(0.1 + 0.8 * (i in boundaries), 1) + 0.01234 for i in range(len(cuts))]
    fields = {"width": 64, "height": 48, "codec": "h264", "has_audio": True, **video_fields}
    video = VideoInfo(path=path, fps=fps, frame_count=frame_count, **fields)
    scenes = scenes_from_boundaries(shots, boundaries, scores)
    return SegmentResult(video, shots, scores, scenes, SETTINGS, decoded_frames=frame_count)


def make_video(path: Path, segments: list[tuple[str, str, int]], *, vfr: bool = False) -> Path:
    """Solid-colour segments ``(colour, rate, frames)`` plus a sine tone; keyframes every 40."""
    args = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
    chains = []
    for i, (colour, rate, frames) in enumerate(segments):
        args += ["-f", "lavfi", "-i", f"color=c={colour}:s=64x48:r={rate}"]
        # A millisecond clock keeps the frame times of every segment exact when they are mixed.
        timebase = ",settb=1/1000" if vfr else ""
        chains.append(f"[{i}:v]trim=end_frame={frames},setpts=PTS-STARTPTS{timebase}[v{i}]")
    duration = sum(Fraction(n) / Fraction(rate) for _, rate, n in segments)
    args += ["-f", "lavfi", "-i", f"sine=f=440:sample_rate=48000:d={float(duration)}"]
    labels = "".join(f"[v{i}]" for i in range(len(segments)))
    graph = ";".join([*chains, f"{labels}concat=n={len(segments)}[v]"])
    args += ["-filter_complex", graph, "-map", "[v]", "-map", f"{len(segments)}:a"]
    if vfr:
        args += ["-fps_mode", "passthrough", "-enc_time_base", "filter"]
    args += ["-c:v", "libx264", "-g", "40", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)]
    subprocess.run(args, check=True)
    return path


def colour_of(frame) -> str:
    mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return min(
        PALETTE,
        key=lambda name: sum((m - c) ** 2 for m, c in zip(mean, PALETTE[name], strict=True)),
    )


def read_clip(path: Path) -> tuple[list[str], list[float], float]:
    """Colour and time of every video frame, and the audio duration in seconds."""
    import av

    with av.open(str(path)) as container:
        frames = [(colour_of(f), float(f.time)) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        assert container.streams.audio, f"{path.name} has no audio stream"
        stream = container.streams.audio[0]
        audio = float(stream.duration * stream.time_base)
    return [c for c, _ in frames], [t for _, t in frames], audio


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    """4 s at 25 fps: red, green, blue, white, 25 frames each. Cuts at 25 and 75 are not
    keyframes (GOP 40), so frame accuracy needs decoding from an earlier keyframe."""
    path = tmp_path_factory.mktemp("src") / "colours.mp4"
    return make_video(path, [(c, "25", 25) for c in PALETTE])


def colours_result(path: Path) -> SegmentResult:
    # Scenes: [0, 25) red | [25, 75) green + blue | [75, 100) white.
    return make_result(path, Fraction(25), 100, [25, 50, 75], [0, 2])


def ntsc_result() -> SegmentResult:
    return make_result(Path("/videos/ntsc.mov"), Fraction(30000, 1001), 100, [2, 50], [0])


# --- time formatting -------------------------------------------------------------------------


def test_seconds_and_timecodes_truncate():
    ntsc = Fraction(1001, 30000)
    assert seconds_str(ntsc) == "0.033"
    assert seconds_str(2 * ntsc) == "0.066"  # 0.0667: rounding would say 0.067
    assert seconds_str(Fraction(0)) == "0.000"
    assert seconds_str(Fraction(7, 2)) == "3.500"
    assert timecode(100 * ntsc) == "00:00:03.336"  # 3.3367
    assert timecode(Fraction(3723) + Fraction(9999, 10000)) == "01:02:03.999"
    assert timecode(Fraction(360000)) == "100:00:00.000"


# --- JSON ------------------------------------------------------------------------------------


def test_json_schema_and_round_trip():
    result = colours_result(Path("/videos/colours.mp4"))
    doc = json.loads(to_json(result))
    assert doc == result_to_dict(result)
    assert to_json(result).endswith("}\n")
    assert set(doc) == {
        "schema_version",
        "scenecut_version",
        "video",
        "settings",
        "shots",
        "boundary_scores",
        "scenes",
        "decoded_frames",
    }
    assert doc["schema_version"] == 1
    assert doc["video"] == {
        "path": "/videos/colours.mp4",
        "frame_rate": "25/1",
        "fps": 25.0,
        "frame_count": 100,
        "duration_s": 4.0,
        "width": 64,
        "height": 48,
        "rotation": 0,
        "codec": "h264",
        "has_audio": True,
        "vfr": False,
        "start_timecode": None,
        "start_offset": "0/1",
    }
    assert doc["settings"]["model"] == "tiny"
    assert doc["settings"]["scenes"] is None
    assert doc["decoded_frames"] == 100
    assert doc["boundary_scores"] == result.boundary_scores  # exact, for `scenecut export`
    assert doc["shots"][1] == {
        "index": 1,
        "start_frame": 25,
        "end_frame": 50,
        "start_s": 1.0,
        "end_s": 2.0,
        "start_tc": "00:00:01.000",
        "end_tc": "00:00:02.000",
        "keyframes": [25, 49],
    }
    assert [(s["start_frame"], s["end_frame"]) for s in doc["scenes"]] == [
        (0, 25),
        (25, 75),
        (75, 100),
    ]
    middle = doc["scenes"][1]
    assert middle["first_shot"] == 1
    assert middle["last_shot"] == 2
    assert middle["shots"] == [1, 2]
    assert (middle["start_s"], middle["end_s"], middle["duration_s"]) == (1.0, 3.0, 2.0)
    assert (middle["start_tc"], middle["end_tc"]) == ("00:00:01.000", "00:00:03.000")
    assert middle["score"] == 0.9123
    assert doc["scenes"][0]["score"] is None


def test_json_ntsc_seconds_are_truncated():
    doc = result_to_dict(ntsc_result())
    assert doc["video"]["frame_rate"] == "30000/1001"
    assert doc["video"]["fps"] == 29.97003
    assert doc["video"]["duration_s"] == 3.336
    first, second = doc["scenes"]
    assert (first["end_frame"], first["end_s"], first["end_tc"]) == (2, 0.066, "00:00:00.066")
    assert second["start_s"] == 0.066
    assert second["end_s"] == 3.336
    assert second["duration_s"] == 3.269  # 98 frames = 3.26993 s
    assert doc["shots"][1]["end_s"] == 1.668  # frame 50 = 1.66833 s


def test_json_uses_recorded_times_for_vfr():
    result = make_result(
        Path("v.mkv"),
        Fraction(20),
        60,
        [25, 35],
        [0, 1],
        vfr=True,
        frame_times={25: Fraction(1), 35: Fraction(2), 60: Fraction(3)},
    )
    doc = result_to_dict(result)
    assert doc["video"]["vfr"] is True
    assert doc["video"]["duration_s"] == 3.0
    assert [(s["start_s"], s["end_s"]) for s in doc["scenes"]] == [
        (0.0, 1.0),
        (1.0, 2.0),
        (2.0, 3.0),
    ]


# --- CSV -------------------------------------------------------------------------------------


def test_csv_matches_pyscenedetect_columns():
    rows = list(csv.reader(io.StringIO(to_csv(colours_result(Path("colours.mp4"))))))
    assert rows[0] == CSV_HEADER
    assert rows[0][:10] == [
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
    ]
    assert rows[1] == [
        "1", "1", "00:00:00.000", "0.000", "25", "00:00:01.000", "1.000",
        "25", "00:00:01.000", "1.000", "1", "1", "",
    ]  # fmt: skip
    assert rows[2] == [
        "2", "26", "00:00:01.000", "1.000", "75", "00:00:03.000", "3.000",
        "50", "00:00:02.000", "2.000", "2", "3", "0.9123",
    ]  # fmt: skip
    assert len(rows) == 4


def test_csv_ntsc_truncates():
    rows = list(csv.reader(io.StringIO(to_csv(ntsc_result()))))
    assert rows[1][4:7] == ["2", "00:00:00.066", "0.066"]
    assert rows[2][1:4] == ["3", "00:00:00.066", "0.066"]


# --- writing files ---------------------------------------------------------------------------


def test_write_results_writes_atomically_and_refuses_overwrite(tmp_path):
    result = colours_result(Path("/videos/colours.mp4"))
    out = tmp_path / "new" / "dir"
    paths = write_results(result, out, ["json", "csv"], overwrite=False)
    assert paths == [out / "colours.scenes.json", out / "colours.scenes.csv"]
    assert json.loads(paths[0].read_text())["scenes"][2]["start_frame"] == 75
    assert paths[1].read_text().startswith("Scene Number,")
    assert sorted(os.listdir(out)) == ["colours.scenes.csv", "colours.scenes.json"]

    paths[0].write_text("old")
    paths[1].unlink()
    with pytest.raises(OutputError, match="--overwrite"):
        write_results(result, out, ["json", "csv"], overwrite=False)
    assert paths[0].read_text() == "old"
    assert not paths[1].exists()  # a refused run writes nothing

    write_results(result, out, ["csv", "json", "json"], overwrite=True)
    assert json.loads(paths[0].read_text()) == result_to_dict(result)
    assert sorted(os.listdir(out)) == ["colours.scenes.csv", "colours.scenes.json"]


def test_write_results_rejects_unknown_format(tmp_path):
    with pytest.raises(UsageError, match="json, csv"):
        write_results(colours_result(Path("a.mp4")), tmp_path, ["json", "xml"], overwrite=False)
    assert os.listdir(tmp_path) == []


def test_checks_before_segmenting(tmp_path):
    paths = result_paths(Path("in/movie.mkv"), tmp_path / "out", ["csv", "json"])
    assert paths == [tmp_path / "out" / "movie.scenes.csv", tmp_path / "out" / "movie.scenes.json"]
    check_writable(tmp_path / "out" / "deeper")
    assert os.listdir(tmp_path) == []  # checking creates nothing
    refuse_existing(paths)
    paths[1].parent.mkdir()
    paths[1].write_text("{}")
    with pytest.raises(OutputError, match=r"movie\.scenes\.json already exists; pass --overwrite"):
        refuse_existing(paths)
    with pytest.raises(OutputError, match="not a directory"):
        check_writable(paths[1] / "sub")
    with pytest.raises(UsageError, match="choose from: json, csv"):
        result_paths(Path("movie.mkv"), tmp_path, ["xml"])


def test_atomic_write_refuses_existing_and_replaces_with_overwrite(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, "one", overwrite=False)
    with pytest.raises(OutputError, match="--overwrite"):
        atomic_write(target, "two", overwrite=False)
    assert target.read_text() == "one"
    atomic_write(target, b"three", overwrite=True)
    assert target.read_text() == "three"
    assert os.listdir(tmp_path) == ["a.txt"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OutputError, match="No space left"):
        atomic_write(target, "new", overwrite=True)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_atomic_write_unwritable_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot create output directory"):
        atomic_write(blocker / "sub" / "a.json", "{}", overwrite=False)

    if os.geteuid() == 0:
        return  # root can write anywhere
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            atomic_write(locked / "a.json", "{}", overwrite=False)
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


# --- clips -----------------------------------------------------------------------------------


def test_export_clips_are_frame_accurate(colours, tmp_path):
    result = colours_result(colours)
    calls = []
    paths = export_clips(result, tmp_path / "clips", progress=lambda d, t: calls.append((d, t)))
    assert [p.name for p in paths] == [
        "colours-Scene-001.mp4",
        "colours-Scene-002.mp4",
        "colours-Scene-003.mp4",
    ]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    expected = [["red"] * 25, ["green"] * 25 + ["blue"] * 25, ["white"] * 25]
    for path, scene, want in zip(paths, result.scenes, expected, strict=True):
        colours_seen, times, audio = read_clip(path)
        assert len(colours_seen) == scene.length, path.name
        assert colours_seen == want, path.name
        assert times[0] == 0.0
        assert abs(audio - scene.length / 25) < 0.05, path.name
    assert sorted(os.listdir(tmp_path / "clips")) == [p.name for p in paths]


def test_export_clips_ntsc_rate(tmp_path):
    rate = "30000/1001"
    video = make_video(tmp_path / "ntsc.mp4", [("red", rate, 31), ("blue", rate, 29)])
    result = make_result(video, Fraction(30000, 1001), 60, [31], [0])
    paths = export_clips(result, tmp_path / "clips", template="$START_FRAME-$END_FRAME")
    assert [p.name for p in paths] == ["0-31.mp4", "31-60.mp4"]
    assert read_clip(paths[0])[0] == ["red"] * 31
    assert read_clip(paths[1])[0] == ["blue"] * 29


def test_export_clips_vfr(tmp_path):
    # 50 fps frames before a cut with a nominal rate far below that: seeking half a nominal frame
    # early would take in the frame before the cut. Mixing 50 and 29.97 fps makes ffmpeg's default
    # encoder clock too coarse for the 50 fps frames.
    segments = [("red", "25", 25), ("blue", "50", 50), ("green", "30000/1001", 30)]
    video = make_video(tmp_path / "vfr.mp4", segments, vfr=True)
    times = {25: Fraction(1), 75: Fraction(2), 105: Fraction(3) + Fraction(1, 1000)}
    result = make_result(video, Fraction(20), 105, [25, 75], [0, 1], vfr=True, frame_times=times)
    paths = export_clips(result, tmp_path / "clips")
    for path, (colour, _, frames) in zip(paths, segments, strict=True):
        colours_seen, _, audio = read_clip(path)
        assert colours_seen == [colour] * frames, path.name
        assert abs(audio - 1) < 0.05


def test_export_clips_copy(colours, tmp_path):
    result = colours_result(colours)
    start = time.monotonic()
    paths = export_clips(result, tmp_path, copy=True)
    assert time.monotonic() - start < 10
    assert [p.name for p in paths] == [f"colours-Scene-00{i}.mp4" for i in (1, 2, 3)]
    for path in paths:
        colours_seen, _, _ = read_clip(path)
        assert colours_seen  # keyframe-aligned, so only roughly the scene's frames
    assert sorted(os.listdir(tmp_path)) == [p.name for p in paths]


def test_export_clips_odd_names(colours, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(colours, "-odd:name.mp4")
    result = colours_result(Path("-odd:name.mp4"))
    paths = export_clips(result, Path("-out"), copy=True)
    assert paths[0] == Path("-out", "-odd:name-Scene-001.mp4")
    assert all(p.stat().st_size > 100 for p in paths)


def test_export_clips_refuses_existing(colours, tmp_path):
    result = colours_result(colours)
    (tmp_path / "colours-Scene-002.mkv").write_text("old")
    colours_mkv = result.video.path.with_suffix(".mkv")
    shutil.copy(colours, colours_mkv)
    try:
        mkv_result = colours_result(colours_mkv)
        with pytest.raises(OutputError, match="--overwrite"):
            export_clips(mkv_result, tmp_path, copy=True)
        assert os.listdir(tmp_path) == ["colours-Scene-002.mkv"]
        export_clips(mkv_result, tmp_path, copy=True, overwrite=True)
        assert (tmp_path / "colours-Scene-002.mkv").stat().st_size > 100
        assert len(os.listdir(tmp_path)) == 3
    finally:
        colours_mkv.unlink()


def test_export_clips_bad_template(colours, tmp_path):
    result = colours_result(colours)
    with pytest.raises(UsageError, match=r"\$SCENE_NUMBER"):
        export_clips(result, tmp_path, template="$VIDEO_NAME-$SCENE")
    with pytest.raises(UsageError, match="same name"):
        export_clips(result, tmp_path, template="$VIDEO_NAME")
    with pytest.raises(UsageError, match="plain file name"):
        export_clips(result, tmp_path, template="sub/$SCENE_NUMBER")
    assert os.listdir(tmp_path) == []


def test_export_clips_ffmpeg_failure_leaves_nothing(colours, tmp_path, monkeypatch):
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` executable")
    monkeypatch.setenv("SCENECUT_FFMPEG", false)
    with pytest.raises(ExportError, match=r"3 of 3 clips failed: scene 1: .*exit status 1"):
        export_clips(colours_result(colours), tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


def test_export_clips_reports_ffmpeg_error_line(tmp_path):
    result = colours_result(tmp_path / "missing.mp4")
    with pytest.raises(ExportError, match=r"scene 2: ffmpeg failed: .*No such file"):
        export_clips(result, tmp_path, jobs=2)
    assert os.listdir(tmp_path) == []


def test_export_clips_missing_ffmpeg(colours, tmp_path, monkeypatch):
    monkeypatch.setenv("SCENECUT_FFMPEG", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(ExportError, match="SCENECUT_FFMPEG") as info:
        export_clips(colours_result(colours), tmp_path / "out")
    assert str(info.value).count("cannot run ffmpeg") == 1
    assert os.listdir(tmp_path / "out") == []


def test_variable_frame_rate_times_and_clips(tmp_path):
    """25, 50 and 29.97 fps segments in one file: times come from timestamps, not index / fps,
    and the exported clips hold exactly each shot's frames."""
    import av

    import scenecut

    segments = [("red", "25", 25), ("blue", "50", 50), ("green", "30000/1001", 30)]
    video = make_video(tmp_path / "vfr.mp4", segments, vfr=True)
    # classic: the fused default lets the flat dark-blue shot (a plain card) join the next scene
    result = scenecut.segment(video, detector="content", threshold=0.0, model="classic")
    assert [(s.start, s.end) for s in result.shots] == [(0, 25), (25, 75), (75, 105)]
    assert result.video.vfr
    assert result.video.time_of(25) == Fraction(1)
    assert result.video.time_of(75) == Fraction(2)
    assert abs(float(result.video.duration) - 3.0) < 0.01
    clips = export_clips(result, tmp_path / "clips")
    for clip, (colour, _, frames) in zip(clips, segments, strict=True):
        with av.open(str(clip)) as container:
            seen = [colour_of(f) for f in container.decode(video=0)]
        assert seen == [colour] * frames
