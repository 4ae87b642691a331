"""Which model scores the boundaries: ``--model`` resolved, and the scorer built for it.

A *scorer* pairs a shot encoder with a boundary scorer: per-shot embeddings in, one
scene-boundary score per shot gap out. ``fused`` (the default), ``classic`` and
``effnet-lite0`` need no download (the overlapping-links scorer of ``scenecut.models.links``;
``fused`` adds transitions and sound, ``scenecut.models.fusion``); a checkpoint runs BaSSL's CRN
instead, and a clip model (Saccade-VSSL) embeds clips of each shot for the overlapping-links
scorer (``scenecut.models.clipshots``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from scenecut.errors import UsageError
from scenecut.models import hub
from scenecut.models.classic import ClassicEncoder
from scenecut.models.fusion import FusedScorer, is_fusion_file
from scenecut.models.links import CoherenceScorer
from scenecut.models.options import InferenceOptions, resolve_device

if TYPE_CHECKING:
    import numpy as np


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


# The models that need no download, with what ``--help`` says of them.
OFFLINE = {
    "fused": "classic links + transitions + sound, fused; the default",
    "classic": "colour, layout and edge descriptors",
    "effnet-lite0": "EfficientNet-Lite0 ImageNet features",
}


def model_help() -> str:
    """``--model``'s help, from the table."""
    offline = ", ".join(f"{name} ({what})" for name, what in OFFLINE.items())
    return (
        f"Boundary model: auto (best installed; never downloads), {offline}, a weights name "
        "(bassl: downloaded on first use), an imported name, a checkpoint path or a clip "
        "model (Saccade-VSSL) path."
    )


@dataclass(frozen=True)
class ModelChoice:
    """What ``--model`` resolved to: a built-in stack or a checkpoint file."""

    name: str  # "classic", "effnet-lite0", a registered or imported name, or a file path
    path: Path | None = None  # the checkpoint, for learned boundary models
    note: str | None = None  # for ``auto``: why this one, and how to get a better one


def choose_model(
    model: str = "auto",
    *,
    offline: bool | None = None,
    progress: hub.Progress | None = None,
    notice: hub.Notice | None = None,
) -> ModelChoice:
    """Resolve ``--model``: ``auto``, ``classic``, ``effnet-lite0``, a weights name or a path
    (a checkpoint, a fusion file or a clip model: ``load_scorer`` tells them apart).

    A registered fine-tuned name not in the cache is downloaded now (``hub.download``, with
    ``progress`` and ``notice``) unless ``offline`` (default: ``$SCENECUT_OFFLINE``), as
    ``whisper --model NAME`` does. ``auto`` never downloads: it takes the best installed
    model able to score boundaries (a pulled fine-tuned checkpoint, else a model imported or
    trained by the user), else the offline ``fused`` scorer: on the real-footage benchmark
    (bench/real_footage.py, leave-one-source-out) it finds scenes better than ``classic`` and
    the EfficientNet-Lite0 features do (see the README's model section).
    """
    if model in OFFLINE:
        return ModelChoice(model)
    if model in hub.REGISTRY:
        record = hub.REGISTRY[model]
        if record.kind != "finetuned":  # said before a download that could not be used
            raise UsageError(
                f"{model} is a {record.kind} checkpoint with no boundary head: it starts "
                f"training (scenecut train extract --encoder {model}); to find scenes use a "
                f"fine-tuned model: {', '.join(fine_tuned())}"
            )
        path = hub.resolve(model, fetch=True, offline=offline, progress=progress, notice=notice)
        return ModelChoice(model, path)
    if model != "auto":
        known = model in hub.imported_names()
        if not known and not Path(model).expanduser().exists():
            if message := hub.renamed_message(model):
                raise UsageError(message)
            raise UsageError(
                f"unknown model {model!r}; use auto, {', '.join(OFFLINE)}, a weights name "
                "(scenecut weights list) or a checkpoint file"
            )
        return ModelChoice(model, hub.resolve(model))
    if installed := hub.boundary_models():
        name, path = installed[0]
        return ModelChoice(name, path, f"model: {name} ({path})")
    return ModelChoice(
        "fused",
        note="model: fused (no learned boundary model installed; `--model bassl` or "
        "`scenecut weights pull bassl` downloads BaSSL, and auto uses it from then on)",
    )


def fine_tuned() -> list[str]:
    """The registered names that score boundaries as they are."""
    return [name for name, r in hub.REGISTRY.items() if r.kind == "finetuned"]


def load_scorer(
    options: InferenceOptions | None = None, choice: ModelChoice | None = None
) -> Scorer:
    """Build the scorer ``options`` ask for (``choice``: ``options.model`` already resolved by
    ``choose_model``, to load what was announced)."""
    options = options or InferenceOptions()
    choice = choice or choose_model(options.model, offline=options.offline or None)
    if choice.name == "classic" and choice.path is None:
        return CoherenceScorer(ClassicEncoder(), name="classic")
    if choice.name == "fused" and choice.path is None:
        return FusedScorer()
    if choice.path is not None and is_fusion_file(choice.path):
        return FusedScorer(choice.path, name=choice.name)
    runtime = dict(
        device=resolve_device(options.device),
        batch_images=options.batch_images,
        precision=options.precision,
        compile=options.compile,
    )
    if choice.name == "effnet-lite0" and choice.path is None:
        from scenecut.models.effnet import EfficientNetEncoder

        return CoherenceScorer(EfficientNetEncoder(**runtime), name="effnet-lite0")
    from scenecut.models import clipshots
    from scenecut.models.saccade import is_clip_model

    if is_clip_model(choice.path):  # a pre-trained clip encoder: training-free links
        return clipshots.ClipScorer.from_file(choice.path, name=choice.name, **runtime)
    if clipshots.is_clip_boundary_file(choice.path):  # fine-tuned on its features
        return clipshots.ClipBoundaryScorer.from_file(choice.path, name=choice.name, **runtime)
    from scenecut.models.inference import BaSSLScorer

    return BaSSLScorer.from_file(choice.path, name=choice.name, **runtime)
