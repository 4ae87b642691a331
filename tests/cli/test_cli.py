"""The command line: Typer's runner for options and outputs, real subprocesses for exit codes and
the one-line errors users see."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from scenecut.cli import app

runner = CliRunner()


def _run(exe: str, *args: str, stdin: str | None = None, env: dict | None = None, cwd=None):
    return subprocess.run(
        [exe, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


def test_segment_writes_json_and_csv(film, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["segment", str(film.path), "-o", str(out), "--format", "json,csv"])
    assert res.exit_code == 0, res.output
    json_path = out / "film.scenes.json"
    csv_path = out / "film.scenes.csv"
    # stdout carries only the written paths, one per line
    assert res.stdout.split() == [str(json_path), str(csv_path)]
    data = json.loads(json_path.read_text())
    assert data["video"]["frame_count"] == film.frame_count
    assert data["decoded_frames"] == film.frame_count
    assert data["settings"]["model"] == "fused"  # the offline default
    assert len(data["boundary_scores"]) == len(data["shots"]) - 1
    assert data["scenes"][-1]["end_frame"] == film.frame_count
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data["scenes"])
    assert rows[0]["Start Frame"] == "1"  # PySceneDetect's 1-based convention
    # the scene table goes to stderr; no progress bar when stderr is not a terminal
    assert "scenes" in res.stderr
    assert "decode" not in res.stderr


def test_stdout_json_only(film):
    res = runner.invoke(app, ["segment", str(film.path), "--stdout", "--quiet"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["schema_version"] == 1
    assert data["video"]["path"].endswith("film.mp4")


def test_scene_count_option(film, tmp_path):
    res = runner.invoke(app, ["segment", str(film.path), "--stdout", "-q", "--scenes", "2"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["scenes"]) == 2


def test_refuses_to_overwrite_without_flag(film, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["segment", str(film.path), "-o", str(out), "-q"]).exit_code == 0
    target = out / "film.scenes.json"
    target.write_text("keep me")
    res = runner.invoke(app, ["segment", str(film.path), "-o", str(out), "-q"])
    assert res.exit_code == 1
    assert "--overwrite" in res.stderr
    assert target.read_text() == "keep me"
    res = runner.invoke(app, ["segment", str(film.path), "-o", str(out), "-q", "--overwrite"])
    assert res.exit_code == 0
    assert json.loads(target.read_text())["video"]["frame_count"] == film.frame_count


def test_save_clips_are_frame_exact(film, tmp_path):
    out = tmp_path / "clips"
    res = runner.invoke(app, ["segment", str(film.path), "-o", str(out), "--save-clips", "-q"])
    assert res.exit_code == 0, res.output
    scenes = json.loads((out / "film.scenes.json").read_text())["scenes"]
    clips = sorted(out.glob("film-Scene-*.mp4"))
    assert len(clips) == len(scenes)
    for clip, scene in zip(clips, scenes, strict=True):
        with av.open(str(clip)) as container:
            assert container.streams.audio, "audio is kept"
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == scene["end_frame"] - scene["start_frame"]
    # clips get the umask's permissions like the scene lists (mkstemp alone made them 0600)
    modes = {path.stat().st_mode & 0o777 for path in [*clips, out / "film.scenes.json"]}
    assert len(modes) == 1 and modes.pop() & 0o044 == 0o044 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_many_inputs_one_bad(film, bad_inputs, tmp_path):
    out = tmp_path / "many"
    args = ["segment", str(bad_inputs["text"]), str(film.path), "-o", str(out), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert (out / "film.scenes.json").exists()  # the good input still went through
    assert not (out / "text.scenes.json").exists()
    assert "text.mp4" in res.stderr


def test_paths_from_stdin(film, tmp_path):
    out = tmp_path / "stdin"
    res = runner.invoke(app, ["segment", "-", "-o", str(out), "-q"], input=f"{film.path}\n")
    assert res.exit_code == 0, res.output
    assert (out / "film.scenes.json").exists()


def test_default_output_dir_is_stem_scenes(film, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["segment", str(film.path), "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "film_scenes" / "film.scenes.json").exists()


# --- the installed console script, as a shell user runs it ---------------------------------


@pytest.mark.parametrize(
    "name", ["text", "empty", "audio_only", "truncated", "truncated_faststart"]
)
def test_bad_input_one_line_and_nonzero(scenecut_exe, bad_inputs, tmp_path, name):
    out = tmp_path / "o"
    proc = _run(scenecut_exe, "segment", str(bad_inputs[name]), "-o", str(out))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_missing_file_and_debug_traceback(scenecut_exe, tmp_path):
    proc = _run(scenecut_exe, "segment", str(tmp_path / "missing.mp4"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'missing.mp4'}: no such file"
    debug = _run(scenecut_exe, "segment", "missing.mp4", env={"SCENECUT_DEBUG": "1"}, cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--threshold", "2"], "--threshold"),
        (["--threshold", "abc"], "threshold"),
        (["--detector", "magic"], "detector"),
        (["--format", "xml"], "format"),
        (["--scenes", "0"], "--scenes"),
        (["--copy"], "--save-clips"),
        (["--no-such-option"], "no-such-option"),
        # Issue 14: these were exit 3 (a bug), or accepted and wrong.
        (["--min-shot-len", "nan"], "--min-shot-len"),
        (["--min-shot-len", "inf"], "--min-shot-len"),
        (["--min-scene-len", "nan"], "--min-scene-len"),
        (["--min-scene-len", "-inf"], "--min-scene-len"),
        (["--detector-threshold", "nan"], "--detector-threshold"),
        (["--detector-threshold", "inf"], "--detector-threshold"),
        (["--save-images", "1000000"], "from 0 to 100"),
        (["--save-clips", "--clip-template", "$NAME-x"], "template"),
        (["--save-clips", "--clip-template", "../$VIDEO_NAME"], "template"),
    ],
)
def test_bad_options_exit_2_with_one_line(scenecut_exe, film, tmp_path, args, needle):
    """Refused before any decoding: not even the output folder is made."""
    out = tmp_path / "out"
    proc = _run(scenecut_exe, "segment", str(film.path), "--stdout", "-o", str(out), *args)
    assert not out.exists()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert proc.stdout == ""


def test_unwritable_output_dir(scenecut_exe, film, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _run(scenecut_exe, "segment", str(film.path), "-o", str(blocker / "sub"))
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1


def test_console_script_pipeline(scenecut_exe, film, tmp_path):
    """`scenecut segment - --stdout` in a shell pipeline: only JSON on stdout."""
    proc = _run(scenecut_exe, "segment", "-", "--stdout", stdin=f"{film.path}\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["video"]["frame_count"] == film.frame_count


def test_python_dash_m_and_version():
    proc = subprocess.run(
        [sys.executable, "-m", "scenecut", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("scenecut ")


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys, scenecut.cli\n"
        "heavy = [m for m in ('torch', 'av', 'scenedetect', 'cv2', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == ""


def test_single_shot_video_via_cli(scenecut_exe, bad_inputs, tmp_path):
    proc = _run(scenecut_exe, "segment", str(bad_inputs["single_shot"]), "--stdout")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["scenes"]) == 1 and data["scenes"][0]["end_frame"] == 50
    assert Path(data["video"]["path"]).name == "single_shot.mp4"


def test_two_containers_json_and_csv(film, tmp_path):
    """`scenecut segment a.mp4 b.mkv -o scenes/ -f json,csv` from the README."""
    from scenecut.video import ffmpeg_exe

    mkv = tmp_path / "b.mkv"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(film.path), "-c", "copy", str(mkv)], check=True
    )
    out = tmp_path / "scenes"
    res = runner.invoke(
        app, ["segment", str(film.path), str(mkv), "-o", str(out), "-f", "json,csv"]
    )
    assert res.exit_code == 0, res.output
    for stem in ("film", "b"):
        data = json.loads((out / f"{stem}.scenes.json").read_text())
        assert data["video"]["frame_count"] == film.frame_count
        assert (out / f"{stem}.scenes.csv").exists()
    a, b = (json.loads((out / f"{s}.scenes.json").read_text()) for s in ("film", "b"))
    assert [s["start_frame"] for s in a["scenes"]] == [s["start_frame"] for s in b["scenes"]]


def test_copy_clips_via_cli(film, tmp_path):
    out = tmp_path / "copy"
    res = runner.invoke(app, ["segment", str(film.path), "-o", str(out), "--save-clips", "--copy"])
    assert res.exit_code == 0, res.output
    scenes = json.loads((out / "film.scenes.json").read_text())["scenes"]
    assert len(sorted(out.glob("film-Scene-*.mp4"))) == len(scenes)


def test_csv_loads_back_into_pyscenedetect(film, tmp_path):
    """Our CSV is PySceneDetect's scene list: `scenedetect load-scenes` accepts it unchanged."""
    exe = Path(sys.executable).parent / "scenedetect"
    if not exe.exists():
        pytest.skip("scenedetect CLI not installed here")
    out = tmp_path / "sd"
    assert (
        runner.invoke(app, ["segment", str(film.path), "-o", str(out), "-f", "csv"]).exit_code == 0
    )
    csv_path = out / "film.scenes.csv"
    proc = _run(
        str(exe),
        "-i",
        str(film.path),
        "-o",
        str(tmp_path),
        "load-scenes",
        "-i",
        str(csv_path),
        "list-scenes",
        "-f",
        "back.csv",
        "-s",
    )
    assert proc.returncode == 0, proc.stderr
    with csv_path.open() as f:
        ours = [row["Start Frame"] for row in csv.DictReader(f)]
    with (tmp_path / "back.csv").open() as f:
        theirs = [row["Start Frame"] for row in csv.DictReader(f)]
    assert theirs == ours


