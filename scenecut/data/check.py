"""``scenecut data check``: every problem of a tree, with the file and line it is in."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from scenecut.data.tree import (
    ANNO_DIR,
    FRAMES_DIR,
    KEYFRAMES_PER_SHOT,
    LABELS_DIR,
    PRETRAIN,
    PROBLEM_KINDS,
    SPLIT_FILE,
    SPLITS,
    Problem,
    Scan,
    count_sources,
    film_labels,
    frames_on_disk,
    scan_tree,
    shot_count,
    shot_id,
)
from scenecut.errors import UsageError


def kind_counts(problems, kinds) -> dict[str, int]:
    """How many of ``problems`` there are of each kind, in the order of ``kinds`` (a kind not
    listed there after them), kinds without any left out."""
    counts = dict.fromkeys(kinds, 0)
    for problem in problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
    return {kind: n for kind, n in counts.items() if n}


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
        return kind_counts(self.problems, PROBLEM_KINDS)

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
    scan = scan_tree(root)
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
        if video_id not in scan.frame_dirs:
            _check_named_film(scan, video_id, problems)
            continue
        n, paths = _film_keyframes(scan, video_id, problems)
        shots_total += n
        try:
            problems += _check_jpegs(pool, root, video_id, paths, decode)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
        checked += len(paths)
        done += 1
        if progress:
            progress(done, films)
        movie_labels = film_labels(scan, video_id, n) if n else None
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


def _check_named_film(scan: Scan, video_id: str, problems: list[Problem]) -> None:
    """A film with no keyframe folder: a problem when some file names it."""
    counts = count_sources(scan, video_id)
    if counts or any(video_id in ids for ids in scan.splits.values()):
        named = ", ".join(k.removesuffix(" num_shot") for k in counts) if counts else SPLIT_FILE
        problems.append(
            Problem(
                "no_frames",
                f"{FRAMES_DIR}/{video_id}",
                f"no keyframe folder for {video_id} (named in {named})",
                video_id,
            )
        )


def _film_keyframes(scan: Scan, video_id: str, problems: list[Problem]) -> tuple[int, list[Path]]:
    """A film's shot count (as its files say) and its keyframe files, with the problems of
    disagreeing counts, duplicate and missing keyframes."""
    counts = count_sources(scan, video_id)
    disk = frames_on_disk(scan.root / FRAMES_DIR / video_id)
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
            if name is not None:
                paths.append(scan.root / FRAMES_DIR / video_id / name)
            elif shot < n:
                problems.append(
                    Problem(
                        "missing_keyframe",
                        f"{folder}/shot_{shot_id(shot)}_img_{k}.jpg",
                        f"missing keyframe {k} of shot {shot}",
                        video_id,
                    )
                )
    return n, paths


def _check_labels(scan: Scan, video_id: str, problems: list[Problem]) -> None:
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


def _check_splits(scan: Scan, problems: list[Problem]) -> None:
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
            n = shot_count(scan, video_id)
            if n is not None and film_labels(scan, video_id, n) is None:
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
