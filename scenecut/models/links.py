"""The training-free boundary scorer: overlapping links between similar shots.

It links shots whose embeddings are similar and scores each gap by the strongest link that
crosses it within a few shots (overlapping-links scene detection). Any per-shot embedding works
with it, so the classic descriptors and the EfficientNet features share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


# How far (in shots) a link may reach across a gap, and how much a link loses per extra shot.
# Tuned together with the link calibration below on synthetic films (tests/bench) and the
# real clips of ../shared/media, judged on contact sheets.
LINK_REACH = 3
LINK_DECAY = 0.2
# Lowest similarity the link curve may centre on; encoders can set their own (``link_floor``).
LINK_FLOOR = 0.55


@dataclass
class CoherenceScorer:
    """Any shot encoder plus the training-free overlapping-links boundary scorer."""

    encoder: object
    name: str = "classic"
    # Keyframes outside the fade or dissolve at a cut, where the detector tells it
    # (``shots.detect_shots``): a blend of two shots in both makes them look alike.
    skips_transitions = True

    @property
    def keyframe_height(self) -> int:
        return self.encoder.keyframe_height

    def embed(self, keyframes: np.ndarray) -> np.ndarray:
        return self.encoder.embed(keyframes)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        if getattr(self.encoder, "center", False):
            embeddings = center_embeddings(embeddings)
        return link_scores(embeddings, floor=getattr(self.encoder, "link_floor", LINK_FLOOR))


def center_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """Remove the film's mean direction, keeping each embedding's norm (its confidence).

    Pooled CNN features of any two frames share a large common component; without it, cosine
    similarity says more about the content than about the film's overall look.
    """
    import numpy as np

    norm = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.maximum(norm, 1e-8)
    weight = np.minimum(norm, 1.0)
    mean = (unit * weight).sum(axis=0) / max(float(weight.sum()), 1e-8)
    centred = unit - mean
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-8)
    return (centred * norm).astype(np.float32)


_FAR_SAMPLE = 50_000  # far shot pairs used to calibrate links (all of them in films < ~330 shots)
_CHUNK = 4096  # shot pairs compared at a time


def _link_curve(e: np.ndarray, floor: float = LINK_FLOOR) -> tuple[float, float]:
    """Midpoint and spread of the similarity -> same-scene-probability curve for one film.

    The midpoint sits between the typical similarity of neighbouring shots (mostly the same
    scene) and that of shots far apart (mostly different scenes). Only neighbours and a bounded
    sample of far pairs are compared, so memory stays linear in the number of shots.
    """
    import numpy as np

    n = e.shape[0]
    near = np.einsum("ij,ij->i", e[:-1], e[1:])
    first, second = np.triu_indices(n, k=2 * LINK_REACH + 1) if n <= 400 else (None, None)
    if first is None or first.size > _FAR_SAMPLE:
        rng = np.random.default_rng(0)
        first = rng.integers(0, n, _FAR_SAMPLE)
        second = rng.integers(0, n, _FAR_SAMPLE)
        keep = np.abs(first - second) > 2 * LINK_REACH
        first, second = first[keep], second[keep]
    # In chunks: gathering all pairs at once would hold two [50000, D] copies (80 MB for the
    # classic descriptors), the largest allocation of a feature-length film.
    far = np.concatenate(
        [
            np.einsum("ij,ij->i", e[first[i : i + _CHUNK]], e[second[i : i + _CHUNK]])
            for i in range(0, len(first), _CHUNK)
        ]
        or [np.zeros(0, dtype=e.dtype)]
    )
    near_level = float(np.median(near)) if near.size else 0.9
    far_level = float(np.percentile(far, 25)) if far.size >= 8 else near_level - 0.35
    mid = min(max(0.5 * (near_level + far_level), floor), 0.92)
    spread = max(0.25 * (near_level - far_level), 0.03)
    return mid, spread


def link_scores(embeddings: np.ndarray, floor: float = LINK_FLOOR) -> np.ndarray:
    """Boundary score of every gap: 1 - the strongest same-scene link crossing it.

    A link between shots a < b crosses every gap between them and weakens with the number of
    shots in between, so A B A B dialogue keeps its gaps linked while a change of place leaves
    its gap with no strong link.
    """
    import numpy as np

    n = embeddings.shape[0]
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    norm = np.linalg.norm(embeddings, axis=1)
    e = embeddings / np.maximum(norm, 1e-8)[:, None]
    # An embedding's norm below 1 says how little the encoder saw (e.g. a black or title-card
    # shot); links through such shots count for less. Unit-norm encoders are unaffected.
    confidence = np.sqrt(np.minimum(norm, 1.0))
    mid, spread = _link_curve(e, floor)
    # links[d][a]: strength of the link from shot a to shot a + d, for d = 1..LINK_REACH
    links = {}
    for d in range(1, min(LINK_REACH, n - 1) + 1):
        similarity = np.einsum("ij,ij->i", e[:-d], e[d:])
        probability = 1.0 / (1.0 + np.exp(-(similarity - mid) / spread))
        links[d] = probability * confidence[:-d] * confidence[d:] * (1.0 - LINK_DECAY * (d - 1))
    scores = np.empty(n - 1, dtype=np.float32)
    for gap in range(n - 1):
        best = 0.0
        for a in range(max(0, gap - LINK_REACH + 1), gap + 1):
            for b in range(gap + 1, min(n, a + LINK_REACH + 1)):
                best = max(best, float(links[b - a][a]))
        scores[gap] = 1.0 - best
    return scores
