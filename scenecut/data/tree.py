"""Films as ordered shots with 3 keyframes each: the MovieNet-SSeg layout, and reading it.

The on-disk tree follows BaSSL's ``data/movienet`` (paths relative to ROOT)::

    240P_frames/<video_id>/shot_XXXX_img_K.jpg    K = 0 first, 1 middle, 2 last frame of the shot
    scene318/shot_movie318/<video_id>.txt         per shot: start end(inclusive) kf0 kf1 kf2
    scene318/label318/<video_id>.txt              per gap: "NNNN L", L = 1 scene ends after NNNN
    scene318/meta/split318.json                   {"train": [...], "val": [...], "test": [...]}
    anno/anno.<split>.ndjson                      one JSON object per shot (BaSSL's loaders)
    anno/vid2idx.json                             {video_id: int}

Reading is lenient (``read_tree`` skips what does not parse); ``scenecut.data.check`` reports
every problem the reader noticed. Writing is ``scenecut.data.writer``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import InputError
from scenecut.keyframes import KEYFRAMES_PER_SHOT

if TYPE_CHECKING:
    import numpy as np


FRAMES_DIR = "240P_frames"
SHOTS_DIR = "scene318/shot_movie318"
LABELS_DIR = "scene318/label318"
SPLIT_FILE = "scene318/meta/split318.json"
ANNO_DIR = "anno"
SPLITS = ("train", "val", "test")
ANNO_FILES = ("pretrain", "trainvaltest", *SPLITS)
KEYFRAME_HEIGHT = 240


def shot_id(index: int) -> str:
    """MovieNet's shot id: the 0-based index, zero-padded to at least 4 digits."""
    return f"{index:04d}"


def keyframe_path(root: Path, video_id: str, shot: int, k: int) -> Path:
    return Path(root) / FRAMES_DIR / video_id / f"shot_{shot_id(shot)}_img_{k}.jpg"


# --- reading a tree --------------------------------------------------------------------------

log = logging.getLogger(__name__)


KEYFRAME_RE = re.compile(r"shot_(\d+)_img_(\d+)\.jpg")
PRETRAIN = "pretrain"


@dataclass(frozen=True)
class Movie:
    """One film as a reader sees it: ``num_shots`` shots, numbered 0..num_shots-1.

    ``labels[i]`` is 1 when a scene ends after shot ``i`` (MovieNet's uncertain -1 reads as 1,
    as BaSSL, SCRL and LGSS read it); ``shots`` are half-open frame ranges. Either is None when
    the tree does not say (BaSSL trees have no frame ranges; unlabelled films have no labels).
    """

    video_id: str
    num_shots: int
    labels: tuple[int, ...] | None = None
    shots: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Tree:
    """A MovieNet-SSeg tree: its films (in ``vid2idx`` order when there is one) and its splits.

    ``splits`` has ``pretrain`` (every film) and whichever of ``train``/``val``/``test`` the tree
    defines; each lists only films whose shot count is known.
    """

    root: Path
    movies: dict[str, Movie]
    splits: dict[str, tuple[str, ...]]

    def split(self, name: str) -> list[Movie]:
        if name not in self.splits:
            known = ", ".join(self.splits) or "none"
            raise InputError(f"{self.root}: no {name!r} split (this tree has: {known})")
        return [self.movies[v] for v in self.splits[name]]

    def keyframe_path(self, video_id: str, shot: int, k: int) -> Path:
        return keyframe_path(self.root, video_id, shot, k)

    def load_keyframes(self, video_id: str, shot: int) -> np.ndarray:
        return load_keyframes(self.root, video_id, shot)


