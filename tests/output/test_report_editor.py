"""The HTML report as an editor, driven in a real headless Chromium through the DevTools protocol:
middle-keyframe thumbnails, the threshold slider, merge and split, Save, and a 2-hour film.

One browser serves the module. It speaks the protocol on a pipe (``--remote-debugging-pipe``:
NUL-terminated JSON on file descriptors 3 and 4), so no websocket client is needed.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import random
import re
import select
import subprocess
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from scenecut.data.synth import make_film
from scenecut.output.formats import result_to_dict
from scenecut.output.images import extract_frames
from scenecut.output.readers import load_result
from scenecut.output.report import render_report, video_href, write_report
from scenecut.result import (
    Scene,
    SegmentResult,
    Settings,
    Shot,
    VideoInfo,
    pick_boundaries,
    scenes_from_boundaries,
)

CHROMIUM = Path("/usr/bin/chromium")
WAIT_S = 60  # a generous bound on one answer: a hung browser fails the test instead of hanging


class Browser:
    """Headless Chromium and the DevTools protocol over its debugging pipe."""

    def __init__(self, profile: Path):
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def onto_3_and_4():  # in the child, before exec: the pipe ends Chromium expects
            a, b = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = profile / "chromium.log"
        profile.mkdir(parents=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(CHROMIUM),
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--remote-debugging-pipe",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=onto_3_and_4,
                close_fds=False,  # the two dup2'ed descriptors; ours are not inheritable
            )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(method)
            if reply.get("id") == self._last_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None, **match) -> dict:
        while True:
            for event in self.events:
                params = event.get("params", {})
                if (
                    event.get("method") == method
                    and event.get("sessionId") == session
                    and all(params.get(k) == v for k, v in match.items())
                ):
                    self.events.remove(event)
                    return params
            self.events.append(self._read(method))

    def _read(self, waiting_for: str) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], WAIT_S)
            chunk = os.read(self._in, 1 << 20) if ready else b""
            assert chunk, (
                f"chromium gave no answer to {waiting_for}: {self.log.read_text()[-2000:]}"
            )
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str, width: int = 1200, height: int = 900) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.send("Page.enable")
        page.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", session)
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=WAIT_S)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


@dataclasses.dataclass
class Page:
    browser: Browser
    session: str

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def eval(self, expression: str):
        reply = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def click(self, selector: str) -> None:
        """A real left click in the middle of the element (scrolled into view first)."""
        box = self.eval(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            "el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect();"
            "return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
            )

    def slide(self, value: float) -> None:
        """Move the threshold slider as a drag does: a new value, ``input``, then ``change``."""
        self.eval(
            "(() => { const s = document.getElementById('threshold');"
            f"s.value = '{value}'; s.dispatchEvent(new Event('input', {{bubbles: true}}));"
            "s.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )

    def scene_shots(self) -> list[list[int]]:
        """Each scene card's shot indices, as the page shows them."""
        return self.eval(
            "[...document.querySelectorAll('section.scene')].map(s =>"
            " [...s.querySelectorAll('figure.shot')].map(f => Number(f.dataset.shot)))"
        )

    def screenshot(self, path: Path) -> Path:
        png = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(png))
        return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(
            "headless browser tests need Debian's chromium at /usr/bin/chromium "
            "(apt-get install chromium, or `make test` installs it)"
        )
    chromium = Browser(tmp_path_factory.mktemp("chromium") / "profile")
    yield chromium
    chromium.close()


