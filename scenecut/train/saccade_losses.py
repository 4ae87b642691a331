"""Saccade-VSSL's objectives (SACCADE.md section 4): the fixation-level memory-bank NCE, the PPM
consistency loss and the prototype (PCL) ProtoNCE loss.

Slot ``y = 3 * video + fixation`` names one memory row per (video, fixation); the A- and B-clip
of a fixation share it. One training step, in the reference's order::

    loss = nce_loss(z, y, sample_negatives(bank.slots, len(y), 1024), bank, net.embed)
    bank.update(y, feat)                       # after scoring, from the pooled features
    loss = loss + ppm_loss(pred, target)       # each direction, averaged by the caller
    if clusterings: loss = loss + proto_nce(z, y, clusterings)

``Clustering`` (one k-means of the cluster features, with PCL's concentrations) is made by
``scenecut.train.kmeans.cluster``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from scenecut.errors import UsageError
from scenecut.train.pretext import gather, rank_world

PPM_LOSSES = ("l1", "l2", "cos")

Generator = torch.Generator | np.random.Generator


class MemoryBank(nn.Module):
    """One raw pooled backbone feature per slot (buffer ``memory`` ``[slots, dim]``): not
    projected, not normalised, initialised U(-s, s) with s = 1/sqrt(dim/3) as the reference's
    ``NCEAverage`` does.

    Under DDP every rank must start from the same bank: pass the same ``generator`` seed (or
    seed torch identically) on every rank. ``update`` then keeps the ranks identical.
    """

    memory: torch.Tensor

    def __init__(self, slots: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        if slots < 1 or dim < 1:
            raise UsageError(
                f"a memory bank needs at least one slot and one dimension, got {slots}x{dim}"
            )
        s = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory", torch.rand(slots, dim, generator=generator) * (2 * s) - s)

    @property
    def slots(self) -> int:
        return self.memory.shape[0]

    def keys(self, slots: torch.Tensor) -> torch.Tensor:
        """The rows of ``slots`` (any shape -> ``[*shape, dim]``), detached."""
        return self.memory[slots.to(self.memory.device)].detach()

    @torch.no_grad()
    def update(self, slots: torch.Tensor, feat: torch.Tensor, momentum: float = 0.5) -> None:
        """``M[y] <- momentum * M[y] + (1 - momentum) * feat`` (no normalisation).

        Under ``torch.distributed`` (initialised, more than one process) the slots and features
        of every rank are gathered first (rank order), so every rank applies the same update and
        the banks stay identical. The reference's DataParallel keeps only GPU 0's shard of each
        update (SACCADE.md 9.15); we fix that.

        Duplicate slots (A_i and B_i of a fixation, or one slot on two ranks): every new value
        is computed from the old row, and the LAST occurrence in gathered order (rank-major,
        then batch order) is written: for a dataset item's [A0 A1 A2 B0 B1 B2] that is B_i.
        The reference's ``index_copy_`` also keeps one writer, but which one is undefined.
        """
        device = self.memory.device
        slots = slots.reshape(-1).to(device=device, dtype=torch.long)
        feat = feat.detach().reshape(slots.shape[0], -1).to(device=device, dtype=self.memory.dtype)
        if feat.shape[1] != self.memory.shape[1]:
            raise ValueError(f"features have {feat.shape[1]} dims, the bank {self.memory.shape[1]}")
        slots, feat = _gather_rows(slots), _gather_rows(feat)
        if slots.numel() == 0:
            return
        bad = slots[(slots < 0) | (slots >= self.slots)]
        if len(bad):
            raise ValueError(f"slot ids must lie in [0, {self.slots}), got {bad[:5].tolist()}")
        order = torch.arange(slots.shape[0], device=device)
        last = torch.full((self.slots,), -1, dtype=torch.long, device=device)
        last.scatter_reduce_(0, slots, order, reduce="amax")
        keep = last[slots] == order
        new = momentum * self.memory[slots[keep]] + (1 - momentum) * feat[keep]
        self.memory[slots[keep]] = new


def _gather_rows(x: torch.Tensor) -> torch.Tensor:
    """``[n_r, ...]`` on each rank -> ``[sum n_r, ...]`` in rank order (sizes may differ)."""
    if rank_world()[1] == 1:
        return x
    sizes = gather(torch.tensor([x.shape[0]], device=x.device)).tolist()
    most = max(sizes)
    padded = x.new_zeros((most, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = gather(padded).split(most)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


def sample_negatives(
    slots: int, n: int, k: int, generator: Generator | None = None
) -> torch.Tensor:
    """``[n, k]`` int64 slot ids drawn uniformly with replacement (the reference's alias sampler
    with equal weights; a row's own slot is not excluded). ``generator``: a ``torch.Generator``
    (CPU), a ``numpy.random.Generator``, or None for torch's default generator."""
    if isinstance(generator, np.random.Generator):
        return torch.from_numpy(generator.integers(0, slots, size=(n, k), dtype=np.int64))
    return torch.randint(slots, (n, k), generator=generator, dtype=torch.long)


def nce_loss(
    z: torch.Tensor,
    y: torch.Tensor,
    negatives: torch.Tensor,
    bank: MemoryBank,
    embed: Callable[[torch.Tensor], torch.Tensor],
    t: float = 0.07,
) -> torch.Tensor:
    """Instance discrimination against the memory bank: for row q, logits
    ``[z_q . e(M[y_q]), z_q . e(M[neg_q1]), ...] / t`` with ``e = L2norm(embed(.))`` (the head
    h; gradient reaches h through the keys, never the bank), cross-entropy to column 0.

    ``z`` ``[n, e]`` L2-normalised embeddings, ``y`` ``[n]`` slots, ``negatives`` ``[n, k]``.
    """
    ids = torch.cat([y.reshape(-1, 1), negatives.reshape(y.numel(), -1)], dim=1).to(z.device)
    keys = F.normalize(embed(bank.keys(ids)).float(), dim=-1)  # [n, 1 + k, e]
    logits = torch.einsum("ne,nke->nk", z.float(), keys) / t
    return F.cross_entropy(logits, torch.zeros(len(z), dtype=torch.long, device=z.device))


def ppm_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """The reference's ``--pred_loss``: ``l1`` mean |pred - target|, ``l2`` mean squared error,
    ``cos`` minus the cosine over channels (dim 1) averaged over the other positions. The target
    is detached here."""
    target = target.detach()
    if kind == "l1":
        return (pred - target).abs().mean()
    if kind == "l2":
        return F.mse_loss(pred, target)
    if kind == "cos":
        return -F.cosine_similarity(pred, target, dim=1).mean()
    raise UsageError(f"unknown PPM loss {kind!r}; choose one of {', '.join(PPM_LOSSES)}")


@dataclass
class Clustering:
    """One k-means of the cluster features: ``centroids`` ``[k, dim]`` (unnormalised, as faiss
    returns them), ``assign`` ``[slots]`` int64 cluster of each slot, ``phi`` ``[k]`` PCL
    concentration of each cluster (mean t)."""

    centroids: torch.Tensor
    assign: torch.Tensor
    phi: torch.Tensor

    @property
    def k(self) -> int:
        return self.centroids.shape[0]


def negative_prototypes(
    positives: torch.Tensor, k: int, n: int, generator: Generator | None = None
) -> torch.Tensor:
    """``min(n, available)`` distinct cluster ids, drawn without replacement from the ``k``
    clusters that are not in ``positives`` (random order)."""
    free = torch.ones(k, dtype=torch.bool)
    free[positives.reshape(-1).cpu()] = False
    candidates = free.nonzero().reshape(-1)
    if isinstance(generator, np.random.Generator):
        order = torch.from_numpy(generator.permutation(len(candidates)))
    else:
        order = torch.randperm(len(candidates), generator=generator)
    return candidates[order[:n]]


def proto_nce(
    z: torch.Tensor,
    y: torch.Tensor,
    clusterings: Sequence[Clustering],
    negatives: int = 1024,
    generator: Generator | None = None,
) -> torch.Tensor:
    """PCL's ProtoNCE, averaged over the clusterings.

    Per clustering, the columns are [the positive prototype of every row in batch order; up to
    ``negatives`` clusters that are no row's positive], each centroid L2-normalised and divided
    by its concentration; row q's target is column q. Other rows' positives stay in as
    negatives, duplicates of q's own included (the reference's false negatives, SACCADE.md
    9.17). Under DDP each process scores its own rows, as the reference's DataParallel did.
    """
    if not clusterings:
        raise ValueError("proto_nce needs at least one clustering")
    y = y.reshape(-1)
    target = torch.arange(len(y), device=z.device)
    losses = []
    for c in clusterings:
        pos = c.assign.to(y.device)[y].cpu()
        cols = torch.cat([pos, negative_prototypes(pos, c.k, negatives, generator)])
        cols = cols.to(c.centroids.device)
        protos = F.normalize(c.centroids[cols].float(), dim=1).to(z.device)
        logits = (z.float() @ protos.T) / c.phi[cols].float().to(z.device)
        losses.append(F.cross_entropy(logits, target))
    return torch.stack(losses).mean()
