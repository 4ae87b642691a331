"""Action-recognition frame trees (UCF101 / HMDB51 as twostreamfusion ships them) and scanpaths.

The layout Saccade-VSSL reads (paths relative to ROOT)::

    jpegs_256/<video>/frame000001.jpg ...   one folder of JPEGs per video (shorter side 256)
    split/classInd.txt                      "1 ApplyEyeMakeup": class index (1-based) and name
    split/trainlist0N.txt                   "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    split/testlist0N.txt                    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    scan_idx_<grid>/<video>.txt             one fixation per row: cell start end

A video's label comes from its class folder's line in ``classInd.txt`` (minus 1), as the
reference reads it; a train list's own label column is only checked against it. HMDB51's lists
carry no label column at all. Scanpath rows are ``cell start end``: ``cell`` in
``0..grid*grid-1`` row-major on the frame, ``start`` and ``end`` 0-based indices into the
video's sorted frame list, ``end`` included.

Reading is lenient (``ActionTree.split`` skips, with a warning, the videos it cannot use);
``check_actions`` reports every problem, and lists only directories so that it stays quick on
a full UCF101 (13,320 folders).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.data.check import _jpeg_problem, kind_counts
from scenecut.data.tree import Problem
from scenecut.errors import InputError, UsageError
from scenecut.output.readers import read_bytes

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

FRAMES_DIR = "jpegs_256"
SPLIT_DIR = "split"
CLASS_FILE = "split/classInd.txt"
FRAME_NAME = "frame{:06d}.jpg"  # twostreamfusion's names, numbered from 1
FRAME_SIDE = 256  # the shorter side of jpegs_256 frames
WHICH = ("train", "test")
MAX_LIST_BYTES = 64 * 2**20  # UCF101's longest list is 400 kB
MAX_SCANPATH_BYTES = 4 * 2**20  # two hours of fixations at 3 a second is 300 kB
MAX_FRAME = 10**9
MAX_GRID = 64
_LIST_RE = re.compile(r"(train|test)list(\d+)\.txt")
_SCAN_RE = re.compile(r"scan_idx_(\d+)")
_NUMBER_RE = re.compile(r"(\d+)\.jpg")


def list_name(which: str, fold: int) -> str:
    """``trainlist01.txt`` and the like."""
    return f"{which}list{fold:02d}.txt"


def scan_dir(grid: int) -> str:
    return f"scan_idx_{grid}"


class FrameList(Sequence):
    """A video's sorted frame files as a sequence of paths, held as one array of names: UCF101
    has 2.5 million frames, which as ``Path`` objects would take about 0.5 GB in every data
    loader process (their reference counts defeat copy-on-write)."""

    __slots__ = ("_names", "folder")

    def __init__(self, folder: Path, names: Sequence[str]):
        import numpy as np

        self.folder = Path(folder)
        encoded = [os.fsencode(n) for n in names]
        self._names = np.array(encoded, dtype=bytes) if encoded else np.empty(0, dtype="S1")

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.folder / os.fsdecode(bytes(self._names[index]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(Path(a) == Path(b) for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash((self.folder, len(self)))

    def __repr__(self) -> str:
        return f"FrameList({str(self.folder)!r}, {len(self)} frames)"


@dataclass(frozen=True)
class ActionVideo:
    name: str  # folder name under jpegs_256/, e.g. "v_ApplyEyeMakeup_g08_c01"
    label: int  # 0-based class index (classInd.txt index - 1)
    frames: Sequence[Path]  # the sorted *.jpg files of the folder (a ``FrameList``)


@dataclass(frozen=True)
class ListEntry:
    """One line of a train or test list."""

    line: int
    class_name: str
    name: str  # the video's name: the file name without its extension
    label: int | None  # the line's own label column (1-based), when it has one


@dataclass(frozen=True)
class ActionTree:
    """A UCF101/HMDB51-style frame tree: its root and its classes (``classes[label]``)."""

    root: Path
    classes: tuple[str, ...]

    @classmethod
    def open(cls, root: str | Path) -> ActionTree:
        """The tree at ``root``; ``InputError`` when it lacks ``jpegs_256/`` or a readable
        ``split/classInd.txt``."""
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: not a directory; pass the root of a UCF101-style tree")
        if not (root / FRAMES_DIR).is_dir():
            raise InputError(
                f"{root}: no {FRAMES_DIR}/ folder; pass the root of a UCF101/HMDB51-style tree "
                "(jpegs_256/, split/), or make one with `scenecut data ingest --layout actions`"
            )
        classes, problems = read_class_index(root)
        if problems:
            raise InputError(f"{root / problems[0].path}: {problems[0].message}")
        if not classes:
            raise InputError(f"{root / CLASS_FILE}: no classes")
        return cls(root, tuple(classes))

    def split(
        self, which: str = "train", fold: int = 1, *, min_frames: int = 1
    ) -> list[ActionVideo]:
        """The videos of ``split/<which>list0<fold>.txt``, in list order.

        Lines that do not parse, classes not in ``classInd.txt`` and videos without a frame
        folder or with fewer than ``min_frames`` frames are left out with one warning
        (``scenecut data check`` lists them). A folder named with other capitals than the
        list's (UCF101's ``HandStandPushups``) is found too.
        """
        if which not in WHICH:
            raise UsageError(f"split must be train or test, got {which!r}")
        if fold < 1:
            raise UsageError(f"fold must be at least 1, got {fold}")
        path = self.root / SPLIT_DIR / list_name(which, fold)
        if not path.is_file():
            raise InputError(f"{path}: no such file; this tree has no {which} list {fold}")
        entries, problems = parse_list(path, f"{SPLIT_DIR}/{path.name}")
        index = {name: i for i, name in enumerate(self.classes)}
        folders = _Folders(self.root / FRAMES_DIR)
        videos: list[ActionVideo] = []
        skipped = len(problems)
        for entry in entries:
            label = index.get(entry.class_name)
            folder = folders.find(entry.name)
            frames = (
                frame_files(self.root / FRAMES_DIR / folder) if folder else FrameList(self.root, ())
            )
            if label is None or len(frames) < max(min_frames, 1):
                skipped += 1
                continue
            videos.append(ActionVideo(folder, label, frames))
        if skipped:
            log.warning(
                "%s: left out %d of its lines (unknown class, no frames, fewer than %d "
                "frames or unreadable); run `scenecut data check %s` for the list",
                path,
                skipped,
                max(min_frames, 1),
                self.root,
            )
        return videos

    def scanpath(self, video: ActionVideo, grid: int = 7) -> np.ndarray | None:
        """``video``'s fixations as ``(n, 3)`` int64 rows ``[cell, start, end]``, clamped to its
        frames (see ``read_scanpath``); None when it has no scanpath file."""
        path = self.root / scan_dir(grid) / f"{video.name}.txt"
        if not path.is_file():
            return None
        return read_scanpath(path, grid=grid, frames=len(video.frames))


def is_action_tree(root: str | Path) -> bool:
    """``root`` holds ``jpegs_256/`` or ``split/classInd.txt`` (a damaged tree counts, so that
    ``scenecut data check`` reports what is wrong with it)."""
    root = Path(root)
    return (root / FRAMES_DIR).is_dir() or (root / CLASS_FILE).is_file()


# --- reading the text files ------------------------------------------------------------------


def read_text_limited(path: Path, limit: int, what: str) -> str:
    """The file's text, at most ``limit`` bytes; undecodable bytes kept as the file system keeps
    them in names (so a list names the folders ``os.scandir`` sees)."""
    data = read_bytes(path, limit, what)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="surrogateescape")


def read_class_index(root: Path) -> tuple[list[str], list[Problem]]:
    """Class names in index order from ``split/classInd.txt``, with the problems of its lines
    (indices must run 1, 2, 3... and names be unique)."""
    path = root / CLASS_FILE
    if not path.is_file():
        return [], [Problem("missing_file", CLASS_FILE, "no class index (lines '1 ClassName')")]
    problems: list[Problem] = []
    names: list[str] = []
    for number, line in enumerate(
        read_text_limited(path, MAX_LIST_BYTES, "a class index").splitlines(), 1
    ):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            why = f"expected 'INDEX NAME': {line.strip()!r}"
        elif int(parts[0]) != len(names) + 1:
            why = f"class index {parts[0]} where {len(names) + 1} was expected"
        elif parts[1] in names:
            why = f"class {parts[1]!r} listed twice"
        else:
            names.append(parts[1])
            continue
        kind = "duplicate" if "twice" in why else "malformed_line"
        problems.append(Problem(kind, CLASS_FILE, f"line {number}: {why}", line=number))
    return names, problems


def parse_list(path: Path, rel: str) -> tuple[list[ListEntry], list[Problem]]:
    """The entries of a train or test list (``Class/video.avi [label]``) and its bad lines."""
    entries: list[ListEntry] = []
    problems: list[Problem] = []
    for number, line in enumerate(
        read_text_limited(path, MAX_LIST_BYTES, "a video list").splitlines(), 1
    ):
        parts = line.split()
        if not parts:
            continue
        folders = parts[0].split("/")
        label = parts[1] if len(parts) == 2 else None
        if len(parts) > 2 or len(folders) != 2 or not all(folders):
            why = "expected 'Class/video.avi' and an optional label"
        elif label is not None and not label.isdigit():
            why = f"label {label!r} is not a whole number"
        else:
            name = os.path.splitext(folders[1])[0] or folders[1]
            entries.append(
                ListEntry(number, folders[0], name, None if label is None else int(label))
            )
            continue
        problems.append(
            Problem("malformed_line", rel, f"line {number}: {why}: {line.strip()!r}", line=number)
        )
    return entries, problems


def read_scanpath(path: str | Path, *, grid: int = 7, frames: int | None = None) -> np.ndarray:
    """A scanpath file as ``(n, 3)`` int64 rows ``[cell, start, end]`` (``end`` included).

    Like ``np.loadtxt(path, ndmin=2).astype(int)``: whitespace-separated, ``#`` comments, numbers
    written as floats (``np.savetxt``'s default) accepted when whole. An empty file gives
    ``(0, 3)`` and a one-row file ``(1, 3)``; both are valid here (the reference crashes on
    them, so ``check_actions`` flags them). ``InputError`` names the file and line of a row that
    is not 3 whole numbers, a cell outside ``0..grid*grid-1``, a negative frame or an end before
    its start. With ``frames`` (the video's frame count) rows are clamped to the video: a row
    that starts after its last frame is dropped and an end beyond it becomes the last frame.
    """
    import numpy as np

    path = Path(path)
    check_grid(grid)
    text = read_text_limited(path, MAX_SCANPATH_BYTES, "a scanpath file")
    cells = grid * grid
    rows: list[tuple[int, int, int]] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path} line {number}"
        if len(fields) != 3:
            raise InputError(
                f"{where}: {len(fields)} values, expected 3 (cell start end); "
                "regenerate it with `scenecut data scanpaths --overwrite`"
            )
        cell, start, end = (_whole(value, where) for value in fields)
        if not 0 <= cell < cells:
            raise InputError(f"{where}: cell {cell} outside 0..{cells - 1} of a {grid}x{grid} grid")
        if end < start:
            raise InputError(f"{where}: fixation ends at frame {end}, before its start {start}")
        rows.append((cell, start, end))
    array = np.array(rows, dtype=np.int64).reshape(-1, 3)
    if frames is not None:
        if frames < 1:
            raise InputError(f"{path}: the video has no frames to fix on")
        array = array[array[:, 1] < frames]
        array[:, 2] = np.minimum(array[:, 2], frames - 1)
    return array


def _whole(text: str, where: str) -> int:
    try:
        return _in_range(int(text), text, where)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {text[:20]!r} is not a number") from None
    if not math.isfinite(value) or not value.is_integer():
        raise InputError(f"{where}: {text[:20]!r} is not a whole number")
    return _in_range(int(value), text, where)


def _in_range(value: int, text: str, where: str) -> int:
    if not 0 <= value <= MAX_FRAME:
        raise InputError(f"{where}: {text[:20]!r} is outside 0..{MAX_FRAME}")
    return value


def check_grid(grid: int) -> None:
    if not 1 <= grid <= MAX_GRID:
        raise UsageError(f"--grid must be 1 to {MAX_GRID}, got {grid}")


# --- folders of frames -----------------------------------------------------------------------


class _Folders:
    """The video folders of ``jpegs_256/``, listed once; found by exact name, else by a name
    that differs only in capitals."""

    def __init__(self, frames_dir: Path):
        self.names = set(video_folders(frames_dir))
        self.folded: dict[str, str] = {}
        for name in sorted(self.names):
            self.folded.setdefault(name.casefold(), name)

    def find(self, name: str) -> str | None:
        return name if name in self.names else self.folded.get(name.casefold())


def video_folders(frames_dir: Path) -> list[str]:
    """The video folders of a ``jpegs_256/``, sorted (hidden ones, being written, left out)."""
    try:
        entries = list(os.scandir(frames_dir))
    except OSError:
        return []
    return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def _jpeg_names(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.name.endswith(".jpg"))
    except OSError:
        return []


def frame_files(folder: Path) -> FrameList:
    return FrameList(folder, _jpeg_names(folder))


# --- checking a tree -------------------------------------------------------------------------

ACTION_PROBLEM_KINDS = {
    "missing_file": "a part of the layout is missing (jpegs_256/, classInd.txt, a list)",
    "malformed_line": "a line of classInd.txt or a list that does not parse",
    "duplicate": "a class or a video listed twice",
    "unknown_class": "a list names a class folder that classInd.txt does not have",
    "label_mismatch": "a train list's label disagrees with classInd.txt",
    "split_overlap": "a video in both the train and the test list of one fold",
    "no_frames": "a listed video has no frame folder, or an empty one",
    "missing_frame": "a gap in a video's numbered frames",
    "too_short": "fewer frames than a clip needs (clip length + 1: the last frame is never used)",
    "bad_jpeg": "a sampled frame is empty, truncated or does not decode",
    "no_scanpath": "a video has no file in a scan_idx_<grid>/ folder",
    "empty_scanpath": "a scanpath file without rows (the reference's loader crashes on it)",
    "one_row_scanpath": "a scanpath file with one row (the reference's loader crashes on it)",
    "bad_scanpath": "a scanpath row that is not 'cell start end' with a cell on the grid",
    "scanpath_beyond_video": "a fixation ends after the video's last frame",
    "partial_write": "a file or folder left by an interrupted write",
}


@dataclass(frozen=True)
class ActionReport:
    """What ``check_actions`` found. ``ok`` when ``problems`` is empty."""

    root: Path
    classes: int
    videos: int  # frame folders
    frames: int  # frames in them
    lists: dict[str, int]  # list file -> videos it names
    scanpaths: dict[str, int]  # scan_idx_<grid> -> files in it
    sampled: int  # frames opened (first, middle and last of each video)
    decoded: bool  # the sampled frames were decoded, not just checked for JPEG markers
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Problems per kind, in ``ACTION_PROBLEM_KINDS`` order."""
        return kind_counts(self.problems, ACTION_PROBLEM_KINDS)

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "layout": "actions",
            "ok": self.ok,
            "classes": self.classes,
            "videos": self.videos,
            "frames": self.frames,
            "lists": self.lists,
            "scanpaths": self.scanpaths,
            "sampled": self.sampled,
            "decoded": self.decoded,
            "problem_counts": self.counts(),
            "problems": [asdict(p) for p in self.problems],
        }


def check_actions(
    root: str | Path,
    *,
    clip_len: int = 16,
    decode: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ActionReport:
    """Validate an action tree and report every problem found (see ``ACTION_PROBLEM_KINDS``).

    Frame folders are listed, not read: only the first, middle and last frame of each video are
    opened, and decoded with ``decode`` (``workers`` threads), else checked for JPEG markers.
    ``progress(done, total)`` counts videos. ``UsageError`` when ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory; pass the root of a UCF101-style tree")
    if clip_len < 1:
        raise UsageError(f"--clip-len must be at least 1, got {clip_len}")
    classes, problems = read_class_index(root)
    frames_dir = root / FRAMES_DIR
    if not frames_dir.is_dir():
        problems.append(Problem("missing_file", FRAMES_DIR, "no folder of frame folders"))
    problems += _partial(frames_dir, FRAMES_DIR)
    names = video_folders(frames_dir)
    counts: dict[str, int] = {}
    samples: list[tuple[str, Path]] = []
    for done, name in enumerate(names, 1):
        files = _jpeg_names(frames_dir / name)
        counts[name] = len(files)
        problems += _frame_problems(name, files, clip_len)
        picks = sorted({0, len(files) // 2, len(files) - 1}) if files else []
        samples += [(name, frames_dir / name / files[i]) for i in picks]
        if progress:
            progress(done, len(names))
    lists = _check_lists(root, classes, set(names), counts, problems)
    scanpaths = _check_scanpaths(root, counts, problems)
    problems += _check_samples(root, samples, decode, workers)
    return ActionReport(
        root=root,
        classes=len(classes),
        videos=len(names),
        frames=sum(counts.values()),
        lists=lists,
        scanpaths=scanpaths,
        sampled=len(samples),
        decoded=decode,
        problems=problems,
    )


def _partial(folder: Path, rel: str) -> list[Problem]:
    """Hidden leftovers of writers killed mid-way (``.name.partial`` folders, ``.tmp`` files)."""
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return []
    return [
        Problem("partial_write", f"{rel}/{name}", "left by an interrupted write; delete it")
        for name in sorted(entries)
        if name.endswith(".partial") or ".tmp" in name
    ]


def _frame_problems(name: str, files: list[str], clip_len: int) -> Iterator[Problem]:
    rel = f"{FRAMES_DIR}/{name}"
    if not files:
        yield Problem("no_frames", rel, "no .jpg frames", name)
        return
    numbers = []
    for file in files:
        match = _NUMBER_RE.search(file)
        if match is None:
            numbers = []  # not numbered: gaps cannot be told
            break
        numbers.append(int(match[1]))
    if numbers:
        first = min(1, min(numbers))  # twostreamfusion counts from 1; 0 is fine too
        missing = sorted(set(range(first, max(numbers) + 1)) - set(numbers))
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
            yield Problem("missing_frame", rel, f"{len(missing)} missing, numbers {shown}", name)
    if len(files) < clip_len + 1:
        yield Problem(
            "too_short",
            rel,
            f"{len(files)} frames; a {clip_len}-frame clip needs {clip_len + 1}",
            name,
        )


def _list_files(root: Path) -> dict[tuple[str, int], str]:
    """(which, fold) -> file name of every train/test list in ``split/``."""
    found = {}
    try:
        entries = sorted(os.scandir(root / SPLIT_DIR), key=lambda e: e.name)
    except OSError:
        return {}
    for entry in entries:
        match = _LIST_RE.fullmatch(entry.name)
        if match and entry.is_file():
            found[(match[1], int(match[2]))] = entry.name
    return found


def _check_lists(
    root: Path,
    classes: list[str],
    folders: set[str],
    counts: dict[str, int],
    problems: list[Problem],
) -> dict[str, int]:
    files = _list_files(root)
    if not files:
        problems.append(
            Problem("missing_file", SPLIT_DIR, "no trainlist01.txt / testlist01.txt lists")
        )
    index = {name: i + 1 for i, name in enumerate(classes)}
    folded = {name.casefold(): name for name in sorted(folders)}
    listed: dict[str, int] = {}
    members: dict[tuple[str, int], set[str]] = {}
    for (which, fold), file in files.items():
        other = ("test" if which == "train" else "train", fold)
        if other not in files:
            rel = f"{SPLIT_DIR}/{list_name(*other)}"
            problems.append(Problem("missing_file", rel, f"{file} has no {other[0]} list to match"))
        rel = f"{SPLIT_DIR}/{file}"
        entries, bad = parse_list(root / rel, rel)
        problems += bad
        seen: set[str] = set()
        for e in entries:
            where = f"line {e.line}"
            if classes and e.class_name not in index:
                problems.append(
                    Problem(
                        "unknown_class",
                        rel,
                        f"{where}: class {e.class_name!r} is not in classInd.txt",
                        e.name,
                        e.line,
                    )
                )
            elif classes and e.label is not None and e.label != index[e.class_name]:
                problems.append(
                    Problem(
                        "label_mismatch",
                        rel,
                        f"{where}: label {e.label}, classInd.txt gives {e.class_name} "
                        f"index {index[e.class_name]}",
                        e.name,
                        e.line,
                    )
                )
            if e.name in seen:
                problems.append(
                    Problem("duplicate", rel, f"{where}: {e.name} listed twice", e.name, e.line)
                )
            seen.add(e.name)
            folder = e.name if e.name in folders else folded.get(e.name.casefold())
            if folder is None:
                problems.append(
                    Problem(
                        "no_frames",
                        rel,
                        f"{where}: no folder {FRAMES_DIR}/{e.name}",
                        e.name,
                        e.line,
                    )
                )
        listed[file] = len(seen)
        members[(which, fold)] = seen
    for (which, fold), names in members.items():
        if which == "train" and ("test", fold) in members:
            for name in sorted(names & members[("test", fold)]):
                problems.append(
                    Problem(
                        "split_overlap",
                        f"{SPLIT_DIR}/{list_name('test', fold)}",
                        f"{name} is in both the train and the test list of fold {fold}",
                        name,
                    )
                )
    return listed


def _check_scanpaths(root: Path, counts: dict[str, int], problems: list[Problem]) -> dict[str, int]:
    found: dict[str, int] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        match = _SCAN_RE.fullmatch(entry.name)
        if not match or not entry.is_dir():
            continue
        grid = int(match[1])
        if not 1 <= grid <= MAX_GRID:
            problems.append(
                Problem("bad_scanpath", entry.name, f"grid {grid} is outside 1..{MAX_GRID}")
            )
            continue
        problems += _partial(Path(entry.path), entry.name)
        files = {
            e.name[:-4]
            for e in os.scandir(entry.path)
            if e.name.endswith(".txt") and not e.name.startswith(".")
        }
        found[entry.name] = len(files)
        for name, n in counts.items():
            rel = f"{entry.name}/{name}.txt"
            if name not in files:
                problems.append(Problem("no_scanpath", rel, "no scanpath for this video", name))
            elif n:
                problems += _scanpath_problems(root, rel, grid, n, name)
    return found


def _scanpath_problems(root: Path, rel: str, grid: int, frames: int, name: str) -> list[Problem]:
    try:
        rows = read_scanpath(root / rel, grid=grid)
    except InputError as exc:
        message = str(exc).removeprefix(str(root / rel)).lstrip(": ")
        return [Problem("bad_scanpath", rel, message, name)]
    if len(rows) == 0:
        return [Problem("empty_scanpath", rel, "no fixations", name)]
    out = []
    if len(rows) == 1:
        out.append(Problem("one_row_scanpath", rel, "one fixation", name))
    beyond = [i for i, row in enumerate(rows) if row[2] >= frames]
    if beyond:
        i = beyond[0]
        out.append(
            Problem(
                "scanpath_beyond_video",
                rel,
                f"{len(beyond)} fixations end after the last frame ({frames - 1}), the first "
                f"on row {i + 1}: {rows[i][1]}..{rows[i][2]}",
                name,
            )
        )
    return out


def _check_samples(
    root: Path, samples: list[tuple[str, Path]], decode: bool, workers: int | None
) -> list[Problem]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        whys = list(pool.map(lambda item: _jpeg_problem(item[1], decode), samples))
    return [
        Problem("bad_jpeg", str(path.relative_to(root)), why, name)
        for (name, path), why in zip(samples, whys, strict=True)
        if why is not None
    ]
