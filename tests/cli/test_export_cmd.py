"""``scenecut export``: a saved result's outputs, regrouped from its boundary scores without
decoding, byte for byte what ``segment`` writes; and the ``-f``, ``--stdout`` and ``--scenes``
rules both commands share."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.output.formats import FORMATS, to_json
from scenecut.output.readers import load_result
from scenecut.result import SegmentResult, Settings, Shot, VideoInfo
from scenecut.segment import group_shots, regroup, segment
from scenecut.video import ffmpeg_exe

runner = CliRunner()
ALL = ",".join(FORMATS)


def _run(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def _segment(film: Path, out: Path, *args: str) -> dict:
    res = runner.invoke(app, ["segment", str(film), "-o", str(out), "-q", *args])
    assert res.exit_code == 0, res.output
    return json.loads((out / f"{film.stem}.scenes.json").read_text())


@pytest.fixture(scope="module")
def saved(film, tmp_path_factory) -> Path:
    """The film segmented at threshold 0.9: its JSON."""
    out = tmp_path_factory.mktemp("saved")
    _segment(film.path, out, "--threshold", "0.9")
    return out / "film.scenes.json"


def test_export_regroups_to_what_segment_writes(film, saved, tmp_path):
    """Every output of `segment --threshold 0.1`, byte for byte, from the result made at 0.9."""
    outputs = ["-f", ALL, "--report", "--save-images", "1"]
    direct = _segment(film.path, tmp_path / "direct", "--threshold", "0.1", *outputs)
    assert len(direct["scenes"]) != len(json.loads(saved.read_text())["scenes"])
    out = tmp_path / "export"
    res = runner.invoke(
        app, ["export", str(saved), "-o", str(out), "--threshold", "0.1", *outputs, "-q"]
    )
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.name for p in (tmp_path / "direct").iterdir())
    assert len(written) == len(FORMATS) + 1 + len(direct["scenes"])
    for name in written:
        assert (out / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name
    assert sorted(res.stdout.split()) == [str(out / name) for name in written]


def test_export_never_reads_the_video_for_scene_lists(film, saved, tmp_path):
    """Scene lists need no video: a result whose video is gone still exports, regrouped."""
    data = json.loads(saved.read_text())
    data["video"]["path"] = str(tmp_path / "gone.mp4")
    moved = tmp_path / "gone.scenes.json"
    moved.write_text(json.dumps(data))
    res = runner.invoke(app, ["export", str(moved), "-f", "csv", "--scenes", "2", "-q"])
    assert res.exit_code == 0, res.output
    with (tmp_path / "gone.scenes.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and rows[-1]["End Frame"] == str(film.frame_count)


def test_export_keeps_edited_scenes_and_refuses_broken_ones(saved, scenecut_exe, tmp_path):
    data = json.loads(saved.read_text())
    assert len(data["scenes"]) >= 3
    # Merge scenes 2 and 3, as the report's editor would save them.
    a, b = data["scenes"][1], data["scenes"].pop(2)
    a.update(last_shot=b["last_shot"], end_frame=b["end_frame"], shots=a["shots"] + b["shots"])
    edited = tmp_path / "edited.scenes.json"
    edited.write_text(json.dumps(data))
    res = runner.invoke(app, ["export", str(edited), "-f", "CSV", "-o", str(tmp_path), "-q"])
    assert res.exit_code == 0, res.output
    with (tmp_path / "film.scenes.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["Last Shot"]) for r in rows] == [s["last_shot"] + 1 for s in data["scenes"]]
    assert rows[1]["End Frame"] == str(b["end_frame"])

    data["scenes"].pop(1)  # now shots are missing between scene 1 and the next
    edited.write_text(json.dumps(data))
    proc = _run(scenecut_exe, "export", str(edited), "-f", "edl", "-o", str(tmp_path / "x"))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {edited}: scene 2 starts at shot")
    assert not (tmp_path / "x").exists()


def test_export_clips_from_a_moved_video_and_refuses_another(film, saved, tmp_path):
    moved = tmp_path / "moved.mp4"
    shutil.copy(film.path, moved)
    out = tmp_path / "clips"
    args = ["export", str(saved), "-o", str(out), "--save-clips", "--video", str(moved), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "moved.scenes.json").read_text())
    assert data["video"]["path"] == str(moved)
    for i, scene in enumerate(data["scenes"]):
        with av.open(str(out / f"moved-Scene-{i + 1:03d}.mp4")) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == scene["end_frame"] - scene["start_frame"]

    other = tmp_path / "other.mp4"  # same size, another length
    source = ["-f", "lavfi", "-i", "testsrc=s=192x108:r=25:d=2", "-pix_fmt", "yuv420p"]
    subprocess.run([ffmpeg_exe(), "-v", "error", *source, str(other)], check=True)
    res = runner.invoke(app, [*args[:-3], "--video", str(other), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1  # the console script prints it as one error line
    assert str(res.exception).startswith(f"{other}: not the video {saved} was made from")
    assert not (tmp_path / "o").exists()


def test_export_in_place_needs_overwrite(saved, tmp_path):
    target = tmp_path / "film.scenes.json"
    shutil.copy(saved, target)
    before = target.read_bytes()
    res = runner.invoke(app, ["export", str(target), "--scenes", "2", "-q"])
    assert res.exit_code == 1 and "--overwrite" in str(res.exception)
    assert target.read_bytes() == before
    res = runner.invoke(app, ["export", str(target), "--scenes", "2", "--overwrite", "-q"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(target.read_text())["scenes"]) == 2
    assert len(json.loads(before)["scenes"]) != 2


def test_saved_scores_regroup_exactly(tmp_path):
    """Scores and the start offset are saved exactly: a score 0.00004 above the threshold (lost
    to 4-decimal rounding) still opens a scene after a save and a load."""
    shots = [Shot(0, 0, 40, (20,)), Shot(1, 40, 70, (55,)), Shot(2, 70, 100, (85,))]
    video = VideoInfo(Path("v.mp4"), Fraction(25), 100, 64, 48, "h264", False, Fraction(7, 5))
    settings = Settings("adaptive", None, 15, "classic", 0.5, None, 0)
    scores = [0.30004, 0.29996]
    result = SegmentResult(video, shots, scores, group_shots(video, shots, scores, settings),
                           settings, decoded_frames=100)  # fmt: skip
    saved = tmp_path / "v.scenes.json"
    saved.write_text(to_json(result))
    loaded = load_result(saved)
    assert loaded.video.start_offset == Fraction(7, 5)
    again = regroup(loaded, threshold=0.3)
    assert [(s.start, s.end) for s in again.scenes] == [(0, 40), (40, 100)]
    assert again.settings.threshold == 0.3 and again.settings.scenes is None


# --- options shared with `segment` ------------------------------------------------------------


def test_formats_repeat_and_ignore_case(film, saved, tmp_path):
    out = tmp_path / "seg"
    _segment(film.path, out, "-f", "json", "-f", "CSV")
    assert sorted(p.name for p in out.iterdir()) == ["film.scenes.csv", "film.scenes.json"]
    res = runner.invoke(
        app, ["export", str(saved), "-o", str(tmp_path), "-f", "JSON,csv", "-f", "Edl", "-q"]
    )
    assert res.exit_code == 0, res.output
    assert {p.name for p in tmp_path.glob("film.scenes.*")} == {
        "film.scenes.json",
        "film.scenes.csv",
        "film.scenes.edl",
    }


@pytest.mark.parametrize("command", ["segment", "export"])
def test_stdout_with_another_format_is_a_usage_error(scenecut_exe, film, saved, command):
    source = film.path if command == "segment" else saved
    proc = _run(scenecut_exe, command, str(source), "--stdout", "-f", "csv")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --stdout writes only the JSON result; drop --stdout to write csv files"
    ]
    assert proc.stdout == ""


def test_too_many_scenes_says_how_many_there_can_be(scenecut_exe, film, saved, caplog):
    shots = len(json.loads(saved.read_text())["shots"])
    proc = _run(scenecut_exe, "export", str(saved), "--scenes", "500", "--stdout", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == (
        f"warning: {film.path}: --scenes 500 is more than there can be: {shots} scenes, "
        "one per shot"
    )
    assert len(json.loads(proc.stdout)["scenes"]) == shots
    with caplog.at_level(logging.WARNING, logger="scenecut"):
        result = segment(film.path, scenes=500, min_scene_seconds=2.0)
    assert [r.getMessage() for r in caplog.records] == [
        f"{film.path}: --scenes 500 is more than there can be: {len(result.scenes)} scenes, "
        "each at least --min-scene-len long"
    ]
    assert all(s.end - s.start >= 50 for s in result.scenes)


def test_export_options_refused_before_reading(scenecut_exe, tmp_path):
    missing = tmp_path / "missing.json"
    proc = _run(scenecut_exe, "export", str(missing), "--threshold", "1.5")
    assert proc.returncode == 2 and "--threshold" in proc.stderr
    proc = _run(scenecut_exe, "export", str(missing))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {missing}: no such file"
    assert not os.listdir(tmp_path)
