"""Training: shot-feature extraction, boundary fine-tuning and self-supervised pre-training.

One loop drives every task (``fit``). Distributed mode comes from torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): NCCL on GPUs, gloo on CPU; ``launch`` starts the
workers through torchrun's own launcher when scenecut is not already running under torchrun.
Only rank 0 logs and writes. Checkpoints hold the unwrapped module, the optimizer, scheduler,
scaler and RNG states and the position in the epoch; they are written atomically, and ``resume``
continues exactly where the run stopped: every item's augmentation is seeded by (seed, epoch,
item), so the data a step sees does not depend on worker count or on where the run was cut.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from scenecut.errors import InputError, OutputError, UsageError

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"  # under the run folder: the resumable state
MODEL_FILE = "model.safetensors"  # under the run folder: what `segment --model` / extract use
METRICS = "metrics.jsonl"
CONFIG = "config.json"

Log = Callable[[dict], None]  # receives every metrics record (rank 0 only)


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    """One training run. Defaults are BaSSL's fine-tuning settings; ``defaults_for`` gives each
    task's paper settings. Every field can be set from a TOML/YAML file or ``--set key=value``."""

    task: str = "finetune"  # finetune | pretrain
    data: str = ""  # MovieNet-style tree
    out: str = ""  # run folder
    features: str = ""  # finetune: folder written by `extract`
    init: str = ""  # pretrain: encoder weights to start from (name or path); "" = random
    head: str = "crn"  # finetune: crn (BaSSL) | lstm (SCRL's downstream protocol)
    seq_len: int = 40  # finetune with the lstm head: clip length (a multiple of 4)
    method: str = "bassl"  # pretrain: bassl | instance | temporal | shotcol | bassl+shotcol | scrl
    encoder: str = "resnet50"  # pretrain: resnet50 | resnet50-9ch | effnet-lite0 | tiny
    model: dict = field(default_factory=dict)  # ModelConfig / CRNConfig overrides ("crn.x": v)
    pretext: dict = field(default_factory=dict)  # scenecut.pretext.PretrainConfig overrides
    train_split: str = "train"
    val_split: str = "val"
    epochs: int = 20
    batch_size: int = 1024  # items per optimizer step, over all processes
    micro_batch: int = 0  # items per process per forward pass; 0 = batch_size / processes
    optimizer: str = "adam"  # adam | sgd | lars
    lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup: float = 0.0  # share of all steps with a linear warm-up
    schedule: str = "cosine"  # cosine (per step) | quarter-cosine (SCRL, per epoch) | constant
    workers: int = 4  # data-loading processes per training process
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast; fp16 with loss scaling)
    seed: int = 0
    checkpoint_every: int = 200  # optimizer steps
    max_steps: int = 0  # stop after this many optimizer steps (0: all epochs)
    log_every: int = 10
    image_size: int = 224

    @property
    def run(self) -> Path:
        return Path(self.out)


def defaults_for(task: str, method: str = "bassl", head: str = "crn") -> dict[str, Any]:
    """The papers' settings (REFERENCE.md sections 2.5, 3.3, 4.2, 4.5)."""
    if task == "finetune" and head == "lstm":  # SCRL / LGSS BiLSTM protocol
        return dict(
            epochs=200, batch_size=12, optimizer="sgd", lr=0.1, weight_decay=1e-4,
            schedule="steps-160-180",
        )  # fmt: skip
    if task == "finetune":
        return dict(epochs=20, batch_size=1024, optimizer="adam", lr=1e-5, weight_decay=0.0)
    if method == "scrl":
        return dict(
            epochs=100, batch_size=1024, optimizer="sgd", lr=0.03, weight_decay=1e-4,
            schedule="quarter-cosine", encoder="resnet50-9ch",
        )  # fmt: skip
    return dict(epochs=10, batch_size=256, optimizer="lars", lr=0.3, weight_decay=1e-6, warmup=0.1)


