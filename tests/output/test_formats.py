"""Editor and player formats (EDL, OTIO, FCPXML, chapters, WebVTT, SubRip), read back by
independent readers: OpenTimelineIO's adapters, xml.etree, ffmpeg + PyAV."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import opentimelineio as otio
import pytest

from scenecut.output.formats import (
    FORMATS,
    result_paths,
    to_edl,
    to_fcpxml,
    to_ffmetadata,
    to_otio,
    to_srt,
    to_vtt,
)
from scenecut.output.timecode import dropped_frames, rational_seconds, smpte_timecode
from scenecut.result import SegmentResult, Settings, Shot, VideoInfo, scenes_from_boundaries
from scenecut.video import ffmpeg_exe

SETTINGS = Settings("content", 27.0, 15, "tiny", 0.5, None, 0)
NEW_FORMATS = ["edl", "otio", "fcpxml", "chapters", "vtt", "srt"]


def make_result(
    fps: Fraction,
    frame_count: int,
    cuts: list[int],
    boundaries: list[int],
    *,
    path: Path = Path("/videos/film.mov"),
    has_audio: bool = True,
) -> SegmentResult:
    """Shots split at ``cuts``; scenes open after the shot gaps in ``boundaries``."""
    edges = [0, *cuts, frame_count]
    shots = [Shot(i, a, b) for i, (a, b) in enumerate(pairwise(edges))]
    scores = [0.9 if i in boundaries else 0.1 for i in range(len(cuts))]
    video = VideoInfo(path, fps, frame_count, 64, 48, "h264", has_audio)
    scenes = scenes_from_boundaries(shots, boundaries, scores)
    return SegmentResult(video, shots, scores, scenes, SETTINGS)


# One cut a frame after a drop-frame minute boundary, and scenes of 1 frame and over 10 minutes.
RESULTS = {
    "24": make_result(Fraction(24), 20_000, [1, 5, 1440, 9000], [0, 2, 3]),
    "25": make_result(Fraction(25), 3_000, [10, 50, 2999], [1, 2], has_audio=False),
    "23.976": make_result(Fraction(24000, 1001), 5_000, [100, 1439, 1441], [0, 2]),
    "29.97": make_result(Fraction(30000, 1001), 40_000, [1, 1799, 1800, 17_982, 17_983], [0, 2, 3]),
    "59.94": make_result(Fraction(60000, 1001), 40_000, [3599, 3600, 35_964], [0, 1, 2]),
}


def scene_frames(result: SegmentResult) -> list[tuple[int, int]]:
    return [(s.start, s.length) for s in result.scenes]


# --- timecodes -------------------------------------------------------------------------------


def test_smpte_timecode_non_drop():
    assert smpte_timecode(0, Fraction(24)) == "00:00:00:00"
    assert smpte_timecode(23, Fraction(24)) == "00:00:00:23"
    assert smpte_timecode(24, Fraction(24)) == "00:00:01:00"
    assert smpte_timecode(24 * 3661 + 5, Fraction(24)) == "01:01:01:05"
    assert smpte_timecode(1500, Fraction(25)) == "00:01:00:00"
    assert smpte_timecode(90_000 - 1, Fraction(25)) == "00:59:59:24"
    # 23.976 is non-drop: timecode counts 24 frames a second and runs slow against the clock.
    assert smpte_timecode(24, Fraction(24000, 1001)) == "00:00:01:00"
    assert dropped_frames(Fraction(24000, 1001)) == 0
    with pytest.raises(ValueError):
        smpte_timecode(-1, Fraction(25))


def test_smpte_timecode_drop_frame():
    ntsc, ntsc60 = Fraction(30000, 1001), Fraction(60000, 1001)
    assert smpte_timecode(1799, ntsc) == "00:00:59;29"
    assert smpte_timecode(1800, ntsc) == "00:01:00;02"
    assert smpte_timecode(3597, ntsc) == "00:01:59;29"
    assert smpte_timecode(3598, ntsc) == "00:02:00;02"
    assert smpte_timecode(17_981, ntsc) == "00:09:59;29"
    assert smpte_timecode(17_982, ntsc) == "00:10:00;00"  # every tenth minute keeps ;00
    assert smpte_timecode(17_982 * 6, ntsc) == "01:00:00;00"
    assert smpte_timecode(3599, ntsc60) == "00:00:59;59"
    assert smpte_timecode(3600, ntsc60) == "00:01:00;04"
    assert smpte_timecode(35_964, ntsc60) == "00:10:00;00"


@pytest.mark.parametrize("fps", [Fraction(30000, 1001), Fraction(60000, 1001), Fraction(25)])
def test_smpte_timecode_matches_opentimelineio(fps):
    for frame in range(0, 120_000, 37):
        tc = smpte_timecode(frame, fps)
        assert otio.opentime.from_timecode(tc, float(fps)).value == frame, tc


def test_rational_seconds():
    assert rational_seconds(1, Fraction(24000, 1001)) == "1001/24000s"
    assert rational_seconds(0, Fraction(25)) == "0s"
    assert rational_seconds(50, Fraction(25)) == "2s"
    assert rational_seconds(30, Fraction(30000, 1001)) == "1001/1000s"


# --- writers ---------------------------------------------------------------------------------


def test_writers_are_registered_with_file_names():
    assert set(NEW_FORMATS) <= set(FORMATS)
    names = [p.name for p in result_paths(Path("in/clip.mp4"), Path("out"), NEW_FORMATS)]
    assert names == [
        "clip.scenes.edl",
        "clip.scenes.otio",
        "clip.scenes.fcpxml",
        "clip.scenes.ffmetadata",
        "clip.scenes.vtt",
        "clip.scenes.srt",
    ]


@pytest.mark.parametrize("name", list(RESULTS))
def test_edl_reads_back_through_opentimelineio(name):
    result = RESULTS[name]
    fps = result.video.fps
    text = to_edl(result)
    assert text.startswith("TITLE: film\n")
    drop = fps.denominator == 1001 and round(fps) % 30 == 0
    assert f"FCM: {'DROP FRAME' if drop else 'NON-DROP FRAME'}\n" in text
    events = [line for line in text.splitlines() if line[:1].isdigit()]
    assert events[0].startswith("001  AX       V     C        ")
    assert all((";" in e) == drop for e in events)

    timeline = otio.adapters.read_from_string(text, "cmx_3600", rate=float(fps))
    assert timeline.name == "film"
    [track] = timeline.video_tracks()
    clips = list(track.find_clips())
    assert len(clips) == len(result.scenes)
    got = [(c.source_range.start_time.value, c.source_range.duration.value) for c in clips]
    assert got == scene_frames(result)
    # The record side is contiguous from 00:00:00:00, so the track's range is the whole film.
    assert track.range_of_child_at_index(0).start_time.value == 0
    assert track.duration().value == sum(s.length for s in result.scenes)
    assert clips[0].name == "film.mov"


@pytest.mark.parametrize("name", list(RESULTS))
def test_otio_reads_back(name):
    result = RESULTS[name]
    video = result.video
    timeline = otio.adapters.read_from_string(to_otio(result), "otio_json")
    assert timeline.name == "film"
    assert len(timeline.video_tracks()) == 1
    assert len(timeline.audio_tracks()) == (1 if video.has_audio else 0)
    for track in timeline.tracks:
        clips = list(track.find_clips())
        assert [c.name for c in clips] == [f"Scene {i + 1:03d}" for i in range(len(clips))]
        got = [(c.source_range.start_time.value, c.source_range.duration.value) for c in clips]
        assert got == scene_frames(result)
        for clip in clips:
            assert clip.source_range.duration.rate == float(video.fps)
            reference = clip.media_reference
            assert reference.target_url == "file:///videos/film.mov"
            assert reference.available_range.start_time.value == 0
            assert reference.available_range.duration.value == video.frame_count
        assert clips[1].metadata["scenecut"]["first_shot"] == result.scenes[1].first_shot


@pytest.mark.parametrize("name", list(RESULTS))
def test_fcpxml_parses_and_adds_up(name):
    result = RESULTS[name]
    fps = result.video.fps
    root = ET.fromstring(to_fcpxml(result))
    assert root.tag == "fcpxml"
    assert root.get("version") == "1.9"
    fmt = root.find("resources/format")
    assert fmt.get("frameDuration") == f"{fps.denominator}/{fps.numerator}s".replace("/1s", "s")
    asset = root.find("resources/asset")
    assert asset.get("format") == fmt.get("id")
    assert asset.get("hasAudio") == ("1" if result.video.has_audio else "0")
    assert root.find("resources/asset/media-rep").get("src") == "file:///videos/film.mov"

    def seconds(value: str) -> Fraction:
        assert value.endswith("s")
        return Fraction(value[:-1])

    assert seconds(asset.get("duration")) == result.video.duration
    sequence = root.find("library/event/project/sequence")
    assert sequence.get("tcFormat") == ("DF" if dropped_frames(fps) else "NDF")
    clips = sequence.findall("spine/asset-clip")
    assert len(clips) == len(result.scenes)
    assert all(c.get("ref") == asset.get("id") for c in clips)
    durations = [seconds(c.get("duration")) for c in clips]
    assert sum(durations) == result.video.duration == seconds(sequence.get("duration"))
    offset = Fraction(0)
    for clip, scene, duration in zip(clips, result.scenes, durations, strict=True):
        assert seconds(clip.get("offset")) == offset
        assert seconds(clip.get("start")) == scene.start / fps
        assert duration == scene.length / fps
        # Every time is a whole number of frames, as Final Cut Pro requires.
        assert (duration * fps).denominator == 1
        offset += duration


CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[.,](\d{3}) --> (\d\d):(\d\d):(\d\d)[.,](\d{3})")


def parse_cues(text: str) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) per cue."""
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if m := CUE.fullmatch(line):
                h0, m0, s0, ms0, h1, m1, s1, ms1 = map(int, m.groups())
                start = ((h0 * 60 + m0) * 60 + s0) * 1000 + ms0
                end = ((h1 * 60 + m1) * 60 + s1) * 1000 + ms1
                cues.append((start, end, "\n".join(lines[i + 1 :])))
    return cues


