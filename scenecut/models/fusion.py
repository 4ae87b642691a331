"""The offline default scorer: picture links, transitions and sound fused into one probability.

``FusedScorer`` runs the classic overlapping-links scorer (``scenecut.models.links``) and adds,
per shot gap, what ``scenecut.evidence`` found around the cut: blank picture, the luma dip, and
how much the sound changes. A logistic regression over these few numbers (``INPUTS``) turns
them into a boundary probability, so 0.5 means "more likely a scene change than not" on any
film. It has two weight sets: ``av`` for videos with sound, ``picture`` (the same without the
sound column) for videos without.

The weights are a few dozen numbers in ``weights/fusion.safetensors`` in the package (a few
hundred bytes), trained by ``scenecut train fusion`` (``scenecut.train.fusion``) on films with
scene lists; the README gives the recipe and ``bench/real_footage.py`` scores it
leave-one-source-out, training without the footage it scores.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import InputError
from scenecut.evidence import FEATURES, Gaps
from scenecut.files import replacing
from scenecut.models.classic import ClassicEncoder
from scenecut.models.links import CoherenceScorer, link_scores

if TYPE_CHECKING:
    import numpy as np

# The fused inputs: the classic links' boundary score, then evidence columns.
INPUTS = ("links", "blank", "dip", "audio_change")
SOUND = ("audio_change",)
VARIANTS = {"av": INPUTS, "picture": tuple(i for i in INPUTS if i not in SOUND)}
WEIGHTS = Path(__file__).resolve().parent / "weights" / "fusion.safetensors"
METADATA_KEY = "scenecut_fusion"
MAX_BYTES = 1 << 16  # a fusion file is a few hundred bytes


def gap_inputs(links: np.ndarray, table: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """``[gaps, len(names)]`` float64 model inputs from the link scores and the evidence table
    (``evidence.gap_evidence``). ``blank`` is log(1 + 4 x seconds of blank picture)."""
    import numpy as np

    columns = {
        "links": np.asarray(links, dtype=np.float64),
        "blank": np.log1p(4 * table[:, FEATURES.index("blank_s")].astype(np.float64)),
        "dip": table[:, FEATURES.index("dip")].astype(np.float64),
        "audio_change": table[:, FEATURES.index("audio_change")].astype(np.float64),
    }
    return np.stack([columns[n] for n in names], axis=1).reshape(len(links), len(names))


@dataclass
class Logistic:
    """Standardised inputs -> probability: sigmoid(((x - mean) / std) . weight + bias)."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        z = ((x - self.mean) / self.std) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def fit_logistic(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], l2: float = 1.0) -> Logistic:
    """L2-regularised logistic regression by Newton's method (exact, deterministic, no
    learning rate): ``x`` ``[n, len(names)]``, ``y`` 0/1. The bias is not regularised."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2 or y.min() == y.max():
        raise InputError("fusion training needs gaps of both kinds: boundaries and non-boundaries")
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    penalty = l2 * np.diag([*([1.0] * len(names)), 0.0])
    w = np.zeros(z.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -60, 60)))
        grad = z.T @ (p - y) + penalty @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return Logistic(names, mean, std, w[:-1].copy(), float(w[-1]))


def save_fusion(models: dict[str, Logistic], path: Path, about: dict) -> None:
    """Write the weight sets atomically as safetensors; ``about`` (how they were trained) goes
    into the metadata with the input names."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors, meta = {}, {"version": 1, "about": about, "inputs": {}}
    for variant, m in models.items():
        tensors[f"{variant}.mean"] = m.mean.astype(np.float32)
        tensors[f"{variant}.std"] = m.std.astype(np.float32)
        tensors[f"{variant}.weight"] = np.r_[m.weight, m.bias].astype(np.float32)
        meta["inputs"][variant] = list(m.names)
    with replacing(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})


