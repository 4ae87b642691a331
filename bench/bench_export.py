"""Clip export speed: ``--save-clips --copy`` in times real time, and how many cores re-encoding
keeps busy.

    python bench/bench_export.py [--runs 3] [--video FILE] [--reencode-seconds 60] [--json OUT]

The video (default: the benchmark's cached 10-minute 720p film, made on first use) is segmented
once with the classic model; then ``scenecut.output.clips.export_clips`` writes every scene's clip
with stream copy, ``--runs`` times, and re-encodes the scenes of the first ``--reencode-seconds`` of
video, ``--runs`` times. Real-time factor = video seconds exported / wall seconds. Core use =
CPU seconds of the ffmpeg processes / (wall seconds x CPUs): 1.0 means every core busy for the
whole export. Medians; raw numbers go to bench/results/export.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scenecut  # noqa: E402
from scenecut.output.clips import export_clips  # noqa: E402

TARGET_COPY_X = 50.0  # issue 8: --copy at >= 50x real time


def timed_export(result, copy: bool) -> dict:
    """Export every scene of ``result`` once into a fresh directory; wall and child CPU time."""
    with tempfile.TemporaryDirectory(prefix="scenecut-bench-") as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        clips = export_clips(result, Path(tmp), copy=copy)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        size = sum(c.stat().st_size for c in clips)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "clips": len(clips), "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--video", type=Path, help="[default: the cached 10-minute film]")
    parser.add_argument("--reencode-seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "export.json")
    args = parser.parse_args()
    if args.video is None:
        from bench_segment import long_film

        args.video = long_film()[0]
    result = scenecut.segment(args.video, model="classic")
    video = result.video
    duration = float(video.frame_count / video.fps)
    limit = round(args.reencode_seconds * video.fps)
    head = [s for s in result.scenes if s.end <= limit] or result.scenes[:1]
    head_result = dataclasses.replace(result, scenes=head)
    head_seconds = float(head[-1].end / video.fps)
    cpus = os.cpu_count() or 1

    copies = [timed_export(result, copy=True) for _ in range(args.runs)]
    encodes = [timed_export(head_result, copy=False) for _ in range(args.runs)]
    copy_wall = statistics.median(r["wall_s"] for r in copies)
    encode_wall = statistics.median(r["wall_s"] for r in encodes)
    encode_use = statistics.median(r["cpu_s"] / (r["wall_s"] * cpus) for r in encodes)
    doc = {
        "video": str(args.video),
        "duration_s": duration,
        "scenes": len(result.scenes),
        "cpus": cpus,
        "copy": {
            "runs": copies,
            "median_wall_s": copy_wall,
            "realtime_x": round(duration / copy_wall, 1),
            "target_x": TARGET_COPY_X,
        },
        "reencode": {
            "runs": encodes,
            "scenes": len(head),
            "video_s": head_seconds,
            "median_wall_s": encode_wall,
            "realtime_x": round(head_seconds / encode_wall, 2),
            "core_use": round(encode_use, 3),
        },
    }
    print(f"{args.video.name}: {duration:.0f} s, {len(result.scenes)} scenes, {cpus} CPUs")
    print(
        f"--copy: {copy_wall:.2f} s for all scenes = {duration / copy_wall:.0f}x real time "
        f"(target >= {TARGET_COPY_X:.0f}x)"
    )
    print(
        f"re-encode: {encode_wall:.2f} s for {len(head)} scenes ({head_seconds:.0f} s of video) "
        f"= {head_seconds / encode_wall:.2f}x real time, cores busy {100 * encode_use:.0f}%"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
