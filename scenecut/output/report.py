"""The HTML report of a result: timeline, boundary-score chart and shot thumbnails per scene.

The report is one self-contained HTML file (inline CSS and SVG, thumbnails as data URIs, a few
lines of JS to seek the embedded video) so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from urllib.parse import quote

from scenecut.files import atomic_write, refuse_existing
from scenecut.output.images import THUMB_HEIGHT, extract_frames, video_file
from scenecut.output.readers import load_result
from scenecut.output.timecode import seconds_str, timecode
from scenecut.result import Scene, SegmentResult, Shot

SCENE_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948")


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
) -> Path:
    """Write the HTML report of ``result`` to ``out_path``; the video must be readable.

    ``video_href`` (a URL relative to the report) embeds a player that thumbnails seek.
    """
    if not overwrite:
        refuse_existing([out_path])
    wanted = {_thumb(shot) for shot in result.shots}
    thumbs = extract_frames(video_file(result), wanted, THUMB_HEIGHT)
    atomic_write(out_path, render_report(result, thumbs, video_href), overwrite)
    return out_path


def rebuild_report(
    json_path: str | Path, out_path: Path | None = None, *, overwrite: bool = False
) -> Path:
    """Report from a saved ``.scenes.json`` [default: ``<stem>.report.html`` beside it]."""
    json_path = Path(json_path)
    result = load_result(json_path)
    if out_path is None:
        out_path = report_path(result.video.path, json_path.parent)
    href = video_href(result.video.path, out_path)
    return write_report(result, out_path, overwrite=overwrite, video_href=href)


def _thumb(shot: Shot) -> int:
    """The shot's middle keyframe (the middle frame for results without keyframes)."""
    if len(shot.keyframes) >= 2:
        return shot.keyframes[1]
    return (shot.start + shot.end) // 2


def render_report(
    result: SegmentResult, thumbs: dict[int, bytes], video_href: str | None = None
) -> str:
    """The report's HTML; ``thumbs`` maps frame indices to JPEG bytes."""
    video = result.video
    duration = video.duration
    e = html.escape
    settings = result.settings
    mode = (
        f"{settings.scenes} scenes asked"
        if settings.scenes is not None
        else f"threshold {settings.threshold:g}"
    )
    facts = [
        f"{timecode(duration)}",
        f"{video.width}&times;{video.height}",
        f"{float(video.fps):.3f} fps" + (" (VFR)" if video.vfr else ""),
        f"{len(result.shots)} shots",
        f"{len(result.scenes)} scenes",
        f"model {e(settings.model)}",
        mode,
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(video.path.name)} - scenecut report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{e(video.path.name)}</h1>",
        f'<p class="facts">{" &middot; ".join(facts)}</p></header>',
    ]
    if video_href:
        parts.append(
            f'<video id="player" controls preload="metadata" src="{e(video_href)}"></video>'
        )
    parts.append(_timeline(result))
    parts.append(_score_svg(result))
    parts.append('<main class="scenes">')
    for scene in result.scenes:
        parts.append(_scene_card(result, scene, thumbs))
    parts.append("</main>")
    parts.append(
        f"<footer>scenecut &middot; frames are 0-based, end-exclusive &middot; "
        f"{result.decoded_frames} frames decoded</footer>"
    )
    if video_href:
        parts.append(f"<script>{_JS}</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _timeline(result: SegmentResult) -> str:
    video = result.video
    total = float(video.duration) or 1.0
    cells = []
    for scene in result.scenes:
        t0, t1 = video.time_of(scene.start), video.time_of(scene.end)
        share = 100 * float(t1 - t0) / total
        colour = SCENE_COLOURS[scene.index % len(SCENE_COLOURS)]
        title = f"Scene {scene.index + 1}: {timecode(t0)} - {timecode(t1)}"
        cells.append(
            f'<a class="cell" href="#scene-{scene.index + 1}" title="{title}" '
            f'style="flex:{share:.4f} 1 0;background:{colour}">'
            f"<span>{scene.index + 1}</span></a>"
        )
    return f'<nav class="timeline" aria-label="scenes">{"".join(cells)}</nav>'


def _score_svg(result: SegmentResult) -> str:
    """Boundary score per shot gap, placed at the gap's time; chosen cuts marked."""
    video = result.video
    width, height = 1000, 220
    left, right, top, bottom = 34, 10, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
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
    items = [
        f'<svg class="scores" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="boundary score per shot gap">',
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
            f'<text x="{x(t):.1f}" y="{height - 6}" text-anchor="middle">{_clock(t)}</text>'
        )
        t += step
    for px, _, is_cut, _, _ in points:
        if is_cut:
            items.append(
                f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + plot_h}" class="cut"/>'
            )
    if result.settings.scenes is None:
        ty = y(result.settings.threshold)
        items.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{left + plot_w}" y2="{ty:.1f}" '
            'class="threshold"/>'
        )
    if points:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, *_ in points)
        items.append(f'<polyline points="{path}" class="curve"/>')
    for px, py, is_cut, score, gap in points:
        items.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{5 if is_cut else 2.5}" '
            f'class="{"dot cut-dot" if is_cut else "dot"}">'
            f"<title>shots {gap + 1}|{gap + 2}: {score:.3f}</title></circle>"
        )
    items.append("</svg>")
    legend = (
        '<p class="legend"><span class="key curve-key"></span>boundary score per shot gap '
        '<span class="key cut-key"></span>scene boundary'
    )
    if result.settings.scenes is None:
        legend += f' <span class="key threshold-key"></span>threshold {result.settings.threshold:g}'
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


