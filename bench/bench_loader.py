"""Benchmark the training loader: augmented keyframes per second per DataLoader worker.

    python bench/bench_loader.py [--runs 3] [--items 192] [--films 4] [--shots 60] [--root TREE]
                                 [--json OUT]

Builds a tree of ``--films`` synthetic 240p films of ``--shots`` shots each with
``scenecut.data.writer.write_movie`` (or uses ``--root``), then iterates ``PretrainWindows`` (BaSSL
pre-training: 17-shot windows, one random keyframe per shot, ``train_transform``) through a
``DataLoader`` with 1 and 2 worker processes. Prints the median of ``--runs`` runs, and where one
worker's time goes (JPEG decode vs each transform step, measured in this process on one thread).
See bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scenecut.data.tree import read_tree  # noqa: E402
from scenecut.data.writer import write_annotations, write_movie  # noqa: E402
from scenecut.train.datasets import PretrainWindows, train_transform  # noqa: E402

WINDOW = 17


def make_tree(root: Path, films: int = 4, shots: int = 60, seed: int = 0) -> None:
    """Films of ``shots`` shots whose keyframes look like 240p video frames to a JPEG coder:
    smooth colour fields with some fine detail (about 25-40 kB each at quality 90)."""
    import cv2

    rng = np.random.default_rng(seed)
    entries = []
    for f in range(films):

        def keyframes():
            for _ in range(shots):
                base = rng.integers(0, 256, (3, 15, 27, 3), dtype=np.uint8)
                images = []
                for b in base:
                    image = cv2.resize(b, (427, 240), interpolation=cv2.INTER_CUBIC)
                    detail = rng.normal(0, 6, image.shape)
                    images.append(np.clip(image + detail, 0, 255).astype(np.uint8))
                yield np.stack(images)

        ranges = [(i * 50, (i + 1) * 50) for i in range(shots)]
        entries.append(write_movie(root, f"film{f}", ranges, keyframes()))
    write_annotations(root, entries)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def loader_rate(root: Path, workers: int, items: int, batch: int = 8) -> tuple[float, float]:
    """Augmented keyframes per wall second through a DataLoader (after a warm-up batch per
    worker), and per CPU second of the worker processes (decode, augmentation, collation and
    hand-over included): what one worker delivers on a core of its own."""
    from torch.utils.data import DataLoader, RandomSampler

    dataset = PretrainWindows(read_tree(root))
    sampler = RandomSampler(dataset, replacement=True, num_samples=items + batch * workers * 4)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers)
    it = iter(loader)
    for _ in range(workers):  # workers started and their first batch done
        next(it)
    pids = [w.pid for w in it._workers]  # private, but the only way to find the workers
    count, cpu0, start = 0, _cpu_seconds(pids), time.perf_counter()
    for batch_items in it:
        count += batch_items["images"].shape[0] * batch_items["images"].shape[1]
        if count >= items * WINDOW:
            break
    wall = time.perf_counter() - start
    cpu = _cpu_seconds(pids) - cpu0
    del it, loader
    return count / wall, count / cpu


def breakdown(root: Path, windows: int = 30) -> dict[str, float]:
    """CPU milliseconds per keyframe of each stage, on one thread in this process."""
    from torchvision.transforms import v2

    torch.set_num_threads(1)
    dataset = PretrainWindows(read_tree(root))
    steps = train_transform().transforms
    times = {"decode": 0.0, **{type(s).__name__: 0.0 for s in steps}}
    n = 0
    g = torch.Generator().manual_seed(0)
    for _ in range(windows):
        index = int(torch.randint(len(dataset), (), generator=g))
        m, center = dataset.items[index]
        movie = dataset.movies[m]
        shots = dataset.window(center, movie.num_shots)
        t = time.process_time()
        images = dataset._load(movie, dataset._keys(shots))
        times["decode"] += time.process_time() - t
        x = torch.stack(images)
        for step in steps:
            t = time.process_time()
            x = step(x)
            times[type(step).__name__] += time.process_time() - t
        n += len(shots)
    assert isinstance(steps[0], v2.RandomResizedCrop)
    return {k: 1000 * v / n for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--items", type=int, default=192, help="windows per run")
    parser.add_argument("--films", type=int, default=4, help="films in the generated tree")
    parser.add_argument("--shots", type=int, default=60, help="shots per generated film")
    parser.add_argument("--root", type=Path, help="an existing tree [default: a generated one]")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scenecut-bench-") as tmp:
        root = args.root
        if root is None:
            root = Path(tmp) / "tree"
            t = time.perf_counter()
            make_tree(root, films=args.films, shots=args.shots)
            print(f"generated tree: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        sizes = [p.stat().st_size for p in (root / "240P_frames").rglob("*.jpg")]
        print(f"tree: {len(sizes)} keyframes, mean {np.mean(sizes) / 1000:.1f} kB")
        results: dict = {
            "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, torch {torch.__version__}"
        }
        for workers in (1, 2):
            runs = [loader_rate(root, workers, args.items) for _ in range(args.runs)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            results[f"workers_{workers}"] = {
                "keyframes_per_s": [r[0] for r in runs],
                "keyframes_per_cpu_s_per_worker": [r[1] for r in runs],
                "median_per_s": wall,
                "median_per_worker_per_s": wall / workers,
                "median_per_worker_cpu_s": cpu,
            }
            print(
                f"{workers} worker(s): {wall:5.0f} augmented keyframes/s in all, "
                f"{wall / workers:5.0f}/s per worker (wall); {cpu:5.0f} per worker CPU-second "
                f"(runs: {', '.join(f'{r[0]:.0f}/{r[1]:.0f}' for r in runs)})"
            )
        stages = breakdown(root)
        results["ms_per_keyframe"] = stages
        total = sum(stages.values())
        print(f"one thread, CPU ms per keyframe ({1000 / total:.0f} keyframes/CPU-s):")
        for name, ms in stages.items():
            print(f"  {name:22s} {ms:6.3f} ms  {100 * ms / total:4.1f} %")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
