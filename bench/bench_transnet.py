"""Benchmark shot detection: TransNetV2 against PySceneDetect's adaptive detector.

    python bench/bench_transnet.py [VIDEO ...] [--runs 3]

Each detector runs ``scenecut.shots.detect_shots`` (one decode pass: detection frames, the
detector, keyframe candidates) on each input, alternating, ``--runs`` times. The table shows
frames per second from the median wall time, frames per second of this process's CPU time
(all its threads: steadier than wall time on a shared machine), and the cuts each detector found.
Inputs default to the demo clip and every video in ``../shared/media/`` (identical files once).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "sintel_trailer_480x204.mp4"
SHARED_MEDIA = ROOT.parent / "shared" / "media"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"}
DETECTORS = ("transnetv2", "adaptive")


def default_inputs() -> list[Path]:
    paths = [DEMO]
    if SHARED_MEDIA.is_dir():
        paths += sorted(p for p in SHARED_MEDIA.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    return paths


def unique(paths: list[Path]) -> list[Path]:
    """``paths`` without missing files and later copies of the same bytes."""
    seen: set[str] = set()
    kept = []
    for path in paths:
        if not path.is_file():
            print(f"skipping {path}: not found", file=sys.stderr)
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(path)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help="inputs [default: see above]")
    parser.add_argument("--runs", type=int, default=3, help="runs per detector and input")
    args = parser.parse_args()

    import torch

    from scenecut.shots import detect_shots

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"torch {torch.__version__}, TransNetV2 on {device}, {torch.get_num_threads()} threads")
    header = f"{'video':34} {'frames':>6} " + " ".join(
        f"{d + ' fps':>15} {'/cpu-s':>7} {'cuts':>5}" for d in DETECTORS
    )
    print(header)
    for path in unique(args.videos or default_inputs()):
        times: dict[str, list[float]] = {d: [] for d in DETECTORS}
        cpu: dict[str, list[float]] = {d: [] for d in DETECTORS}
        cuts: dict[str, int] = {}
        frames = 0
        for run in range(args.runs):
            order = DETECTORS if run % 2 == 0 else DETECTORS[::-1]
            for detector in order:
                start, start_cpu = time.perf_counter(), time.process_time()
                result = detect_shots(path, detector=detector)
                times[detector].append(time.perf_counter() - start)
                cpu[detector].append(time.process_time() - start_cpu)
                cuts[detector] = len(result.shots) - 1
                frames = result.decoded_frames
        cells = " ".join(
            f"{frames / statistics.median(times[d]):15.1f} "
            f"{frames / statistics.median(cpu[d]):7.1f} {cuts[d]:5d}"
            for d in DETECTORS
        )
        print(f"{path.name[:34]:34} {frames:6d} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
