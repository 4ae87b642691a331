"""Video retrieval accuracy (SACCADE.md 6, the VCOP/IIC convention): each query video counts as
found at k when ANY of its k most cosine-similar gallery videos has its class.

The protocol around it (10 clips per video, the head's output averaged and re-normalised,
train split as gallery, test split as queries) belongs to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from scenecut.errors import UsageError

KS = (1, 5, 10, 20, 50)
CHUNK = 1024  # queries scored at a time: bounds the similarity matrix to CHUNK x gallery


def retrieval_hits(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: Sequence[int] = KS,
) -> torch.Tensor:
    """``[len(ks), queries]`` bool: query q is found at ``ks[i]``. Rows are L2-normalised here;
    a k beyond the gallery's size means the whole gallery."""
    if not ks or min(ks) < 1:
        raise UsageError(f"retrieval k values must be 1 or more, got {list(ks)}")
    if len(query) == 0 or len(gallery) == 0:
        raise UsageError("retrieval needs at least one query and one gallery video")
    if query.shape[1:] != gallery.shape[1:] or query.dim() != 2:
        raise ValueError(f"query {tuple(query.shape)} and gallery {tuple(gallery.shape)} differ")
    if len(query_labels) != len(query) or len(gallery_labels) != len(gallery):
        raise ValueError("one label per query and per gallery video")
    gallery = F.normalize(gallery.float(), dim=1)
    query = F.normalize(query.float(), dim=1).to(gallery.device)
    gallery_labels = gallery_labels.to(gallery.device)
    depth = min(max(ks), len(gallery))
    hits = []
    for start in range(0, len(query), CHUNK):
        sim = query[start : start + CHUNK] @ gallery.T
        top = sim.topk(depth, dim=1).indices  # most similar first
        match = gallery_labels[top] == query_labels[start : start + CHUNK, None].to(top.device)
        found = match.cumsum(dim=1) > 0  # found[:, j]: a match among the j + 1 best
        hits.append(torch.stack([found[:, min(k, depth) - 1] for k in ks]))
    return torch.cat(hits, dim=1).cpu()


def retrieval_topk(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: Sequence[int] = KS,
) -> dict[int, float]:
    """{k: fraction of queries found at k} (any-of-top-k on cosine similarity)."""
    hits = retrieval_hits(query, query_labels, gallery, gallery_labels, ks)
    return {int(k): float(row.float().mean()) for k, row in zip(ks, hits, strict=True)}


def per_class_accuracy(
    hits: torch.Tensor, query_labels: torch.Tensor, ks: Sequence[int] = KS
) -> dict[int, dict[int, float]]:
    """{k: {class: fraction of that class's queries found at k}} from ``retrieval_hits``, for
    the classes that have queries (the reference computes these and does not save them)."""
    labels = query_labels.cpu()
    classes = sorted(int(c) for c in labels.unique())
    return {
        int(k): {c: float(row[labels == c].float().mean()) for c in classes}
        for k, row in zip(ks, hits, strict=True)
    }
