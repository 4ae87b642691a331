"""Films as ordered shots with 3 keyframes each: the MovieNet-SSeg layout, read and written.

The on-disk tree follows BaSSL's ``data/movienet`` (paths relative to ROOT)::

    240P_frames/<video_id>/shot_XXXX_img_K.jpg    K = 0 first, 1 middle, 2 last frame of the shot
    scene318/shot_movie318/<video_id>.txt         per shot: start end(inclusive) kf0 kf1 kf2
    scene318/label318/<video_id>.txt              per gap: "NNNN L", L = 1 scene ends after NNNN
    scene318/meta/split318.json                   {"train": [...], "val": [...], "test": [...]}
    anno/anno.<split>.ndjson                      one JSON object per shot (BaSSL's loaders)
    anno/vid2idx.json                             {video_id: int}

A movie is written atomically: its keyframe folder appears complete or not at all, so an
interrupted writer leaves nothing half-made behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import InputError, ScenecutError, UsageError
from scenecut.export import atomic_write

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
KEYFRAMES_PER_SHOT = 3


def shot_id(index: int) -> str:
    """MovieNet's shot id: the 0-based index, zero-padded to at least 4 digits."""
    return f"{index:04d}"


def keyframe_path(root: Path, video_id: str, shot: int, k: int) -> Path:
    return Path(root) / FRAMES_DIR / video_id / f"shot_{shot_id(shot)}_img_{k}.jpg"


def keyframe_indices(start: int, end: int) -> tuple[int, int, int]:
    """First, middle and last frame of the half-open shot ``[start, end)`` (LGSS's saver)."""
    last = end - 1
    return start, start + (last - start) // 2, last


@dataclass(frozen=True)
class MovieEntry:
    """One film in a tree: its shots as half-open frame ranges and optional gap labels."""

    video_id: str
    shots: list[tuple[int, int]]
    labels: list[int] | None = None  # len(shots) - 1 values, label i = scene ends after shot i


def write_movie(
    root: str | Path,
    video_id: str,
    shots: Sequence[tuple[int, int]],
    keyframes: Iterable[np.ndarray],
    labels: Sequence[int] | None = None,
    *,
    quality: int = 90,
) -> MovieEntry:
    """Write one film: ``keyframes`` yields one ``[3, H, W, 3]`` uint8 RGB array per shot.

    Frames taller than 240 px are scaled to 240 px high (the 240P release). ``labels`` has one
    0/1 value per gap. The keyframe folder is renamed into place only when complete (an exception
    while writing, even a KeyboardInterrupt, removes the partial folder); the label file and then
    the shot file, which marks the movie complete, are each written atomically after it.
    """
    if labels is not None and len(labels) != max(len(shots) - 1, 0):
        raise ValueError(f"{video_id}: {len(labels)} labels for {len(shots)} shots")
    writer = MovieWriter(root, video_id, quality=quality)
    try:
        for images in keyframes:
            writer.add(images)
    except BaseException:
        writer.abort()
        raise
    return writer.commit(shots, labels)


