"""Boundary scoring: per-shot embeddings in, one scene-boundary score per shot gap out.

A *scorer* pairs a shot encoder with a boundary scorer. ``classic`` is training-free: it links
shots whose embeddings are similar and scores each gap by the strongest link that crosses it
within a few shots (overlapping-links scene detection). Any per-shot embedding works with it, so
learned encoders reuse it; a learned boundary network (BaSSL's CRN) replaces it entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from scenecut.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

# How far (in shots) a link may reach across a gap, and how much a link loses per extra shot.
# Tuned together with the link calibration below on synthetic films (tests/bench) and the
# real clips of ../shared/media, judged on contact sheets.
LINK_REACH = 3
LINK_DECAY = 0.2
# Lowest similarity the link curve may centre on; encoders can set their own (``link_floor``).
LINK_FLOOR = 0.55


class Scorer(Protocol):
    """What ``segment`` needs from a model."""

    name: str
    keyframe_height: int

    def embed(self, keyframes: np.ndarray) -> np.ndarray:
        """``[shots, 3, H, W, 3]`` uint8 RGB keyframes -> ``[shots, D]`` shot embeddings."""
        ...

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """``[shots, D]`` -> ``[shots - 1]`` boundary scores in [0, 1], gap i after shot i."""
        ...


@dataclass
class CoherenceScorer:
    """Any shot encoder plus the training-free overlapping-links boundary scorer."""

    encoder: object
    name: str = "classic"

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


OFFLINE = ("classic", "effnet-lite0")  # models that need no download


@dataclass(frozen=True)
class ModelChoice:
    """What ``--model`` resolved to: a built-in stack or a checkpoint file."""

    name: str  # "classic", "effnet-lite0", a registered or imported name, or a file path
    path: Path | None = None  # the checkpoint, for learned boundary models
    note: str | None = None  # for ``auto``: why this one, and how to get a better one


def choose_model(model: str = "auto") -> ModelChoice:
    """Resolve ``--model``: ``auto``, ``classic``, ``effnet-lite0``, a weights name or a path.

    ``auto`` takes the best installed model able to score boundaries (a pulled fine-tuned
    checkpoint, else a model imported or trained by the user), else the offline ``classic``
    stack: on the judged clips of tests/test_media.py it finds scenes better than the
    EfficientNet-Lite0 features do (see the README's model section).
    """
    from scenecut import hub

    if model in OFFLINE:
        return ModelChoice(model)
    if model != "auto":
        known = model in hub.REGISTRY or model in hub.imported_names()
        if not known and not Path(model).expanduser().exists():
            raise UsageError(
                f"unknown model {model!r}; use auto, {', '.join(OFFLINE)}, a weights name "
                "(scenecut weights list) or a checkpoint file"
            )
        return ModelChoice(model, hub.resolve(model))
    if installed := hub.boundary_models():
        name, path = installed[0]
        return ModelChoice(name, path, f"model: {name} ({path})")
    return ModelChoice(
        "classic",
        note="model: classic (no learned boundary model installed; "
        "`scenecut weights pull modelscope-bassl` gets BaSSL)",
    )


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; anything else is checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    return device


def load_scorer(
    model: str | ModelChoice = "auto",
    device: str = "auto",
    batch_size: int = 0,
    precision: str = "auto",
    compile: bool = False,
) -> Scorer:
    """Build the scorer for ``--model`` (see ``choose_model``) on ``device``.

    ``batch_size`` counts keyframe images per network call (0: 16 on CPUs, 64 on GPUs);
    ``precision`` is fp32, bf16, fp16 or auto (bf16/fp16 autocast on GPUs, bf16 on CPUs with
    native bf16); ``compile`` runs the shot encoder through torch.compile (see
    ``scenecut.model.Runner``). The classic model has no network and ignores all three.
    """
    choice = model if isinstance(model, ModelChoice) else choose_model(model)
    if choice.name == "classic" and choice.path is None:
        from scenecut.embed import ClassicEncoder

        return CoherenceScorer(ClassicEncoder(), name="classic")
    if choice.name == "effnet-lite0" and choice.path is None:
        from scenecut.effnet import EfficientNetEncoder

        encoder = EfficientNetEncoder(resolve_device(device), batch_size, precision, compile)
        return CoherenceScorer(encoder, name="effnet-lite0")
    from scenecut.model import BaSSLScorer

    return BaSSLScorer.from_file(
        choice.path,
        device=resolve_device(device),
        name=choice.name,
        batch=batch_size,
        precision=precision,
        compile=compile,
    )


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


def pick_boundaries(
    scores: list[float],
    shot_frames: list[tuple[int, int]],
    *,
    threshold: float,
    scenes: int | None = None,
    min_scene_frames: int = 0,
) -> list[int]:
    """Choose boundary gaps, strongest first, keeping every scene >= ``min_scene_frames`` long.

    With ``scenes`` set, the threshold is ignored and the ``scenes - 1`` strongest admissible gaps
    are taken (fewer if the constraint leaves fewer).
    """
    n = len(shot_frames)
    if n < 2:
        return []
    start, end = shot_frames[0][0], shot_frames[-1][1]
    order = sorted(range(n - 1), key=lambda g: (-scores[g], g))
    chosen: list[int] = []
    cut_frames = [start, end]
    wanted = None if scenes is None else max(0, scenes - 1)
    for gap in order:
        if wanted is None and scores[gap] <= threshold:
            break
        if wanted is not None and len(chosen) >= wanted:
            break
        frame = shot_frames[gap][1]
        left = max(c for c in cut_frames if c <= frame)
        right = min(c for c in cut_frames if c >= frame)
        if frame - left >= min_scene_frames and right - frame >= min_scene_frames:
            chosen.append(gap)
            cut_frames.append(frame)
    return sorted(chosen)
