"""What each training process runs (``launch`` starts one per GPU or CPU worker)."""

from __future__ import annotations

import json
import random

import torch

from scenecut.train.actions import probe_task
from scenecut.train.config import TrainConfig
from scenecut.train.features import extract
from scenecut.train.finetune import finetune_task
from scenecut.train.loop import Log, fit, init_dist
from scenecut.train.pretrain import pretrain_task


def _record_errors(fn):
    """torchrun's error recording: a failing worker's exception reaches the launcher."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(fn)


@_record_errors
def train_entry(config_json: str, on_log: Log | None = None, device: str = "auto") -> str | None:
    """One training process (what ``launch`` starts): join the group, build the task, fit."""
    config = TrainConfig(**json.loads(config_json))
    dist = init_dist(device)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    tasks = {"finetune": finetune_task, "pretrain": pretrain_task, "probe": probe_task}
    task = tasks[config.task](config)
    try:
        done = fit(task, config, dist, on_log)
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return str(done) if done else None


@_record_errors
def extract_entry(args_json: str, device: str = "auto") -> dict:
    """One feature-extraction process: this rank's share of the films."""
    args = json.loads(args_json)
    dist = init_dist(device)
    try:
        result = extract(**args, rank=dist.rank, world=dist.world, device=dist.device)
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    return {
        "written": len(result.written),
        "skipped": len(result.skipped),
        "shots": result.shots,
        "seconds": result.seconds,
    }