class MovieWriter:
    """Write one film shot by shot (for producers that push, like ``detect_shots``'s
    ``on_shot``), then ``commit`` it into place or ``abort`` it; ``write_movie`` uses it."""

    def __init__(self, root: str | Path, video_id: str, *, quality: int = 90):
        self.root = Path(root)
        self.video_id = video_id
        self.quality = quality
        self.written = 0
        self.partial = self.root / FRAMES_DIR / f".{video_id}.partial"
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(parents=True)

    def add(self, images: np.ndarray) -> None:
        """Save one shot's keyframes (``[3, H, W, 3]`` uint8 RGB)."""
        from PIL import Image

        for k, rgb in enumerate(images):
            image = Image.fromarray(rgb)
            if image.height > KEYFRAME_HEIGHT:
                width = max(1, round(image.width * KEYFRAME_HEIGHT / image.height))
                image = image.resize((width, KEYFRAME_HEIGHT), Image.Resampling.BICUBIC)
            name = f"shot_{shot_id(self.written)}_img_{k}.jpg"
            image.save(self.partial / name, quality=self.quality)
        self.written += 1

    def abort(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)

    def commit(
        self, shots: Sequence[tuple[int, int]], labels: Sequence[int] | None = None
    ) -> MovieEntry:
        root, video_id = self.root, self.video_id
        if labels is not None and len(labels) != max(len(shots) - 1, 0):
            self.abort()
            raise ValueError(f"{video_id}: {len(labels)} labels for {len(shots)} shots")
        if self.written != len(shots):
            self.abort()
            raise ValueError(
                f"{video_id}: keyframes for {self.written} shots, expected {len(shots)}"
            )
        # The shot file goes first and comes back last, so that a movie whose keyframes and shot
        # file both exist was written completely (what ``ingest`` resumes by).
        shot_file = root / SHOTS_DIR / f"{video_id}.txt"
        label_file = root / LABELS_DIR / f"{video_id}.txt"
        shot_file.unlink(missing_ok=True)
        final = root / FRAMES_DIR / video_id
        if final.exists():
            shutil.rmtree(final)
        os.replace(self.partial, final)
        if labels is not None:
            text = "".join(f"{shot_id(i)} {int(v)}\n" for i, v in enumerate(labels))
            _write_text(label_file, text)
        else:
            label_file.unlink(missing_ok=True)  # a stale file would contradict the new shots
        lines = []
        for start, end in shots:
            kf = keyframe_indices(start, end)
            lines.append(f"{start} {end - 1} {kf[0]} {kf[1]} {kf[2]}\n")
        _write_text(shot_file, "".join(lines))
        return MovieEntry(video_id, list(shots), None if labels is None else list(labels))


def write_annotations(
    root: str | Path,
    movies: Sequence[MovieEntry],
    splits: dict[str, Sequence[str]] | None = None,
) -> None:
    """Write ``anno/*.ndjson``, ``vid2idx.json`` and ``split318.json`` for ``movies``.

    ``pretrain`` lists every shot of every movie; the labelled files list each labelled shot of
    the movies in that split (the last shot has no label, as in MovieNet).
    """
    root = Path(root)
    splits = {name: list(splits.get(name, [])) for name in SPLITS} if splits else {}
    by_id = {m.video_id: m for m in movies}
    rows: dict[str, list[str]] = {name: [] for name in ANNO_FILES}
    for movie in movies:
        n = len(movie.shots)
        for i in range(n):
            row = {"video_id": movie.video_id, "shot_id": shot_id(i), "num_shot": n}
            if movie.labels is not None and i < n - 1:
                row["boundary_label"] = int(movie.labels[i])
            rows["pretrain"].append(json.dumps(row))
    for name in SPLITS:
        for video_id in splits.get(name, []):
            movie = by_id[video_id]
            if movie.labels is None:
                raise ValueError(f"{video_id} is in the {name} split but has no labels")
            n = len(movie.shots)
            for i, label in enumerate(movie.labels):
                row = {
                    "video_id": video_id,
                    "shot_id": shot_id(i),
                    "num_shot": n,
                    "boundary_label": int(label),
                }
                rows[name].append(json.dumps(row))
                rows["trainvaltest"].append(json.dumps(row))
    for name, lines in rows.items():
        _write_text(root / ANNO_DIR / f"anno.{name}.ndjson", "".join(f"{r}\n" for r in lines))
    vid2idx = {m.video_id: i for i, m in enumerate(movies)}
    _write_text(root / ANNO_DIR / "vid2idx.json", json.dumps(vid2idx, indent=1) + "\n")
    if splits:
        split_json = {**splits, "all": [v for name in SPLITS for v in splits[name]]}
        _write_text(root / SPLIT_FILE, json.dumps(split_json, indent=1) + "\n")


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text, overwrite=True)


# --- reading a tree --------------------------------------------------------------------------

log = logging.getLogger(__name__)