def load_fusion(path: Path = WEIGHTS) -> tuple[dict[str, Logistic], dict]:
    """The weight sets of a fusion file and its ``about``; every name, shape and number is
    checked, and the file is refused unread when it is larger than a fusion file can be."""
    import numpy as np
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read the fusion weights ({exc.strerror})") from None
    if size > MAX_BYTES:
        raise InputError(f"{path}: {size} bytes, too large for fusion weights")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get(METADATA_KEY, "null"))
            names = f.keys()
            tensors = {k: f.get_tensor(k) for k in names}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a fusion weights file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("version") != 1:
        raise InputError(f"{path}: no scenecut fusion metadata (version 1)")
    inputs = meta.get("inputs")
    if not isinstance(inputs, dict) or set(inputs) != set(VARIANTS):
        raise InputError(f"{path}: expected the weight sets {sorted(VARIANTS)}")
    expected = {f"{v}.{k}" for v in VARIANTS for k in ("mean", "std", "weight")}
    if set(tensors) != expected:
        raise InputError(f"{path}: expected the tensors {sorted(expected)}, got {sorted(tensors)}")
    models = {}
    for variant, names in VARIANTS.items():
        if tuple(inputs[variant]) != names:
            raise InputError(f"{path}: {variant} inputs {inputs[variant]}, expected {list(names)}")
        mean, std, weight = (tensors[f"{variant}.{k}"] for k in ("mean", "std", "weight"))
        n = len(names)
        if mean.shape != (n,) or std.shape != (n,) or weight.shape != (n + 1,):
            raise InputError(f"{path}: {variant} tensors have the wrong shapes")
        values = np.concatenate([mean, std, weight]).astype(np.float64)
        if not all(math.isfinite(v) for v in values) or (std <= 0).any():
            raise InputError(f"{path}: {variant} holds numbers that are not usable weights")
        models[variant] = Logistic(
            names,
            mean.astype(np.float64),
            std.astype(np.float64),
            weight[:-1].astype(np.float64),
            float(weight[-1]),
        )
    return models, meta.get("about") or {}


def is_fusion_file(path: Path) -> bool:
    """Whether ``path`` is a small safetensors file with fusion metadata (header only)."""
    from safetensors import SafetensorError, safe_open

    try:
        if Path(path).stat().st_size > MAX_BYTES:
            return False
        with safe_open(str(path), framework="numpy") as f:
            return METADATA_KEY in (f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


class FusedScorer(CoherenceScorer):
    """The classic links plus transition and sound evidence (see the module's text)."""

    wants_evidence = True

    def __init__(self, path: Path = WEIGHTS, name: str = "fused"):
        super().__init__(ClassicEncoder(), name=name)
        self.models, self.about = load_fusion(path)

    def score(self, embeddings, gaps: Gaps | None = None):
        import numpy as np

        links = link_scores(embeddings)
        if gaps is None or len(links) == 0:
            return links
        model = self.models["av" if gaps.audio else "picture"]
        scores = model(gap_inputs(links, gaps.table, model.names))
        return blank_shots_join(scores, gaps.blank).astype(np.float32)


def blank_shots_join(scores: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """Blank shots never make a scene of their own: a run of blank shots opens the scene after
    it (a black leader, the black of a fade, a plain card before a title), so the strongest
    boundary score around the run moves to the gap before it and the gaps inside and after it
    get 0; a run that ends the film closes the scene before it (its gaps all get 0)."""
    import numpy as np

    scores = np.array(scores, dtype=np.float64)
    n = len(blank)
    i = 0
    while i < n:
        if not blank[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and blank[j + 1]:
            j += 1
        # the run is shots i..j; gap g lies after shot g
        if j == n - 1:
            scores[max(0, i - 1) :] = 0.0
        else:
            if i > 0:
                scores[i - 1] = scores[i - 1 : j + 1].max()
            scores[i : j + 1] = 0.0
        i = j + 1
    return scores
