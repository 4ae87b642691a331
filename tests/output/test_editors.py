"""Editor timelines on generated video: the source timecode (QuickTime tmcd, MXF, drop-frame),
variable frame rate, FCP7 XML read back by OpenTimelineIO's fcp_xml adapter, and MLT rendered by
`melt`. Every file is read back by a reader we did not write, or by the player itself."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import xml.etree.ElementTree as ET
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import opentimelineio as otio
import pytest
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.errors import InputError, UsageError
from scenecut.output.editors import editor_rate, to_edl, to_fcp7, to_fcpxml, with_start_timecode
from scenecut.output.formats import result_to_dict
from scenecut.output.readers import load_result
from scenecut.output.timecode import smpte_timecode, timecode_frame
from scenecut.result import SegmentResult, Settings, Shot, VideoInfo, scenes_from_boundaries
from scenecut.video import ffmpeg_exe, probe

EDITOR_FORMATS = ["edl", "fcpxml", "otio", "fcp7", "mlt"]
MELT = shutil.which("melt")
NTSC = Fraction(30000, 1001)
LOOKS = ["null", "negate", "hue=h=120"]  # three shots, each unlike the others


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True)


def three_shots(path: Path, parts: list[tuple[str, int]], *output: str) -> Path:
    """160x90 test patterns in three shots of ``(rate, frames)``: plain, negated, hue-turned.
    Every frame differs from the one before (a moving pattern and a counter)."""
    args, chains = [], []
    for i, ((rate, frames), look) in enumerate(zip(parts, LOOKS, strict=True)):
        args += ["-f", "lavfi", "-i", f"testsrc2=s=160x90:r={rate}"]
        chains.append(f"[{i}:v]trim=end_frame={frames},setpts=PTS-STARTPTS,{look}[v{i}]")
    graph = ";".join([*chains, "[v0][v1][v2]concat=n=3,settb=1/1000[v]"])
    ffmpeg(
        *args, "-filter_complex", graph, "-map", "[v]", *output, "-pix_fmt", "yuv420p", str(path)
    )
    return path


def segment(video: Path, out: Path, formats: list[str], *options: str) -> Path:
    """``scenecut segment`` with every shot gap a scene boundary; the JSON's path."""
    args = ["segment", str(video), "-o", str(out), "-q", "--model", "classic"]
    args += ["--detector", "content", "--threshold", "0", "-f", ",".join(["json", *formats])]
    res = CliRunner().invoke(app, [*args, *options])
    assert res.exit_code == 0, res.output
    return out / f"{video.stem}.scenes.json"


@pytest.fixture(scope="module")
def timecoded(tmp_path_factory) -> Path:
    """3 s at 25 fps, cuts at 1 s and 2 s, a QuickTime tmcd track starting at 01:00:00:00."""
    path = tmp_path_factory.mktemp("tc") / "master.mov"
    return three_shots(path, [("25", 25)] * 3, "-c:v", "libx264", "-timecode", "01:00:00:00")