KEYFRAME_RE = re.compile(r"shot_(\d+)_img_(\d+)\.jpg")
PRETRAIN = "pretrain"
SOURCES_FILE = "scenecut-sources.json"  # ingest's record of which video file each id came from


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
    scan = _scan(root)
    if not scan.ids:
        raise InputError(
            f"{root}: no films found (expected {FRAMES_DIR}/, {ANNO_DIR}/ or scene318/); "
            "make one with `scenecut data ingest`"
        )
    movies: dict[str, Movie] = {}
    for video_id in scan.ids:
        n = _shot_count(scan, video_id)
        if n is None:
            continue
        ranges = scan.shots.get(video_id)
        shots = tuple(ranges) if ranges and len(ranges) == n and None not in ranges else None
        movies[video_id] = Movie(video_id, n, _labels(scan, video_id, n), shots)
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
class _Scan:
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


def _scan(root: Path) -> _Scan:
    scan = _Scan(root)
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


def _read_json(root: Path, path: Path, scan: _Scan):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        scan.problem("bad_json", str(path.relative_to(root)), f"not valid JSON ({exc})")
        return None


def _parse_shot_file(root: Path, path: Path, scan: _Scan) -> list[tuple[int, int] | None]:
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


def _parse_label_file(root: Path, path: Path, scan: _Scan) -> dict[int, int]:
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
    root: Path, path: Path, scan: _Scan
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


def _count_sources(scan: _Scan, video_id: str) -> dict[str, int]:
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


def _shot_count(scan: _Scan, video_id: str) -> int | None:
    counts = _count_sources(scan, video_id)
    if counts:
        return next(iter(counts.values()))  # shot file, then labels, then annotations
    if video_id in scan.frame_dirs:
        return _frames_on_disk(scan.root / FRAMES_DIR / video_id).count or None
    return None


def _labels(scan: _Scan, video_id: str, n: int) -> tuple[int, ...] | None:
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
class _OnDisk:
    count: int  # highest shot index + 1
    files: dict[tuple[int, int], str]  # (shot, k) -> file name
    duplicates: list[str]


def _frames_on_disk(folder: Path) -> _OnDisk:
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
    return _OnDisk(count, files, duplicates)


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