def read_tree(root: str | Path) -> Tree:
    """Read a tree leniently: any of ``anno/``, ``scene318/`` and ``240P_frames/`` may be
    missing, malformed lines are skipped (``check_tree`` reports them). Frame folders are not
    listed unless nothing else gives a film's shot count, so this is quick on full MovieNet."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; pass the root of a MovieNet-style tree")
    scan = scan_tree(root)
    if not scan.ids:
        raise InputError(
            f"{root}: no films found (expected {FRAMES_DIR}/, {ANNO_DIR}/ or scene318/); "
            "make one with `scenecut data ingest`"
        )
    movies: dict[str, Movie] = {}
    for video_id in scan.ids:
        n = shot_count(scan, video_id)
        if n is None:
            continue
        ranges = scan.shots.get(video_id)
        shots = tuple(ranges) if ranges and len(ranges) == n and None not in ranges else None
        movies[video_id] = Movie(video_id, n, film_labels(scan, video_id, n), shots)
    splits = {PRETRAIN: tuple(v for v in (scan.pretrain or movies) if v in movies)}
    for name in SPLITS:
        if name in scan.splits:
            splits[name] = tuple(v for v in scan.splits[name] if v in movies)
    return Tree(root, movies, splits)


def load_keyframes(root: str | Path, video_id: str, shot: int) -> np.ndarray:
    """The 3 keyframes of one shot as a ``[3, H, W, 3]`` uint8 RGB array."""
    import numpy as np
    from PIL import Image

    images = []
    for k in range(KEYFRAMES_PER_SHOT):
        path = keyframe_path(root, video_id, shot, k)
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except (OSError, SyntaxError) as exc:
            raise InputError(
                f"{path}: cannot read keyframe ({exc}); run `scenecut data check {root}`"
            ) from exc
    if len({im.shape for im in images}) > 1:
        raise InputError(f"{video_id} shot {shot}: keyframes differ in size")
    return np.stack(images)


@dataclass
class Scan:
    """Everything the text files of a tree say, with the problems found reading them."""

    root: Path
    ids: list[str] = field(default_factory=list)  # every id mentioned anywhere, in order
    frame_dirs: set[str] = field(default_factory=set)
    shots: dict[str, list[tuple[int, int] | None]] = field(default_factory=dict)
    labels: dict[str, dict[int, int]] = field(default_factory=dict)  # label318, raw values
    anno: dict[str, dict[str, list[tuple[int, int, int | None]]]] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    pretrain: list[str] | None = None
    vid2idx: dict[str, int] | None = None
    partial: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, kind: str, path: str, message: str, video_id=None, line=None) -> None:
        self.problems.append(Problem(kind, path, message, video_id, line))


def scan_tree(root: Path) -> Scan:
    scan = Scan(root)
    mentioned: dict[str, None] = {}
    frames = root / FRAMES_DIR
    if frames.is_dir():
        for entry in sorted(os.scandir(frames), key=lambda e: e.name):
            if entry.name.startswith("."):
                if entry.name.endswith(".partial"):
                    scan.partial.append(entry.name)
            elif entry.is_dir():
                scan.frame_dirs.add(entry.name)
    for path in sorted((root / SHOTS_DIR).glob("*.txt")):
        scan.shots[path.stem] = _parse_shot_file(root, path, scan)
    for path in sorted((root / LABELS_DIR).glob("*.txt")):
        scan.labels[path.stem] = _parse_label_file(root, path, scan)
    for name in ANNO_FILES:
        path = root / ANNO_DIR / f"anno.{name}.ndjson"
        if path.is_file():
            scan.anno[name] = _parse_ndjson(root, path, scan)
    vid2idx = _read_json(root, root / ANNO_DIR / "vid2idx.json", scan)
    if isinstance(vid2idx, dict):
        scan.vid2idx = {str(k): v for k, v in vid2idx.items()}
        for k, v in sorted(vid2idx.items(), key=_index_key):
            if not isinstance(v, int) or isinstance(v, bool):
                scan.problem(
                    "malformed_line",
                    f"{ANNO_DIR}/vid2idx.json",
                    f"index of {k!r} is {v!r}, not an integer",
                    k,
                )
            mentioned[str(k)] = None
        indices = [v for v in vid2idx.values() if isinstance(v, int)]
        if len(set(indices)) != len(indices):
            scan.problem("duplicate_shot", f"{ANNO_DIR}/vid2idx.json", "two films share an index")
    elif vid2idx is not None:
        scan.problem("bad_json", f"{ANNO_DIR}/vid2idx.json", "not a JSON object")
    split = _read_json(root, root / SPLIT_FILE, scan)
    if isinstance(split, dict):
        for name in SPLITS:
            ids = split.get(name, [])
            if isinstance(ids, list) and all(isinstance(v, str) for v in ids):
                scan.splits[name] = ids
            else:
                scan.problem("bad_json", SPLIT_FILE, f"{name!r} is not a list of video ids")
    elif split is not None:
        scan.problem("bad_json", SPLIT_FILE, "not a JSON object")
    else:
        for name in SPLITS:
            if name in scan.anno:
                scan.splits[name] = list(scan.anno[name])
    if PRETRAIN in scan.anno:
        scan.pretrain = list(scan.anno[PRETRAIN])
    # Order: vid2idx first (stable indices), then frame folders and everything else by name.
    others = [*scan.frame_dirs, *scan.shots, *scan.labels]
    others += [v for rows in scan.anno.values() for v in rows]
    others += [v for ids in scan.splits.values() for v in ids]
    for v in sorted(set(others) - set(mentioned)):
        mentioned[v] = None
    scan.ids = list(mentioned)
    return scan


def _index_key(item: tuple) -> tuple[int, int]:
    value = item[1]
    return (0, value) if isinstance(value, int) else (1, 0)


def _read_json(root: Path, path: Path, scan: Scan):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        scan.problem("bad_json", str(path.relative_to(root)), f"not valid JSON ({exc})")
        return None


def _parse_shot_file(root: Path, path: Path, scan: Scan) -> list[tuple[int, int] | None]:
    """``start end kf0 kf1 kf2`` per shot, end inclusive; None for a malformed line."""
    rel, video_id = str(path.relative_to(root)), path.stem
    shots: list[tuple[int, int] | None] = []
    previous = None
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [int(v) for v in line.split()]
        except ValueError:
            values = []
        if len(values) != 5 or values[1] < values[0]:
            why = "end frame before start frame" if len(values) == 5 else "expected 5 integers"
            scan.problem(
                "malformed_line", rel, f"line {number}: {why}: {line.strip()!r}", video_id, number
            )
            shots.append(None)
            continue
        start, end = values[0], values[1]
        if previous is not None and start <= previous:
            scan.problem(
                "shot_order",
                rel,
                f"line {number}: shot starts at frame {start}, "
                f"not after the previous shot's start {previous}",
                video_id,
                number,
            )
        previous = start
        shots.append((start, end + 1))
    return shots


def _parse_label_file(root: Path, path: Path, scan: Scan) -> dict[int, int]:
    """``NNNN L`` per gap; L in {0, 1, -1}."""
    rel, video_id = str(path.relative_to(root)), path.stem
    labels: dict[int, int] = {}
    expected = 0
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            shot, label = int(parts[0]), int(parts[1])
            if len(parts) != 2 or label not in (-1, 0, 1):
                raise ValueError
        except (ValueError, IndexError):
            scan.problem(
                "malformed_line",
                rel,
                f"line {number}: expected 'NNNN L' with L in 0, 1, -1: {line.strip()!r}",
                video_id,
                number,
            )
            expected += 1
            continue
        if shot in labels:
            scan.problem(
                "duplicate_shot",
                rel,
                f"line {number}: shot {shot} labelled twice",
                video_id,
                number,
            )
        elif shot != expected:
            scan.problem(
                "shot_order",
                rel,
                f"line {number}: shot {shot} where shot {expected} was expected",
                video_id,
                number,
            )
        labels.setdefault(shot, label)
        expected = shot + 1
    return labels


def _parse_ndjson(
    root: Path, path: Path, scan: Scan
) -> dict[str, list[tuple[int, int, int | None]]]:
    """Rows per film: (shot, num_shot, boundary_label or None)."""
    rel = str(path.relative_to(root))
    rows: dict[str, list[tuple[int, int, int | None]]] = {}
    last: dict[str, int] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video_id, shot, n = str(row["video_id"]), int(row["shot_id"]), int(row["num_shot"])
            label = row.get("boundary_label")
            if label is not None and label not in (-1, 0, 1):
                raise ValueError(f"boundary_label {label!r}")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            scan.problem(
                "malformed_line", rel, f"line {number}: {type(exc).__name__}: {exc}", line=number
            )
            continue
        film = rows.setdefault(video_id, [])
        if film and n != film[0][1]:
            scan.problem(
                "count_mismatch",
                rel,
                f"line {number}: num_shot {n}, earlier rows of {video_id} say {film[0][1]}",
                video_id,
                number,
            )
        if not 0 <= shot < n:
            scan.problem(
                "malformed_line",
                rel,
                f"line {number}: shot {shot} outside 0..{n - 1}",
                video_id,
                number,
            )
        if video_id in last and shot <= last[video_id]:
            kind = "duplicate_shot" if any(r[0] == shot for r in film) else "shot_order"
            scan.problem(
                kind,
                rel,
                f"line {number}: shot {shot} after shot {last[video_id]}",
                video_id,
                number,
            )
        last[video_id] = shot
        film.append((shot, n, None if label is None else int(label)))
    return rows


def count_sources(scan: Scan, video_id: str) -> dict[str, int]:
    """What each text source says the film's shot count is."""
    counts: dict[str, int] = {}
    if video_id in scan.shots:
        counts[f"{SHOTS_DIR}/{video_id}.txt"] = len(scan.shots[video_id])
    if video_id in scan.labels:
        counts[f"{LABELS_DIR}/{video_id}.txt"] = len(scan.labels[video_id]) + 1
    for name, rows in scan.anno.items():
        if video_id in rows:
            counts[f"{ANNO_DIR}/anno.{name}.ndjson num_shot"] = rows[video_id][0][1]
    return counts


