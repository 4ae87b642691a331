"""Videos as people have them: every container, damaged files, odd names, rotation, raw DV.

Clips are checked frame by frame against the source: each clip frame must be the source frame
the scene says (a small grey thumbnail, compared after the clip's re-encoding).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.data.synth import make_film
from scenecut.video import ffmpeg_exe

runner = CliRunner()


def _ffmpeg(*args: str) -> None:
    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def _grey(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [
            f.to_ndarray(format="gray", width=32, height=18).astype(np.float32)
            for f in container.decode(video=0)
        ]


def _segment(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["segment", *args, "--model", "classic", "-q"])
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def long_gop_film(tmp_path_factory):
    """A 4-scene film with sound whose only keyframe is its first frame: a seek anywhere else
    lands after the keyframe a scene needs, unless the seek goes to that keyframe."""
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    return make_film(path, seed=5, n_scenes=4, shots_per_scene=(1, 2), shot_frames=(20, 30),
                     width=160, height=96, audio=True, gop=1000)  # fmt: skip


MPEG4_AVI = ["-c:v", "mpeg4", "-q:v", "4", "-g", "12", "-c:a", "mp2"]  # a keyframe every 12


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(s, ["-c", "copy"]) for s in (".ts", ".mkv", ".mov", ".flv", ".avi", ".mp4")]
    + [(".avi", MPEG4_AVI)],
    ids=["ts", "mkv", "mov", "flv", "avi", "mp4", "avi-mpeg4"],
)
def test_clips_are_frame_exact_in_every_container(long_gop_film, tmp_path, suffix, codec):
    """MPEG-TS clips began 96-110 frames late (the seek landed past the keyframe); FLV's first
    clip began at the second keyframe; AVI with B-frames timed frames one off; in AVI's 1/25
    time base a seek half a frame early rounded to the frame before a keyframe."""
    source = tmp_path / f"film{suffix}"
    _ffmpeg("-i", str(long_gop_film.path), *codec, str(source))
    out = tmp_path / "out"
    code, output = _segment(str(source), "-o", str(out), "--save-clips", "--scenes", "4")
    assert code == 0, output
    result = _assert_clips_exact(source, out)
    assert result["video"]["frame_count"] == long_gop_film.frame_count
    assert len(result["scenes"]) == 4


def _assert_clips_exact(source: Path, out: Path) -> dict:
    """Every clip holds exactly its scene's frames of ``source``; returns the JSON."""
    frames = _grey(source)
    result = json.loads((out / f"{source.stem}.scenes.json").read_text())
    assert result["video"]["frame_count"] == len(frames)
    for scene in result["scenes"]:
        clip = _grey(out / f"{source.stem}-Scene-{scene['index'] + 1:03d}.mp4")
        start, end = scene["start_frame"], scene["end_frame"]
        assert len(clip) == end - start, (scene, len(clip))
        errors = [float(np.abs(c - s).mean()) for c, s in zip(clip, frames[start:end], strict=True)]
        assert max(errors) < 6, (scene["index"], max(errors))
    return result


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate_is_not_taken_for_damage(long_gop_film, scenecut_exe, tmp_path, suffix):
    """30 frames at 25 fps, then one frame every 2/25 s: in Matroska (which states 25 fps) each
    later step looked like a lost frame and was filled in, or the file was refused as 43% short."""
    source = tmp_path / f"vfr{suffix}"
    _ffmpeg("-i", str(long_gop_film.path), "-vf", "setpts='if(lt(N,30),N,30+(N-30)*2)/25/TB'",
            "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "veryfast", "-an",
            str(source))  # fmt: skip
    out = tmp_path / "out"
    proc = subprocess.run(
        [scenecut_exe, "segment", str(source), "-o", str(out), "--save-clips", "--scenes", "3"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    result = _assert_clips_exact(source, out)
    assert result["video"]["vfr"] is True


def test_raw_dv_uses_the_guessed_frame_rate(film, tmp_path):
    """Raw DV's stream says 60000 fps on average; trusted, it made the file look 99.96%
    missing and it was refused as corrupt."""
    dv = tmp_path / "tape.dv"
    _ffmpeg("-i", str(film.path), "-vf", "scale=720:576,setsar=16/15", "-r", "25", "-an",
            "-c:v", "dvvideo", "-pix_fmt", "yuv420p", "-f", "dv", str(dv))  # fmt: skip
    code, output = _segment(str(dv), "-o", str(tmp_path / "out"))
    assert code == 0, output
    video = json.loads((tmp_path / "out" / "tape.scenes.json").read_text())["video"]
    assert video["frame_rate"] == "25/1"
    assert video["frame_count"] == len(_grey(dv))


def test_rotated_video_is_described_and_shown_upright(film, tmp_path):
    """A phone's display matrix: the JSON gave the coded size while ffmpeg's clips are turned."""
    rotated = tmp_path / "phone.mp4"
    _ffmpeg("-display_rotation", "90", "-i", str(film.path), "-c", "copy", str(rotated))
    out = tmp_path / "out"
    code, output = _segment(str(rotated), "-o", str(out), "--save-clips", "--save-images", "1")
    assert code == 0, output
    video = json.loads((out / "phone.scenes.json").read_text())["video"]
    assert (video["width"], video["height"], video["rotation"]) == (108, 192, 90)
    with av.open(str(out / "phone-Scene-001.mp4")) as clip:
        stream = clip.streams.video[0]
        assert (stream.width, stream.height) == (108, 192)
    from PIL import Image

    with Image.open(out / "phone-Scene-001-01.jpg") as image:
        assert image.size == (108, 192)


@pytest.fixture(scope="module")
def webm_film(tmp_path_factory):
    folder = tmp_path_factory.mktemp("webm")
    truth = make_film(folder / "film.mp4", seed=3, n_scenes=8, shots_per_scene=(1, 2),
                      shot_frames=(20, 30), width=160, height=96)  # fmt: skip
    webm = folder / "film.webm"
    _ffmpeg("-i", str(truth.path), "-c:v", "libvpx", "-b:v", "400k", "-g", "25", str(webm))
    return truth, webm


def test_damaged_webm_keeps_frame_numbers_and_says_so(webm_film, scenecut_exe, tmp_path):
    """A zeroed 4 KB block silently dropped frames and shifted every later frame number in the
    JSON, CSV and EDL."""
    truth, webm = webm_film
    data = bytearray(webm.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)
    damaged = tmp_path / "damaged.webm"
    damaged.write_bytes(bytes(data))
    assert len(_grey(damaged)) < truth.frame_count  # the damage really loses frames

    res = subprocess.run(
        [scenecut_exe, "segment", str(damaged), str(webm), "-o", str(tmp_path), "-q"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) >= 1 and "could not be decoded" in warnings[0], res.stderr
    assert "damaged.webm" in warnings[0]
    good = json.loads((tmp_path / "film.scenes.json").read_text())
    bad = json.loads((tmp_path / "damaged.scenes.json").read_text())
    assert bad["video"]["frame_count"] == good["video"]["frame_count"] == truth.frame_count
    assert bad["decoded_frames"] < truth.frame_count
    # Shots after the damage start where they start in the undamaged file.
    last_good = [s["start_frame"] for s in good["shots"]][-2:]
    assert set(last_good) <= {s["start_frame"] for s in bad["shots"]}


def test_a_truncated_file_is_segmented_with_a_warning_that_counts(film, scenecut_exe, tmp_path):
    """A file missing under 20% of its frames succeeded without a word."""
    faststart = tmp_path / "fast.mp4"
    _ffmpeg("-i", str(film.path), "-c", "copy", "-movflags", "+faststart", str(faststart))
    cut = tmp_path / "cut.mp4"
    data = faststart.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.93)])
    res = subprocess.run(
        [scenecut_exe, "segment", str(cut), "--stdout", "-q"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    decoded = json.loads(res.stdout)["video"]["frame_count"]
    assert 0.8 * film.frame_count <= decoded < film.frame_count
    expected = f"only {decoded} of the {film.frame_count} frames"
    assert any(expected in line for line in res.stderr.splitlines()), res.stderr


def test_what_is_not_a_video_is_refused(film, scenecut_exe, tmp_path):
    """A JPEG (whole or truncated) named .mp4 gave exit 0 and one scene; an ffconcat list
    named .mp4 was followed to the files it names."""
    with av.open(str(film.path)) as container:
        picture = next(container.decode(video=0)).to_image()
    picture.save(tmp_path / "still.jpg")
    jpeg = (tmp_path / "still.jpg").read_bytes()
    (tmp_path / "still.mp4").write_bytes(jpeg)
    (tmp_path / "half.mp4").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "other.mp4").write_bytes(film.path.read_bytes())
    (tmp_path / "list.mp4").write_text("ffconcat version 1.0\nfile 'other.mp4'\n")
    (tmp_path / "list.m3u8").write_text("#EXTM3U\n#EXTINF:4,\nother.mp4\n")
    for name, reason in [
        ("still.mp4", "still image"),
        ("half.mp4", "still image"),
        ("list.mp4", "playlist"),
        ("list.m3u8", "playlist"),
    ]:
        proc = subprocess.run(
            [scenecut_exe, "segment", name, "--stdout"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0] and name in lines[0], proc.stderr


def test_names_with_colons_newlines_and_200_characters(film, scenecut_exe, tmp_path):
    """`take2:final.mp4` failed with "Protocol not found"; a 240-character name failed after
    the decode (temporary names were longer); a newline broke one-path-per-line stdout."""
    names = ["take2:final.mp4", "x" * 236 + ".mp4", "two\nlines.mp4"]
    for name in names:
        os.link(film.path, tmp_path / name)
    proc = subprocess.run(
        [scenecut_exe, "segment", "-", "-0", "-o", "out", "--save-clips", "--model", "classic"],
        input="\0".join(names) + "\0",
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    written = proc.stdout.split("\0")
    assert written[-1] == "" and all((tmp_path / p).is_file() for p in written[:-1])
    for name in names:
        stem = name[:-4]
        assert f"out/{stem}.scenes.json" in written
        assert f"out/{stem}-Scene-001.mp4" in written
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_a_name_too_long_for_its_outputs_is_refused_before_decoding(film, tmp_path):
    long = tmp_path / ("y" * 250 + ".mp4")
    os.link(film.path, long)
    code, output = _segment(str(long), "-o", str(tmp_path / "out"), "--stdout")
    assert code == 0  # nothing to write: no limit
    code, output = _segment(str(long), "-o", str(tmp_path / "out"))
    assert code == 1 and "longer than the 255 bytes" in output
    assert not (tmp_path / "out").exists()


def test_stdout_to_a_full_disk_is_one_line(film, scenecut_exe):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [scenecut_exe, "segment", str(film.path), "--stdout", "-q"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == "error: cannot write to standard output (No space left on device)"


def _fuzzcases():
    """``bench/fuzzcases.py`` (the seeded corruptions of the reliability campaign), by path."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / "fuzzcases.py"
    spec = importlib.util.spec_from_file_location("bench_fuzzcases", path)
    module = sys.modules.setdefault("bench_fuzzcases", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz_clips(tmp_path_factory):
    """The campaign's clip in MPEG-TS and Matroska (same generator settings, byte-repeatable)."""
    folder = tmp_path_factory.mktemp("fuzz")
    for suffix in (".ts", ".mkv"):
        make_film(folder / f"base{suffix}", seed=14, n_scenes=4, shots_per_scene=(1, 2),
                  shot_frames=(16, 26), width=160, height=96, audio=True, threads=1)  # fmt: skip
    return folder


@pytest.mark.parametrize(
    ("suffix", "kind", "amount", "seed"),
    [
        (".ts", "bitflip", 64, 4835),
        (".ts", "truncate", 0.723, 0),
        (".ts", "zero", 1, 9679),
        (".mkv", "zero", 1, 9592),
        (".mkv", "truncate", 0.907, 0),
    ],
)
def test_damaged_files_from_the_campaign_are_segmented_and_say_so(
    fuzz_clips, scenecut_exe, tmp_path, suffix, kind, amount, seed
):
    """Found by bench/fuzz.py: bit flips in TS tables announced a stream mid-file and PyAV's
    demuxer raised IndexError (exit 3); a TS cut short lost a quarter of its frames without a
    word (TS has no frame count: it ends inside a 188-byte packet); a zeroed block leaves two
    gaps close together (a lost B-frame, then the lost cluster), which were taken for a
    varying frame rate, so nothing was filled or said."""
    fuzzcases = _fuzzcases()
    source = fuzz_clips / f"base{suffix}"
    damaged = tmp_path / f"damaged{suffix}"
    damaged.write_bytes(fuzzcases.Corruption(kind, amount, seed).apply(source.read_bytes()))
    decodable = fuzzcases.decodable_frames(damaged)
    assert decodable < fuzzcases.decodable_frames(source)
    proc = subprocess.run(
        [scenecut_exe, "segment", str(damaged), "--stdout", "-q"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings and all(damaged.name in line for line in warnings), proc.stderr
    assert any(re.search(r"\bframes?\b", line) for line in warnings)
    assert json.loads(proc.stdout)["decoded_frames"] == decodable


@pytest.mark.parametrize("suffix", [".gif", ".png"])
@pytest.mark.parametrize("copy", [False, True])
def test_clips_of_odd_sized_animations(film, tmp_path, suffix, copy):
    """x264 refused the odd 161x97 frames of a GIF or APNG (exit 1 after the decode); a copied
    APNG named .png went to the single-image muxer."""
    source = tmp_path / f"odd{suffix}"
    encode = ["-i", str(film.path), "-vf", "scale=161:97", "-frames:v", "60"]
    _ffmpeg(*encode, *(["-f", "apng", "-plays", "0"] if suffix == ".png" else []), str(source))
    out = tmp_path / "out"
    code, output = _segment(
        str(source), "-o", str(out), "--save-clips", *(["--copy"] if copy else [])
    )
    assert code == 0, output
    scenes = json.loads((out / "odd.scenes.json").read_text())["scenes"]
    clips = sorted(p for p in out.iterdir() if "-Scene-" in p.name)
    assert len(clips) == len(scenes) >= 1
    for clip in clips:
        assert len(_grey(clip)) >= 1
