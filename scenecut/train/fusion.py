"""Training the fused scorer (``scenecut.models.fusion``) from films with scene lists.

Each film is segmented once with the classic links and its evidence (one decode pass); each shot
gap becomes one example: its inputs (``fusion.INPUTS``) and whether a scene starts there. Truth
is a JSON file per film, ``<stem>.truth.json``:

    {"boundaries": [12.5, {"time_s": 30.0, "kind": "unsure"}, ...],
     "unjudged": [[60.0, 80.0], ...]}

A boundary is a time in seconds (or an object with ``time_s`` and ``kind``: ``judged`` or
``join`` count, ``unsure`` gaps are left out); it labels the shot gap nearest to it within
``TOLERANCE_S``. Gaps inside an ``unjudged`` span (footage whose scenes nobody judged) are left
out, except one a boundary labels. ``bench/real_footage.py`` writes such files for the judged
clips and the montages.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import InputError
from scenecut.models.classic import ClassicEncoder
from scenecut.models.fusion import VARIANTS, Logistic, fit_logistic, gap_inputs, save_fusion
from scenecut.models.links import CoherenceScorer
from scenecut.segment import segment

if TYPE_CHECKING:
    import numpy as np

TOLERANCE_S = 0.5
MAX_TRUTH_BYTES = 1 << 20


@dataclass
class FilmExamples:
    """One film's gaps: times, inputs of every variant, labels, and which gaps count."""

    path: Path
    cut_s: list[float]
    inputs: dict[str, np.ndarray]  # variant -> [gaps, inputs]
    labels: np.ndarray  # 1 where a scene starts
    keep: np.ndarray  # False: unsure or unjudged, left out
    audio: bool
    shot_frames: list[tuple[int, int]] = field(default_factory=list, repr=False)
    fps: float = 0.0
    blank: np.ndarray = field(repr=False, default=None)  # blank shots (evidence.blank_shots)


@dataclass(frozen=True)
class Truth:
    boundaries: list[tuple[float, str]]  # (seconds, "judged" / "join" / "unsure")
    unjudged: list[tuple[float, float]]


