"""The HTML report of a result, and an editor of its scenes: timeline, boundary-score chart,
shot thumbnails grouped by scene, a threshold slider, merge and split, and a Save button.

The report is one self-contained HTML file (inline CSS, SVG and script, thumbnails as data URIs)
so it can be mailed, archived or opened offline. It embeds the result's JSON document; the
page's script (``report.js``) groups the shots into scenes from it, re-groups them live as the
threshold slider moves, and saves the edited scenes as a result JSON that ``scenecut export``
reads. Without a script the page still shows the chart and every shot.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

from scenecut.files import atomic_write, refuse_existing
from scenecut.output.formats import result_to_dict
from scenecut.output.images import THUMB_HEIGHT, extract_frames, video_file
from scenecut.output.readers import load_result
from scenecut.output.timecode import seconds_str, timecode
from scenecut.result import SegmentResult, Shot


def report_path(video_path: Path, out_dir: Path) -> Path:
    """Where ``segment --report`` writes the report for ``video_path``."""
    return out_dir / f"{video_path.stem}.report.html"


def video_href(video_path: Path, report: Path) -> str | None:
    """A URL for ``video_path`` relative to the report's folder, or None if there is no video."""
    if not video_path.is_file():
        return None
    try:
        relative = os.path.relpath(video_path.absolute(), report.absolute().parent)
    except ValueError:  # another drive on Windows
        return video_path.absolute().as_uri()
    return quote(Path(relative).as_posix())


