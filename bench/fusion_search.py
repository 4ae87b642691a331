"""Which cues could the fusion add? Candidate inputs, scored leave-one-source-out, honestly.

    python bench/fusion_search.py [--json OUT]     # about 3 min on 2 cores

The films are real_footage.py's (the judged clips and the eight montages). Each is decoded
twice (the classic and the EfficientNet-Lite0 keyframe sizes) with ``shots.detect_shots`` and
the default's evidence; every candidate input is computed per shot gap from that:

- ``links``, ``blank``, ``dip``, ``audio_change``: the default's inputs (``fusion.INPUTS``);
- ``audio_level``, ``audio_quiet``: the evidence's two other sound columns;
- ``audio_0.5``, ``audio_1``: the log-mel change over 0.5 s and 1 s either side (the default
  uses 2 s), relative to the film's median; ``audio_peak``: ``audio_change`` minus the larger of
  its two neighbours';
- ``effnet``: the EfficientNet-Lite0 links' score; ``cos_c1``, ``cos_e1``: 1 - cosine similarity
  of the two shots at the gap (classic, EfficientNet centred); ``cos_c2``, ``cos_e2``: the same
  for the mean of the two shots either side; ``links_peak``: ``links`` minus its neighbours'.

Table 1 fits ``scenecut train fusion``'s logistic regression per fold on a fixed input set and
scores each source's boundaries as fusion_loo.py does (the first row is the default and must
equal its F1). Choosing the set by these same folds would flatter it, so table 2 is *nested*:
for each held-out source, a greedy forward selection (from ``links``, adding the input that
most raises F1, while it does) runs on leave-one-source-out folds of the other sources only
(training and scoring never within 3 s of the held-out footage), then the chosen set is fitted
without the held-out source and scored on it. Its F1 is what choosing inputs this way is worth
on footage it has not seen.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import fusion_loo
import numpy as np
import real_footage as rf
from fusion_loo import FilmData, total

from scenecut.evidence import (
    Evidence,
    blank_shots,
    gap_evidence,
    sound_change,
    sound_offset,
)
from scenecut.models.classic import ClassicEncoder
from scenecut.models.effnet import EfficientNetEncoder
from scenecut.models.fusion import INPUTS, gap_inputs
from scenecut.models.links import center_embeddings, link_scores
from scenecut.shots import detect_shots
from scenecut.train.fusion import label_gaps

ROOT = Path(__file__).resolve().parents[1]
SETS = [  # (label, inputs) of table 1
    ("the default", INPUTS),
    ("+ effnet", (*INPUTS, "effnet")),
    ("+ cos_e1", (*INPUTS, "cos_e1")),
    ("+ audio_1", (*INPUTS, "audio_1")),
    ("+ audio_quiet", (*INPUTS, "audio_quiet")),
    ("audio_1 for audio_change", ("links", "blank", "dip", "audio_1")),
    ("links, blank, cos_e1", ("links", "blank", "cos_e1")),
    ("links, blank, cos_e1, audio_1", ("links", "blank", "cos_e1", "audio_1")),
]
SOUND = ("audio_change", "audio_level", "audio_quiet", "audio_0.5", "audio_1", "audio_peak")
EFFNET = ("effnet", "cos_e1", "cos_e2")  # the inputs that need EfficientNet-Lite0 (its cost)


def _embedded(path: Path, encoder, evidence: Evidence | None):
    keyframes = []
    detection = detect_shots(
        path,
        keyframe_height=encoder.keyframe_height,
        on_shot=lambda item: keyframes.append(item.images),
        evidence=evidence,
    )
    return detection, encoder.embed(np.stack(keyframes))


def _cosine_gap(e: np.ndarray, k: int) -> np.ndarray:
    """1 - cosine of the mean of the k shots before each gap and the k after it."""
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-8)
    out = np.zeros(len(e) - 1)
    for g in range(len(e) - 1):
        a, b = e[max(0, g - k + 1) : g + 1].mean(0), e[g + 1 : g + 1 + k].mean(0)
        out[g] = 1 - a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-8)
    return out


def _sound_change(evidence: Evidence, cut_s: list[float], span_s: float) -> np.ndarray:
    if not evidence.audio:
        return np.zeros(len(cut_s))
    mel, _ = evidence.sound.arrays()
    return sound_change(mel, sound_offset(evidence), cut_s, span_s).astype(float)


def _peak(x: np.ndarray) -> np.ndarray:
    return x - np.maximum(np.r_[0.0, x[:-1]], np.r_[x[1:], 0.0])


def film_data(film: rf.Film, effnet: EfficientNetEncoder) -> FilmData:
    evidence = Evidence()
    detection, classic = _embedded(film.path, ClassicEncoder(), evidence)
    again, eff = _embedded(film.path, effnet, None)
    shots = detection.shots
    assert [s.start for s in again.shots] == [s.start for s in shots], film.name
    video = detection.video
    cut_s = [float(video.time_of(s.end)) for s in shots[:-1]]
    table = gap_evidence(evidence, video, shots)
    links = link_scores(classic)
    x = dict(zip(INPUTS, gap_inputs(links, table, INPUTS).T, strict=True))
    x["audio_level"], x["audio_quiet"] = table[:, -2].astype(float), table[:, -1].astype(float)
    x["audio_0.5"] = _sound_change(evidence, cut_s, 0.5)
    x["audio_1"] = _sound_change(evidence, cut_s, 1.0)
    x["audio_peak"] = _peak(x["audio_change"])
    centred = center_embeddings(eff)
    x["effnet"] = link_scores(centred, floor=effnet.link_floor).astype(float)
    x["cos_c1"], x["cos_c2"] = _cosine_gap(classic, 1), _cosine_gap(classic, 2)
    x["cos_e1"], x["cos_e2"] = _cosine_gap(centred, 1), _cosine_gap(centred, 2)
    x["links_peak"] = _peak(x["links"])
    labels, keep = label_gaps(cut_s, fusion_loo.truth_of(film))
    return FilmData(
        film,
        cut_s,
        [(s.start, s.end) for s in shots],
        float(video.fps),
        evidence.audio,
        blank_shots(evidence, shots),
        labels,
        keep,
        x,
    )


class Search(fusion_loo.Folds):
    """The folds with SOUND's wider list, and the nested forward selection."""

    def __init__(self, data: list[FilmData]):
        super().__init__(data, SOUND)

    def select(self, without: str, candidates: list[str]) -> tuple[tuple[str, ...], float]:
        chosen = ("links",)
        best = total(self.loo(chosen, without))[0].f1
        while True:
            tried = [
                (total(self.loo((*chosen, c), without))[0].f1, c)
                for c in candidates
                if c not in chosen
            ]
            f1, name = max(tried)
            if f1 <= best + 1e-9:
                return chosen, best
            chosen, best = (*chosen, name), f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/fusion_search.json")
    args = parser.parse_args()
    clips, pieces, infos = rf.clip_films()
    films = clips + rf.montage_films(pieces, infos, len(rf.MONTAGES))
    effnet = EfficientNetEncoder()
    data = [film_data(f, effnet) for f in films]
    folds = Search(data)
    joins = sum(b.kind == "join" for f in films for b in f.boundaries)
    out = dict(table=[], nested={})
    print(f"{'inputs (leave-one-source-out, 0.5)':38s}    P     R    F1  tp/fp/fn  joins")
    for label, names in SETS:
        c, hit = total(folds.loo(names))
        tfn = f"{c.tp}/{c.fp}/{c.fn}"
        print(f"{label:38s} {c.precision:5.3f} {c.recall:5.3f} {c.f1:5.3f} {tfn:>9s} {hit}/{joins}")
        out["table"].append(dict(label=label, inputs=list(names), joins_hit=hit) | rf._row(c))
    candidates = [n for n in data[0].x if n != "links"]
    pools = {"without effnet": [c for c in candidates if c not in EFFNET], "all": candidates}
    for label, pool in pools.items():
        pooled, hits = rf.Counts(), 0
        print(f"\nnested selection, candidates {label}: {', '.join(pool)}")
        for s in folds.sources:
            names, inner = folds.select(s, pool)
            c, hit = total(folds.score(folds.fit(names, (s,)), s))
            pooled, hits = pooled + c, hits + hit
            print(f"  {s}: chosen {'+'.join(names)} (inner F1 {inner:.3f}) -> {c.tp}/{c.fp}/{c.fn}")
            fold = dict(source=s, inputs=list(names), inner_f1=inner) | rf._row(c)
            out["nested"].setdefault(label, []).append(fold)
        print(
            f"  nested {label}: P {pooled.precision:.3f} R {pooled.recall:.3f} "
            f"F1 {pooled.f1:.3f} {pooled.tp}/{pooled.fp}/{pooled.fn}, joins {hits}/{joins}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
