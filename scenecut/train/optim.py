"""The optimiser and learning-rate schedule of every training task, as the papers' code has them.

``build_optimizer`` reads ``TrainConfig``: Adam (BaSSL fine-tuning), LARS (BaSSL pre-training)
or SGD (SCRL, the BiLSTM protocol), at ``TrainConfig.peak_lr``, with BaSSL's weight-decay rule,
and a LambdaLR stepped after every optimizer step. The warm-up is lightning-bolts'
``linear_warmup_decay`` as BaSSL runs it: ``step / warmup_steps``, so the first step has a
learning rate of 0, then cosine to 0 over the remaining steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from scenecut.errors import UsageError
from scenecut.train.config import TrainConfig

NO_DECAY = ("bn", "bias")  # BaSSL: params whose *name contains* these get no weight decay


def decay_groups(module: nn.Module, weight_decay: float, skip: Sequence[str] = NO_DECAY) -> list:
    """BaSSL's ``exclude_from_wt_decay``: trainable params whose name contains any of ``skip``
    get weight decay 0 (note: ``downsample.1`` BN and LayerNorm weights keep it)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if any(s in name for s in skip) else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """lightning-bolts' ``linear_warmup_decay(cosine=True)``: a LambdaLR factor per step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return float(step) / float(max(1, warmup_steps))
        progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def quarter_cosine(epoch: int, epochs: int) -> float:
    """SCRL's per-epoch factor ``0.5 (1 + cos(0.5 pi epoch / epochs))``: ends near 0.5."""
    return 0.5 * (1.0 + math.cos(0.5 * math.pi * epoch / epochs))


def schedule(config: TrainConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """``config.schedule`` as a factor of the peak learning rate per optimizer step:
    ``cosine`` (per step, after ``warmup``), ``quarter-cosine`` (SCRL, held within each epoch),
    ``steps-E1-E2...`` (x ``lr_decay`` at each listed epoch: 0.1 SCRL's BiLSTM, 0.2
    Saccade-VSSL) or ``constant``."""
    per_epoch = max(1, steps_per_epoch)
    if config.schedule == "constant":
        return lambda step: 1.0
    if config.schedule == "quarter-cosine":
        return lambda step: quarter_cosine(step // per_epoch, config.epochs)
    if config.schedule.startswith("steps-"):
        marks = [int(m) for m in config.schedule.split("-")[1:]]
        decay = config.lr_decay
        return lambda step: decay ** sum(step // per_epoch >= m for m in marks)
    return warmup_cosine(int(config.warmup * total_steps), total_steps)


def build_optimizer(
    module: nn.Module,
    config: TrainConfig,
    total_steps: int,
    steps_per_epoch: int,
    groups: list[dict] | None = None,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer over ``groups`` (default: ``decay_groups`` with ``config.weight_decay``)
    and its scheduler, to ``step()`` after every optimizer step."""
    if total_steps < 1:
        raise UsageError(f"total_steps must be positive, got {total_steps}")
    groups = groups if groups is not None else decay_groups(module, config.weight_decay)
    lr = config.peak_lr
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=lr)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    else:
        optimizer = LARS(groups, lr=lr, momentum=config.momentum)
    factor = schedule(config, total_steps, steps_per_epoch)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class LARS(torch.optim.Optimizer):
    """lightning-bolts' LARS (BaSSL's optimiser). Per parameter with non-zero weight decay:
    ``g = (g + wd p) * tc |p| / (|g| + wd |p| + eps)``; then SGD momentum. Parameters in a
    group with weight decay 0 (bn/bias) get plain momentum SGD, without the trust ratio."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise UsageError("LARS needs non-negative lr, momentum and weight decay")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            trust_coefficient=trust_coefficient,
            eps=eps,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, momentum = group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                p_norm, g_norm = torch.norm(p), torch.norm(p.grad)
                if wd != 0 and p_norm != 0 and g_norm != 0:
                    lars_lr = p_norm / (g_norm + p_norm * wd + group["eps"])
                    lars_lr = lars_lr * group["trust_coefficient"]
                    d_p = d_p.add(p, alpha=wd) * lars_lr
                if momentum != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(momentum).add_(d_p, alpha=1 - group["dampening"])
                    d_p = d_p.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(d_p, alpha=-group["lr"])
        return loss
