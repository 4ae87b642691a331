"""What a frame costs at 4K against 1080p (issue 14: at most 3x).

The same 6 seconds of the demo trailer are scaled to 1920x1080 and 3840x2160 (x264, like a
camera file) and segmented with `scenecut segment --model classic`, each `--runs` times, in
alternation. Prints the median wall seconds per frame of each, their ratio, and each run's peak
RSS (`wait4`).

    .venv/bin/python bench/bench_sizes.py [--runs 3] [--seconds 6] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "sintel_trailer_480x204.mp4"
SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}
TARGET = 3.0


def make_clip(folder: Path, name: str, size: tuple[int, int], seconds: float) -> Path:
    from scenecut.video import ffmpeg_exe

    path = folder / f"{name}.mp4"
    if not path.exists():
        scale = f"scale={size[0]}:{size[1]},setsar=1"
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-y", "-ss", "20", "-i", str(DEMO), "-t", str(seconds),
             "-vf", scale, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-an",
             str(path)],
            check=True,
        )  # fmt: skip
    return path


def run_once(video: Path, out: Path) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in bytes, frames) of one `scenecut segment`."""
    exe = Path(sys.executable).parent / "scenecut"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), "segment", str(video), "--model", "classic", "-q", "--stdout"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{video.name}: scenecut failed: {proc.stderr.read().decode()}")
    frames = json.loads(stdout)["video"]["frame_count"]
    return wall, usage.ru_maxrss * 1024, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "sizes.json")
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir()) / "scenecut-bench-sizes"
    folder.mkdir(exist_ok=True)
    clips = {name: make_clip(folder, name, size, args.seconds) for name, size in SIZES.items()}
    runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in SIZES}
    for _ in range(args.runs):
        for name, clip in clips.items():  # alternating, so drift in the machine hits both
            runs[name].append(run_once(clip, folder))
    rows = {}
    for name, results in runs.items():
        frames = results[0][2]
        per_frame = statistics.median(wall for wall, _, _ in results) / frames
        rss = max(r for _, r, _ in results)
        rows[name] = {"frames": frames, "ms_per_frame": per_frame * 1000, "peak_rss": rss}
    ratio = rows["4K"]["ms_per_frame"] / rows["1080p"]["ms_per_frame"]
    print(f"{'size':6} {'frames':>6} {'ms/frame (median)':>18} {'peak RSS MB':>12}")
    for name, row in rows.items():
        print(
            f"{name:6} {row['frames']:6d} {row['ms_per_frame']:18.2f} "
            f"{row['peak_rss'] / 2**20:12.0f}"
        )
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(
        f"4K / 1080p per frame: {ratio:.2f}x (target <= {TARGET:g}x: {verdict}); {args.runs} runs"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "ratio": ratio, "runs": args.runs}, indent=1))


if __name__ == "__main__":
    main()