def make_config(
    task: str,
    file: str | Path | None = None,
    sets: list[str] | None = None,
    **given: Any,
) -> TrainConfig:
    """Paper defaults, then a config file, then keyword options, then ``key=value`` strings."""
    values: dict[str, Any] = {}
    if file:
        values.update(_read_config_file(Path(file)))
    values.update({k: v for k, v in given.items() if v is not None})
    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set takes key=value, got {item!r}")
        _set_path(values, key.strip(), _parse_value(text.strip()))
    method = values.get("method", "bassl")
    head = values.get("head", "crn")
    merged = {**defaults_for(task, method, head), **values, "task": task}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(merged) - names)
    if unknown:
        raise UsageError(f"unknown training settings: {', '.join(unknown)}")
    config = TrainConfig(**merged)
    _check_config(config)
    return config


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{path}: invalid TOML ({error})") from error
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:
            raise UsageError(
                "YAML configs need PyYAML (pip install pyyaml); or use TOML"
            ) from error
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a mapping of settings")
        return data
    if path.suffix == ".json":
        return json.loads(text)
    raise UsageError(f"{path}: config files are .toml, .yaml or .json")


def _set_path(values: dict, key: str, value: Any) -> None:
    """``model.crn.hidden_size=64`` -> values["model"]["crn.hidden_size"] = 64."""
    head, _, rest = key.partition(".")
    if rest and head in ("model", "pretext"):
        values.setdefault(head, {})[rest] = value
    else:
        values[key] = value


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _check_config(c: TrainConfig) -> None:
    if not c.data:
        raise UsageError("--data (a MovieNet-style tree) is required")
    if not c.out:
        raise UsageError("--out (the run folder) is required")
    if c.task not in ("finetune", "pretrain"):
        raise UsageError(f"unknown task {c.task!r}")
    if c.head not in ("crn", "lstm"):
        raise UsageError(f"--head must be crn or lstm, not {c.head!r}")
    if c.optimizer not in ("adam", "sgd", "lars"):
        raise UsageError(f"optimizer must be adam, sgd or lars, not {c.optimizer!r}")
    if c.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UsageError(f"precision must be auto, fp32, bf16 or fp16, not {c.precision!r}")
    for name in ("epochs", "batch_size", "checkpoint_every", "log_every"):
        if getattr(c, name) < 1:
            raise UsageError(f"{name} must be at least 1, got {getattr(c, name)}")
    if c.lr <= 0 or not 0 <= c.warmup < 1:
        raise UsageError("lr must be positive and warmup in [0, 1)")