def test_stdout_with_clips_checks_the_output_dir_first(scenecut_exe, film, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _run(
        scenecut_exe,
        "segment",
        str(film.path),
        "--stdout",
        "--save-clips",
        "-o",
        str(blocker / "d"),
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_codec_is_that_inputs_one_line_error(scenecut_exe, film, tmp_path):
    """A Matroska file whose codec ffmpeg does not know (PyAV gives no codec context) is refused
    in one line, exit 1, and the next input is still segmented."""
    from scenecut.video import ffmpeg_exe

    mkv = tmp_path / "film.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(film.path), "-c", "copy", str(mkv)])
    data = mkv.read_bytes()
    assert b"V_MPEG4/ISO/AVC" in data
    unknown = tmp_path / "unknown.mkv"
    unknown.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/XYZ", 1))
    proc = _run(scenecut_exe, "segment", str(unknown), str(film.path), "-o", str(tmp_path / "o"))
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "codec" in errors[0] and "unknown.mkv" in errors[0]
    assert "Traceback" not in proc.stderr and "this is a bug" not in proc.stderr
    assert (tmp_path / "o" / "film.scenes.json").is_file()


def test_an_internal_error_in_one_input_does_not_stop_the_others(film, tmp_path, monkeypatch):
    """Any exception while segmenting one input is that input's one-line error (exit 3: a bug
    to report); the inputs after it are still segmented."""
    import shutil

    from scenecut.cli import segment as segment_cli

    first = tmp_path / "first.mp4"
    shutil.copy(film.path, first)
    real = segment_cli.segment_to_files

    def fails_on_first(path, *args, **kwargs):
        if Path(path) == first:
            raise RuntimeError("simulated defect")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(segment_cli, "segment_to_files", fails_on_first)
    out = tmp_path / "out"
    res = runner.invoke(app, ["segment", str(first), str(film.path), "-o", str(out), "-q"])
    assert res.exit_code == 3
    assert f"{first}: RuntimeError: simulated defect (this is a bug" in res.stderr
    assert (out / "film.scenes.json").is_file() and not (out / "first.scenes.json").exists()
