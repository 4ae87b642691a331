"""Fine-tuning: BaSSL's CRN boundary head, or SCRL's BiLSTM, on extracted shot features."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scenecut.data.tree import read_tree
from scenecut.evaluate import Film, inclusive_spans, score_films
from scenecut.models import bassl, checkpoints
from scenecut.models.bassl import CRN, BiLSTMHead
from scenecut.models.clipshots import save_clip_boundary
from scenecut.models.inference import boundary_probs
from scenecut.train.config import MODEL_FILE, TrainConfig, with_overrides
from scenecut.train.features import FeatureClips, FeatureSet, FeatureWindows, check_features
from scenecut.train.loop import Task

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Fine-tuning: the CRN boundary head on extracted shot features (BaSSL section 3)


class BoundaryHead(nn.Module):
    """CRN + ``head_sbd`` on feature windows; state-dict keys as in the full BaSSL model."""

    def __init__(self, config):
        super().__init__()

        self.config = config
        self.crn = CRN(config.crn)
        self.head_sbd = nn.Linear(config.crn.hidden_size, 2)
        # Fine-tuning never masks shots: a parameter without gradients would stall DDP's
        # gradient buckets (its bucket would never be averaged across processes).
        self.crn.shot_embedding.mask_embedding.weight.requires_grad_(False)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.head_sbd(self.crn(batch["windows"])[1]).float()
        return balanced_cross_entropy(logits, batch["label"]), {}


def balanced_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BaSSL's loss: per-sample CE, positives and negatives each given half the mass.

    Under DDP the class counts are summed over all processes (and the loss scaled back up from
    DDP's gradient averaging), so N processes take exactly the step one process takes on the
    same global batch. With gradient accumulation each micro-batch is balanced on its own.
    """
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, labels, reduction="none")
    positive = labels == 1
    counts = torch.stack([positive.sum(), (~positive).sum()]).float()
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        torch.distributed.all_reduce(counts)
    weight = torch.where(positive, 0.5 / (counts[0] + 1e-5), 0.5 / (counts[1] + 1e-5))
    return world * (weight * ce).sum()


def finetune_task(config: TrainConfig) -> Task:
    features = FeatureSet.open(config.features or Path(config.out) / "features")
    # A new head has no published threshold of its own (the encoder's file may carry one).
    model_config = with_overrides(
        dataclasses.replace(features.config, threshold=None), config.model
    )
    check_features(features, model_config)
    tree = read_tree(config.data)
    if config.head == "lstm":
        return _lstm_task(config, features, model_config, tree)
    module = BoundaryHead(model_config)
    encoder = features.encoder_state()
    crn = {k[4:]: v for k, v in encoder.items() if k.startswith("crn.")}
    if crn:
        try:
            module.crn.load_state_dict(crn)
            log.info("CRN initialised from the pre-trained checkpoint")
        except RuntimeError:
            log.warning("the pre-trained CRN does not fit this model configuration; not used")
    dataset = FeatureWindows(
        features,
        tree.split(config.train_split),
        model_config.crn.neighbor_size,
        model_config.feature_norm,
    )
    return _head_task(config, module, dataset, features, encoder, tree, select="ap")


class LSTMBoundary(nn.Module):
    """SCRL's BiLSTM on clips of shot features; CE with class weights [1, 4]."""

    def __init__(self, config):
        super().__init__()

        self.config = config
        self.lstm_head = BiLSTMHead(config.crn.input_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        import torch.nn.functional as F

        logits = self.lstm_head(batch["clip"]).float()
        weight = torch.tensor([1.0, 4.0], device=logits.device)
        loss = F.cross_entropy(logits.reshape(-1, 2), batch["labels"].reshape(-1), weight=weight)
        return loss, {}


def _lstm_task(config: TrainConfig, features, model_config, tree) -> Task:
    model_config = dataclasses.replace(model_config, head="lstm", seq_len=config.seq_len)
    module = LSTMBoundary(model_config)
    dataset = FeatureClips(
        features,
        tree.split(config.train_split),
        config.seq_len,
        feature_norm=model_config.feature_norm,
    )
    encoder = features.encoder_state()
    # SCRL keeps the epoch with the best validation F1
    return _head_task(config, module, dataset, features, encoder, tree, select="mean_f1")


def _head_task(config, module, dataset, features, encoder, tree, select: str) -> Task:
    """A boundary head trained on features: validated on the labelled films of the validation
    split (when it has any), exported as a complete model with the feature extractor's shot
    encoder. The head's state-dict keys (``crn.*``/``head_sbd.*`` or ``lstm_head.*``) are the
    full model's, so the two state dicts make the whole."""
    val = []
    if config.val_split in tree.splits:
        val = [m for m in tree.split(config.val_split) if m.labels is not None and m.num_shots > 1]

    def export(model: nn.Module, run: Path) -> Path:
        if features.clip is not None:  # a clip model's features: it and the head, one file
            return save_clip_boundary(features.clip_encoder(), model, run / MODEL_FILE)
        full = bassl.build(model.config)
        shot_encoder = {k: v for k, v in encoder.items() if k.startswith("shot_encoder.")}
        full.load_state_dict({**shot_encoder, **model.state_dict()}, strict=True)
        checkpoints.save(full, model.config, run / MODEL_FILE)
        return run / MODEL_FILE

    return Task(
        module,
        dataset,
        validate=(lambda model: score_features(model, features, val)) if val else None,
        select=select if val else None,
        export=export,
    )


def score_features(model: nn.Module, features, movies) -> dict[str, float]:
    """Whole-film boundary probabilities -> the papers' metrics (``evaluate.score_films``)."""
    films = []
    for movie in movies:
        probs = boundary_probs(model, torch.from_numpy(np.array(features.film(movie.video_id))))
        spans = (
            inclusive_spans(movie.shots)
            if movie.shots
            else [(i, i + 1) for i in range(movie.num_shots)]
        )
        films.append(Film(movie.video_id, list(movie.labels), probs.tolist(), spans))
    scores = score_films(films)
    return {k: v for k, v in dataclasses.asdict(scores).items() if isinstance(v, float)}
