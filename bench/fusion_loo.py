"""The fused scorer judged leave-one-source-out, with one row per cue (real_footage.py --fusion).

For each source clip, the fusion's logistic regression (``scenecut.train.fusion``, the code
``scenecut train fusion`` runs) is trained on every gap farther than MARGIN_S from that clip's
footage in any film, then scores, at the threshold 0.5, only what that clip owns in the films
that hold it (``real_footage.match``). Over the folds each true boundary and each false alarm
counts once. The link scores and evidence come from one classic pass per film; the per-film
link calibration is a property of the film, not a fitted parameter.

Rows: ``links`` (the classic links' score alone, recalibrated), ``+transitions``, ``+sound``,
``fused`` (both: the default's inputs), ``fused+effnet`` (the EfficientNet-Lite0 links' score
as one more input; not the default, for its cost), ``fused`` without its rule that blank
shots join the scene after them (``fusion.blank_shots_join``), and with a minimum scene length.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from real_footage import THRESHOLD, Counts, Film, Scored, match

from scenecut.models.fusion import INPUTS, SOUND, blank_shots_join, fit_logistic
from scenecut.train.fusion import FilmExamples, Truth, film_examples, label_gaps

MARGIN_S = 3.0
ABLATIONS = {  # label: (inputs, --min-scene-len, blank shots join a scene)
    "links": (("links",), 0.0, True),
    "+transitions": (("links", "blank", "dip"), 0.0, True),
    "+sound": (("links", "audio_change"), 0.0, True),
    "fused": (INPUTS, 0.0, True),
    "fused+effnet": ((*INPUTS, "effnet"), 0.0, True),
    "fused, no join": (INPUTS, 0.0, False),
    "fused, 1 s min": (INPUTS, 1.0, True),
    "fused, 2 s min": (INPUTS, 2.0, True),
}


def truth_of(film: Film) -> Truth:
    return Truth([(b.time_s, b.kind) for b in film.boundaries], list(film.unjudged))


def write_truth(film: Film, folder: Path) -> Path:
    """``<stem>.truth.json`` for ``scenecut train fusion`` (see scenecut/train/fusion.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{film.path.stem}.truth.json"
    doc = {
        "boundaries": [{"time_s": b.time_s, "kind": b.kind} for b in film.boundaries],
        "unjudged": [list(span) for span in film.unjudged],
    }
    path.write_text(json.dumps(doc, indent=1))
    return path


def examples(films: list[Film]) -> dict[str, FilmExamples]:
    return {film.name: film_examples(film.path, truth_of(film)) for film in films}


def _near(film: Film, cut_s: list[float], source: str) -> np.ndarray:
    return np.array(
        [
            any(s == source and a - MARGIN_S <= t <= b + MARGIN_S for a, b, s in film.spans)
            for t in cut_s
        ],
        dtype=bool,
    )


def _columns(ex: FilmExamples, names: tuple[str, ...], effnet: dict, film: str) -> np.ndarray:
    full = ex.inputs["av"]
    cols = []
    for name in names:
        if name == "effnet":
            cols.append(np.asarray(effnet[film], dtype=np.float64))
        else:
            cols.append(full[:, INPUTS.index(name)])
    return np.stack(cols, axis=1)


def loo(
    films: list[Film],
    ex: dict[str, FilmExamples],
    names: tuple[str, ...],
    effnet: dict,
    min_scene_s: float = 0.0,
    join_blank: bool = True,
) -> dict:
    """Leave-one-source-out counts of one input set: total, clips, montages, per film, joins."""
    quiet = tuple(n for n in names if n not in SOUND)
    sources = sorted({s for f in films for s in f.sources})
    per = {f.name: Counts() for f in films}
    joins = {f.name: 0 for f in films}
    for source in sources:
        models = {}
        for variant, cols in (("av", names), ("picture", quiet)):
            xs, ys = [], []
            for f in films:
                e = ex[f.name]
                if variant == "av" and not e.audio:
                    continue
                m = e.keep & ~_near(f, e.cut_s, source)
                xs.append(_columns(e, cols, effnet, f.name)[m])
                ys.append(e.labels[m])
            models[variant] = (cols, fit_logistic(np.concatenate(xs), np.concatenate(ys), cols))
        for f in films:
            if source not in f.sources:
                continue
            e = ex[f.name]
            cols, model = models["av" if e.audio else "picture"]
            scores = model(_columns(e, cols, effnet, f.name))
            if join_blank:
                scores = blank_shots_join(scores, e.blank)
            item = Scored(
                f, e.cut_s, [float(s) for s in scores], e.shot_frames, round(min_scene_s * e.fps)
            )
            counts, hit = match(f, item.predicted(THRESHOLD), source)
            per[f.name] = per[f.name] + counts
            joins[f.name] += hit
    return dict(per=per, joins=joins)


def report(films: list[Film], clips: int, ex: dict, effnet: dict | None) -> dict:
    """Print and return the ablation table."""
    out = {}
    print(f"\nfusion, leave-one-source-out at {THRESHOLD} (the fusion refitted per fold)")
    head = f"{'inputs':14s} {'P':>5s} {'R':>5s} {'F1':>5s} {'tp/fp/fn':>9s}"
    print(head + "  clips F1  montages F1  joins")
    for label, (names, min_scene_s, join_blank) in ABLATIONS.items():
        if "effnet" in names and not effnet:
            continue
        res = loo(films, ex, names, effnet or {}, min_scene_s, join_blank)
        total = sum(res["per"].values(), Counts())
        part_c = sum((res["per"][f.name] for f in films[:clips]), Counts())
        part_m = sum((res["per"][f.name] for f in films[clips:]), Counts())
        hit = sum(res["joins"].values())
        all_joins = sum(b.kind == "join" for f in films for b in f.boundaries)
        print(
            f"{label:14s} {total.precision:5.3f} {total.recall:5.3f} {total.f1:5.3f} "
            f"{total.tp:>3d}/{total.fp}/{total.fn:<3d}  {part_c.f1:8.3f}  {part_m.f1:11.3f}  "
            f"{hit}/{all_joins}"
        )
        out[label] = dict(
            inputs=list(names),
            min_scene_s=min_scene_s,
            join_blank=join_blank,
            total=_row(total),
            clips=_row(part_c),
            montages=_row(part_m),
            joins_hit=hit,
            joins=all_joins,
            films={
                name: _row(c) | {"joins_hit": res["joins"][name]} for name, c in res["per"].items()
            },
        )
    fused = out["fused"]["films"]
    print("fused per film (LOO):", ", ".join(f"{k} {v['f1']:.3f}" for k, v in fused.items()))
    return out


def _row(c: Counts) -> dict:
    return dict(tp=c.tp, fp=c.fp, fn=c.fn, precision=c.precision, recall=c.recall, f1=c.f1)


__all__ = ["examples", "label_gaps", "report", "write_truth"]
