"""Batch normalisation over every process's batch on CPUs (gloo), as SyncBatchNorm does on GPUs.

PyTorch's ``SyncBatchNorm`` refuses CPU tensors, so CPU training in several processes used each
process's own batch statistics: a different model from the one-process run on the same global
batch. ``GatheredBatchNorm`` gathers every process's per-channel sums (with their gradients, so
the backward pass is that of batch normalisation over the whole batch) and normalises with the
global mean and biased variance; the running statistics move with the unbiased one, as
``BatchNorm`` does. Processes must hold batches of the same size (the training loop's are).
"""

from __future__ import annotations

import torch
from torch import nn

from scenecut.train.pretext import gather_with_grad, rank_world


class GatheredBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``BatchNorm1d/2d/3d`` whose training statistics cover every process's batch."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        world = rank_world()[1]
        if not self.training or world == 1 or not self.track_running_stats:
            return super().forward(x)
        channels = x.shape[1]
        dims = [d for d in range(x.dim()) if d != 1]
        count = x.numel() // channels
        wide = x.double()  # E[x^2] - E[x]^2 in float64: no cancellation worth the name
        local = torch.cat([wide.sum(dims), (wide * wide).sum(dims)]).unsqueeze(0)
        total = gather_with_grad(local).sum(0)
        n = count * world
        mean = total[:channels] / n
        var = (total[channels:] / n - mean * mean).clamp_min(0).to(x.dtype)
        mean = mean.to(x.dtype)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
            self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            unbiased = var.detach() * n / max(1, n - 1)
            self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a ``GatheredBatchNorm`` holding the
    same parameters and statistics (like ``SyncBatchNorm.convert_sync_batchnorm``)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GatheredBatchNorm
    ):
        new = GatheredBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        if module.affine:
            with torch.no_grad():
                new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.training = module.training
        return new
    for name, child in module.named_children():
        module.add_module(name, convert(child))
    return module
