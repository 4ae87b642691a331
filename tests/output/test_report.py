"""The HTML report (checked in a real headless Chromium), saved images, and reading JSON back."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.data.synth import make_film
from scenecut.errors import InputError, OutputError
from scenecut.output.formats import to_json
from scenecut.output.images import image_frames, save_images
from scenecut.output.readers import load_result
from scenecut.output.report import write_report
from scenecut.result import Scene, SegmentResult, Settings, Shot, VideoInfo
from scenecut.segment import segment

CHROMIUM = Path("/usr/bin/chromium")
runner = CliRunner()


@pytest.fixture(scope="module")
def small_film(tmp_path_factory):
    return make_film(
        tmp_path_factory.mktemp("report") / "small.mp4", seed=1, n_scenes=3, width=160, height=96
    )


@pytest.fixture(scope="module")
def segmented(small_film, tmp_path_factory):
    """``segment --report --save-images 2`` on the small film: (output dir, stdout lines)."""
    out = tmp_path_factory.mktemp("segmented")
    args = ["segment", str(small_film.path), "-o", str(out), "--report", "--save-images", "2"]
    res = runner.invoke(app, [*args, "-q"])
    assert res.exit_code == 0, res.output
    return out, res.stdout.split()


def _embedded(page: str) -> dict:
    """The data a report page embeds for its script."""
    start = page.index('<script type="application/json" id="scenecut-data">')
    text = page[page.index(">", start) + 1 : page.index("</script>", start)]
    return json.loads(text)


def _rounded(result: SegmentResult) -> SegmentResult:
    """``result`` as its JSON stores it: scene scores rounded to 4 decimals."""
    return dataclasses.replace(
        result,
        scenes=[
            dataclasses.replace(s, score=None if s.score is None else round(s.score, 4))
            for s in result.scenes
        ],
    )


# --- load_result -----------------------------------------------------------------------------


def test_load_result_round_trips_json(small_film, tmp_path):
    result = segment(small_film.path)
    saved = tmp_path / "small.scenes.json"
    saved.write_text(to_json(result))
    loaded = load_result(saved)
    assert loaded == _rounded(result)
    assert type(loaded.video.fps) is Fraction
    assert loaded.video.fps == small_film.fps
    assert to_json(loaded) == to_json(result)


def test_load_result_ntsc_vfr(tmp_path):
    fps = Fraction(30000, 1001)
    times = {0: Fraction(0), 40: Fraction(1), 100: Fraction(3), 120: Fraction(7, 2)}
    result = SegmentResult(
        video=VideoInfo(
            Path("clip.mov"), fps, 120, 64, 48, "h264", True, vfr=True, frame_times=times
        ),
        shots=[Shot(0, 0, 40, (2, 20, 37)), Shot(1, 40, 100, (42, 70, 97)), Shot(2, 100, 120)],
        boundary_scores=[0.25, 0.75],
        scenes=[Scene(0, 0, 0, 0, 40, None), Scene(1, 1, 2, 40, 120, 0.25)],
        settings=Settings("adaptive", None, 18, "classic", 0.2, None, 0),
        decoded_frames=120,
    )
    saved = tmp_path / "clip.scenes.json"
    saved.write_text(to_json(result))
    loaded = load_result(saved)
    assert loaded == result
    assert loaded.video.fps == fps
    assert loaded.video.frame_times == times
    assert loaded.video.time_of(100) == 3  # not 100 / fps: VFR times come back
    assert to_json(loaded) == to_json(result)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("not json", "not a JSON file"),
        ("[1, 2]", "not a scenecut result"),
        ('{"schema_version": 1, "video": {}, "scenes": []}', "not a scenecut result"),
    ],
)
def test_load_result_rejects_bad_files(tmp_path, text, needle):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(InputError, match=needle):
        load_result(bad)
    with pytest.raises(InputError, match="no such file"):
        load_result(tmp_path / "missing.json")


# --- images ----------------------------------------------------------------------------------


def test_image_frames_spread_like_pyscenedetect():
    assert image_frames(0, 100, 1) == [50]
    assert image_frames(0, 100, 3) == [1, 49, 98]
    assert image_frames(10, 12, 2) == [10, 11]  # too short for a margin
    assert all(10 <= f < 11 for f in image_frames(10, 11, 3))


def test_save_images_per_shot_and_refusal(small_film, tmp_path):
    result = segment(small_film.path)
    written = save_images(result, tmp_path, per="shot", count=1)
    assert len(written) == len(result.shots)
    assert written[0].name == "small-Shot-001-01.jpg"
    with Image.open(written[0]) as image:
        assert image.size == (160, 96)
    with pytest.raises(OutputError, match="--overwrite"):
        save_images(result, tmp_path, per="shot", count=1)
    assert save_images(result, tmp_path, per="shot", count=1, overwrite=True) == written


# --- CLI -------------------------------------------------------------------------------------


def test_segment_report_and_images(segmented, small_film):
    out, lines = segmented
    data = json.loads((out / "small.scenes.json").read_text())
    n_scenes = len(data["scenes"])
    report = out / "small.report.html"
    images = sorted(out.glob("small-Scene-*.jpg"))
    assert lines == [
        str(out / "small.scenes.json"),
        str(report),
        *(str(p) for p in images),
    ]
    assert [p.name for p in images[:2]] == ["small-Scene-001-01.jpg", "small-Scene-001-02.jpg"]
    assert len(images) == 2 * n_scenes
    for path in images:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.size == (160, 96)
    page = report.read_text()
    assert _embedded(page)["result"] == data  # the page's script groups its scenes
    assert page.count("data:image/jpeg;base64,") == len(data["shots"])
    href = Path(os.path.relpath(small_film.path, out)).as_posix()
    assert f'<video id="player" controls preload="metadata" src="{href}">' in page
    assert "http://" not in page and "https://" not in page  # self-contained, no network


def test_segment_refuses_existing_report(segmented, small_film):
    out, _ = segmented
    before = (out / "small.report.html").stat().st_mtime_ns
    res = runner.invoke(
        app, ["segment", str(small_film.path), "-o", str(out), "-f", "csv", "--report", "-q"]
    )
    assert res.exit_code == 1
    assert "small.report.html already exists" in res.stderr
    assert not (out / "small.scenes.csv").exists()  # refused before anything was written
    assert (out / "small.report.html").stat().st_mtime_ns == before


def test_report_command_rebuilds(segmented, tmp_path):
    out, _ = segmented
    saved = out / "small.scenes.json"
    res = runner.invoke(app, ["report", str(saved)])
    assert isinstance(res.exception, OutputError), res.output
    assert "--overwrite" in str(res.exception)
    res = runner.invoke(app, ["report", str(saved), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(out / "small.report.html")]
    elsewhere = tmp_path / "deep" / "r.html"
    res = runner.invoke(app, ["report", str(saved), "-o", str(elsewhere)])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(elsewhere)]
    page = elsewhere.read_text()
    assert _embedded(page)["result"] == json.loads(saved.read_text())


def test_report_command_needs_the_video(segmented, tmp_path):
    out, _ = segmented
    data = json.loads((out / "small.scenes.json").read_text())
    data["video"]["path"] = str(tmp_path / "gone.mp4")
    moved = tmp_path / "gone.scenes.json"
    moved.write_text(json.dumps(data))
    res = runner.invoke(app, ["report", str(moved)])
    assert isinstance(res.exception, InputError)
    assert "gone.mp4" in str(res.exception) and "not there" in str(res.exception)
    assert not (tmp_path / "gone.report.html").exists()


def _damage(path: str, value):
    """A change of a saved result setting ``data[a][b]...`` (``path`` ``"a.b.-1.c"``)."""
    *parents, last = [int(k) if k.lstrip("-").isdigit() else k for k in path.split(".")]

    def change(data):
        for key in parents:
            data = data[key]
        data[last] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _damage("shots.1.start_frame", "abc"),
        _damage("shots.0.start_frame", -50),
        _damage("boundary_scores.0", float("nan")),
        _damage("scenes.-1.last_shot", 99),
        lambda data: data.update(shots=[], boundary_scores=[]),
        _damage("settings.threshold", "x"),
        _damage("video.frame_count", "many"),
        _damage("video.frame_rate", float("inf")),
        _damage("video.path", "a" * 5000),
    ],
    ids=[
        "text-frame",
        "negative-frame",
        "nan-score",
        "scene-of-missing-shots",
        "no-shots",
        "text-threshold",
        "text-frame-count",
        "infinite-frame-rate",
        "path-too-long",
    ],
)
def test_report_command_refuses_a_damaged_result(segmented, scenecut_exe, tmp_path, change):
    """A damaged or wrong-shaped result is one line naming it and exit 1, never a bug (3) or a
    report of nonsense; the video it names is there, so only the file's content is wrong."""
    out, _ = segmented
    data = json.loads((out / "small.scenes.json").read_text())
    change(data)
    damaged = tmp_path / "damaged.scenes.json"
    damaged.write_text(json.dumps(data))
    proc = subprocess.run(
        [scenecut_exe, "report", str(damaged), "-o", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and "damaged.scenes.json" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "r.html").exists()


def test_report_without_video_link(small_film, tmp_path):
    result = segment(small_film.path)
    page = write_report(result, tmp_path / "r.html", video_href=None).read_text()
    assert "<video" not in page and 'id="player"' not in page


# --- real browser ----------------------------------------------------------------------------


def _chromium(*args: str, profile: Path) -> tuple[subprocess.CompletedProcess, float]:
    if not CHROMIUM.exists():
        pytest.skip(
            "headless browser tests need Debian's chromium at /usr/bin/chromium "
            "(apt-get install chromium, or `make test` installs it)"
        )
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    print(f"chromium {args[-2].split('=')[0]}: {seconds:.2f} s")
    return proc, seconds


def _distinct_colours(png: Path) -> int:
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
    return len(colours)


class _SceneCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scenes: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "scene" in (attrs.get("class") or "").split():
            self.scenes.append(attrs.get("data-scene", ""))


@pytest.mark.parametrize("size", [(1200, 900), (390, 844)], ids=["desktop", "phone"])
def test_report_renders_in_chromium(segmented, tmp_path, size):
    out, _ = segmented
    report = out / "small.report.html"
    png = tmp_path / "shot.png"
    _, seconds = _chromium(
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={png}",
        report.absolute().as_uri(),
        profile=tmp_path / "profile",
    )
    assert seconds < 60
    with Image.open(png) as image:
        assert image.size == size
    assert _distinct_colours(png) > 500  # thumbnails, timeline and chart, not a blank page


def test_report_dom_in_chromium(segmented, tmp_path):
    out, _ = segmented
    n_scenes = len(json.loads((out / "small.scenes.json").read_text())["scenes"])
    proc, seconds = _chromium(
        "--window-size=1200,900",
        "--dump-dom",
        (out / "small.report.html").absolute().as_uri(),
        profile=tmp_path / "profile",
    )
    assert seconds < 60
    counter = _SceneCounter()
    counter.feed(proc.stdout)
    assert len(counter.scenes) == n_scenes
    assert counter.scenes == [str(i + 1) for i in range(n_scenes)]
    assert "<svg" in proc.stdout and "<video" in proc.stdout


def test_cli_images_per_shot(small_film, tmp_path):
    out = tmp_path / "shots"
    args = ["segment", str(small_film.path), "-o", str(out), "--save-images", "1"]
    res = runner.invoke(app, [*args, "--images-per", "shot", "-q"])
    assert res.exit_code == 0, res.output
    shots = json.loads((out / "small.scenes.json").read_text())["shots"]
    assert len(list(out.glob("small-Shot-*.jpg"))) == len(shots)
    bad = runner.invoke(app, [*args, "--images-per", "frame", "-q"])
    assert bad.exit_code != 0 and "--images-per" in str(bad.exception)
