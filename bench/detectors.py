"""Our shot cuts against PySceneDetect's own CLI, per detector and clip (issue 15, point 9).

For each clip and each of PySceneDetect's five detectors this runs
``scenedetect -i CLIP detect-NAME list-scenes`` (its defaults: OpenCV backend, auto-downscale,
``--min-scene-len 0.6s``) and ``scenecut.shots.detect_shots(CLIP, detector=NAME)``, and prints
whether the cut frames are identical or which frames only one of them has; then "N of M
identical". ``--speed RUNS`` also runs ours RUNS times and prints the median busy milliseconds
per frame of our two detection stages: making the small detector images, and the detector.

    .venv/bin/python bench/detectors.py [CLIP ...] [--detectors content,hash] [--speed 3]

Without clips it uses the four in ../shared/media. PySceneDetect's own test clips live on its
repository's ``resources`` branch; some are copyrighted: pass them from a temporary folder, never
commit them.
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
CLIPS = [
    "sintel_trailer_480x204.mp4",
    "bbb_trailer_640x360.webm",
    "sintel_excerpt_848x480.mp4",
    "bbb_first60s_640x360.mp4",
]
# Our detector name -> PySceneDetect's command.
COMMANDS = {
    "adaptive": "detect-adaptive",
    "content": "detect-content",
    "threshold": "detect-threshold",
    "histogram": "detect-hist",
    "hash": "detect-hash",
}


def pyscenedetect_cuts(clip: Path, detector: str) -> list[int]:
    """Cut frames from PySceneDetect's CLI: each scene's start after the first."""
    exe = Path(sys.executable).parent / "scenedetect"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [str(exe), "-q", "-i", str(clip), COMMANDS[detector], "list-scenes", "-s",
             "-o", tmp, "-f", "scenes.csv"],
            check=True,
        )  # fmt: skip
        with open(Path(tmp) / "scenes.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    return [int(row["Start Frame"]) - 1 for row in rows[1:]]  # the CSV counts from 1


def our_cuts(clip: Path, detector: str) -> tuple[list[int], tuple[float, float]]:
    """Our cut frames, and the seconds per frame of the detector's input (the BGR conversion
    and the shrink, in two threads) and of the detector."""
    from scenecut.profile import Stages
    from scenecut.shots import detect_shots

    stages = Stages()
    shots = detect_shots(clip, detector=detector, stages=stages).shots
    frames = max(1, stages.frames)
    seconds = stages.seconds
    per_frame = (
        (seconds.get("downscale", 0.0) + seconds.get("shrink", 0.0)) / frames,
        seconds.get("detect", 0.0) / frames,
    )
    return [shot.start for shot in shots[1:]], per_frame


def compare(theirs: list[int], ours: list[int]) -> str:
    if theirs == ours:
        return f"identical ({len(ours)} cuts)"
    extra = sorted(set(ours) - set(theirs))
    missing = sorted(set(theirs) - set(ours))
    return f"DIFFERENT: ours adds {extra}, lacks {missing}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--detectors", default=",".join(COMMANDS))
    parser.add_argument(
        "--speed", type=int, default=0, metavar="RUNS", help="time our detection RUNS times"
    )
    args = parser.parse_args()
    logging.getLogger("scenecut").setLevel(logging.ERROR)  # e.g. the webm's truncation warning
    clips = args.clips or [MEDIA / name for name in CLIPS]
    detectors = args.detectors.split(",")
    same = total = 0
    for clip in clips:
        print(clip.name)
        for detector in detectors:
            theirs = pyscenedetect_cuts(clip, detector)
            ours, cost = our_cuts(clip, detector)
            costs = [cost] + [our_cuts(clip, detector)[1] for _ in range(args.speed - 1)]
            total += 1
            same += theirs == ours
            speed = ""
            if args.speed:
                downscale, detect = (statistics.median(c) * 1e3 for c in zip(*costs, strict=True))
                speed = f"  [ms/frame: downscale {downscale:.3f}, detect {detect:.3f}]"
            print(f"  {detector:<10} {compare(theirs, ours)}{speed}")
    print(f"{same} of {total} identical")


if __name__ == "__main__":
    main()