# --------------------------------------------------------------------------------------------
# Processes


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_dist(device: str = "auto") -> Dist:
    """Join the process group torchrun describes in the environment (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local, dev)


def launch(
    entry: Callable[..., Any],
    *args: Any,
    procs: int = 1,
    nodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
) -> Any:
    """Run ``entry(*args)`` in ``procs`` processes per node through torchrun's launcher, or
    directly when already under torchrun or when one process is enough."""
    if "RANK" in os.environ or procs * nodes <= 1:
        return entry(*args)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=nodes,
        max_nodes=nodes,
        nproc_per_node=procs,
        run_id="scenecut",
        rdzv_backend="static",
        rdzv_endpoint=f"{master_addr}:{master_port}",
        rdzv_configs={"rank": node_rank},
        max_restarts=0,
        start_method="spawn",
    )
    try:
        results = elastic_launch(config, entry)(*args)
    except ChildFailedError as error:
        first = next(iter(error.failures.values()))
        raise InputError(f"a training process failed: {first.message or first}") from None
    return results.get(0) if isinstance(results, dict) else results


# --------------------------------------------------------------------------------------------
# Data order: deterministic per (seed, epoch, item), resumable mid-epoch


class SeededItems(Dataset):
    """Wraps a dataset so item ``i`` of epoch ``e`` draws its randomness (augmentation) from a
    seed of its own: the same picture whatever worker loads it and wherever a run resumed."""

    def __init__(self, inner: Dataset, seed: int):
        self.inner, self.seed, self._epoch = inner, seed, 0

    @property
    def epoch(self) -> int:
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = value
        if hasattr(self.inner, "epoch"):  # datasets that draw per-epoch layouts (BiLSTM clips)
            self.inner.epoch = value

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
            state = random.getstate()
            random.seed(index + 7919 * self.epoch + self.seed)
            try:
                return self.inner[index]
            finally:
                random.setstate(state)


class _Skip(Sampler):
    """The sampler's order for this epoch, less the first ``skip`` items (already trained)."""

    def __init__(self, sampler: Sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.sampler)[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


# --------------------------------------------------------------------------------------------
# What a task gives the loop


@dataclass
class Task:
    """A trainable module with its data; ``module(batch) -> (loss, {name: value})``."""

    module: nn.Module
    dataset: Dataset
    collate: Callable | None = None
    validate: Callable[[nn.Module], dict[str, float]] | None = None  # rank 0, after each epoch
    select: str | None = None  # validation metric to keep the best model by (higher = better)
    export: Callable[[nn.Module, Path], Path] | None = None  # final model file, rank 0
    after_step: Callable[[], None] | None = None
    find_unused: bool = False
    param_groups: Callable[[nn.Module, TrainConfig], list[dict]] | None = None


def param_groups(module: nn.Module, config: TrainConfig) -> list[dict]:
    """BaSSL's weight-decay rule: no decay for parameters whose name contains bn or bias."""
    decay, plain = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (plain if "bn" in name or "bias" in name else decay).append(param)
    return [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def build_optimizer(
    task: Task, config: TrainConfig, total_steps: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    groups = (task.param_groups or param_groups)(task.module, config)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=config.lr)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        from scenecut.pretext import LARS

        optimizer = LARS(groups, lr=config.lr, momentum=config.momentum)
    warm = int(config.warmup * total_steps)

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "quarter-cosine":  # SCRL: per epoch, falls to ~0.5
            epoch = step // max(steps_per_epoch, 1)
            return 0.5 * (1 + math.cos(0.5 * math.pi * epoch / config.epochs))
        if config.schedule.startswith("steps-"):  # x0.1 at the listed epochs (SCRL BiLSTM)
            epoch = step // max(steps_per_epoch, 1)
            marks = [int(m) for m in config.schedule.split("-")[1:]]
            return 0.1 ** sum(epoch >= m for m in marks)
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------------------------
# The loop


def _autocast(device: torch.device, precision: str):
    from scenecut.model import autocast_dtype

    dtype = None if precision == "fp32" else autocast_dtype(device, precision)
    if dtype is None or (precision == "auto" and device.type == "cpu"):
        return contextlib.nullcontext(), None  # CPU training stays fp32 unless asked
    return torch.autocast(device.type, dtype=dtype), dtype


def fit(task: Task, config: TrainConfig, dist: Dist, on_log: Log | None = None) -> Path | None:
    """Train ``task`` as ``config`` says, resuming from the run folder's checkpoint if any.

    Returns the exported model file (rank 0; None elsewhere or when stopped by ``max_steps``
    before the end). Ctrl-C saves a checkpoint and re-raises ``KeyboardInterrupt``.
    """
    run = config.run
    micro = config.micro_batch or max(1, config.batch_size // dist.world)
    accumulate = max(1, config.batch_size // (micro * dist.world))
    if micro * dist.world * accumulate != config.batch_size:
        raise UsageError(
            f"batch_size {config.batch_size} is not micro_batch {micro} x {dist.world} "
            f"process(es) x a whole number of accumulation steps"
        )
    dataset = SeededItems(task.dataset, config.seed)
    sampler = DistributedSampler(
        dataset, dist.world, dist.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    steps_per_epoch = len(sampler) // (micro * accumulate)
    if steps_per_epoch < 1:
        raise InputError(
            f"{len(dataset)} training items cannot fill one batch of {config.batch_size}; "
            "lower --batch-size"
        )
    total_steps = steps_per_epoch * config.epochs
    module = task.module
    if dist.world > 1 and dist.device.type == "cuda":
        # BaSSL trains with SyncBatchNorm; gloo on CPU has no such kernel (nor need: tests)
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    module = module.to(dist.device)
    task.module = module
    optimizer, scheduler = build_optimizer(task, config, total_steps, steps_per_epoch)
    autocast, dtype = _autocast(dist.device, config.precision)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=dtype == torch.float16)
    state = {"step": 0, "epoch": 0, "batch": 0, "best": None, "best_epoch": None}
    if (run / CHECKPOINT).is_file():
        state = _load_checkpoint(run / CHECKPOINT, module, optimizer, scheduler, scaler, config)
    wrapped: nn.Module = module
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [dist.device.index] if dist.device.type == "cuda" else None
        wrapped = DDP(module, device_ids=ids, find_unused_parameters=task.find_unused)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        _write_json(run / CONFIG, dataclasses.asdict(config))
    emit = _logger(run, dist, on_log)

    def save() -> None:
        if dist.main:
            _save_checkpoint(run / CHECKPOINT, module, optimizer, scheduler, scaler, state, config)

    try:
        for epoch in range(state["epoch"], config.epochs):
            dataset.epoch = epoch
            sampler.set_epoch(epoch)
            skip = state["batch"] * micro * accumulate
            loader = DataLoader(
                dataset,
                batch_size=micro,
                sampler=_Skip(sampler, skip),
                num_workers=config.workers,
                collate_fn=task.collate,
                drop_last=True,
                pin_memory=dist.device.type == "cuda",
                persistent_workers=False,
                # its own generator: making the iterator must not draw from the global RNG,
                # whose state (dropout, masks) a resumed run restores from the checkpoint
                generator=torch.Generator().manual_seed(config.seed + epoch),
            )
            module.train()
            started, seen, window = time.perf_counter(), 0, []
            for i, batch in enumerate(loader):
                batch = _to(batch, dist.device)
                last = (i + 1) % accumulate == 0
                sync = contextlib.nullcontext() if last or dist.world == 1 else wrapped.no_sync()
                with sync, autocast:
                    loss, parts = wrapped(batch)
                scaler.scale(loss / accumulate).backward()
                window.append({"loss": float(loss.detach()), **parts})
                seen += micro
                if not last:
                    continue
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if task.after_step:
                    task.after_step()
                state["step"] += 1
                state["batch"] += 1
                if state["step"] % config.log_every == 0 or state["batch"] == steps_per_epoch:
                    progress = epoch + state["batch"] / steps_per_epoch
                    emit(_record(window, state, progress, scheduler, seen * dist.world, started))
                    window = []
                if state["step"] % config.checkpoint_every == 0:
                    save()
                if config.max_steps and state["step"] >= config.max_steps:
                    save()
                    return None
            state.update(epoch=epoch + 1, batch=0)
            if task.validate and dist.main:
                module.eval()
                metrics = task.validate(module)
                record = {"epoch": epoch + 1, "step": state["step"], "val": metrics}
                better = task.select and (
                    state["best"] is None or metrics[task.select] > state["best"]
                )
                if better:
                    state.update(best=metrics[task.select], best_epoch=epoch + 1)
                    _save_best(run, module)
                    record["best"] = True
                emit(record)
            save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
    if not dist.main or task.export is None:
        return None
    if task.select and (run / "best.pt").is_file():
        best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
        module.load_state_dict(best)
    return task.export(module, run)


def _to(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _record(window: list[dict], state: dict, epoch: float, scheduler, items: int, since: float):
    keys = {k for w in window for k in w}
    means = {k: sum(w.get(k, 0.0) for w in window) / len(window) for k in keys}
    return {
        "step": state["step"],
        "epoch": round(epoch, 4),
        "lr": scheduler.get_last_lr()[0],
        "items_per_s": items / max(time.perf_counter() - since, 1e-9),
        **means,
    }


def _logger(run: Path, dist: Dist, on_log: Log | None) -> Log:
    writer = None
    if dist.main:
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run / "tensorboard"))

    def emit(record: dict) -> None:
        if not dist.main:
            return
        with open(run / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            flat = {**record, **{f"val/{k}": v for k, v in record.get("val", {}).items()}}
            for key, value in flat.items():
                if isinstance(value, (int, float)) and key not in ("step", "best"):
                    writer.add_scalar(key, value, record["step"])
        if on_log:
            on_log(record)

    return emit


# --------------------------------------------------------------------------------------------
# Checkpoints


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _save_checkpoint(path: Path, module, optimizer, scheduler, scaler, state, config) -> None:
    data = {
        "module": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "state": dict(state),
        "rng": _rng_state(),
        "config": json.dumps(dataclasses.asdict(config), sort_keys=True),
    }
    part = path.with_name(f".{path.name}.part")
    torch.save(data, part)
    os.replace(part, path)


def _load_checkpoint(path: Path, module, optimizer, scheduler, scaler, config) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(
            f"{path}: unreadable checkpoint ({error}); move it away to restart"
        ) from error
    saved = json.loads(data["config"])
    same = ("task", "method", "head", "encoder", "batch_size", "epochs", "seed", "model")
    changed = [k for k in same if saved.get(k) != dataclasses.asdict(config).get(k)]
    if changed:
        raise UsageError(
            f"{path.parent} holds a run with different {', '.join(changed)}; "
            "use another --out or the same settings to resume"
        )
    module.load_state_dict(data["module"])
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["scheduler"])
    scaler.load_state_dict(data["scaler"])
    torch.set_rng_state(data["rng"]["torch"])
    random.setstate(_as_tuple(data["rng"]["python"]))
    if "cuda" in data["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(data["rng"]["cuda"])
    log.info("resuming %s at step %d", path.parent, data["state"]["step"])
    return dict(data["state"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _save_best(run: Path, module: nn.Module) -> None:
    part = run / ".best.pt.part"
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, part)
    os.replace(part, run / "best.pt")


def _write_json(path: Path, data: dict) -> None:
    part = path.with_name(f".{path.name}.part")
    part.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(part, path)


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: an existing run folder needs --resume (continue) or --overwrite."""
    if not out.exists() or not any(out.iterdir()):
        return
    if overwrite:
        import shutil

        shutil.rmtree(out)
        return
    if not resume:
        raise OutputError(
            f"{out} already holds a run; pass --resume to continue it or --overwrite to restart"
        )


# --------------------------------------------------------------------------------------------
# Fine-tuning: the CRN boundary head on extracted shot features (BaSSL section 3)


class BoundaryHead(nn.Module):
    """CRN + ``head_sbd`` on feature windows; state-dict keys as in the full BaSSL model."""

    def __init__(self, config):
        super().__init__()
        from scenecut.model import CRN

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


def with_overrides(config, overrides: dict):
    """``ModelConfig`` with ``{"crn.hidden_size": 64, "image_size": 112, ...}`` applied."""
    top = {k: v for k, v in overrides.items() if not k.startswith("crn.")}
    crn = {k[4:]: v for k, v in overrides.items() if k.startswith("crn.")}
    try:
        return dataclasses.replace(config, crn=dataclasses.replace(config.crn, **crn), **top)
    except TypeError as error:
        raise UsageError(f"unknown model setting ({error})") from error


def finetune_task(config: TrainConfig) -> Task:
    from scenecut.data import read_tree
    from scenecut.features import FeatureSet, FeatureWindows, check_features

    features = FeatureSet.open(config.features or Path(config.out) / "features")
    model_config = with_overrides(features.config, config.model)
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
        from scenecut.model import BiLSTMHead

        self.config = config
        self.lstm_head = BiLSTMHead(config.crn.input_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        import torch.nn.functional as F

        logits = self.lstm_head(batch["clip"]).float()
        weight = torch.tensor([1.0, 4.0], device=logits.device)
        loss = F.cross_entropy(logits.reshape(-1, 2), batch["labels"].reshape(-1), weight=weight)
        return loss, {}


def _lstm_task(config: TrainConfig, features, model_config, tree) -> Task:
    from scenecut.features import FeatureClips

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
        from scenecut import model as M

        full = M.build(model.config)
        shot_encoder = {k: v for k, v in encoder.items() if k.startswith("shot_encoder.")}
        full.load_state_dict({**shot_encoder, **model.state_dict()}, strict=True)
        M.save(full, model.config, run / MODEL_FILE)
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
    from scenecut.evaluate import Film, score_films
    from scenecut.model import boundary_probs

    films = []
    for movie in movies:
        probs = boundary_probs(model, torch.from_numpy(np.array(features.film(movie.video_id))))
        spans = list(movie.shots) if movie.shots else [(i, i + 1) for i in range(movie.num_shots)]
        films.append(Film(movie.video_id, list(movie.labels), probs.tolist(), spans))
    scores = score_films(films)
    return {k: v for k, v in dataclasses.asdict(scores).items() if isinstance(v, float)}


# --------------------------------------------------------------------------------------------
# Pre-training (BaSSL section 2, SCRL section 4): objectives from scenecut.pretext


def pretrain_model_config(config: TrainConfig):
    """The backbone's ``ModelConfig`` for ``--encoder`` with ``--set model.*`` overrides."""
    from scenecut import model as M

    if config.encoder == "effnet-lite0":
        from scenecut.effnet import model_config

        base = model_config()
    elif config.encoder == "tiny":
        base = M.ModelConfig(encoder="tiny", crn=M.CRNConfig(input_dim=128))
    else:
        base = M.ModelConfig(encoder=config.encoder)
    overrides = {"image_size": config.image_size, **config.model}
    if config.image_size != 224 and "resize" not in config.model:
        overrides["resize"] = round(config.image_size * 256 / 224)
    return with_overrides(base, overrides)


def pretrain_task(config: TrainConfig) -> Task:
    from scenecut import model as M
    from scenecut import pretext
    from scenecut.loader import train_transform

    model_config = pretrain_model_config(config)
    settings = dict(config.pretext)
    if config.method == "scrl" and config.init:
        settings.setdefault("imagenet_weights", config.init)
    pcfg = pretext.PretrainConfig(
        method=config.method,
        batch_size=config.batch_size,
        neighbor_size=model_config.crn.neighbor_size,
        **settings,
    )
    objective = pretext.build_objective(model_config, pcfg)
    if config.init and config.method != "scrl":
        from scenecut.features import load_encoder

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
        dataset = pretext.pretrain_dataset(source, pcfg, size=config.image_size)
    else:
        transform = train_transform(config.image_size)
        dataset = pretext.pretrain_dataset(config.data, pcfg, transform=transform)

    def export(module: nn.Module, run: Path) -> Path:
        M.save_state(module.backbone_state(), model_config, run / MODEL_FILE)
        return run / MODEL_FILE

    def scrl_groups(module: nn.Module, c: TrainConfig) -> list[dict]:
        params = [p for p in module.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": c.weight_decay}]

    return Task(
        objective,
        dataset,
        export=export,
        after_step=objective.after_step,
        find_unused=True,
        param_groups=scrl_groups if config.method == "scrl" else None,
    )


def _puzzles(config: TrainConfig) -> Path:
    """SCRL reads puzzles: ``--data`` is a puzzle folder, or a tree whose training films are
    made into puzzles under the run folder first (rank 0; the others wait)."""
    from scenecut.puzzles import make_puzzles

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
    task = finetune_task(config) if config.task == "finetune" else pretrain_task(config)
    try:
        done = fit(task, config, dist, on_log)
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return str(done) if done else None


@_record_errors
def extract_entry(args_json: str, device: str = "auto") -> dict:
    """One feature-extraction process: this rank's share of the films."""
    from scenecut.features import extract

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
