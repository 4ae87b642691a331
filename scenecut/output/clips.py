"""One clip per scene, cut by ffmpeg: re-encoded and frame-accurate, or stream-copied."""

from __future__ import annotations

import bisect
import math
import os
import re
import string
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from fractions import Fraction
from pathlib import Path

from scenecut.errors import ExportError, UsageError
from scenecut.files import check_writable, make_dir, refuse_existing, replacing
from scenecut.result import Scene, SegmentResult, VideoInfo
from scenecut.video import ffmpeg_exe

DEFAULT_TEMPLATE = "$VIDEO_NAME-Scene-$SCENE_NUMBER"
TEMPLATE_MACROS = ("VIDEO_NAME", "SCENE_NUMBER", "START_FRAME", "END_FRAME")
# H.264 in 4:2:0 needs even sizes: an odd width or height (a 161x97 GIF) loses its last column
# or row, as the keyframes do.
EVEN = "crop=trunc(iw/2)*2:trunc(ih/2)*2"
# A stream copy keeps the container, named by the source's suffix; a few suffixes name a muxer
# that cannot take a copied stream.
COPY_SUFFIXES = {".png": ".apng", "": ".mkv"}
REENCODE_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "22", "-pix_fmt", "yuv420p"]


def _decimal(seconds: Fraction) -> str:
    """Seconds with 6 decimals, truncated, for ffmpeg's command line."""
    us = math.floor(seconds * 1_000_000)
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def clip_extension(source: Path, copy: bool) -> str:
    """``.mp4`` for re-encoded clips; for stream copies the source's container."""
    if not copy:
        return ".mp4"
    suffix = source.suffix.lower()
    return COPY_SUFFIXES.get(suffix, source.suffix)


def clip_names(result: SegmentResult, template: str, extension: str) -> list[str]:
    """File names for each scene's clip; ``extension`` includes the dot."""
    width = max(3, len(str(len(result.scenes))))
    names = [
        _render(template, result.video.path.stem, f"{scene.index + 1:0{width}d}", scene) + extension
        for scene in result.scenes
    ]
    if len(set(names)) < len(names):
        raise UsageError(
            f"clip name template {template!r} gives two clips the same name; add $SCENE_NUMBER"
        )
    return names


def check_template(template: str) -> None:
    """``UsageError`` now, before any decoding, for a template no scene can be named by."""
    sample_name(template, "video")


def sample_name(template: str, stem: str) -> str:
    """A long clip name ``template`` gives a video called ``stem`` (for checks before a run)."""
    return _render(template, stem, "0001", Scene(0, 0, 0, 9_999_999, 9_999_999, None))


def clip_pattern(template: str, stem: str, extensions: list[str]) -> str:
    """A regular expression for the names ``template`` gives clips of ``stem`` in any run."""
    marks = {m: f"SCENECUTMACRO{i}X" for i, m in enumerate(TEMPLATE_MACROS)}
    pattern = re.escape(string.Template(template).safe_substitute(marks))
    digits = {"VIDEO_NAME": re.escape(stem), "SCENE_NUMBER": r"\d{3,}"}
    for macro, mark in marks.items():
        pattern = pattern.replace(mark, digits.get(macro, r"\d+"))
    return pattern + "(?:" + "|".join(re.escape(e) for e in dict.fromkeys(extensions)) + ")"


def _render(template: str, stem: str, number: str, scene: Scene) -> str:
    values = {
        "VIDEO_NAME": stem,
        "SCENE_NUMBER": number,
        "START_FRAME": str(scene.start),
        "END_FRAME": str(scene.end),
    }
    try:
        name = string.Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise UsageError(
            f"bad clip name template {template!r} ({exc}); "
            f"macros: {', '.join('$' + m for m in TEMPLATE_MACROS)}"
        ) from exc
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\0" in name
        or (os.altsep and os.altsep in name)
    ):
        raise UsageError(f"clip name template {template!r} must give a plain file name")
    return name


def _ffmpeg_args(video: VideoInfo, scene: Scene, copy: bool) -> list[str]:
    """Arguments between ``ffmpeg`` and the output file for one scene."""
    source = f"file:{video.path}"  # never a protocol ("http:...") or an option ("-...")
    start = video.start_offset + video.time_of(scene.start)
    duration = video.time_of(scene.end) - video.time_of(scene.start)
    common = ["-nostdin", "-v", "error", "-y"]
    if copy:
        # Stream copy can only start on a keyframe: ffmpeg starts at one near the scene start.
        return [
            *common,
            *("-ss", _decimal(start), "-i", source, "-t", _decimal(duration)),
            *("-map", "0:v:0", "-map", "0:a?", "-c", "copy", "-sn"),
        ]
    # Seek a little early so that rounded timestamps cannot drop the scene's first frame; ffmpeg
    # decodes from the keyframe before and discards frames before the seek point. CFR times are
    # computed (index / fps), so allow a quarter of a frame (half a frame is the point where a
    # 1/fps time base rounds either way: AVI's clips began a frame early); VFR scene starts are
    # the decoded pts, but a
    # VFR frame may be much shorter than 1 / fps, so allow 1 ms. The audio before the scene is
    # trimmed and both streams are shifted to start at 0.
    # The seek goes to the keyframe the scene's first frame decodes from (found while decoding):
    # in a container without an index (MPEG-TS) a seek to the scene itself can land past that
    # keyframe, and the clip would start at the next one. The frames between the keyframe and
    # the scene are then trimmed by their timestamps.
    margin = 1 / (4 * video.fps)
    if video.vfr:
        margin = min(margin, Fraction(1, 1000))
    keyframe = _keyframe_before(video.keyframe_times, video.time_of(scene.start))
    if keyframe is None:  # the first keyframe: read from the start (a seek to just before the
        seek = Fraction(0)  # first packet lands on the *next* keyframe in FLV, for one)
    else:
        seek = Fraction(_decimal(max(Fraction(0), video.start_offset + keyframe - margin)))
    lead = start - seek
    args = [
        *common,
        *(("-ss", _decimal(seek)) if seek else ()),
        *("-i", source),
        *("-map", "0:v:0", "-map", "0:a?", "-sn"),
        *("-frames:v", str(scene.length), "-t", _decimal(duration)),
        *("-vf", f"trim=start={_decimal(lead - margin)},setpts=PTS-STARTPTS,{EVEN}"),
        *REENCODE_ARGS,
    ]
    if video.vfr:
        # Keep the source's timestamps; the default 1/fps encoder clock merges VFR frames.
        args += ["-enc_time_base", "demux"]
    if video.has_audio:
        lead_text = _decimal(lead)
        args += ["-af", f"atrim=start={lead_text},asetpts=PTS-{lead_text}/TB", "-c:a", "aac"]
    return args


