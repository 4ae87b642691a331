"""Self-supervised pre-training runs: the backbone, its objective and its dataset per method."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from scenecut.data.puzzles import make_puzzles
from scenecut.data.tree import PRETRAIN
from scenecut.errors import UsageError
from scenecut.models.checkpoints import save_state
from scenecut.models.config import CRNConfig, ModelConfig
from scenecut.models.effnet import model_config
from scenecut.train.config import (
    MODEL_FILE,
    PretrainConfig,
    TrainConfig,
    pretrain_config,
    with_overrides,
)
from scenecut.train.datasets import (
    PretrainWindows,
    ShotPairs,
    Transform,
    train_transform,
)
from scenecut.train.features import load_encoder
from scenecut.train.loop import Task
from scenecut.train.pretext import BaSSLObjective, Objective, check_model_config
from scenecut.train.saccade import saccade_task
from scenecut.train.scrl import PuzzleShots, SCRLObjective

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Pre-training (BaSSL section 2, SCRL section 4): objectives from scenecut.train.pretext, .scrl


def pretrain_model_config(config: TrainConfig):
    """The backbone's ``ModelConfig`` for ``--encoder`` with ``--set model.*`` overrides."""
    if config.encoder == "effnet-lite0":
        base = model_config()
    elif config.encoder == "tiny":
        base = ModelConfig(encoder="tiny", crn=CRNConfig(input_dim=128))
    else:
        base = ModelConfig(encoder=config.encoder)
    overrides = {"image_size": config.image_size, **config.model}
    if config.image_size != 224 and "resize" not in config.model:
        overrides["resize"] = round(config.image_size * 256 / 224)
    return with_overrides(base, overrides)


def pretrain_task(config: TrainConfig) -> Task:
    """The objective, its dataset and the model export of a pre-training run."""
    if config.method == "saccade":
        return saccade_task(config)
    model_config = pretrain_model_config(config)
    pcfg = pretrain_config(config, model_config.crn.neighbor_size)
    objective = build_objective(model_config, pcfg)
    if config.init and config.method != "scrl":
        init_config, state = load_encoder(config.init)
        if init_config.encoder != model_config.encoder:
            raise UsageError(
                f"--init {config.init} is a {init_config.encoder} encoder, not {config.encoder}"
            )
        mine = objective.state_dict()
        fitting = {k: v for k, v in state.items() if k in mine and mine[k].shape == v.shape}
        objective.load_state_dict(fitting, strict=False)
        log.info("initialised %d tensors from %s", len(fitting), config.init)
    if config.method == "scrl":
        source = _puzzles(config)
        dataset = pretrain_dataset(source, pcfg, size=config.image_size)
    else:
        transform = train_transform(config.image_size)
        dataset = pretrain_dataset(config.data, pcfg, transform=transform)

    def export(module: nn.Module, run: Path) -> Path:
        save_state(module.backbone_state(), model_config, run / MODEL_FILE)
        return run / MODEL_FILE

    return Task(
        objective,
        dataset,
        export=export,
        after_step=objective.after_step,
        find_unused=True,
        param_groups=decay_all if config.method == "scrl" else None,
    )


def decay_all(module: nn.Module, config: TrainConfig) -> list[dict]:
    """SCRL's weight decay: on every trainable parameter (no BaSSL bn/bias exclusion)."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": params, "weight_decay": config.weight_decay}]


def _puzzles(config: TrainConfig) -> Path:
    """SCRL reads puzzles: ``--data`` is a puzzle folder, or a tree whose training films are
    made into puzzles under the run folder first (rank 0; the others wait)."""
    data = Path(config.data)
    if (data / "shot_num.json").is_file():
        return data
    out = config.run / "puzzles"
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        make_puzzles(data, out, split=config.train_split)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return out


def build_objective(model_config: ModelConfig, config: PretrainConfig) -> Objective:
    """The objective for ``config.method``, with a freshly initialised backbone."""
    check_model_config(model_config, config)
    if config.method == "scrl":
        return SCRLObjective(model_config, config)
    return BaSSLObjective(model_config, config)


def pretrain_dataset(
    source: str | Path,
    config: PretrainConfig,
    *,
    split: str = PRETRAIN,
    transform: Transform | None = None,
    size: int = 224,
) -> Dataset:
    """The dataset whose default-collated batches ``config.method``'s objective takes:
    ``source`` is a MovieNet-style tree (BaSSL family; ``transform`` defaults to BaSSL's
    ``train_transform``) or a puzzle folder (``scrl``; ``size`` is the crop)."""
    if config.method == "scrl":
        return PuzzleShots(source, size=size)
    if config.method in ("instance", "temporal"):
        return ShotPairs(source, split, mode=config.method, transform=transform)
    return PretrainWindows(
        source,
        split,
        neighbor_size=config.neighbor_size,
        transform=transform,
        keyframes="random",
        sparse=config.sparse_positions,
    )