def shot_count(scan: Scan, video_id: str) -> int | None:
    counts = count_sources(scan, video_id)
    if counts:
        return next(iter(counts.values()))  # shot file, then labels, then annotations
    if video_id in scan.frame_dirs:
        return frames_on_disk(scan.root / FRAMES_DIR / video_id).count or None
    return None


def film_labels(scan: Scan, video_id: str, n: int) -> tuple[int, ...] | None:
    gaps = range(n - 1)
    raw = scan.labels.get(video_id)
    if raw is None or any(i not in raw for i in gaps):
        raw = {}
        for name in ("trainvaltest", *SPLITS, PRETRAIN):
            for shot, _, label in scan.anno.get(name, {}).get(video_id, []):
                if label is not None:
                    raw.setdefault(shot, label)
        if any(i not in raw for i in gaps) or (n <= 1 and video_id not in scan.labels):
            return None
    return tuple(abs(raw[i]) for i in gaps)


@dataclass(frozen=True)
class OnDisk:
    count: int  # highest shot index + 1
    files: dict[tuple[int, int], str]  # (shot, k) -> file name
    duplicates: list[str]


def frames_on_disk(folder: Path) -> OnDisk:
    files: dict[tuple[int, int], str] = {}
    duplicates = []
    for entry in os.scandir(folder):
        match = KEYFRAME_RE.fullmatch(entry.name)
        if match:
            key = (int(match[1]), int(match[2]))
            if key in files:
                duplicates.append(entry.name)
            files[key] = entry.name
    count = max((s for s, _ in files), default=-1) + 1
    return OnDisk(count, files, duplicates)


# --- checking a tree -------------------------------------------------------------------------

PROBLEM_KINDS = {
    "empty_tree": "nothing that looks like a MovieNet tree",
    "no_frames": "a film named in the annotations, labels, shots or splits has no keyframe folder",
    "missing_keyframe": "a shot lacks one of its 3 keyframes",
    "bad_jpeg": "a keyframe is empty, truncated or does not decode",
    "count_mismatch": "the sources disagree on a film's shot count",
    "duplicate_shot": "a shot id appears twice",
    "shot_order": "shot ids or frames out of order",
    "malformed_line": "a line that does not parse",
    "bad_json": "a JSON file that does not parse or has the wrong shape",
    "label_mismatch": "label318 and the annotations disagree on a label",
    "unlabelled_in_split": "a film in train/val/test has no labels",
    "split_overlap": "a film is in more than one of train/val/test",
    "not_in_vid2idx": "a film with keyframes is missing from anno/vid2idx.json",
    "partial_write": "a half-written keyframe folder left by an interrupted writer",
}


@dataclass(frozen=True)
class Problem:
    kind: str  # one of PROBLEM_KINDS
    path: str  # relative to the tree's root
    message: str
    video_id: str | None = None
    line: int | None = None