class _Children:
    """The ffmpeg processes running for ``export_clips``, so that an interrupted export (Ctrl-C,
    SIGTERM, an error) ends them instead of leaving them to run on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.stopped = False

    def run(self, cmd: list[str]) -> tuple[int, bytes]:
        with self.lock:
            if self.stopped:
                raise ExportError("clip export stopped")
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            self.running.add(proc)
        try:
            _, err = proc.communicate()
        finally:
            with self.lock:
                self.running.discard(proc)
        return proc.returncode, err

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            procs = list(self.running)
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def _keyframe_before(keyframes: Sequence[float], time: Fraction) -> Fraction | None:
    """The last keyframe time at or before ``time``: None for the video's first keyframe,
    ``time`` itself when no keyframe is known."""
    i = bisect.bisect_right(keyframes, float(time) + 1e-6)
    if not keyframes:
        return time
    if i <= 1:
        return None
    return min(time, Fraction(keyframes[i - 1]))


def _export_one(
    children: _Children, exe: str, args: list[str], target: Path, scene_number: int
) -> None:
    with replacing(target) as tmp:
        try:
            code, err = children.run([exe, *args, str(tmp)])
        except OSError as exc:
            raise ExportError(
                f"cannot run ffmpeg ({exe}: {exc.strerror or exc}); install ffmpeg or set "
                "SCENECUT_FFMPEG"
            ) from exc
        if code != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            reason = lines[-1] if lines else f"exit status {code}"
            raise ExportError(f"scene {scene_number}: ffmpeg failed: {reason}")


def export_clips(
    result: SegmentResult,
    out_dir: Path,
    *,
    template: str = DEFAULT_TEMPLATE,
    copy: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    jobs: int | None = None,
) -> list[Path]:
    """Cut one clip per scene with ffmpeg, in parallel; returns the clip paths in scene order.

    By default each clip is re-encoded (H.264/AAC .mp4) and frame accurate: it holds exactly the
    scene's frames, with audio for the same span. ``copy=True`` copies the streams instead (fast,
    original container) but is keyframe-aligned, not frame accurate: a clip starts at a keyframe
    near the scene start. Template macros: ``$VIDEO_NAME``, ``$SCENE_NUMBER`` (1-based, at least 3
    digits), ``$START_FRAME`` and ``$END_FRAME`` (0-based, end exclusive). ``progress(done,
    total)`` is called from the calling thread. If any clip fails, the others still finish and
    one ``ExportError`` lists the failures.
    """
    video = result.video
    extension = clip_extension(video.path, copy)
    targets = [out_dir / name for name in clip_names(result, template, extension)]
    if not overwrite:
        refuse_existing(targets)
    check_writable(out_dir)
    make_dir(out_dir)
    if jobs is None:
        cpus = os.cpu_count() or 1
        # x264 is itself multithreaded; a stream copy is bound by I/O instead.
        jobs = min(8, cpus) if copy else max(1, cpus // 2)
    exe = ffmpeg_exe()
    total = len(targets)
    failures: dict[int, str] = {}
    children = _Children()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            pool.submit(
                _export_one,
                children,
                exe,
                _ffmpeg_args(video, scene, copy),
                target,
                scene.index + 1,
            ): scene.index
            for scene, target in zip(result.scenes, targets, strict=True)
        }
        try:
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    future.result()
                except ExportError as exc:
                    failures[futures[future]] = str(exc)
                if progress:
                    progress(done, total)
        except BaseException:
            # Ctrl-C, SIGTERM or a raising progress callback: drop the queued scenes and end
            # the running ffmpegs (their temporary files are deleted as their threads end).
            children.stop()
            pool.shutdown(cancel_futures=True)
            raise
    if failures:
        # Sorted by scene; identical messages (ffmpeg missing) are shown once.
        reasons = dict.fromkeys(failures[i] for i in sorted(failures))
        raise ExportError(f"{len(failures)} of {total} clips failed: " + "; ".join(reasons))
    return targets
