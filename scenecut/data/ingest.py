"""``scenecut data ingest``: the user's own videos cut into shots and added to a tree."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scenecut.data import actions
from scenecut.data.tree import KEYFRAME_HEIGHT, LABELS_DIR, SPLITS, Tree, read_tree
from scenecut.data.writer import (
    MovieEntry,
    MovieWriter,
    complete_shots,
    label_text,
    write_annotations,
)
from scenecut.errors import InputError, ScenecutError, UsageError
from scenecut.files import atomic_write, staged_folder, write_json
from scenecut.output.readers import read_scene_starts
from scenecut.shots import check_detector, detect_shots, rotation_turns
from scenecut.video import decode, probe

# --- reading a tree --------------------------------------------------------------------------

log = logging.getLogger(__name__)


SOURCES_FILE = "scenecut-sources.json"  # ingest's record of which video file each id came from
MAX_SHOT_SECONDS = 24 * 3600  # --min-shot-len: anything longer than a day means nothing more


# --- ingesting our own videos ----------------------------------------------------------------

IngestProgress = Callable[[str, int, int], None]  # (video id, frames decoded, frames estimated)


@dataclass(frozen=True)
class IngestedVideo:
    path: Path
    video_id: str
    status: str  # "written", "skipped" (already complete), "relabelled" or "failed"
    shots: int = 0
    boundaries: int | None = None  # labelled scene boundaries; None when unlabelled
    error: str | None = None
    frames: int = 0  # frames written (``--layout actions``)


@dataclass(frozen=True)
class IngestResult:
    root: Path
    videos: list[IngestedVideo]
    movies: int  # complete films in the tree afterwards
    splits: dict[str, int]

    @property
    def failed(self) -> list[IngestedVideo]:
        return [v for v in self.videos if v.status == "failed"]


def ingest(
    videos: Sequence[str | Path],
    out: str | Path,
    *,
    scenes: str | Path | None = None,
    split: str | None = None,
    detector: str = "adaptive",
    detector_threshold: float | None = None,
    min_shot_seconds: float = 0.6,
    quality: int = 90,
    progress: IngestProgress | None = None,
) -> IngestResult:
    """Detect the shots of each video and add it to the tree at ``out`` (keyframes at 240 px
    high, shot file, labels), then rewrite the annotation files for every film in the tree.

    Video ids are file stems made safe and unique; ``out/scenecut-sources.json`` remembers which
    file each id came from, so a re-run skips videos already complete (keyframe folder and shot
    file present and agreeing) and resumes the rest; a film interrupted mid-way is left out
    entirely. ``scenes`` (a file, or a directory with one ``<stem>.*`` file per video) gives
    scene starts: our scenes JSON, a scene CSV, or one time per line (seconds or HH:MM:SS.mmm);
    each start labels the nearest shot gap 1. Labelled videos go into ``split`` (default
    ``test``); unlabelled ones only into ``pretrain``. A scene list that cannot be read is refused
    before any decoding; a video that fails is reported in the result and the others still go in.
    """
    root = Path(out)
    unique: dict[Path, Path] = {}  # the same file named twice is ingested once
    for video in videos:
        unique.setdefault(Path(video).resolve(), Path(video))
    paths = list(unique.values())
    if not paths:
        raise UsageError("no videos given")
    check_detector(detector, detector_threshold)
    if not math.isfinite(min_shot_seconds) or not 0 <= min_shot_seconds <= MAX_SHOT_SECONDS:
        raise UsageError(
            f"--min-shot-len must be a number of seconds from 0 to {MAX_SHOT_SECONDS}, "
            f"got {min_shot_seconds}"
        )
    if split is not None and split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split is not None and scenes is None:
        raise UsageError("--split needs --scenes: only labelled videos go into train/val/test")
    scene_files = _scene_files(paths, scenes)
    for scene_file in scene_files.values():
        read_scene_starts(scene_file, 1)  # a damaged scene list fails before any decoding
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} is not a directory; choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    sources = _read_sources(root)
    tree = _existing_tree(root)
    foreign = [m.video_id for m in (tree.movies.values() if tree else ()) if m.shots is None]
    foreign = [v for v in foreign if v not in sources]
    if foreign:
        raise UsageError(
            f"{root} holds films without shot files ({', '.join(foreign[:3])}...), e.g. a BaSSL "
            "tree, whose annotations ingest would rewrite; ingest into a new directory"
        )
    ids = _assign_ids(root, paths, sources)
    outcomes: list[IngestedVideo] = []
    labelled: list[str] = []
    try:
        for path in paths:
            video_id = ids[path]
            record = _source_record(path)
            changed = sources.get(video_id, record) != record  # the file was replaced
            sources[video_id] = record
            write_json(root / SOURCES_FILE, sources)
            try:
                outcome = _ingest_one(
                    root,
                    path,
                    video_id,
                    changed,
                    scene_files.get(path),
                    detector,
                    detector_threshold,
                    min_shot_seconds,
                    quality,
                    progress,
                )
            except ScenecutError as exc:
                log.debug("ingest of %s failed", path, exc_info=True)
                outcome = IngestedVideo(path, video_id, "failed", error=str(exc))
            outcomes.append(outcome)
            if outcome.boundaries is not None:
                labelled.append(video_id)
    finally:
        # Also after an interrupt: the annotations then cover the films finished so far.
        tree = _rewrite_annotations(root, labelled, split or "test")
    return IngestResult(
        root, outcomes, len(tree.movies), {k: len(v) for k, v in tree.splits.items()}
    )


def _ingest_one(
    root: Path,
    path: Path,
    video_id: str,
    changed: bool,
    scenes: Path | None,
    detector: str,
    detector_threshold: float | None,
    min_shot_seconds: float,
    quality: int,
    progress: IngestProgress | None,
) -> IngestedVideo:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    n = None if changed else complete_shots(root, video_id)
    if n is not None:
        if scenes is None:
            return IngestedVideo(path, video_id, "skipped", n, _boundaries(root, video_id))
        # Relabel without decoding: the shot file has the frame ranges.
        shots = read_tree(root).movies[video_id].shots
        if shots is not None:
            labels = labels_from_scene_starts(shots, read_scene_starts(scenes, probe(path).fps))
            atomic_write(root / LABELS_DIR / f"{video_id}.txt", label_text(labels), overwrite=True)
            return IngestedVideo(path, video_id, "relabelled", n, sum(labels))
    writer = MovieWriter(root, video_id, quality=quality)
    try:
        detection = detect_shots(
            path,
            detector=detector,
            threshold=detector_threshold,
            min_shot_seconds=min_shot_seconds,
            keyframe_height=KEYFRAME_HEIGHT,
            on_shot=lambda item: writer.add(item.images),
            progress=(lambda done, total: progress(video_id, done, total)) if progress else None,
        )
        shots = [(s.start, s.end) for s in detection.shots]
        labels = None
        if scenes is not None:
            starts = read_scene_starts(scenes, detection.video.fps)
            labels = labels_from_scene_starts(shots, starts)
    except BaseException:
        writer.abort()
        raise
    writer.commit(shots, labels)
    return IngestedVideo(
        path, video_id, "written", len(shots), None if labels is None else sum(labels)
    )


def labels_from_scene_starts(shots: Sequence[tuple[int, int]], starts: Iterable[int]) -> list[int]:
    """One 0/1 label per shot gap: each scene start frame marks the gap at the nearest shot
    boundary (a start nearest the film's first frame marks nothing)."""
    import bisect

    labels = [0] * max(len(shots) - 1, 0)
    bounds = [start for start, _ in shots]  # bounds[i] = first frame of shot i = gap i - 1
    for frame in starts:
        j = bisect.bisect_left(bounds, frame)
        near = [i for i in (j - 1, j) if 0 <= i < len(bounds)]
        if not near:
            continue
        best = min(near, key=lambda i: (abs(bounds[i] - frame), i))
        if best > 0:
            labels[best - 1] = 1
    return labels


def sanitize_id(stem: str) -> str:
    """A file stem made safe as a folder and file name: letters, digits, ``-``, ``_``, ``.``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    return safe or "video"


def _scene_files(paths: list[Path], scenes: str | Path | None) -> dict[Path, Path]:
    if scenes is None:
        return {}
    scenes = Path(scenes)
    if scenes.is_file():
        if len(paths) > 1:
            raise UsageError(
                "--scenes is one file but several videos were given; pass a directory holding "
                "one <video stem>.json/.txt/.csv per video"
            )
        return {paths[0]: scenes}
    if not scenes.is_dir():
        raise UsageError(f"--scenes {scenes}: no such file or directory")
    found, missing = {}, []
    for path in paths:
        candidates = [scenes / f"{path.stem}{s}" for s in (".scenes.json", ".json", ".txt", ".csv")]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            missing.append(path.stem)
        else:
            found[path] = match
    if missing:
        raise UsageError(
            f"--scenes {scenes}: no <stem>.scenes.json, .json, .txt or .csv for "
            f"{', '.join(missing)}; add them or ingest those videos separately"
        )
    return found


def _read_sources(root: Path) -> dict[str, dict]:
    path = root / SOURCES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); delete it to start afresh") from exc
    return data if isinstance(data, dict) else {}


def _source_record(path: Path) -> dict:
    return {"path": str(path.resolve()), "size": path.stat().st_size if path.exists() else None}


def _assign_ids(root: Path, paths: list[Path], sources: dict[str, dict]) -> dict[Path, str]:
    """Same file, same id (across runs); other files get their stem, suffixed when taken."""
    by_source = {record.get("path"): vid for vid, record in sources.items()}
    tree = _existing_tree(root)
    taken = set(sources) | set(tree.movies if tree else ())
    ids: dict[Path, str] = {}
    for path in paths:
        video_id = by_source.get(str(path.resolve()))
        if video_id is None:
            base = sanitize_id(path.stem)
            video_id, k = base, 2
            while video_id in taken:
                video_id, k = f"{base}_{k}", k + 1
        taken.add(video_id)
        ids[path] = video_id
    return ids


def _existing_tree(root: Path) -> Tree | None:
    try:
        return read_tree(root)
    except InputError:  # nothing there yet
        return None


def _boundaries(root: Path, video_id: str) -> int | None:
    path = root / LABELS_DIR / f"{video_id}.txt"
    if not path.is_file():
        return None
    return sum(1 for line in path.read_text().splitlines() if line.split()[1:2] in (["1"], ["-1"]))


def _rewrite_annotations(root: Path, labelled_now: list[str], split: str) -> Tree:
    """Annotations and splits for every complete film; films labelled now move to ``split``."""
    tree = _existing_tree(root)
    if tree is None:
        return Tree(root, {}, {})
    complete = [
        m
        for m in tree.movies.values()
        if m.shots is not None and complete_shots(root, m.video_id) == m.num_shots
    ]
    entries = [
        MovieEntry(m.video_id, list(m.shots), None if m.labels is None else list(m.labels))
        for m in complete
    ]
    labelled = {m.video_id for m in complete if m.labels is not None}
    moved = set(labelled_now)
    splits = {
        name: [v for v in tree.splits.get(name, ()) if v in labelled and v not in moved]
        for name in SPLITS
    }
    splits[split] += [v for v in labelled_now if v in labelled]
    write_annotations(root, entries, splits)
    return read_tree(root)


# --- the action-recognition layout (``--layout actions``) ------------------------------------


def ingest_actions(
    videos: Sequence[str | Path],
    out: str | Path,
    *,
    split: str = "train",
    quality: int = 90,
    progress: IngestProgress | None = None,
) -> IngestResult:
    """Add videos to the UCF101-style tree at ``out`` (``scenecut.data.actions``), for
    pre-training on one's own archive: every frame as ``jpegs_256/<id>/frame000001.jpg...``
    with the shorter side scaled to 256 px (up or down, as twostreamfusion's frames are).

    A video's class is the folder it is in (``archive/cooking/a.mp4``: class ``cooking``);
    new classes are added to ``split/classInd.txt`` after the existing ones. Each video goes
    into ``split/<split>list01.txt`` (``split``: train or test; out of the other list), as
    ``Class/<id>.avi``: UCF101's form, which the reference's loader needs. Ids, resuming and
    failures are as ``ingest``'s: a re-run skips the videos already complete, a frame folder
    appears complete or not at all, and a video that fails is reported while the rest go in.
    """
    root = Path(out)
    unique: dict[Path, Path] = {}
    for video in videos:
        unique.setdefault(Path(video).resolve(), Path(video))
    paths = list(unique.values())
    if not paths:
        raise UsageError("no videos given")
    if split not in actions.WHICH:
        raise UsageError(f"--split must be train or test with --layout actions, got {split!r}")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} is not a directory; choose another --out")
    if (root / "240P_frames").is_dir():
        raise UsageError(f"{root} holds a MovieNet-style tree; ingest into another directory")
    classes, problems = actions.read_class_index(root)
    problems = [p for p in problems if p.kind != "missing_file"]
    if problems:
        raise InputError(
            f"{root / problems[0].path}: {problems[0].message}; fix it or choose another --out"
        )
    root.mkdir(parents=True, exist_ok=True)
    sources = _read_sources(root)
    taken = set(sources) | set(actions.video_folders(root / actions.FRAMES_DIR))
    by_source = {record.get("path"): vid for vid, record in sources.items()}
    outcomes: list[IngestedVideo] = []
    done: dict[str, str] = {}  # video id -> class, for the lists
    try:
        for path in paths:
            video_id = by_source.get(str(path.resolve()))
            if video_id is None:
                base = video_id = sanitize_id(path.stem)
                k = 2
                while video_id in taken:
                    video_id, k = f"{base}_{k}", k + 1
                taken.add(video_id)
            record = _source_record(path)
            changed = sources.get(video_id, record) != record
            sources[video_id] = record
            write_json(root / SOURCES_FILE, sources)
            class_name = sanitize_id(path.resolve().parent.name)
            try:
                outcome = _ingest_frames(root, path, video_id, changed, quality, progress)
            except ScenecutError as exc:
                log.debug("ingest of %s failed", path, exc_info=True)
                outcome = IngestedVideo(path, video_id, "failed", error=str(exc))
            outcomes.append(outcome)
            if outcome.status != "failed":
                done[video_id] = class_name
    finally:
        # Also after an interrupt: the lists then name the videos finished so far.
        splits = _write_action_lists(root, classes, done, split)
    folders = len(actions.video_folders(root / actions.FRAMES_DIR))
    return IngestResult(root, outcomes, folders, splits)


def _ingest_frames(
    root: Path,
    path: Path,
    video_id: str,
    changed: bool,
    quality: int,
    progress: IngestProgress | None,
) -> IngestedVideo:
    import numpy as np
    from PIL import Image

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    final = root / actions.FRAMES_DIR / video_id
    if final.is_dir() and not changed:
        return IngestedVideo(path, video_id, "skipped", frames=len(actions.frame_files(final)))
    with staged_folder(final) as partial:
        info, frames = decode(path)
        size = turns = None
        count = 0
        for item in frames:
            if size is None:
                turns = rotation_turns(item.frame)
                size = _actions_size(info.width, info.height, turns)
            image = item.frame.reformat(
                width=size[0], height=size[1], format="rgb24", interpolation="BICUBIC"
            ).to_ndarray()
            if turns:
                image = np.ascontiguousarray(np.rot90(image, turns))
            count += 1
            Image.fromarray(image).save(partial / actions.FRAME_NAME.format(count), quality=quality)
            if progress and count % 25 == 0:
                progress(video_id, count, info.frame_count_estimate)
    return IngestedVideo(path, video_id, "written", frames=count)


def _actions_size(width: int, height: int, turns: int) -> tuple[int, int]:
    """The decoded (coded-orientation) size whose upright shorter side is 256 px."""
    upright = (height, width) if turns % 2 else (width, height)
    short = min(upright)
    w, h = (max(1, round(v * actions.FRAME_SIDE / short)) for v in upright)
    return (h, w) if turns % 2 else (w, h)


def _write_action_lists(
    root: Path, classes: list[str], videos: dict[str, str], split: str
) -> dict[str, int]:
    """classInd.txt with the new classes appended; ``videos`` moved into ``split``'s list."""
    for name in videos.values():
        if name not in classes:
            classes.append(name)
    if videos:
        text = "".join(f"{i + 1} {name}\n" for i, name in enumerate(classes))
        atomic_write(root / actions.CLASS_FILE, text, overwrite=True)
    index = {name: i + 1 for i, name in enumerate(classes)}
    counts = {}
    for which in actions.WHICH:
        path = root / actions.SPLIT_DIR / actions.list_name(which, 1)
        lines = []
        if path.is_file():
            lines = actions.read_text_limited(path, actions.MAX_LIST_BYTES, "a list").splitlines()
        kept = [line for line in lines if _listed_video(line) not in videos]
        if which == split:
            for video_id, name in videos.items():
                label = f" {index[name]}" if which == "train" else ""
                kept.append(f"{name}/{video_id}.avi{label}")
        if videos and (kept != lines or not path.is_file()):
            text = "".join(f"{line}\n" for line in kept)
            atomic_write(path, text.encode("utf-8", "surrogateescape"), overwrite=True)
        counts[which] = sum(1 for line in kept if line.strip())
    return counts


def _listed_video(line: str) -> str | None:
    parts = line.split()
    folders = parts[0].split("/") if parts else []
    return os.path.splitext(folders[1])[0] if len(folders) == 2 else None