def _scene_card(result: SegmentResult, scene: Scene, thumbs: dict[int, bytes]) -> str:
    video = result.video
    t0, t1 = video.time_of(scene.start), video.time_of(scene.end)
    number = scene.index + 1
    colour = SCENE_COLOURS[scene.index % len(SCENE_COLOURS)]
    count = scene.last_shot - scene.first_shot + 1
    score = "" if scene.score is None else f" &middot; boundary score {scene.score:.2f}"
    shots = []
    for index in scene.shots:
        shot = result.shots[index]
        start = video.time_of(shot.start)
        frame = _thumb(shot)
        label = f"shot {index + 1} &middot; {timecode(start)}"
        jpeg = thumbs.get(frame)
        if jpeg:
            data = base64.b64encode(jpeg).decode("ascii")
            image = (
                f'<img src="data:image/jpeg;base64,{data}" alt="shot {index + 1}, frame {frame}" '
                f'loading="lazy">'
            )
        else:
            image = '<div class="missing">no image</div>'
        shots.append(
            f'<figure class="shot" data-t="{seconds_str(start)}" '
            f'title="shot {index + 1}: frames {shot.start}-{shot.end}">'
            f"{image}<figcaption>{label}</figcaption></figure>"
        )
    return (
        f'<section class="scene" id="scene-{number}" data-scene="{number}" '
        f'style="border-left-color:{colour}">'
        f"<h2>Scene {number}</h2>"
        f'<p class="when">{timecode(t0)} &ndash; {timecode(t1)} '
        f"&middot; {seconds_str(t1 - t0)} s &middot; {count} shot{'s' if count != 1 else ''}"
        f"{score} &middot; frames {scene.start}-{scene.end}</p>"
        f'<div class="shots">{"".join(shots)}</div></section>'
    )


_CSS = """
*{box-sizing:border-box}
body{margin:0 auto;padding:12px;max-width:1200px;font:15px/1.4 system-ui,sans-serif;
color:#222;background:#f6f6f4}
h1{font-size:1.4em;margin:0 0 4px;word-break:break-all}
h2{font-size:1.1em;margin:0}
.facts,.when,.legend{margin:0 0 8px;color:#555;font-size:.9em}
video{display:block;max-width:100%;max-height:45vh;background:#000;margin:8px auto}
.timeline{display:flex;width:100%;height:28px;border-radius:4px;overflow:hidden;margin:10px 0}
.timeline .cell{min-width:2px;color:#fff;text-decoration:none;font-size:12px;
display:flex;align-items:center;justify-content:center;overflow:hidden}
.timeline .cell:hover{filter:brightness(1.2)}
.chart{background:#fff;border-radius:6px;padding:6px;margin:10px 0;overflow-x:auto}
svg.scores{width:100%;height:auto;display:block}
svg text{font-size:12px;fill:#555}
.plot{fill:#fafafa;stroke:#ddd}
.axis{stroke:#999}
.curve{fill:none;stroke:#4e79a7;stroke-width:1.5}
.dot{fill:#4e79a7}
.cut-dot{fill:#e15759}
.cut{stroke:#e15759;stroke-width:1;opacity:.5}
.threshold{stroke:#333;stroke-dasharray:6 4}
.key{display:inline-block;width:18px;height:0;border-top:2px solid;vertical-align:middle;
margin:0 4px 0 10px}
.curve-key{border-color:#4e79a7}.cut-key{border-color:#e15759}
.threshold-key{border-top-style:dashed;border-color:#333}
.scenes{display:flex;flex-direction:column;gap:10px}
.scene{background:#fff;border-radius:6px;border-left:6px solid;padding:8px 10px}
.shots{display:flex;flex-wrap:wrap;gap:6px}
.shot{margin:0;cursor:pointer;max-width:100%}
.shot img,.shot .missing{display:block;height:90px;max-width:100%;border-radius:3px;
object-fit:cover}
.shot .missing{width:120px;background:#ddd;color:#777;text-align:center;line-height:90px}
.shot figcaption{font-size:11px;color:#666}
.shot:hover img{outline:2px solid #e15759}
footer{color:#888;font-size:.8em;margin:16px 0}
/* On phones the chart keeps a legible size and scrolls sideways inside its box. */
@media (max-width:500px){body{padding:6px}.shot img,.shot .missing{height:64px}
svg.scores{min-width:640px}}
"""


_JS = """
const player=document.getElementById('player');
document.querySelectorAll('.shot[data-t]').forEach(el=>el.addEventListener('click',()=>{
player.currentTime=parseFloat(el.dataset.t);player.play();
player.scrollIntoView({behavior:'smooth',block:'nearest'});}));
"""