@pytest.fixture(scope="module")
def vfr(tmp_path_factory) -> Path:
    """30, 15 then 30 fps, one second each: cuts at 1 s and 2 s, frames 30 and 45, 75 frames
    (an average of 25 fps, so frame / fps would put the cuts at 1.2 s and 1.8 s)."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    passthrough = ["-fps_mode", "passthrough", "-enc_time_base", "filter", "-c:v", "libx264"]
    return three_shots(path, [("30", 30), ("15", 15), ("30", 30)], *passthrough)


@pytest.fixture(scope="module")
def vfr_outputs(vfr, tmp_path_factory) -> Path:
    return segment(vfr, tmp_path_factory.mktemp("vfr_out"), [*EDITOR_FORMATS, "vtt"])


def make_result(fps: Fraction, frame_count: int, cuts: list[int], **video) -> SegmentResult:
    edges = [0, *cuts, frame_count]
    shots = [Shot(i, a, b) for i, (a, b) in enumerate(pairwise(edges))]
    scores = [0.9] * len(cuts)
    info = VideoInfo(Path("/media/film.mov"), fps, frame_count, 64, 48, "h264", True, **video)
    scenes = scenes_from_boundaries(shots, list(range(len(cuts))), scores)
    return SegmentResult(
        info, shots, scores, scenes, Settings("content", None, 1, "t", 0.5, None, 0)
    )


def seconds(value: str) -> Fraction:
    assert value.endswith("s"), value
    return Fraction(value[:-1])


# --- timecodes -------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [NTSC, Fraction(60000, 1001), Fraction(25), Fraction(24000, 1001)])
def test_timecode_frame_inverts_smpte_timecode(fps):
    for frame in range(0, 400_000, 97):
        for drop in (None, False):
            tc = smpte_timecode(frame, fps, drop)
            assert timecode_frame(tc, fps) == frame, tc
            assert otio.opentime.from_timecode(tc, float(fps)).value == frame, tc


def test_timecode_frame_refuses_timecodes_the_rate_lacks():
    assert timecode_frame("01:00:00;00", NTSC) == 107_892  # drop-frame: 108 numbers skipped
    assert timecode_frame("01:00:00:00", NTSC) == 108_000  # non-drop 29.97 counts every number
    assert timecode_frame("10:00:00:00", Fraction(25)) == 900_000
    for text, fps, needle in [
        ("01:00:00:25", Fraction(25), "frames 00-24"),
        ("01:00:00;00", Fraction(25), "only 29.97 and 59.94"),
        ("01:01:00;01", NTSC, "skips"),
        ("1:00:00:00", Fraction(25), "not a timecode"),
        ("01:60:00:00", Fraction(25), "00-59"),
    ]:
        with pytest.raises(ValueError, match=needle):
            timecode_frame(text, fps)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("tmcd.mov", ["-c:v", "libx264", "-timecode", "01:00:00:00"], "01:00:00:00"),
        ("drop.mov", ["-r", "30000/1001", "-c:v", "libx264", "-timecode", "01:00:00;00"],
         "01:00:00;00"),
        ("master.mxf", ["-c:v", "mpeg2video", "-timecode", "10:00:00:00", "-f", "mxf"],
         "10:00:00:00"),
        ("tagged.mkv", ["-c:v", "libx264", "-timecode", "02:00:00:00"], "02:00:00:00"),
        ("plain.mp4", ["-c:v", "libx264"], None),
    ],
)  # fmt: skip
def test_probe_reads_the_start_timecode(tmp_path, name, args, expected):
    path = tmp_path / name
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=64x36:r=25:d=0.2", *args, "-pix_fmt", "yuv420p", str(path)
    )
    assert probe(path).timecode == expected


def test_timecoded_mov_editor_files_start_at_its_timecode(timecoded, tmp_path):
    saved = segment(timecoded, tmp_path, EDITOR_FORMATS)
    doc = json.loads(saved.read_text())
    assert doc["video"]["start_timecode"] == "01:00:00:00"
    assert doc["settings"]["start_timecode"] is None
    result = load_result(saved)
    assert result.video.start_timecode == "01:00:00:00"
    scenes = [(s.start, s.length) for s in result.scenes]
    assert scenes == [(0, 25), (25, 25), (50, 25)]
    hour = 90_000  # 01:00:00:00 at 25 fps

    edl = (tmp_path / "master.scenes.edl").read_text()
    first = next(line for line in edl.splitlines() if line.startswith("001"))
    assert first.split()[-4:] == ["01:00:00:00", "01:00:01:00", "01:00:00:00", "01:00:01:00"]
    timeline = otio.adapters.read_from_string(edl, "cmx_3600", rate=25)
    got = [(c.source_range.start_time.value, c.duration().value) for c in timeline.find_clips()]
    assert got == [(hour + start, length) for start, length in scenes]

    root = ET.parse(tmp_path / "master.scenes.fcpxml").getroot()
    assert root.find("resources/asset").get("start") == "3600s"
    sequence = root.find("library/event/project/sequence")
    assert sequence.get("tcStart") == "3600s" and sequence.get("tcFormat") == "NDF"
    clips = sequence.findall("spine/asset-clip")
    assert [(seconds(c.get("offset")), seconds(c.get("start"))) for c in clips] == [
        (3600, 3600),
        (3601, 3601),
        (3602, 3602),
    ]

    for name, adapter in [("otio", "otio_json"), ("xml", "fcp_xml")]:
        read = otio.adapters.read_from_file(str(tmp_path / f"master.scenes.{name}"), adapter)
        assert read.global_start_time.value == hour, name
        clips = list(read.video_tracks()[0].find_clips())
        got = [(c.source_range.start_time.value, c.source_range.duration.value) for c in clips]
        assert got == [(hour + start, length) for start, length in scenes], name
        reference = clips[0].media_reference
        assert reference.target_url == timecoded.as_uri()
        assert reference.available_range.start_time.value == hour
        assert reference.available_range.duration.value == 75
        assert [c.name for c in clips] == ["Scene 001", "Scene 002", "Scene 003"]


def test_mxf_timecode_and_the_option_that_overrides_it(tmp_path):
    mxf = three_shots(
        tmp_path / "master.mxf", [("25", 25)] * 3, "-c:v", "mpeg2video", "-timecode", "10:00:00:00"
    )
    segment(mxf, tmp_path / "own", ["edl"])
    edl = (tmp_path / "own" / "master.scenes.edl").read_text()
    assert "001  AX       V     C        10:00:00:00 10:00:01:00 10:00:00:00 10:00:01:00" in edl
    saved = segment(mxf, tmp_path / "given", ["edl"], "--start-timecode", "00:59:59:00")
    doc = json.loads(saved.read_text())
    assert doc["video"]["start_timecode"] == doc["settings"]["start_timecode"] == "00:59:59:00"
    edl = (tmp_path / "given" / "master.scenes.edl").read_text()
    assert "002  AX       V     C        01:00:00:00 01:00:01:00 01:00:00:00 01:00:01:00" in edl


def test_drop_frame_and_non_drop_29_97():
    for tc, fcm, start in [("01:00:00;00", "DROP FRAME", 107_892), ("01:00:00:00", "NON", 108_000)]:
        result = make_result(NTSC, 4000, [1799, 1800], start_timecode=tc)
        edl = to_edl(result)
        assert f"FCM: {fcm}" in edl
        assert f"001  AX       V     C        {tc} " in edl
        timeline = otio.adapters.read_from_string(edl, "cmx_3600", rate=float(NTSC))
        assert [c.source_range.start_time.value for c in timeline.find_clips()] == [
            start,
            start + 1799,
            start + 1800,
        ]
        sequence = ET.fromstring(to_fcpxml(result)).find("library/event/project/sequence")
        assert seconds(sequence.get("tcStart")) == start / NTSC
        assert sequence.get("tcFormat") == ("DF" if ";" in tc else "NDF")
        xmeml = ET.fromstring(to_fcp7(result))
        assert xmeml.findtext("sequence/timecode/string") == tc
        assert xmeml.findtext("sequence/timecode/frame") == str(start)
        assert xmeml.findtext("sequence/rate/ntsc") == "TRUE"
        read = otio.adapters.read_from_string(to_fcp7(result), "fcp_xml")
        assert [c.source_range.start_time.value for c in read.audio_tracks()[0].find_clips()] == [
            start,
            start + 1799,
            start + 1800,
        ]


def test_start_timecode_the_rate_lacks(caplog):
    video = make_result(Fraction(25), 100, [50]).video
    with pytest.raises(UsageError, match="frames 00-24"):
        with_start_timecode(video, "01:00:00:25")
    own = dataclasses.replace(video, start_timecode="01:00:00;00")
    with caplog.at_level(logging.WARNING):
        assert with_start_timecode(own, None).start_timecode is None
    assert "only 29.97 and 59.94" in caplog.text
    assert with_start_timecode(own, "00:00:10:00").start_timecode == "00:00:10:00"


def test_bad_start_timecode_option_is_one_line_before_decoding(scenecut_exe, tmp_path):
    proc = subprocess.run(
        [scenecut_exe, "segment", str(tmp_path / "absent.mp4"), "--start-timecode", "1:00:00"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --start-timecode: '1:00:00' is not a timecode like 01:00:00:00 (01:00:00;00 "
        "drop-frame)"
    ]


def test_saved_start_timecode_is_checked_and_optional(tmp_path):
    result = make_result(Fraction(25), 100, [50], start_timecode="01:00:00:00")
    for value, error in [(None, None), ("01:00:00:00", None), ("01:00:00;00", "29.97"),
                         (36, "not a string"), ("1 hour", "not a timecode")]:  # fmt: skip
        doc = result_to_dict(result)
        if value is None:
            del doc["video"]["start_timecode"]  # a file from before timecodes
        else:
            doc["video"]["start_timecode"] = value
        path = tmp_path / "film.scenes.json"
        path.write_text(json.dumps(doc))
        if error is None:
            assert load_result(path).video.start_timecode == value
        else:
            with pytest.raises(InputError, match=error):
                load_result(path)


# --- variable frame rate ---------------------------------------------------------------------


def editor_cuts(json_path: Path) -> dict[str, list[tuple[float, float]]]:
    """(start, end) seconds from the file's first frame of every scene, per format."""
    out = json_path.parent
    stem = json_path.name.removesuffix(".scenes.json")
    rate = editor_rate(load_result(json_path).video)
    cuts = {}

    def file(extension: str) -> Path:
        return out / f"{stem}.scenes.{extension}"

    edl = otio.adapters.read_from_string(file("edl").read_text(), "cmx_3600", rate=float(rate))
    cuts["edl"] = [(c.source_range.start_time, c.source_range.end_time_exclusive()) for c in
                   edl.find_clips()]  # fmt: skip
    for name, adapter in [("otio", "otio_json"), ("xml", "fcp_xml")]:
        read = otio.adapters.read_from_file(str(file(name)), adapter)
        clips = list(read.video_tracks()[0].find_clips())
        origin = clips[0].media_reference.available_range.start_time
        cuts[name] = [
            (c.source_range.start_time - origin, c.source_range.end_time_exclusive() - origin)
            for c in clips
        ]
    for name in ("edl", "otio", "xml"):
        cuts[name] = [(a.to_seconds(), b.to_seconds()) for a, b in cuts[name]]
    root = ET.parse(file("fcpxml")).getroot()
    origin = seconds(root.find("resources/asset").get("start"))
    cuts["fcpxml"] = [
        (float(seconds(c.get("start")) - origin),
         float(seconds(c.get("start")) - origin + seconds(c.get("duration"))))
        for c in root.iter("asset-clip")
    ]  # fmt: skip
    root = ET.parse(file("mlt")).getroot()
    profile = root.find("profile")
    fps = Fraction(int(profile.get("frame_rate_num")), int(profile.get("frame_rate_den")))
    cuts["mlt"] = [
        (float(int(e.get("in")) / fps), float((int(e.get("out")) + 1) / fps))
        for e in root.iter("entry")
    ]
    return cuts