def read_truth(path: Path) -> Truth:
    """A ``.truth.json`` file (see the module's text), checked field by field."""
    try:
        data = path.read_bytes()[: MAX_TRUTH_BYTES + 1]
    except OSError as exc:
        raise InputError(f"{path}: cannot read the truth file ({exc.strerror})") from None
    if len(data) > MAX_TRUTH_BYTES:
        raise InputError(f"{path}: too large for a truth file")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None

    def seconds(value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{path}: {where} is not a number of seconds")
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{path}: {where} is not a time ({value})")
        return float(value)

    if not isinstance(doc, dict) or not isinstance(doc.get("boundaries"), list):
        raise InputError(f"{path}: expected an object with a 'boundaries' list")
    boundaries = []
    for i, item in enumerate(doc["boundaries"]):
        if isinstance(item, dict):
            kind = item.get("kind", "judged")
            if kind not in ("judged", "join", "unsure"):
                raise InputError(f"{path}: boundaries[{i}].kind must be judged, join or unsure")
            boundaries.append((seconds(item.get("time_s"), f"boundaries[{i}].time_s"), kind))
        else:
            boundaries.append((seconds(item, f"boundaries[{i}]"), "judged"))
    unjudged = []
    for i, span in enumerate(doc.get("unjudged") or []):
        if not isinstance(span, list) or len(span) != 2:
            raise InputError(f"{path}: unjudged[{i}] must be [start_s, end_s]")
        unjudged.append((seconds(span[0], f"unjudged[{i}]"), seconds(span[1], f"unjudged[{i}]")))
    return Truth(boundaries, unjudged)


class _Recorder(CoherenceScorer):
    """The classic links, asking for the evidence and keeping what ``score`` was given."""

    wants_evidence = True

    def __init__(self) -> None:
        super().__init__(ClassicEncoder(), name="classic")
        self.seen = None

    def score(self, embeddings, gaps=None):
        links = super().score(embeddings)
        self.seen = (links, gaps)
        return links


def label_gaps(cut_s: list[float], truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """Labels and kept-gaps mask of a film's gaps (see the module's text)."""
    import numpy as np

    labels = np.zeros(len(cut_s))
    keep = np.ones(len(cut_s), dtype=bool)
    if not cut_s:
        return labels, keep
    times = np.asarray(cut_s)
    for t, kind in truth.boundaries:
        gap = int(np.abs(times - t).argmin())
        if abs(times[gap] - t) > TOLERANCE_S:
            continue
        if kind == "unsure":
            keep[gap] = False
        else:
            labels[gap] = 1
    for g, t in enumerate(cut_s):
        if not labels[g] and any(a + TOLERANCE_S < t < b - TOLERANCE_S for a, b in truth.unjudged):
            keep[g] = False
    return labels, keep


def film_examples(path: Path, truth: Truth) -> FilmExamples:
    """Segment ``path`` once (classic links + evidence) and label its gaps."""

    recorder = _Recorder()
    result = segment(path, scorer=recorder)
    links, gaps = recorder.seen
    video = result.video
    cut_s = [float(video.time_of(s.end)) for s in result.shots[:-1]]
    labels, keep = label_gaps(cut_s, truth)
    inputs = {v: gap_inputs(links, gaps.table, names) for v, names in VARIANTS.items()}
    return FilmExamples(
        Path(path),
        cut_s,
        inputs,
        labels,
        keep,
        gaps.audio,
        [(s.start, s.end) for s in result.shots],
        float(video.fps),
        gaps.blank,
    )


def fit_variants(films: list[FilmExamples], masks=None, l2: float = 1.0) -> dict[str, Logistic]:
    """Both weight sets from the kept gaps (``masks``: a further per-film selection): ``av``
    from the films with sound, ``picture`` from all."""
    import numpy as np

    models = {}
    for variant, names in VARIANTS.items():
        xs, ys = [], []
        for i, film in enumerate(films):
            if variant == "av" and not film.audio:
                continue
            m = film.keep if masks is None else film.keep & masks[i]
            xs.append(film.inputs[variant][m])
            ys.append(film.labels[m])
        if not xs:
            raise InputError(f"no film with sound to train the {variant} weights on")
        models[variant] = fit_logistic(np.concatenate(xs), np.concatenate(ys), names, l2)
    return models


def truth_file(video: Path, truth_dir: Path | None) -> Path:
    folder = truth_dir if truth_dir is not None else video.parent
    return folder / f"{video.stem}.truth.json"


def train_fusion(
    videos: list[Path], out: Path, *, truth_dir: Path | None = None, l2: float = 1.0, log=print
) -> dict:
    """Train both weight sets on ``videos`` and write ``out``; returns a summary."""
    if not videos:
        raise InputError("no films given")
    truths = {v: read_truth(truth_file(v, truth_dir)) for v in videos}  # all checked first
    films = []
    began = time.perf_counter()
    for video in videos:
        film = film_examples(video, truths[video])
        films.append(film)
        log(
            f"{video.name}: {len(film.cut_s)} gaps, {int(film.labels.sum())} boundaries, "
            f"{'sound' if film.audio else 'no sound'}"
        )
    models = fit_variants(films, l2=l2)
    about = {
        "films": [v.name for v in videos],
        "gaps": int(sum(f.keep.sum() for f in films)),
        "boundaries": int(sum(f.labels[f.keep].sum() for f in films)),
        "l2": l2,
    }
    save_fusion(models, out, about)
    for variant, m in models.items():
        weights = ", ".join(f"{n} {w:+.3f}" for n, w in zip(m.names, m.weight, strict=True))
        log(f"{variant}: {weights}, bias {m.bias:+.3f}")
    return (
        about
        | {"seconds": round(time.perf_counter() - began, 1), "out": str(out)}
        | {"train_f1": {v: _f1(models[v], films, v) for v in models}}
    )


def _f1(model: Logistic, films: list[FilmExamples], variant: str) -> float:
    """Per-gap F1 on the training films at 0.5 (a sanity check, not a score)."""
    tp = fp = fn = 0
    for film in films:
        if variant == "av" and not film.audio:
            continue
        p = model(film.inputs[variant]) > 0.5
        y = film.labels.astype(bool)
        k = film.keep
        tp += int((p & y & k).sum())
        fp += int((p & ~y & k).sum())
        fn += int((~p & y & k).sum())
    return round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else 1.0
