"""Benchmark shot detection in time chunks (``scenecut.parallel``) against the single pass.

    python bench/bench_parallel.py [--runs 3] [--workers 2] [--seconds S] [--json OUT]

On the cached 10-minute 720p film of ``bench_segment.py`` (made on first use; ``--seconds``: a
film of that length made the same way), each run times, in this order and in this process:
``segment`` as it runs today (``decode_workers=1``: one decode thread and one detection
thread), ``segment`` with ``--workers`` processes, and shot detection alone (the default model's
keyframes and evidence included, no embedding) both ways. The default model is loaded once,
before the runs. Every parallel run is checked to give the single pass's shots, keyframe
pixels, evidence and (for ``segment``) the whole result; the table shows medians and the
ratio of each parallel median to its single-pass median.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    from bench_segment import long_film

    from scenecut.models.options import InferenceOptions
    from scenecut.models.scorers import load_scorer
    from scenecut.output.formats import to_json

    path, counts, _ = long_film(args.seconds)
    scorer = load_scorer(InferenceOptions())
    times: dict[str, list[float]] = {}
    reference: dict[str, str] = {}
    chunks = 0
    for run in range(args.runs):
        for name, workers in (
            ("segment, 1 process", 1),
            (f"segment, {args.workers}", args.workers),
        ):
            seconds, result = _timed(_segment, path, scorer, workers)
            times.setdefault(name, []).append(seconds)
            _same(reference, "segment", to_json(result).replace(str(path), "FILM"))
        for name, workers in (("detect, 1 process", 1), (f"detect, {args.workers}", args.workers)):
            seconds, (digest, used) = _timed(_detect, path, scorer, workers)
            times.setdefault(name, []).append(seconds)
            _same(reference, "detect", digest)
            chunks = max(chunks, used)
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = []
    for name, median in medians.items():
        base = medians[name.split(",")[0] + ", 1 process"]
        rows.append((name, median, median / base))
    print(f"{path.name}: {counts['frames']} frames, {chunks} chunks with {args.workers} workers")
    print(f"{'run':22s} {'median s':>9s} {'x 1 process':>12s}")
    for name, median, ratio in rows:
        print(f"{name:22s} {median:9.2f} {ratio:12.2f}")
    print("identical: shots, keyframe pixels, evidence and the segment results of every run")
    if args.json:
        record = {
            "film": str(path),
            "frames": counts["frames"],
            "workers": args.workers,
            "chunks": chunks,
            "runs": times,
            "medians": medians,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _timed(function, *args):
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def _segment(path: Path, scorer, workers: int):
    from scenecut.segment import segment

    return segment(path, scorer=scorer, decode_workers=workers)


def _detect(path: Path, scorer, workers: int) -> tuple[str, int]:
    """A digest of the shots, keyframe pixels and evidence; the chunks used."""
    from scenecut.evidence import Evidence
    from scenecut.parallel import detect_shots_parallel

    digest = hashlib.sha256()
    evidence = Evidence()

    def on_shot(item) -> None:
        digest.update(repr(item.shot).encode())
        digest.update(item.images.tobytes())

    found = detect_shots_parallel(
        path,
        workers=workers,
        keyframe_height=scorer.keyframe_height,
        on_shot=on_shot,
        evidence=evidence,
    )
    digest.update(repr((found.video, found.shots)).encode())
    digest.update(evidence.picture.luma.tobytes() + evidence.picture.contrast.tobytes())
    if evidence.sound is not None:
        for array in evidence.sound.arrays():
            digest.update(array.tobytes())
    return digest.hexdigest(), found.chunks


def _same(reference: dict[str, str], key: str, value: str) -> None:
    if reference.setdefault(key, value) != value:
        raise SystemExit(f"error: the {key} results differ between runs")


if __name__ == "__main__":
    sys.exit(main())