@dataclass(frozen=True)
class TreeReport:
    """What ``check_tree`` found. ``ok`` when ``problems`` is empty."""

    root: Path
    movies: int  # films with a keyframe folder
    shots: int  # shots those films should have
    keyframes: int  # keyframe files checked
    decoded: bool  # keyframes were decoded, not just checked for size and JPEG markers
    labelled: int  # films with labels for every gap
    splits: dict[str, int]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Problems per kind, in ``PROBLEM_KINDS`` order."""
        counts = {kind: 0 for kind in PROBLEM_KINDS}
        for problem in self.problems:
            counts[problem.kind] = counts.get(problem.kind, 0) + 1
        return {kind: n for kind, n in counts.items() if n}

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "ok": self.ok,
            "movies": self.movies,
            "shots": self.shots,
            "keyframes": self.keyframes,
            "decoded": self.decoded,
            "labelled": self.labelled,
            "splits": self.splits,
            "problem_counts": self.counts(),
            "problems": [asdict(p) for p in self.problems],
        }


def check_tree(
    root: str | Path,
    *,
    decode: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TreeReport:
    """Validate a tree and report every problem found (see ``PROBLEM_KINDS``).

    With ``decode`` every keyframe is decoded (``workers`` threads); without it each file is
    only checked for a non-zero size and JPEG start/end markers. ``progress(done, total)``
    counts films. Raises ``UsageError`` when ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory; pass the root of a MovieNet-style tree")
    scan = _scan(root)
    problems = scan.problems
    if not scan.ids:
        problems.append(
            Problem("empty_tree", ".", f"no {FRAMES_DIR}/, {ANNO_DIR}/*.ndjson or scene318/ files")
        )
    for name in scan.partial:
        problems.append(
            Problem(
                "partial_write",
                f"{FRAMES_DIR}/{name}",
                "left by an interrupted write; delete it or re-run the ingest",
            )
        )
    from concurrent.futures import ThreadPoolExecutor

    shots_total = labelled = checked = done = 0
    films = len(scan.frame_dirs)
    # PIL releases the GIL while decoding, so threads use every core. Films are checked one at
    # a time so that memory stays flat on full MovieNet (3.3 M keyframes).
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
    for video_id in scan.ids:
        counts = _count_sources(scan, video_id)
        where = ", ".join(k.removesuffix(" num_shot") for k in counts)
        if video_id not in scan.frame_dirs:
            if counts or any(video_id in ids for ids in scan.splits.values()):
                named = where if counts else SPLIT_FILE
                problems.append(
                    Problem(
                        "no_frames",
                        f"{FRAMES_DIR}/{video_id}",
                        f"no keyframe folder for {video_id} (named in {named})",
                        video_id,
                    )
                )
            continue
        disk = _frames_on_disk(root / FRAMES_DIR / video_id)
        folder = f"{FRAMES_DIR}/{video_id}"
        if disk.count:
            counts[folder] = disk.count
        if len(set(counts.values())) > 1:
            said = "; ".join(f"{k}: {v}" for k, v in counts.items())
            problems.append(
                Problem("count_mismatch", folder, f"shot counts disagree ({said})", video_id)
            )
        n = next(iter(counts.values()), 0)
        if not n:
            problems.append(Problem("missing_keyframe", folder, "no keyframes", video_id))
        shots_total += n
        for name in disk.duplicates:
            problems.append(
                Problem(
                    "duplicate_shot",
                    f"{folder}/{name}",
                    "same shot and keyframe as another file (different zero padding)",
                    video_id,
                )
            )
        paths = []
        for shot in range(max(n, disk.count)):
            for k in range(KEYFRAMES_PER_SHOT):
                name = disk.files.get((shot, k))
                if name is None:
                    if shot < n:
                        problems.append(
                            Problem(
                                "missing_keyframe",
                                f"{folder}/shot_{shot_id(shot)}_img_{k}.jpg",
                                f"missing keyframe {k} of shot {shot}",
                                video_id,
                            )
                        )
                else:
                    paths.append(root / FRAMES_DIR / video_id / name)
        try:
            problems += _check_jpegs(pool, root, video_id, paths, decode)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
        checked += len(paths)
        done += 1
        if progress:
            progress(done, films)
        movie_labels = _labels(scan, video_id, n) if n else None
        labelled += movie_labels is not None
        _check_labels(scan, video_id, problems)
        if scan.vid2idx is not None and video_id not in scan.vid2idx:
            problems.append(
                Problem(
                    "not_in_vid2idx",
                    f"{ANNO_DIR}/vid2idx.json",
                    f"{video_id} has keyframes but no index",
                    video_id,
                )
            )
    pool.shutdown()
    _check_splits(scan, problems)
    splits = {PRETRAIN: len(scan.pretrain if scan.pretrain is not None else scan.frame_dirs)}
    splits.update({name: len(ids) for name, ids in scan.splits.items()})
    return TreeReport(
        root=root,
        movies=len(scan.frame_dirs),
        shots=shots_total,
        keyframes=checked,
        decoded=decode,
        labelled=labelled,
        splits=splits,
        problems=problems,
    )


def _check_labels(scan: _Scan, video_id: str, problems: list[Problem]) -> None:
    raw = scan.labels.get(video_id)
    if raw is None:
        return
    rel = f"{LABELS_DIR}/{video_id}.txt"
    for name in ("trainvaltest", *SPLITS, PRETRAIN):
        for shot, _, label in scan.anno.get(name, {}).get(video_id, []):
            if label is not None and shot in raw and abs(raw[shot]) != abs(label):
                problems.append(
                    Problem(
                        "label_mismatch",
                        rel,
                        f"shot {shot}: {raw[shot]} here, {label} in anno.{name}.ndjson",
                        video_id,
                    )
                )