def test_vfr_editor_files_cut_where_the_json_does(vfr_outputs):
    doc = json.loads(vfr_outputs.read_text())
    assert doc["video"]["vfr"] and doc["video"]["frame_rate"] == "25/1"
    truth = [(s["start_s"], s["end_s"]) for s in doc["scenes"]]
    assert truth == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    # Frame numbers at the average rate would be 5 and 3 timeline frames off: 1.2 s and 1.8 s.
    assert [(s["start_frame"], s["end_frame"]) for s in doc["scenes"]] == [
        (0, 30),
        (30, 45),
        (45, 75),
    ]
    video = load_result(vfr_outputs).video
    frame = 1 / float(editor_rate(video))
    cuts = editor_cuts(vfr_outputs)
    assert set(cuts) == {"edl", "otio", "xml", "fcpxml", "mlt"}
    for name, spans in cuts.items():
        assert len(spans) == len(truth), name
        for (start, end), (want_start, want_end) in zip(spans, truth, strict=True):
            assert abs(start - want_start) <= frame and abs(end - want_end) <= frame, (name, spans)


# --- MLT in melt -----------------------------------------------------------------------------


def _melt_frames(mlt: Path, folder: Path) -> list:
    """Every frame of the MLT timeline as melt renders it, RGB arrays."""
    import av

    if MELT is None:
        pytest.skip("the MLT test needs melt (apt-get install melt, or `make test` installs it)")
    folder.mkdir()
    # real_time=0: every frame, however slow (the default drops frames it cannot keep up
    # with, which a busy machine turned into a wrong frame count)
    consumer = [f"avformat:{folder}/%04d.png", "vcodec=png", "real_time=0"]
    subprocess.run(
        [MELT, "-quiet", str(mlt), "-consumer", *consumer],
        check=True,
        capture_output=True,
    )
    frames = []
    for png in sorted(folder.glob("*.png")):
        with av.open(str(png)) as container:
            frames.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
    return frames


