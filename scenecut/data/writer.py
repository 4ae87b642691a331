"""Writing a MovieNet-style tree: one film at a time, then the annotation files.

A movie is written atomically: its keyframe folder appears complete or not at all, so an
interrupted writer leaves nothing half-made behind.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.data.tree import (
    ANNO_DIR,
    ANNO_FILES,
    FRAMES_DIR,
    KEYFRAME_HEIGHT,
    LABELS_DIR,
    SHOTS_DIR,
    SPLIT_FILE,
    SPLITS,
    keyframe_path,
    shot_id,
)
from scenecut.files import atomic_write, write_json
from scenecut.keyframes import keyframe_indices

if TYPE_CHECKING:
    import numpy as np


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
            atomic_write(label_file, text, overwrite=True)
        else:
            label_file.unlink(missing_ok=True)  # a stale file would contradict the new shots
        lines = []
        for start, end in shots:
            kf = keyframe_indices(start, end)
            lines.append(f"{start} {end - 1} {kf[0]} {kf[1]} {kf[2]}\n")
        atomic_write(shot_file, "".join(lines), overwrite=True)
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
        atomic_write(
            root / ANNO_DIR / f"anno.{name}.ndjson",
            "".join(f"{r}\n" for r in lines),
            overwrite=True,
        )
    vid2idx = {m.video_id: i for i, m in enumerate(movies)}
    write_json(root / ANNO_DIR / "vid2idx.json", vid2idx)
    if splits:
        split_json = {**splits, "all": [v for name in SPLITS for v in splits[name]]}
        write_json(root / SPLIT_FILE, split_json)


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


def label_text(labels: Sequence[int]) -> str:
    return "".join(f"{shot_id(i)} {int(v)}\n" for i, v in enumerate(labels))
