"""Still images of a result's frames: report thumbnails and ``--save-images`` JPEGs."""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Callable
from pathlib import Path

from scenecut.errors import InputError, UsageError
from scenecut.files import atomic_write, check_writable, refuse_existing
from scenecut.result import SegmentResult
from scenecut.shots import rotation_turns
from scenecut.video import decode, upright_size

log = logging.getLogger(__name__)


THUMB_HEIGHT = 90
THUMB_QUALITY = 80
IMAGE_QUALITY = 95  # PySceneDetect's save-images default


# --- frames ----------------------------------------------------------------------------------


def extract_frames(
    video_path: str | Path,
    frames: set[int],
    height: int | None = THUMB_HEIGHT,
    *,
    quality: int = THUMB_QUALITY,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, bytes]:
    """JPEG images of the wanted frame indices, in one sequential decode that stops after the last.

    Frames are numbered as ``segment`` numbers them. ``height`` scales the images down (never
    up); ``None`` keeps the full size. Frames past the end of the video are left out.
    ``progress(done, total)`` counts the frames decoded up to the last one wanted.
    """
    images: dict[int, bytes] = {}
    if not frames:
        return images
    last = max(frames)
    probe, decoded = decode(Path(video_path))
    turns = None
    try:
        for item in decoded:
            if turns is None:  # frames are turned upright, ``height`` high as shown
                turns = rotation_turns(item.frame)
                size = (probe.width, probe.height)
                if height is not None:
                    size = upright_size(probe.width, probe.height, height, turns)
            if item.index in frames:
                image = item.frame.to_image(width=size[0], height=size[1])
                if turns:
                    image = image.rotate(90 * turns, expand=True)
                if image.mode != "RGB":
                    image = image.convert("RGB")
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=quality)
                images[item.index] = buffer.getvalue()
            if progress:
                progress(min(item.index, last) + 1, last + 1)
            if item.index >= last:
                break
    finally:
        decoded.close()
    missing = frames - images.keys()
    if missing:
        log.warning(
            "%s: %d wanted frames lie past the end of the video (first: %d)",
            video_path,
            len(missing),
            min(missing),
        )
    return images


def video_file(result: SegmentResult) -> Path:
    path = result.video.path
    if not path.is_file():
        raise InputError(
            f"{path}: the video is needed for thumbnails but is not there; "
            "run from the directory the result was made in, or move the video back"
        )
    return path


# --- still images ----------------------------------------------------------------------------


def image_frames(start: int, end: int, count: int) -> list[int]:
    """``count`` frames spread over ``[start, end)`` as PySceneDetect's ``save-images`` picks.

    The range is split into ``count`` equal parts: the first image is the start of the first part,
    the last the end of the last part, the others the middles of theirs, each kept one frame off
    the scene's edges where the scene is long enough. A single image is the middle frame.
    """
    length = end - start
    if count == 1:
        return [start + length // 2]
    margin = 1 if length >= 3 else 0
    frames = []
    for i in range(count):
        a = start + length * i // count
        b = start + length * (i + 1) // count
        if i == 0:
            frame = a + margin
        elif i == count - 1:
            frame = b - 1 - margin
        else:
            frame = (a + b) // 2
        frames.append(min(end - 1, max(start, frame)))
    return frames


def image_names(result: SegmentResult, per: str, count: int) -> list[tuple[str, list[int]]]:
    """``(file stem prefix, frames)`` per scene or shot, PySceneDetect-style numbering."""
    if per == "scene":
        spans = [(s.start, s.end) for s in result.scenes]
        label = "Scene"
    elif per == "shot":
        spans = [(s.start, s.end) for s in result.shots]
        label = "Shot"
    else:
        raise UsageError(f"images are saved per 'scene' or 'shot', not {per!r}")
    width = max(3, len(str(len(spans))))
    stem = result.video.path.stem
    return [
        (f"{stem}-{label}-{i + 1:0{width}d}", image_frames(start, end, count))
        for i, (start, end) in enumerate(spans)
    ]


def image_pattern(stem: str) -> str:
    """A regular expression for the names ``save_images`` gives images of ``stem``."""
    return re.escape(stem) + r"-(?:Scene|Shot)-\d{3,}-\d{2,}\.jpg"


def save_images(
    result: SegmentResult,
    out_dir: Path,
    *,
    per: str = "scene",
    count: int = 3,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Save ``count`` full-size JPEGs per scene (or shot) in one decode pass (``progress`` as
    ``extract_frames`` reports it).

    Names follow PySceneDetect's ``$VIDEO_NAME-Scene-$SCENE_NUMBER-$IMAGE_NUMBER.jpg``: scene
    number at least 3 digits, image number ``floor(log10(count)) + 2`` digits.
    """
    if count < 1:
        raise UsageError(f"--save-images must be at least 1, got {count}")
    digits = math.floor(math.log10(count)) + 2
    plan = [
        (out_dir / f"{prefix}-{n + 1:0{digits}d}.jpg", frame)
        for prefix, frames in image_names(result, per, count)
        for n, frame in enumerate(frames)
    ]
    if not overwrite:
        refuse_existing([target for target, _ in plan])
    check_writable(out_dir)
    wanted = {f for _, f in plan}
    images = extract_frames(
        video_file(result), wanted, None, quality=IMAGE_QUALITY, progress=progress
    )
    missing = sorted(wanted - images.keys())
    if missing:
        raise InputError(
            f"{result.video.path}: frame {missing[0]} is past the end of the video; "
            "is this the video the result was made from?"
        )
    for target, frame in plan:
        atomic_write(target, images[frame], overwrite)
    return [target for target, _ in plan]