def _check_splits(scan: _Scan, problems: list[Problem]) -> None:
    seen: dict[str, str] = {}
    for name, ids in scan.splits.items():
        for video_id in ids:
            if video_id in seen and seen[video_id] != name:
                problems.append(
                    Problem(
                        "split_overlap",
                        SPLIT_FILE,
                        f"{video_id} is in both {seen[video_id]} and {name}",
                        video_id,
                    )
                )
            seen.setdefault(video_id, name)
            n = _shot_count(scan, video_id)
            if n is not None and _labels(scan, video_id, n) is None:
                problems.append(
                    Problem(
                        "unlabelled_in_split",
                        SPLIT_FILE,
                        f"{video_id} is in {name} but has no labels",
                        video_id,
                    )
                )


def _check_jpegs(pool, root: Path, video_id: str, paths: list[Path], decode: bool) -> list:
    problems = []
    for path, why in zip(paths, pool.map(lambda p: _jpeg_problem(p, decode), paths), strict=True):
        if why is not None:
            problems.append(Problem("bad_jpeg", str(path.relative_to(root)), why, video_id))
    return problems


def _jpeg_problem(path: Path, decode: bool) -> str | None:
    """Why ``path`` is not a good JPEG, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 32))
            tail = f.read()
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if size == 0:
        return "empty file"
    if head != b"\xff\xd8":
        return "not a JPEG (no start-of-image marker)"
    if b"\xff\xd9" not in tail:
        return "truncated (no end-of-image marker)"
    if decode:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            return f"does not decode ({exc})"
    return None


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
    ``test``); unlabelled ones only into ``pretrain``. A video that fails is reported in the
    result and the others still go in.
    """
    from scenecut.shots import DETECTORS

    root = Path(out)
    unique: dict[Path, Path] = {}  # the same file named twice is ingested once
    for video in videos:
        unique.setdefault(Path(video).resolve(), Path(video))
    paths = list(unique.values())
    if not paths:
        raise UsageError("no videos given")
    if detector not in DETECTORS:
        raise UsageError(f"unknown detector {detector!r}; choose one of: {', '.join(DETECTORS)}")
    if split is not None and split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split is not None and scenes is None:
        raise UsageError("--split needs --scenes: only labelled videos go into train/val/test")
    scene_files = _scene_files(paths, scenes)
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
            _write_text(root / SOURCES_FILE, json.dumps(sources, indent=1) + "\n")
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
    from scenecut.shots import detect_shots

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    n = None if changed else complete_shots(root, video_id)
    if n is not None:
        if scenes is None:
            return IngestedVideo(path, video_id, "skipped", n, _boundaries(root, video_id))
        # Relabel without decoding: the shot file has the frame ranges.
        from scenecut.video import probe

        shots = read_tree(root).movies[video_id].shots
        if shots is not None:
            labels = labels_from_scene_starts(shots, read_scene_starts(scenes, probe(path).fps))
            _write_text(root / LABELS_DIR / f"{video_id}.txt", _label_text(labels))
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


def complete_shots(root: str | Path, video_id: str) -> int | None:
    """The shot count of a film written completely (keyframe folder with exactly 3 keyframes per
    line of its shot file), else None."""
    root = Path(root)
    folder, shot_file = root / FRAMES_DIR / video_id, root / SHOTS_DIR / f"{video_id}.txt"
    if not folder.is_dir() or not shot_file.is_file():
        return None
    n = sum(1 for line in shot_file.read_text(errors="replace").splitlines() if line.strip())
    expected = {keyframe_path(root, video_id, i, k).name for i in range(n) for k in range(3)}
    return n if n and set(os.listdir(folder)) == expected else None


def read_scene_starts(path: str | Path, fps) -> list[int]:
    """Scene start frames from our scenes JSON (frame-exact), a scene CSV, or a text file of
    start times (seconds or HH:MM:SS.mmm, one per line), at ``fps`` frames per second."""
    path = Path(path)
    if path.suffix == ".json":
        from scenecut.report import load_result

        return sorted({scene.start for scene in load_result(path).scenes})
    from scenecut.evaluate import read_truth

    return sorted({round(seconds * fps) for seconds in read_truth(path, fps)})


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


def _label_text(labels: Sequence[int]) -> str:
    return "".join(f"{shot_id(i)} {int(v)}\n" for i, v in enumerate(labels))


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
