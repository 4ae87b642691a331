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

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from real_footage import THRESHOLD, TOLERANCE_S, Counts, Film, Scored, match

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


@dataclass
class FilmData:
    """One film's gaps as the folds use them: inputs by name, labels, kept gaps."""

    film: Film
    cut_s: list[float]
    shots: list[tuple[int, int]]
    fps: float
    audio: bool
    blank: np.ndarray
    labels: np.ndarray
    keep: np.ndarray
    x: dict[str, np.ndarray]  # input name -> [gaps]


def film_data(film: Film, ex: FilmExamples, effnet: dict) -> FilmData:
    """``FilmData`` of the default's inputs (and the EfficientNet links' score, when given)."""
    x = dict(zip(INPUTS, ex.inputs["av"].T, strict=True))
    if film.name in effnet:
        x["effnet"] = np.asarray(effnet[film.name], dtype=np.float64)
    return FilmData(
        film, ex.cut_s, ex.shot_frames, ex.fps, ex.audio, ex.blank, ex.labels, ex.keep, x
    )


def _hide(film: Film, source: str) -> Film:
    """``film`` with nothing counted within MARGIN_S of ``source``'s footage."""
    spans = [(a, b) for a, b, s in film.spans if s == source]
    if not spans:
        return film

    def far(t: float) -> bool:
        return not any(a - MARGIN_S <= t <= b + MARGIN_S for a, b in spans)

    margin = MARGIN_S + 2 * TOLERANCE_S  # predictions there are not counted either
    hidden = [(a - margin, b + margin) for a, b in spans]
    kept = [b for b in film.boundaries if far(b.time_s)]
    return dataclasses.replace(film, boundaries=kept, unjudged=[*film.unjudged, *hidden])


class Folds:
    """Leave-one-source-out over ``data``: the logistic regression fitted without the gaps
    near the left-out sources' footage, scored on what a source owns at THRESHOLD. ``sound``:
    the inputs the ``picture`` weight set (films without sound) goes without."""

    def __init__(self, data: list[FilmData], sound: tuple[str, ...] = SOUND):
        self.data = data
        self.sound = sound
        self.sources = sorted({s for d in data for s in d.film.sources})
        self.near = {
            (i, s): _near(d.film, d.cut_s, s) for i, d in enumerate(data) for s in self.sources
        }

    def fit(self, names: tuple[str, ...], leave_out: tuple[str, ...]) -> dict:
        models = {}
        for variant in ("av", "picture"):
            cols = names if variant == "av" else tuple(n for n in names if n not in self.sound)
            xs, ys = [], []
            for i, d in enumerate(self.data):
                if variant == "av" and not d.audio:
                    continue
                m = d.keep.copy()
                for s in leave_out:
                    m &= ~self.near[i, s]
                xs.append(np.stack([d.x[c] for c in cols], 1)[m])
                ys.append(d.labels[m])
            models[variant] = (cols, fit_logistic(np.concatenate(xs), np.concatenate(ys), cols))
        return models

    def score(
        self,
        models: dict,
        source: str,
        hide: str | None = None,
        min_scene_s: float = 0.0,
        join_blank: bool = True,
    ) -> dict[str, tuple[Counts, int]]:
        """Per film holding ``source``: its counts and joins found, of what ``source`` owns."""
        out = {}
        for d in self.data:
            if source not in d.film.sources:
                continue
            film = _hide(d.film, hide) if hide else d.film
            cols, model = models["av" if d.audio else "picture"]
            p = model(np.stack([d.x[c] for c in cols], 1))
            if join_blank:
                p = blank_shots_join(p, d.blank)
            frames = round(min_scene_s * d.fps)
            item = Scored(film, d.cut_s, [float(v) for v in p], d.shots, frames)
            out[d.film.name] = match(film, item.predicted(THRESHOLD), source)
        return out

    def loo(
        self,
        names: tuple[str, ...],
        without: str | None = None,
        min_scene_s: float = 0.0,
        join_blank: bool = True,
    ) -> dict[str, tuple[Counts, int]]:
        """Per film, counts and joins found over the folds (``without``: that source left
        out of everything, for a nested selection)."""
        per = {d.film.name: (Counts(), 0) for d in self.data}
        for s in self.sources:
            if s == without:
                continue
            leave = (s,) if without is None else (s, without)
            scored = self.score(self.fit(names, leave), s, without, min_scene_s, join_blank)
            for name, (counts, hit) in scored.items():
                per[name] = (per[name][0] + counts, per[name][1] + hit)
        return per


def total(per: dict[str, tuple[Counts, int]]) -> tuple[Counts, int]:
    return sum((c for c, _ in per.values()), Counts()), sum(j for _, j in per.values())


def report(films: list[Film], clips: int, ex: dict, effnet: dict | None) -> dict:
    """Print and return the ablation table."""
    out = {}
    folds = Folds([film_data(f, ex[f.name], effnet or {}) for f in films])
    print(f"\nfusion, leave-one-source-out at {THRESHOLD} (the fusion refitted per fold)")
    head = f"{'inputs':14s} {'P':>5s} {'R':>5s} {'F1':>5s} {'tp/fp/fn':>9s}"
    print(head + "  clips F1  montages F1  joins")
    for label, (names, min_scene_s, join_blank) in ABLATIONS.items():
        if "effnet" in names and not effnet:
            continue
        per = folds.loo(names, None, min_scene_s, join_blank)
        counts, hit = total(per)
        part_c = total({f.name: per[f.name] for f in films[:clips]})[0]
        part_m = total({f.name: per[f.name] for f in films[clips:]})[0]
        all_joins = sum(b.kind == "join" for f in films for b in f.boundaries)
        print(
            f"{label:14s} {counts.precision:5.3f} {counts.recall:5.3f} {counts.f1:5.3f} "
            f"{counts.tp:>3d}/{counts.fp}/{counts.fn:<3d}  {part_c.f1:8.3f}  {part_m.f1:11.3f}  "
            f"{hit}/{all_joins}"
        )
        out[label] = dict(
            inputs=list(names),
            min_scene_s=min_scene_s,
            join_blank=join_blank,
            total=_row(counts),
            clips=_row(part_c),
            montages=_row(part_m),
            joins_hit=hit,
            joins=all_joins,
            films={name: _row(c) | {"joins_hit": j} for name, (c, j) in per.items()},
        )
    fused = out["fused"]["films"]
    print("fused per film (LOO):", ", ".join(f"{k} {v['f1']:.3f}" for k, v in fused.items()))
    return out


def _row(c: Counts) -> dict:
    return dict(tp=c.tp, fp=c.fp, fn=c.fn, precision=c.precision, recall=c.recall, f1=c.f1)


__all__ = ["FilmData", "Folds", "examples", "label_gaps", "report", "total", "write_truth"]