def scene_millis(result: SegmentResult) -> list[tuple[int, int]]:
    """Scene times in ms, truncated."""
    video = result.video
    return [
        (int(video.time_of(s.start) * 1000), int(video.time_of(s.end) * 1000))
        for s in result.scenes
    ]


def test_vtt_cues():
    result = RESULTS["29.97"]
    text = to_vtt(result)
    assert text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.033\nScene 1\n\n")
    cues = parse_cues(text)
    assert [(a, b) for a, b, _ in cues] == scene_millis(result)
    assert [t for _, _, t in cues] == [f"Scene {i + 1}" for i in range(len(result.scenes))]
    # 17982 frames at 29.97 fps = 599.9994 s: truncated, never rounded up past the cut.
    assert "00:09:59.999 --> " in text


def test_srt_cues():
    result = RESULTS["29.97"]
    text = to_srt(result)
    assert text.startswith("1\n00:00:00,000 --> 00:00:00,033\nScene 1 (shot 1)\n\n2\n")
    cues = parse_cues(text)
    assert [(a, b) for a, b, _ in cues] == scene_millis(result)
    assert cues[1][2] == "Scene 2 (shots 2-3)"
    numbers = [block.splitlines()[0] for block in text.strip().split("\n\n")]
    assert numbers == [str(i + 1) for i in range(len(result.scenes))]


