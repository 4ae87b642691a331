"""The training loop: one ``fit`` drives every task (fine-tuning and pre-training alike).

A task (``Task``) is a module, its dataset and what to validate and export. Distributed mode comes
from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): NCCL on GPUs, gloo on CPU;
``launch`` starts the workers through torchrun's own launcher when scenecut is not already running
under torchrun. Only rank 0 logs and writes. Checkpoints hold the unwrapped module, the optimizer,
scheduler, scaler and RNG states and the position in the epoch; they are written atomically, and
``resume`` continues exactly where the run stopped: every item's augmentation is seeded by (seed,
epoch, item), so the data a step sees does not depend on worker count or on where the run was cut.
Ctrl-C (SIGINT) stops the run at the end of the step under way, so the checkpoint it writes is
the state after a whole step; ``metrics.jsonl`` is cut back to the checkpoint on resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from scenecut.errors import InputError, OutputError, ScenecutError, UsageError
from scenecut.files import replacing, write_json
from scenecut.models import archives
from scenecut.models.runner import autocast_dtype
from scenecut.train import syncbn
from scenecut.train.config import CHECKPOINT, CONFIG, METRICS, TrainConfig
from scenecut.train.optim import build_optimizer

log = logging.getLogger(__name__)


Log = Callable[[dict], None]  # receives every metrics record (rank 0 only)


class TrainingError(ScenecutError):
    """Training cannot go on: the loss or the weights are no longer finite numbers."""


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
    from torch.distributed.elastic.multiprocessing.api import SignalException
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
        with _quiet_launcher(), _handlers_kept():
            results = elastic_launch(config, entry)(*args)
    except SignalException as error:  # Ctrl-C or SIGTERM: the workers were told to stop
        raise Interrupted(error.sigval) from error
    except ChildFailedError as error:
        first = next(iter(error.failures.values()))
        raise InputError(f"a training process failed: {first.message or first}") from None
    return results.get(0) if isinstance(results, dict) else results


@contextlib.contextmanager
def _handlers_kept() -> Iterator[None]:
    """torchrun's launcher installs its own SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers in the
    calling process and never takes them down; a library caller (or the next ``fit`` in the
    same process) gets its own handlers back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    saved = {
        s: signal.getsignal(s) for s in (getattr(signal, n) for n in names if hasattr(signal, n))
    }
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The launcher's warnings (workers being stopped...) only repeat what the one-line error
    or interruption says; with scenecut logging at DEBUG (SCENECUT_DEBUG=1) they stay."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    names = [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]
    loggers = [logging.getLogger(n) for n in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


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
            # the CPU generator alone: torch.manual_seed would also reseed the GPUs' (which
            # fork_rng does not restore) and, even without one, format the call stack each time
            torch.default_generator.manual_seed(
                (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index
            )
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
    # every process, before each epoch's first step (also the epoch a resumed run continues),
    # with the epoch and whether the run resumed into it: Saccade-VSSL's clustering
    before_epoch: Callable[[int, bool], None] | None = None
    find_unused: bool = False
    param_groups: Callable[[nn.Module, TrainConfig], list[dict]] | None = None


# --------------------------------------------------------------------------------------------
# The loop


def _autocast(device: torch.device, precision: str):
    dtype = None if precision == "fp32" else autocast_dtype(device, precision)
    if dtype is None or (precision == "auto" and device.type == "cpu"):
        return contextlib.nullcontext(), None  # CPU training stays fp32 unless asked
    return torch.autocast(device.type, dtype=dtype), dtype


def fit(task: Task, config: TrainConfig, dist: Dist, on_log: Log | None = None) -> Path | None:
    """Train ``task`` as ``config`` says, resuming from the run folder's checkpoint if any.

    Returns the exported model file (rank 0; None elsewhere or when stopped by ``max_steps``
    before the end). Ctrl-C stops at the end of the step under way, saves a checkpoint and
    raises ``Interrupted``; a second Ctrl-C stops at once, keeping the last checkpoint.
    A loss or weights that stop being finite raise ``TrainingError`` and save nothing.
    """
    run = config.run
    micro, accumulate = _micro_batches(config, dist)
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
    module = task.module = _on_device(task.module, dist)
    groups = task.param_groups(module, config) if task.param_groups else None
    optimizer, scheduler = build_optimizer(module, config, total_steps, steps_per_epoch, groups)
    autocast, dtype = _autocast(dist.device, config.precision)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=dtype == torch.float16)
    # "window": the losses since the last metrics record; "metrics": bytes of metrics.jsonl
    state = {"step": 0, "epoch": 0, "batch": 0, "best": None, "best_epoch": None, "window": []}
    if (run / CHECKPOINT).is_file():
        loaded = _load_checkpoint(run / CHECKPOINT, module, optimizer, scheduler, scaler, config)
        state.update(loaded)
    wrapped = _distributed(module, dist, task.find_unused)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(run)
        _cut_metrics(run / METRICS, state)
        write_json(run / CONFIG, dataclasses.asdict(config), sort_keys=True)
    emit = _logger(run, dist, on_log)

    def save() -> None:
        if dist.main:
            state["metrics"] = _size(run / METRICS)
            _save_checkpoint(run / CHECKPOINT, module, optimizer, scheduler, scaler, state, config)

    resumed = state["step"] > 0
    with _StopOnSignal(dist) as stops, _together(dist):
        for epoch in range(state["epoch"], config.epochs):
            skip = state["batch"] * micro * accumulate
            if task.before_epoch:
                task.before_epoch(epoch, resumed)
                resumed = False
            loader = _epoch_loader(dataset, sampler, epoch, skip, micro, task.collate, config, dist)
            module.train()
            started, seen, window = time.perf_counter(), 0, state["window"]
            for i, batch in enumerate(loader):
                batch = _to(batch, dist.device)
                last = (i + 1) % accumulate == 0
                sync = contextlib.nullcontext() if last or dist.world == 1 else wrapped.no_sync()
                with sync, autocast:
                    loss, parts = wrapped(batch)
                value = float(loss.detach())
                if not math.isfinite(value) and not scaler.is_enabled():  # fp16 skips these
                    raise _diverged(state["step"] + 1, f"the loss is {value}")
                scaler.scale(loss / accumulate).backward()
                window.append({"loss": value, **parts})
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
                    window.clear()
                saved = state["step"] % config.checkpoint_every == 0
                if saved:
                    save()
                if config.max_steps and state["step"] >= config.max_steps:
                    if not saved:
                        save()
                    return None
                if stops.requested_everywhere():
                    if not saved:
                        save()
                    raise stops.stop()
            state.update(epoch=epoch + 1, batch=0)
            if task.validate and dist.main:
                emit(_validate(task, module, run, state))
            save()
            if stops.requested_everywhere():
                raise stops.stop()
    if stops.signum is not None:  # Ctrl-C after the last step: all is saved, stop as asked
        raise stops.stop()
    if not dist.main or task.export is None:
        return None
    if task.select and (run / "best.pt").is_file():
        try:
            module.load_state_dict(
                torch.load(run / "best.pt", map_location="cpu", weights_only=True)
            )
        except Exception as error:  # damaged since it was written: a clear line, not a crash
            raise InputError(
                f"{run / 'best.pt'}: unreadable ({archives.reason(error)}); move it away and resume"
            ) from None
    _check_finite(module, state["step"])
    return task.export(module, run)


@contextlib.contextmanager
def _together(dist: Dist) -> Iterator[None]:
    """Processes leave the loop together, whichever way they leave it."""
    try:
        yield
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal at the end of a step, its checkpoint saved."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _StopOnSignal:
    """While training, Ctrl-C (SIGINT) only asks to stop: the loop stops at the end of the
    step under way, where weights, optimizer, scheduler, RNG and data position agree, and saves
    them. Stopping mid-step would save weights and an RNG state from different moments, and a
    resume would drift from the uninterrupted run. SIGTERM and SIGHUP are treated alike when
    the program turned them into exceptions (the CLI does). A second signal stops at once
    (one process), keeping the last checkpoint. Under several processes all stop at one step.
    """

    def __init__(self, dist: Dist):
        self.dist, self.signum, self._previous = dist, None, {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only
        for signum in _STOP_SIGNALS:
            current = signal.getsignal(signum)
            if callable(current) or (signum == signal.SIGINT and current == signal.SIG_DFL):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        return False

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        elif self.dist.world == 1:
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt

    def requested_everywhere(self) -> bool:
        """At a step boundary: whether any process was asked to stop (all must call it)."""
        if self.dist.world == 1:
            return self.signum is not None
        flag = torch.tensor([float(self.signum is not None)], device=self.dist.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def stop(self) -> Interrupted:
        return Interrupted(self.signum or signal.SIGINT)


def _diverged(step: int, what: str) -> TrainingError:
    return TrainingError(
        f"training diverged at step {step}: {what}; nothing was saved from it (lower --lr, "
        f"or --set base_lr=...)"
    )


def _check_finite(module: nn.Module, step: int) -> None:
    """Refuse to save weights holding inf or nan."""
    for name, value in module.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise _diverged(step, f"weight {name} holds inf or nan")


def _micro_batches(config: TrainConfig, dist: Dist) -> tuple[int, int]:
    """Items per process per forward pass, and forward passes per optimizer step."""
    micro = config.micro_batch or max(1, config.batch_size // dist.world)
    accumulate = max(1, config.batch_size // (micro * dist.world))
    if micro * dist.world * accumulate != config.batch_size:
        raise UsageError(
            f"batch_size {config.batch_size} is not micro_batch {micro} x {dist.world} "
            f"process(es) x a whole number of accumulation steps"
        )
    return micro, accumulate


def _on_device(module: nn.Module, dist: Dist) -> nn.Module:
    """``module`` on the process's device; with several processes its BatchNorm layers take
    statistics over all their batches (BaSSL and Saccade-VSSL train with SyncBatchNorm, which
    has no CPU kernel: on gloo, ``syncbn.GatheredBatchNorm`` does the same)."""
    if dist.world > 1 and dist.device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    elif dist.world > 1:
        module = syncbn.convert(module)
    return module.to(dist.device)


def _distributed(module: nn.Module, dist: Dist, find_unused: bool) -> nn.Module:
    """``module`` wrapped in DDP when there are several processes, else itself."""
    if dist.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=find_unused)


def _epoch_loader(dataset, sampler, epoch: int, skip: int, micro: int, collate, config, dist):
    """The loader of ``epoch``, less the first ``skip`` items (trained before a resume)."""
    dataset.epoch = epoch
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=micro,
        sampler=_Skip(sampler, skip),
        num_workers=config.workers,
        collate_fn=collate,
        drop_last=True,
        pin_memory=dist.device.type == "cuda",
        persistent_workers=False,
        worker_init_fn=_ignore_interrupts,  # the trainer decides when Ctrl-C stops a run
        # its own generator: making the iterator must not draw from the global RNG,
        # whose state (dropout, masks) a resumed run restores from the checkpoint
        generator=torch.Generator().manual_seed(config.seed + epoch),
    )


def _ignore_interrupts(worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _validate(task: Task, module: nn.Module, run: Path, state: dict) -> dict:
    """Rank 0 after an epoch: the validation record; the best model so far is kept."""
    module.eval()
    metrics = task.validate(module)
    record = {"epoch": state["epoch"], "step": state["step"], "val": metrics}
    if task.select and (state["best"] is None or metrics[task.select] > state["best"]):
        state.update(best=metrics[task.select], best_epoch=state["epoch"])
        _save_best(run, module, state["step"])
        record["best"] = True
    return record


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
        try:
            with open(run / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as error:
            raise OutputError(
                f"cannot write {run / METRICS} ({error.strerror or error})"
            ) from error
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
    _check_finite(module, state["step"])
    data = {
        "module": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "state": dict(state),
        "rng": _rng_state(),
        "config": json.dumps(dataclasses.asdict(config), sort_keys=True),
    }
    _torch_save(data, path)


class _Sink:
    """A file for ``torch.save`` that keeps the ``OSError`` of a failed write (a full disk),
    which torch reports only as a ``RuntimeError`` about stream positions."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def _torch_save(data, path: Path) -> None:
    """``torch.save`` to ``path`` atomically; a full disk is an ``OutputError`` (exit 1) and
    leaves no temporary file."""
    with replacing(path) as tmp, open(tmp, "wb") as file:
        sink = _Sink(file)
        try:
            torch.save(data, sink)
        except RuntimeError:
            if sink.error is None:
                raise
            raise sink.error from None


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _cut_metrics(path: Path, state: dict) -> None:
    """On resume, drop the metrics records written after the checkpoint (they will be logged
    again), so each step appears once and in order; without a checkpoint, all of them."""
    if not path.is_file():
        return
    keep = state.get("metrics")
    if keep is None:  # a checkpoint from before "metrics" was saved: cut by step
        lines = path.read_bytes().splitlines(keepends=True)
        kept = b""
        for line in lines:
            try:
                if json.loads(line).get("step", 0) > state["step"]:
                    break
            except ValueError:  # a record cut short by the crash
                break
            kept += line
        keep = len(kept)
    if keep < _size(path):
        try:
            with open(path, "r+b") as f:
                f.truncate(keep)
        except OSError as error:
            raise OutputError(f"cannot write {path} ({error.strerror or error})") from error


def _remove_stale_temporaries(run: Path) -> None:
    """Temporary files of a checkpoint write cut short by a crash (``kill -9``, power loss)."""
    for name in (CHECKPOINT, "best.pt"):
        stem, suffix = Path(name).stem, Path(name).suffix
        for stale in run.glob(f".{stem}.*.tmp{suffix}"):
            stale.unlink(missing_ok=True)


def _load_checkpoint(path: Path, module, optimizer, scheduler, scaler, config) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(
            f"{path}: unreadable checkpoint ({error}); move it away to restart"
        ) from error
    try:
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
        state = dict(data["state"])
        log.info("resuming %s at step %d", path.parent, state["step"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        # Readable, but not a checkpoint of this program's runs (or edited, or damaged).
        raise InputError(
            f"{path}: not a checkpoint of this run ({archives.reason(error)}); move it away "
            "to restart"
        ) from None
    return state


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _save_best(run: Path, module: nn.Module, step: int) -> None:
    _check_finite(module, step)
    _torch_save({k: v.detach().cpu() for k, v in module.state_dict().items()}, run / "best.pt")