@pytest.mark.parametrize("which", ["timecoded", "vfr"])
def test_melt_renders_each_scene_from_its_first_frame(which, request, tmp_path):
    import av
    import numpy as np

    if which == "vfr":
        saved = request.getfixturevalue("vfr_outputs")
    else:
        saved = segment(request.getfixturevalue("timecoded"), tmp_path / "out", ["mlt"])
    result = load_result(saved)
    with av.open(str(result.video.path)) as container:
        source = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    mlt = saved.with_name(saved.name.replace(".json", ".mlt"))
    rendered = _melt_frames(mlt, tmp_path / "melt")
    rate = editor_rate(result.video)
    assert len(rendered) == round(result.video.duration * rate)

    def diff(a, b) -> float:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

    entries = [(int(e.get("in")), int(e.get("out"))) for e in ET.parse(mlt).iter("entry")]
    assert len(entries) == len(result.scenes)
    record = 0  # where each entry starts on the timeline melt plays
    for scene, (first, last) in zip(result.scenes, entries, strict=True):
        shown = rendered[record]
        record += last - first + 1
        match = diff(shown, source[scene.start])
        assert match < 2, (scene.index, match)
        for other in (scene.start - 1, scene.start + 1):  # the cut is exact to the frame
            if 0 <= other < len(source):
                assert diff(shown, source[other]) > match + 2, (scene.index, other)
