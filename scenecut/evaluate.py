"""Scene-segmentation metrics, each computed exactly as its paper's own code computes it.

Every function is pure: numpy arrays in, numbers out. Conventions (MovieNet-SSeg, BaSSL, LGSS):
``labels[i] = 1`` means "a scene ends after shot i" (a boundary lies between shot i and i + 1);
``probs[i]`` is the predicted probability of that. The last shot of a film carries no label.
The papers disagree on definitions, so each number carries its paper's name:

- BaSSL (``finetune/utils/metric.py``): AP is scikit-learn's AP pooled over every gap of every
  film; F1 pooled at ``prob >= 0.5`` (torchmetrics); Recall, Recall@3s and mIoU per film at
  ``argmax`` (``prob > 0.5``), averaged. LGSS (``lgss/utilis``) computes these last three the
  same way.
- LGSS "mAP" (``get_mAP_seq``): each film's AP rounded to 2 decimals, averaged.
- SCRL (``SceneSeg/main.py``, ``inference``): AP and F1 per film (``prob > 0.5``, 1e-5 added to
  precision, recall and F1), averaged over every film, one without a boundary included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scenecut.data.tree import read_tree
from scenecut.errors import InputError
from scenecut.result import pick_boundaries

RECALL_SHOTS = 5  # Recall@3s looks this many shots either side of a true boundary
RECALL_SECONDS = 3.0
RECALL_FPS = 24.0  # hard-coded by the reference code, whatever the film's real rate
SCRL_EPS = 1e-5
LGSS_DECIMALS = 2


def average_precision(labels: Sequence[int], probs: Sequence[float]) -> float:
    """scikit-learn's ``average_precision_score`` (the one all three papers call), step by step:
    sum_n (R_n - R_{n-1}) P_n over the distinct scores, highest first, ties entering together;
    NaNs read as 0 (the papers' ``nan_to_num``). 0.0 when no label is 1, as scikit-learn >= 1.1
    returns; NaN for no gaps at all (scikit-learn refuses)."""
    y = np.nan_to_num(np.asarray(labels, dtype=np.float64)).ravel() == 1
    p = np.nan_to_num(np.asarray(probs, dtype=np.float64)).ravel()
    if y.size == 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    y, p = y[order], p[order]
    last_of_tie = np.r_[np.nonzero(np.diff(p))[0], y.size - 1]
    tps = np.cumsum(y, dtype=np.float64)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall = tps / tps[-1] if tps[-1] else np.ones_like(tps)
    # scikit-learn's own order of operations, so the sums agree to the last bit
    precision = np.r_[precision[::-1], 1.0]
    recall = np.r_[recall[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def f1_score(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> float:
    """BaSSL's F1 (torchmetrics ``F1()`` on the boundary probability): binary F1 of the boundary
    class with ``prob >= threshold`` a boundary; 0 if nothing is predicted or present."""
    y = np.asarray(labels, dtype=bool).ravel()
    pred = np.asarray(probs, dtype=np.float64).ravel() >= threshold
    tp = int((y & pred).sum())
    denominator = int(y.sum() + pred.sum())
    return 2 * tp / denominator if denominator else 0.0


def scrl_f1(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> float:
    """SCRL's F1 of one film: ``prob > threshold`` a boundary, and 1e-5 added to the
    denominators of recall, precision and F1."""
    y = np.asarray(labels, dtype=bool).ravel()
    pred = np.nan_to_num(np.asarray(probs, dtype=np.float64).ravel()) > threshold
    tp = int((y & pred).sum())
    recall_ = tp / (int(y.sum()) + SCRL_EPS)
    precision = tp / (int(pred.sum()) + SCRL_EPS)
    return 2 * recall_ * precision / (recall_ + precision + SCRL_EPS)


def lgss_ap(labels: Sequence[int], probs: Sequence[float]) -> float:
    """One film's term of LGSS's mAP: its AP rounded to 2 decimals. The reference rounds
    scikit-learn's numpy float with ``round(ap, 2)``, i.e. ``np.round`` (half to even after
    scaling: 0.025 -> 0.02, where Python's ``round`` gives 0.03)."""
    return _lgss_round(average_precision(labels, probs))


def _lgss_round(ap: float) -> float:
    return float(np.round(np.float64(ap), LGSS_DECIMALS))


def recall(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> float:
    """Share of true boundaries predicted (``prob > threshold``, i.e. argmax); 0 without any
    (scikit-learn's ``recall_score``)."""
    y = np.asarray(labels, dtype=bool).ravel()
    pred = np.asarray(probs, dtype=np.float64).ravel() > threshold
    return float((y & pred).sum() / y.sum()) if y.any() else 0.0


def recall_at_seconds(
    labels: Sequence[int],
    probs: Sequence[float],
    shot_end_frames: Sequence[int],
    *,
    threshold: float = 0.5,
    shots: int = RECALL_SHOTS,
    seconds: float = RECALL_SECONDS,
    fps: float = RECALL_FPS,
) -> float:
    """Recall@3s (LGSS/BaSSL): a true boundary at shot s is found when some shot within
    ``shots`` of s is predicted a boundary and its end frame is less than ``seconds`` from
    s's end frame at ``fps``. ``hits / (n_true + 1e-5)``."""
    y = np.asarray(labels, dtype=bool).ravel()
    pred = np.asarray(probs, dtype=np.float64).ravel() > threshold
    ends = np.asarray(shot_end_frames, dtype=np.float64).ravel()
    n = min(y.size, ends.size)
    hits = 0
    for s in np.nonzero(y)[0]:
        lo, hi = max(0, s - shots), min(n - 1, s + shots)
        near = np.arange(lo, hi + 1)
        close = np.abs(ends[near] - ends[s]) / fps < seconds
        hits += bool(np.any(pred[near] & close))
    return hits / (int(y.sum()) + 1e-5)


def scene_spans(
    labels: Sequence[int], shot_frames: Sequence[tuple[int, int]], *, keep_trailing: bool = False
) -> list[tuple[int, int]]:
    """Spans ``(first shot's start, last shot's end)`` of the scenes a boundary sequence makes,
    in the units of ``shot_frames``. LGSS's ``get_pair_list`` drops the shots after the last
    boundary (``keep_trailing=False``, the benchmark's choice); ModelScope keeps them as a
    last scene."""
    spans: list[tuple[int, int]] = []
    first = 0
    for i, label in enumerate(labels):
        if label:
            spans.append((shot_frames[first][0], shot_frames[i][1]))
            first = i + 1
    if keep_trailing and first < len(shot_frames):
        spans.append((shot_frames[first][0], shot_frames[-1][1]))
    return spans


def _coverage(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> float:
    """Mean over spans of ``a`` of the best IoU with a span of ``b``, IoU as LGSS computes it:
    overlap / (max end - min start), 0 when disjoint."""
    total = 0.0
    for a0, a1 in a:
        best = 0.0
        for b0, b1 in b:
            overlap = min(a1, b1) - max(a0, b0)
            if overlap > 0:
                best = max(best, overlap / (max(a1, b1) - min(a0, b0)))
        total += best
    return total / len(a) if a else 0.0


def miou(
    labels: Sequence[int],
    probs: Sequence[float],
    shot_frames: Sequence[tuple[int, int]],
    threshold: float = 0.5,
) -> float | None:
    """LGSS/BaSSL mIoU of one film: mean of (true -> predicted) and (predicted -> true)
    coverage of scene spans, ``shot_frames`` being each shot's first and *last* frame as
    ``shot_movie318`` stores them. 0 when nothing is predicted a boundary; else None when the
    film has no true boundary (the references then return None for the whole metric)."""
    pred = [int(p > threshold) for p in probs]
    if not any(pred):
        return 0.0
    if not any(labels):
        return None
    truth_spans = scene_spans(labels, shot_frames)
    pred_spans = scene_spans(pred, shot_frames)
    return 0.5 * (_coverage(truth_spans, pred_spans) + _coverage(pred_spans, truth_spans))


def inclusive_spans(shots: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` shot ranges as ``(first, last)`` frames, the layout of
    ``shot_movie318`` that mIoU reads."""
    return [(start, end - 1) for start, end in shots]


@dataclass(frozen=True)
class Film:
    """One film's per-gap labels and probabilities, and its shots' ``(first, last)`` frames
    (inclusive, as ``shot_movie318``; see ``inclusive_spans``)."""

    name: str
    labels: Sequence[int]
    probs: Sequence[float]
    shot_frames: Sequence[tuple[int, int]]


@dataclass(frozen=True)
class Scores:
    """Each paper's numbers over a set of films, as fractions in [0, 1] (papers print x100).

    ``ap`` .. ``recall_at_3s`` are BaSSL's (LGSS's mIoU, Recall and Recall@3s are the same
    numbers); ``lgss_map`` is LGSS's "mAP"; ``mean_ap`` and ``mean_f1`` are SCRL's "AP" and "F1".
    """

    ap: float  # BaSSL "AP": pooled over all gaps
    f1: float  # BaSSL "F1": pooled, prob >= threshold
    miou: float | None  # BaSSL/LGSS "mIoU": per film, averaged; None as the references give it
    recall: float  # BaSSL/LGSS "Recall": per film, averaged
    recall_at_3s: float  # BaSSL/LGSS "Recall@3s": per film, averaged
    lgss_map: float  # LGSS "mAP": per-film AP rounded to 2 decimals, averaged
    mean_ap: float  # SCRL "AP": per-film AP averaged, a film without boundary counting 0
    mean_f1: float  # SCRL "F1": per-film F1 (prob > threshold, 1e-5 epsilons) averaged
    films: int
    gaps: int

    def by_paper(self) -> dict:
        """JSON-ready: each number under its paper's name (NaN written as null)."""

        def clean(value):
            return None if value is None or value != value else value

        return {
            "bassl": {
                "ap": clean(self.ap),
                "f1": clean(self.f1),
                "miou": clean(self.miou),
                "recall": clean(self.recall),
                "recall_3s": clean(self.recall_at_3s),
            },
            "lgss": {"map": clean(self.lgss_map)},
            "scrl": {"ap": clean(self.mean_ap), "f1": clean(self.mean_f1)},
            "films": self.films,
            "gaps": self.gaps,
        }


def score_films(films: Sequence[Film], threshold: float = 0.5) -> Scores:
    """All metrics over ``films``, each with its reference's own pooling. The references fix
    the threshold at 0.5; ``threshold`` moves every one of them."""
    if not films:
        raise ValueError("no films to score")
    labels = np.concatenate([np.asarray(f.labels, dtype=np.int64) for f in films])
    probs = np.concatenate([np.asarray(f.probs, dtype=np.float64) for f in films])
    mious = [miou(f.labels, f.probs, f.shot_frames, threshold) for f in films]
    film_aps = [average_precision(f.labels, f.probs) for f in films]
    return Scores(
        ap=average_precision(labels, probs),
        f1=f1_score(labels, probs, threshold),
        miou=None if None in mious else float(np.mean(mious)),
        recall=float(np.mean([recall(f.labels, f.probs, threshold) for f in films])),
        recall_at_3s=float(
            np.mean(
                [
                    recall_at_seconds(
                        f.labels, f.probs, [end for _, end in f.shot_frames], threshold=threshold
                    )
                    for f in films
                ]
            )
        ),
        lgss_map=float(np.mean([_lgss_round(ap) for ap in film_aps])),
        mean_ap=float(np.mean(film_aps)),
        mean_f1=float(np.mean([scrl_f1(f.labels, f.probs, threshold) for f in films])),
        films=len(films),
        gaps=int(labels.size),
    )


# --- one user video against a ground-truth scene list --------------------------------------


@dataclass(frozen=True)
class BoundaryMatch:
    """One line of the boundary-by-boundary listing; times in seconds from the first frame."""

    kind: str  # "hit", "miss" or "false alarm"
    truth_s: float | None
    predicted_s: float | None

    @property
    def offset_s(self) -> float | None:
        if self.truth_s is None or self.predicted_s is None:
            return None
        return self.predicted_s - self.truth_s


@dataclass(frozen=True)
class VideoEvaluation:
    scores: Scores  # gap-level metrics, truth mapped onto the detected shot gaps
    boundaries: list[BoundaryMatch]
    precision: float  # scene-boundary precision within the time tolerance
    recall: float
    f1: float
    tolerance_s: float
    unreachable: int  # true boundaries with no detected shot cut within the tolerance


def evaluate_video(result, truth_starts_s: Sequence[float], tolerance_s: float = 1.0):
    """Compare ``result`` (a ``SegmentResult``) with true scene start times.

    Boundaries match one-to-one, nearest first, when within ``tolerance_s``. For the gap-level
    metrics each true boundary labels the detected shot gap nearest to it (if one lies within
    the tolerance), and the model's boundary scores are the probabilities.
    """
    video = result.video
    cut_s = [float(video.time_of(shot.end)) for shot in result.shots[:-1]]
    labels = [0] * len(cut_s)
    unreachable = 0
    for t in truth_starts_s:
        if not cut_s:
            unreachable += 1
            continue
        gap = min(range(len(cut_s)), key=lambda i: abs(cut_s[i] - t))
        if abs(cut_s[gap] - t) <= tolerance_s:
            labels[gap] = 1
        else:
            unreachable += 1
    film = Film(
        video.path.name,
        labels,
        result.boundary_scores,
        inclusive_spans([(s.start, s.end) for s in result.shots]),
    )
    scores = score_films([film], threshold=result.settings.threshold)
    predicted = [float(video.time_of(scene.start)) for scene in result.scenes[1:]]
    matches = _match(list(truth_starts_s), predicted, tolerance_s)
    hits = sum(m.kind == "hit" for m in matches)
    precision = hits / len(predicted) if predicted else float(not truth_starts_s)
    recall_ = hits / len(truth_starts_s) if truth_starts_s else 1.0
    f1 = 2 * precision * recall_ / (precision + recall_) if precision + recall_ else 0.0
    return VideoEvaluation(scores, matches, precision, recall_, f1, tolerance_s, unreachable)


def _match(truth: list[float], predicted: list[float], tolerance: float) -> list[BoundaryMatch]:
    pairs = sorted(
        (abs(p - t), i, j)
        for i, t in enumerate(truth)
        for j, p in enumerate(predicted)
        if abs(p - t) <= tolerance
    )
    used_t: dict[int, int] = {}
    used_p: set[int] = set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_p:
            used_t[i] = j
            used_p.add(j)
    rows = [
        BoundaryMatch("hit", t, predicted[used_t[i]])
        if i in used_t
        else BoundaryMatch("miss", t, None)
        for i, t in enumerate(truth)
    ]
    rows += [
        BoundaryMatch("false alarm", None, p) for j, p in enumerate(predicted) if j not in used_p
    ]
    return sorted(rows, key=lambda m: m.truth_s if m.truth_s is not None else m.predicted_s)


def report_dict(result, evaluation: VideoEvaluation) -> dict:
    """The JSON report of ``scenecut eval VIDEO``."""
    from dataclasses import asdict

    return {
        "video": str(result.video.path),
        "model": result.settings.model,
        "threshold": result.settings.threshold,
        "tolerance_s": evaluation.tolerance_s,
        "boundary": {
            "precision": evaluation.precision,
            "recall": evaluation.recall,
            "f1": evaluation.f1,
            "unreachable": evaluation.unreachable,
        },
        "gaps": evaluation.scores.by_paper(),
        "boundaries": [{**asdict(m), "offset_s": m.offset_s} for m in evaluation.boundaries],
    }


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    precision: float
    recall: float
    f1: float
    scenes: int


def threshold_sweep(
    result, truth_starts_s: Sequence[float], tolerance_s: float = 1.0
) -> list[SweepPoint]:
    """Scene-boundary precision/recall at every threshold that changes the cut (each distinct
    boundary score, just below it), from the most to the fewest scenes."""
    video = result.video
    frames = [(s.start, s.end) for s in result.shots]
    scores = sorted(set(result.boundary_scores))
    thresholds = [max(0.0, s - 1e-6) for s in scores] + [1.0]
    points = []
    for t in thresholds:
        gaps = pick_boundaries(
            result.boundary_scores,
            frames,
            threshold=t,
            min_scene_frames=result.settings.min_scene_frames,
        )
        predicted = [float(video.time_of(result.shots[g].end)) for g in gaps]
        hits = sum(m.kind == "hit" for m in _match(list(truth_starts_s), predicted, tolerance_s))
        p = hits / len(predicted) if predicted else float(not truth_starts_s)
        r = hits / len(truth_starts_s) if truth_starts_s else 1.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        points.append(SweepPoint(round(t, 6), p, r, f, len(gaps) + 1))
    return points


def sweep_csv(points: Sequence[SweepPoint]) -> str:
    lines = ["threshold,precision,recall,f1,scenes"]
    lines += [
        f"{p.threshold:.6f},{p.precision:.4f},{p.recall:.4f},{p.f1:.4f},{p.scenes}" for p in points
    ]
    return "\n".join(lines) + "\n"


def pr_plot_png(points: Sequence[SweepPoint], current: float, title: str) -> bytes:
    """A precision-recall curve as PNG bytes (Pillow; no plotting library needed). The point
    used by ``current`` threshold is ringed."""
    import io

    from PIL import Image, ImageDraw

    w, h, m = 520, 420, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)

    def xy(recall_: float, precision_: float) -> tuple[float, float]:
        return m + recall_ * (w - 2 * m), h - m - precision_ * (h - 2 * m)

    for k in range(11):
        v = k / 10
        d.line([xy(v, 0), xy(v, 1)], fill=(232, 232, 232))
        d.line([xy(0, v), xy(1, v)], fill=(232, 232, 232))
        d.text((xy(v, 0)[0] - 8, h - m + 6), f"{v:.1f}", fill="black")
        d.text((8, xy(0, v)[1] - 6), f"{v:.1f}", fill="black")
    d.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    d.text((w // 2 - 20, h - 22), "recall", fill="black")
    d.text((8, 14), f"precision    {title}", fill="black")
    # A threshold that predicts no boundary has no precision: leave it off the curve.
    points = [p for p in points if p.scenes > 1] or list(points)
    ordered = sorted(points, key=lambda p: (p.recall, -p.precision))
    d.line([xy(p.recall, p.precision) for p in ordered], fill=(31, 119, 180), width=2)
    for p in points:
        x, y = xy(p.recall, p.precision)
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(31, 119, 180))
    chosen = min(points, key=lambda p: abs(p.threshold - current))
    x, y = xy(chosen.recall, chosen.precision)
    d.ellipse([x - 7, y - 7, x + 7, y + 7], outline=(214, 39, 40), width=2)
    label_x = x + 9 if x < w - 150 else x - 100
    d.text((label_x, y - 18), f"threshold {current:g}", fill=(214, 39, 40))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


# --- a labelled split of a MovieNet-style tree ----------------------------------------------


@dataclass(frozen=True)
class FilmScores:
    """One film's terms of the per-film averages."""

    name: str
    shots: int
    boundaries: int  # true boundaries (label-1 gaps)
    ap: float  # scikit-learn AP (SCRL's term; LGSS rounds it to 2 decimals); 0 without boundary
    scrl_f1: float  # SCRL's F1 of the film
    miou: float | None  # LGSS/BaSSL mIoU of the film (None: no true boundary, some predicted)


@dataclass(frozen=True)
class SplitEvaluation:
    """A model's scores on one split of a tree, pooled as the papers pool them."""

    root: str
    split: str
    model: str
    threshold: float
    scores: Scores
    films: list[FilmScores]
    frame_spans: bool  # False: the tree has no shot frame ranges; mIoU/Recall@3s count shots

    def to_dict(self) -> dict:
        """Plain JSON-ready data, each split-level number under its paper's name."""
        from dataclasses import asdict

        return {
            "root": self.root,
            "split": self.split,
            "model": self.model,
            "threshold": self.threshold,
            "frame_spans": self.frame_spans,
            "scores": self.scores.by_paper(),
            "films": [asdict(f) for f in self.films],
        }


def evaluate_split(
    root,
    split: str,
    scorer,
    threshold: float = 0.5,
    *,
    chunk: int = 64,
    progress=None,
) -> SplitEvaluation:
    """Score every labelled film of ``split`` with ``scorer`` (``scoring.load_scorer``).

    Each film's keyframes are read ``chunk`` shots at a time (scaled down to the scorer's
    keyframe height), embedded, and the film's gaps scored at once, as BaSSL scores a film.
    ``progress(done_films, total_films)`` follows the films.
    """
    tree = read_tree(root)
    movies = [m for m in tree.split(split) if m.labels is not None and m.num_shots >= 2]
    if not movies:
        raise InputError(f"{root}: the {split!r} split has no labelled films to evaluate")
    films: list[Film] = []
    per_film: list[FilmScores] = []
    spans = all(m.shots is not None for m in movies)
    for done, movie in enumerate(movies):
        embeddings = []
        for start in range(0, movie.num_shots, chunk):
            stop = min(start + chunk, movie.num_shots)
            images = [
                _keyframes(tree.load_keyframes(movie.video_id, shot), scorer)
                for shot in range(start, stop)
            ]
            embeddings.append(scorer.embed(np.stack(images)))
        probs = np.asarray(scorer.score(np.concatenate(embeddings)), dtype=np.float64)
        # Without frame ranges, shot i stands for the span (i, i + 1): mIoU counts shots.
        shot_frames = (
            inclusive_spans(movie.shots) if spans else [(i, i + 1) for i in range(movie.num_shots)]
        )
        film = Film(movie.video_id, list(movie.labels), probs.tolist(), shot_frames)
        films.append(film)
        per_film.append(
            FilmScores(
                movie.video_id,
                movie.num_shots,
                int(sum(movie.labels)),
                average_precision(film.labels, film.probs),
                scrl_f1(film.labels, film.probs, threshold),
                miou(film.labels, film.probs, film.shot_frames, threshold),
            )
        )
        if progress:
            progress(done + 1, len(movies))
    return SplitEvaluation(
        str(root),
        split,
        getattr(scorer, "name", "?"),
        threshold,
        score_films(films, threshold),
        per_film,
        spans,
    )


def _keyframes(images: np.ndarray, scorer) -> np.ndarray:
    """A shot's keyframes as ``scorer`` takes them: through its own ``prepare`` (a learned
    model's resize and crop, on the pixels as stored), else scaled to its keyframe height."""
    import numpy as np

    prepare = getattr(scorer, "prepare", None)
    if prepare is None:
        return _fit_height(images, scorer.keyframe_height)
    return np.stack([prepare(image) for image in images])


def _fit_height(images: np.ndarray, height: int) -> np.ndarray:
    """``[k, H, W, 3]`` scaled down (area filter) to ``height`` rows; never scaled up."""
    if images.shape[1] <= height:
        return images
    import cv2

    width = max(1, round(images.shape[2] * height / images.shape[1]))
    return np.stack(
        [cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA) for im in images]
    )
