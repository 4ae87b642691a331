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
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
    0/1 value per gap. The keyframe folder is renamed into place only when complete; the text
    files are each written atomically after it.
    """
    from PIL import Image

    root = Path(root)
    if labels is not None and len(labels) != max(len(shots) - 1, 0):
        raise ValueError(f"{video_id}: {len(labels)} labels for {len(shots)} shots")
    final = root / FRAMES_DIR / video_id
    partial = root / FRAMES_DIR / f".{video_id}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    written = 0
    for index, images in enumerate(keyframes):
        for k, rgb in enumerate(images):
            image = Image.fromarray(rgb)
            if image.height > KEYFRAME_HEIGHT:
                width = max(1, round(image.width * KEYFRAME_HEIGHT / image.height))
                image = image.resize((width, KEYFRAME_HEIGHT), Image.Resampling.BICUBIC)
            image.save(partial / f"shot_{shot_id(index)}_img_{k}.jpg", quality=quality)
        written += 1
    if written != len(shots):
        shutil.rmtree(partial, ignore_errors=True)
        raise ValueError(f"{video_id}: keyframes for {written} shots, expected {len(shots)}")
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    lines = []
    for start, end in shots:
        kf = keyframe_indices(start, end)
        lines.append(f"{start} {end - 1} {kf[0]} {kf[1]} {kf[2]}\n")
    _write_text(root / SHOTS_DIR / f"{video_id}.txt", "".join(lines))
    if labels is not None:
        text = "".join(f"{shot_id(i)} {int(v)}\n" for i, v in enumerate(labels))
        _write_text(root / LABELS_DIR / f"{video_id}.txt", text)
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