def _result(
    video: VideoInfo, bounds: list[tuple[int, int]], scores: list[float], **settings
) -> SegmentResult:
    """A result of these shots and scores, grouped as ``segment`` groups them."""
    shots = [Shot(i, a, b, (a, (a + b) // 2, b - 1)) for i, (a, b) in enumerate(bounds)]
    chosen = Settings("adaptive", None, 15, "classic", 0.5, None, 0)
    chosen = dataclasses.replace(chosen, **settings)
    gaps = pick_boundaries(
        scores,
        bounds,
        threshold=chosen.threshold,
        scenes=chosen.scenes,
        min_scene_frames=chosen.min_scene_frames,
    )
    scenes = scenes_from_boundaries(shots, gaps, scores)
    return SegmentResult(video, shots, scores, scenes, chosen, decoded_frames=video.frame_count)


def _expected(result: SegmentResult, gaps: list[int]) -> list[Scene]:
    """The scenes of ``gaps`` as ``load_result`` reads them back: scene scores to 4 places."""
    return [
        dataclasses.replace(scene, score=None if scene.score is None else round(scene.score, 4))
        for scene in scenes_from_boundaries(result.shots, gaps, result.boundary_scores)
    ]


def _saved_matches(text: str, result: SegmentResult, scenes: list[Scene], tmp_path: Path):
    """The saved text is ``result``'s JSON with these scenes, field for field as the writer
    writes them, and ``load_result`` reads it back to these scenes. Returns the settings."""
    saved = tmp_path / "edited.scenes.json"
    saved.write_text(text)
    written = result_to_dict(dataclasses.replace(result, scenes=scenes))
    data = json.loads(text)
    assert data["scenes"] == written["scenes"]
    assert {k: v for k, v in data.items() if k not in ("scenes", "settings")} == {
        k: v for k, v in written.items() if k not in ("scenes", "settings")
    }
    loaded = load_result(saved)
    assert loaded.scenes == scenes
    return loaded.settings


# --- the slider and exact scene fields, on a synthetic NTSC VFR result --------------------------


def _vfr_result() -> SegmentResult:
    """40 shots of an NTSC-rate VFR video whose frame times are not ``frame / fps``, so a scene's
    ``duration_s`` (the truncated exact difference) is not always ``end_s - start_s``. One score
    is 0.3 as float32 (0.30000001192...): not above a threshold of 0.3, as models compare.
    Segmented with ``--scenes 6``: the slider turns it into a threshold result."""
    rng = random.Random(5)
    lengths = [rng.randint(8, 60) for _ in range(40)]
    starts = [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    times = {f: Fraction(f * 1001 + f % 7, 30000) for f in starts}
    video = VideoInfo(
        Path("vfr </script> <!-- clip.mp4"),  # the page embeds it inside a <script>
        Fraction(30000, 1001),
        starts[-1],
        320,
        180,
        "h264",
        False,
        vfr=True,
        frame_times=times,
    )
    scores = [rng.random() for _ in range(len(lengths) - 1)]
    scores[5] = 0.30000001192092896
    return _result(video, list(pairwise(starts)), scores, scenes=6, min_scene_frames=40)


def test_slider_regroups_like_pick_boundaries(browser, tmp_path):
    result = _vfr_result()
    assert min(shot.length for shot in result.shots) < 40  # so min_scene_frames has work to do
    page_file = tmp_path / "vfr.report.html"
    page_file.write_text(render_report(result, {}))
    page = browser.open(page_file.as_uri())
    assert page.scene_shots() == [list(scene.shots) for scene in result.scenes]
    assert len(result.scenes) == 6  # segmented with --scenes 6: no threshold line yet
    threshold_shown = "getComputedStyle(document.getElementById('threshold-line')).display"
    assert page.eval(threshold_shown) == "none"
    frames = [(shot.start, shot.end) for shot in result.shots]
    counts, durations = set(), []
    for threshold in (0.85, 0.3, 0.0):
        page.slide(threshold)
        gaps = pick_boundaries(
            result.boundary_scores, frames, threshold=threshold, min_scene_frames=40
        )
        expected = _expected(result, gaps)
        assert page.scene_shots() == [list(scene.shots) for scene in expected], threshold
        assert page.eval("document.querySelectorAll('#timeline .cell').length") == len(expected)
        assert page.eval("document.querySelectorAll('#cuts line').length") == len(gaps)
        saved = page.eval("scenecutExport()")
        settings = _saved_matches(saved, result, expected, tmp_path)
        assert settings == dataclasses.replace(result.settings, threshold=threshold, scenes=None)
        assert page.eval(threshold_shown) != "none"
        counts.add(len(expected))
        durations += [
            (s["duration_s"], round(s["end_s"] - s["start_s"], 3))
            for s in json.loads(saved)["scenes"]
        ]
    assert len(counts) == 3
    assert any(exact != rounded for exact, rounded in durations)  # the exact rule was needed
    # Undo walks back one slider move at a time; Reset returns to the segmented scenes and the
    # file they came from.
    page.click("#undo")
    assert _gaps(page) == pick_boundaries(
        result.boundary_scores, frames, threshold=0.3, min_scene_frames=40
    )
    page.click("#reset")
    assert page.scene_shots() == [list(scene.shots) for scene in result.scenes]
    assert json.loads(page.eval("scenecutExport()")) == result_to_dict(result)


def _gaps(page: Page) -> list[int]:
    return [shots[-1] for shots in page.scene_shots()[:-1]]


# --- merge, split and Save on a real film's report ------------------------------------------------


@pytest.fixture(scope="module")
def faded(tmp_path_factory):
    """A small film whose scenes fade in from black, its result and its report."""
    folder = tmp_path_factory.mktemp("editor")
    truth = make_film(
        folder / "faded.mp4", seed=4, n_scenes=4, fades=True, shot_frames=(20, 30), objects=False
    )
    video = VideoInfo(
        truth.path, truth.fps, truth.frame_count, truth.width, truth.height, "h264", False
    )
    gaps = set(truth.scene_gaps())
    bounds = truth.shot_ranges()
    scores = [
        0.9 - 0.05 * (g % 3) if g in gaps else 0.1 + 0.05 * (g % 4) for g in range(len(bounds) - 1)
    ]
    result = _result(video, bounds, scores)
    report = folder / "faded.report.html"
    write_report(result, report, video_href=video_href(truth.path, report))
    return truth, result, report


def test_thumbnails_are_middle_keyframes(faded):
    """A shot entered through a fade starts black; its thumbnail, the middle keyframe, does not."""
    truth, result, report = faded
    page = report.read_text()
    images = dict(
        re.findall(r'src="data:image/jpeg;base64,([^"]+)" alt="shot \d+, frame (\d+)"', page)
    )
    images = {int(frame): base64.b64decode(data) for data, frame in images.items()}
    assert sorted(images) == [shot.keyframes[1] for shot in result.shots]
    faded_in = [shot for shot in result.shots if any(a <= shot.start < b for a, b in truth.fades)]
    assert faded_in
    firsts = extract_frames(truth.path, {shot.start for shot in faded_in})
    for shot in faded_in:
        first, thumb = _brightness(firsts[shot.start]), _brightness(images[shot.keyframes[1]])
        assert first < 25 < thumb, (shot, first, thumb)


def _brightness(jpeg: bytes) -> float:
    with Image.open(io.BytesIO(jpeg)) as image:
        return ImageStat.Stat(image.convert("L")).mean[0]


def test_merge_split_and_save(browser, faded, tmp_path):
    """Real clicks on the merge and split buttons and on Save; the downloaded file is the
    result JSON of the edited scenes. A screenshot of the page after the merge is kept."""
    _, result, report = faded
    page = browser.open(report.as_uri())
    before = page.scene_shots()
    assert before == [list(scene.shots) for scene in result.scenes] and len(before) >= 3
    page.click("#scene-2 button.merge")
    merged = [before[0], before[1] + before[2], *before[3:]]
    assert page.scene_shots() == merged
    assert page.eval("document.getElementById('scene-count').textContent") == (
        f"{len(merged)} scenes"
    )
    assert page.eval("document.getElementById('mode').textContent") == "threshold 0.5, edited"
    page.eval("window.scrollTo(0, 0)")  # the top: the timeline and the chart, then the scenes
    page.screenshot(tmp_path / "after_merge.png")
    split_at = merged[0][1]  # the first scene's second shot starts a scene of its own
    page.click(f'figure[data-shot="{split_at}"] button.split')
    edited = [merged[0][:1], merged[0][1:], *merged[1:]]
    assert page.scene_shots() == edited
    downloads = tmp_path / "downloads"
    browser.send(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True},
    )
    page.click("#save")
    browser.wait_event("Browser.downloadProgress", state="completed")
    saved = downloads / "faded.scenes.json"
    expected = _expected(result, [shots[-1] for shots in edited[:-1]])
    settings = _saved_matches(saved.read_text(), result, expected, tmp_path)
    assert settings == result.settings  # hand edits leave the settings as they were
    with Image.open(tmp_path / "after_merge.png") as image:
        assert image.size == (1200, 900)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 500


# --- a 2-hour film of 1,500 shots --------------------------------------------------------------


def _feature_film() -> SegmentResult:
    """Two hours at 24 fps cut at 1,499 random frames; a fifth of the gaps score above 0.5."""
    rng = random.Random(7)
    frames = 2 * 3600 * 24
    cuts = sorted(rng.sample(range(24, frames - 24), 1499))
    bounds = list(pairwise([0, *cuts, frames]))
    scores = [rng.random() ** 3 for _ in cuts]
    video = VideoInfo(Path("feature.mkv"), Fraction(24), frames, 1920, 800, "h264", True)
    return _result(video, bounds, scores, min_scene_frames=48)


_GEOMETRY = """(() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return [r.left, r.right, r.top, r.bottom];
  };
  const cells = [...document.querySelectorAll('#timeline .cell')];
  return {
    svg: box(document.getElementById('chart')),
    texts: [...document.querySelectorAll('#chart text')].map(box),
    ticks: [...document.querySelectorAll('#chart text.tick')].map(box),
    nav: box(document.getElementById('timeline')),
    cells: cells.map(box),
    labels: cells.map((c) => (c.classList.contains('bare') ? null : box(c.firstElementChild))),
  };
})()"""


def _no_overlap(boxes: list[list[float]]) -> bool:
    ordered = sorted(boxes)
    return all(a[1] <= b[0] for a, b in pairwise(ordered))


def _inside(inner: list[float], outer: list[float]) -> bool:
    return outer[0] - 0.5 <= inner[0] and inner[1] <= outer[1] + 0.5


def test_two_hour_film_is_readable(browser, tmp_path):
    result = _feature_film()
    page_file = tmp_path / "feature.report.html"
    page_file.write_text(render_report(result, {}))
    size = page_file.stat().st_size
    print(
        f"1,500-shot report without thumbnails: {size / 2**20:.2f} MiB, {len(result.scenes)} scenes"
    )
    assert size < 2 * 2**20
    page = browser.open(page_file.as_uri())
    assert len(page.scene_shots()) == len(result.scenes) > 150
    # Down to the slider's 0: every gap at least 2 s from the next is a boundary.
    for threshold in (None, 0.0):
        if threshold is not None:
            page.slide(threshold)
        g = page.eval(_GEOMETRY)
        assert len(g["ticks"]) >= 5  # 0:00 to 2:00:00 every 15 min or so
        assert all(_inside(box, g["svg"]) for box in g["texts"])  # the last tick is not clipped
        assert _no_overlap(g["ticks"])
        # The timeline ends at the bar's end: no scene pushed out of it.
        assert (
            abs(g["cells"][-1][1] - g["nav"][1]) < 0.5 and abs(g["cells"][0][0] - g["nav"][0]) < 0.5
        )
        # Scene numbers: some shown, none touching another, each centred on its own cell.
        shown = [(c, label) for c, label in zip(g["cells"], g["labels"], strict=True) if label]
        assert len(shown) >= 10
        assert _no_overlap([label for _, label in shown])
        assert all(_inside(label, g["nav"]) for _, label in shown)
        assert all(cell[0] <= (label[0] + label[1]) / 2 <= cell[1] for cell, label in shown)
    assert len(g["cells"]) > 1000