def write_report(
    result: SegmentResult,
    out_path: Path,
    *,
    overwrite: bool = False,
    video_href: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the HTML report of ``result`` to ``out_path``; the video must be readable.

    ``video_href`` (a URL relative to the report) embeds a player that thumbnails seek.
    ``progress(done, total)`` follows the thumbnails' decode (``images.extract_frames``).
    """
    if not overwrite:
        refuse_existing([out_path])
    wanted = {thumbnail_frame(shot) for shot in result.shots}
    thumbs = extract_frames(video_file(result), wanted, THUMB_HEIGHT, progress=progress)
    atomic_write(out_path, render_report(result, thumbs, video_href), overwrite)
    return out_path


def rebuild_report(
    json_path: str | Path,
    out_path: Path | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Report from a saved ``.scenes.json`` [default: ``<stem>.report.html`` beside it]."""
    json_path = Path(json_path)
    result = load_result(json_path)
    if out_path is None:
        out_path = report_path(result.video.path, json_path.parent)
    href = video_href(result.video.path, out_path)
    return write_report(result, out_path, overwrite=overwrite, video_href=href, progress=progress)


def thumbnail_frame(shot: Shot) -> int:
    """The shot's middle keyframe (the middle frame for results without keyframes).

    Not the first: a shot that fades in or opens on a title card starts black.
    """
    if shot.keyframes:
        return shot.keyframes[len(shot.keyframes) // 2]
    return (shot.start + shot.end) // 2


def render_report(
    result: SegmentResult, thumbs: dict[int, bytes], video_href: str | None = None
) -> str:
    """The report's HTML; ``thumbs`` maps frame indices to JPEG bytes."""
    video = result.video
    e = html.escape
    settings = result.settings
    mode = (
        f"{settings.scenes} scenes asked"
        if settings.scenes is not None
        else f"threshold {settings.threshold:g}"
    )
    facts = [
        f"{timecode(video.duration)}",
        f"{video.width}&times;{video.height}",
        f"{float(video.fps):.3f} fps" + (" (VFR)" if video.vfr else ""),
        f"{len(result.shots)} shots",
        f'<span id="scene-count">{len(result.scenes)} scenes</span>',
        f"model {e(settings.model)}",
        f'<span id="mode">{mode}</span>',
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(video.path.name)} - scenecut report</title>",
        f"<style>{_asset('report.css')}</style></head><body>",
        f"<header><h1>{e(video.path.name)}</h1>",
        f'<p class="facts">{" &middot; ".join(facts)}</p></header>',
        _editor(result),
    ]
    if video_href:
        parts.append(
            f'<video id="player" controls preload="metadata" src="{e(video_href)}"></video>'
        )
    parts.append('<nav class="timeline" id="timeline" aria-label="scenes"></nav>')
    parts.append(_score_svg(result))
    parts.append(
        '<noscript><p class="legend">Scenes, the slider and editing need JavaScript; '
        "every shot is listed below.</p></noscript>"
    )
    parts.append('<main class="scenes" id="scenes"><div class="shots">')
    parts.extend(_shot_figure(result, index, thumbs) for index in range(len(result.shots)))
    parts.append("</div></main>")
    parts.append(
        f"<footer>scenecut &middot; frames are 0-based, end-exclusive &middot; "
        f"{result.decoded_frames} frames decoded</footer>"
    )
    parts.append(
        f'<script type="application/json" id="scenecut-data">{_page_data(result)}</script>'
    )
    parts.append(f"<script>{_asset('report.js')}</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _asset(name: str) -> str:
    """A file the page inlines, shipped beside this module."""
    return files("scenecut.output").joinpath(name).read_text(encoding="utf-8")


def _page_data(result: SegmentResult) -> str:
    """What the page's script edits: the result's JSON document; the exact time of every shot's
    start and end (seconds as ``"num/den"``: a scene's ``duration_s`` truncates the exact
    difference, as the writer does); the score a scene opening after each gap is written with
    (``result_to_dict`` rounds a scene's score to 4 places, not the boundary scores); and the
    name the Save button gives the file."""
    video = result.video

    def exact(frame: int) -> str:
        t = video.time_of(frame)
        return f"{t.numerator}/{t.denominator}"

    data = {
        "result": result_to_dict(result),
        "times": [[exact(shot.start), exact(shot.end)] for shot in result.shots],
        "opening_scores": [round(score, 4) for score in result.boundary_scores],
        "name": f"{video.path.stem}.scenes.json",
        "chart": _CHART,
    }
    # Inside <script> only "</script" or "<!--" could end the text early: no "<" at all.
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _editor(result: SegmentResult) -> str:
    threshold = result.settings.threshold
    return (
        '<div class="editor" id="editor">'
        '<label>threshold <input type="range" id="threshold" min="0" max="1" step="0.001" '
        f'value="{threshold:g}" aria-label="boundary threshold">'
        f' <output id="threshold-value">{threshold:g}</output></label>'
        '<button type="button" id="undo" disabled>Undo</button>'
        '<button type="button" id="reset" disabled>Reset</button>'
        '<button type="button" id="save" title="Save the scenes as a result JSON '
        'for scenecut export">Save JSON</button>'
        '<span id="status" class="status"></span></div>'
    )


def _shot_figure(result: SegmentResult, index: int, thumbs: dict[int, bytes]) -> str:
    shot = result.shots[index]
    start = result.video.time_of(shot.start)
    frame = thumbnail_frame(shot)
    jpeg = thumbs.get(frame)
    if jpeg:
        data = base64.b64encode(jpeg).decode("ascii")
        image = (
            f'<img src="data:image/jpeg;base64,{data}" alt="shot {index + 1}, frame {frame}" '
            'loading="lazy">'
        )
    else:
        image = '<div class="missing">no image</div>'
    split = (
        f'<button type="button" class="split" data-gap="{index - 1}" '
        f'title="Start a new scene at shot {index + 1}">&#9986; split</button>'
        if index
        else ""
    )
    return (
        f'<figure class="shot" data-shot="{index}" data-t="{seconds_str(start)}" '
        f'title="shot {index + 1}: frames {shot.start}-{shot.end}">{image}'
        f"<figcaption>shot {index + 1} &middot; {timecode(start)}</figcaption>{split}</figure>"
    )


# The chart's frame in SVG units. The right margin holds half of the last tick's label
# ("10:00:00"), which sits on the plot's right edge.
_CHART = {"width": 1000, "height": 220, "left": 34, "right": 30, "top": 10, "bottom": 26}


def _score_svg(result: SegmentResult) -> str:
    """Boundary score per shot gap, placed at the gap's time; chosen cuts marked."""
    video = result.video
    width, height = _CHART["width"], _CHART["height"]
    left, top = _CHART["left"], _CHART["top"]
    plot_w = width - left - _CHART["right"]
    plot_h = height - top - _CHART["bottom"]
    total = float(video.duration) or 1.0

    def x(seconds: float) -> float:
        return left + plot_w * seconds / total

    def y(score: float) -> float:
        return top + plot_h * (1 - min(1.0, max(0.0, score)))

    chosen = {scene.first_shot - 1 for scene in result.scenes[1:]}
    points = [
        (x(float(video.time_of(result.shots[gap].end))), y(score), gap in chosen, score, gap)
        for gap, score in enumerate(result.boundary_scores)
    ]
    # Dots shrink as shots crowd the plot, down to 1 unit for a feature film's 1,500 gaps.
    radius = min(2.5, max(1.0, plot_w / max(1, len(points)) / 2))
    items = [
        f'<svg class="scores" id="chart" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="boundary score per shot gap" '
        f'data-r="{radius:g}" data-cut-r="{radius + 2:g}">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        items.append(
            f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    step = _tick_step(total)
    t = 0.0
    while t <= total + 1e-9:
        items.append(
            f'<line x1="{x(t):.1f}" y1="{top + plot_h}" x2="{x(t):.1f}" '
            f'y2="{top + plot_h + 4}" class="axis"/>'
            f'<text x="{x(t):.1f}" y="{height - 6}" text-anchor="middle" class="tick">'
            f"{_clock(t)}</text>"
        )
        t += step
    items.append('<g id="cuts">')
    for px, _, is_cut, _, _ in points:
        if is_cut:
            items.append(
                f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + plot_h}" class="cut"/>'
            )
    items.append("</g>")
    threshold = result.settings.threshold
    off = " off" if result.settings.scenes is not None else ""  # count mode: no threshold
    items.append(
        f'<line x1="{left}" y1="{y(threshold):.1f}" x2="{left + plot_w}" '
        f'y2="{y(threshold):.1f}" class="threshold{off}" id="threshold-line"/>'
    )
    if points:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, *_ in points)
        items.append(f'<polyline points="{path}" class="curve"/>')
    for px, py, is_cut, score, gap in points:
        items.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{radius + 2 if is_cut else radius:g}" '
            f'class="{"dot cut-dot" if is_cut else "dot"}">'
            f"<title>shots {gap + 1}|{gap + 2}: {score:.3f}</title></circle>"
        )
    items.append("</svg>")
    legend = (
        '<p class="legend"><span class="key curve-key"></span>boundary score per shot gap '
        '<span class="key cut-key"></span>scene boundary'
        f'<span id="threshold-legend" class="{off}"><span class="key threshold-key"></span>'
        f'threshold <span id="threshold-legend-value">{threshold:g}</span></span>'
    )
    return f'<section class="chart">{"".join(items)}{legend}</p></section>'


def _tick_step(total: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if total / step <= 8:
            return float(step)
    return 7200.0


def _clock(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"