def test_ffmetadata_text():
    text = to_ffmetadata(RESULTS["29.97"])
    assert text.startswith(";FFMETADATA1\n\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=33\n")
    assert text.count("[CHAPTER]") == len(RESULTS["29.97"].scenes)


def test_chapters_mux_into_mkv(tmp_path):
    """ffmpeg takes the chapters into a Matroska file and PyAV reads them back."""
    import av

    source = tmp_path / "src.mp4"
    subprocess.run(
        [
            *(ffmpeg_exe(), "-nostdin", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=3"),
            *("-f", "lavfi", "-i", "sine=f=440:sample_rate=48000:d=3"),
            *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(source)),
        ],
        check=True,
    )
    result = make_result(Fraction(25), 75, [20, 33, 47], [0, 2], path=source)
    assert len(result.scenes) == 3
    chapters = tmp_path / "src.scenes.ffmetadata"
    chapters.write_text(to_ffmetadata(result))
    mkv = tmp_path / "out.mkv"
    subprocess.run(
        [
            *(ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(source)),
            *("-i", str(chapters), "-map_metadata", "1", "-map_chapters", "1"),
            *("-map", "0", "-c", "copy", str(mkv)),
        ],
        check=True,
    )
    with av.open(str(mkv)) as container:
        read = container.chapters()
    assert len(read) == len(result.scenes)
    for chapter, scene in zip(read, result.scenes, strict=True):
        base = chapter["time_base"]
        assert abs(chapter["start"] * base - result.video.time_of(scene.start)) < Fraction(1, 1000)
        assert abs(chapter["end"] * base - result.video.time_of(scene.end)) < Fraction(1, 1000)
        assert chapter["metadata"]["title"] == f"Scene {scene.index + 1}"


# --- CLI -------------------------------------------------------------------------------------


def test_segment_cli_writes_every_format(tmp_path):
    from typer.testing import CliRunner

    from scenecut.cli import app
    from scenecut.data.synth import make_film

    film = make_film(tmp_path / "film.mp4", seed=1, n_scenes=3, width=160, height=96)
    out = tmp_path / "out"
    formats = ",".join(NEW_FORMATS)
    res = CliRunner().invoke(app, ["segment", str(film.path), "-o", str(out), "-q", "-f", formats])
    assert res.exit_code == 0, res.output
    paths = result_paths(film.path, out, NEW_FORMATS)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    edl = out / "film.scenes.edl"
    timeline = otio.adapters.read_from_string(edl.read_text(), "cmx_3600", rate=float(film.fps))
    otio_timeline = otio.adapters.read_from_file(str(out / "film.scenes.otio"))
    n_scenes = len(parse_cues((out / "film.scenes.vtt").read_text()))
    assert len(list(timeline.find_clips())) == n_scenes
    assert len(list(otio_timeline.video_tracks()[0].find_clips())) == n_scenes
