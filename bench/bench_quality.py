"""Scene-finding quality of the boundary models on judged real clips and synthetic films.

    python bench/bench_quality.py [--model classic --model effnet-lite0 ...] [--films 6]

Real clips: the four clips of ../shared/media with the scene boundaries judged by watching them
(tests/test_media.py; "unsure" gaps are not scored), when that folder is present. Synthetic:
``--films`` generated films with known scenes (seeds 10..). Shots come from PySceneDetect's
adaptive detector for every model, so only the boundary scores differ. Prints, per model and
per set: F1 at the default threshold 0.5 (tp/fp/fn) and AP pooled over all scored gaps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import scenecut  # noqa: E402
from scenecut.data.synth import make_film  # noqa: E402
from scenecut.evaluate import average_precision  # noqa: E402
from scenecut.models.options import InferenceOptions  # noqa: E402
from scenecut.models.scorers import load_scorer  # noqa: E402

CACHE = ROOT / "bench" / "results" / "cache" / "quality"
FILM = dict(n_scenes=4, shots_per_scene=(2, 4), shot_frames=(15, 30), width=192, height=108)


def inputs(films: int) -> dict[str, list[tuple[Path, set[int], set[int], int]]]:
    """Per set: (video, true boundary gaps, unscored gaps, expected shot count or 0)."""
    from test_media import CLIPS, MEDIA

    sets: dict[str, list] = {}
    if MEDIA.is_dir():
        sets["judged clips"] = [
            (MEDIA / name, clip["scene_gaps"], clip["unsure"], len(clip["cuts"]) + 1)
            for name, clip in CLIPS.items()
        ]
    CACHE.mkdir(parents=True, exist_ok=True)
    synthetic = []
    for seed in range(10, 10 + films):
        path = CACHE / f"film{seed}.mp4"
        truth = make_film(path, seed=seed, **FILM)
        scene = truth.shot_scene
        gaps = {i for i in range(len(scene) - 1) if scene[i] != scene[i + 1]}
        synthetic.append((path, gaps, set(), len(truth.shot_starts)))
    sets["synthetic films"] = synthetic
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="repeatable [classic, effnet-lite0]")
    parser.add_argument("--films", type=int, default=6)
    args = parser.parse_args()
    models = args.model or ["classic", "effnet-lite0"]
    sets = inputs(args.films)
    print(f"{'model':16s} {'set':16s} {'F1@0.5':>7s} {'tp/fp/fn':>10s} {'AP':>6s} {'s':>6s}")
    for model in models:
        scorer = load_scorer(InferenceOptions(model=model))
        for set_name, items in sets.items():
            tp = fp = fn = 0
            labels: list[int] = []
            scores: list[float] = []
            start = time.perf_counter()
            for path, gaps, unsure, shots in items:
                result = scenecut.segment(path, scorer=scorer)
                if shots and len(result.shots) != shots:
                    print(f"warning: {path.name}: {len(result.shots)} shots, expected {shots}")
                predicted = {s.last_shot for s in result.scenes[:-1]} - unsure
                tp += len(predicted & gaps)
                fp += len(predicted - gaps)
                fn += len(gaps - predicted)
                for gap, score in enumerate(result.boundary_scores):
                    if gap not in unsure:
                        labels.append(int(gap in gaps))
                        scores.append(score)
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            ap = average_precision(labels, scores)
            took = time.perf_counter() - start
            print(
                f"{model:16s} {set_name:16s} {f1:7.3f} {f'{tp}/{fp}/{fn}':>10s} {ap:6.3f} "
                f"{took:6.1f}"
            )


if __name__ == "__main__":
    main()
