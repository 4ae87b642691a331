"""Saccade-VSSL's clustering (SACCADE.md 4.3): faiss k-means, PCL's concentration and the
list of ``Clustering`` that ProtoNCE scores against.

faiss (``pip install 'scenecut[train]'``) is imported when k-means runs, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from scenecut.errors import UsageError
from scenecut.train.saccade_losses import Clustering

log = logging.getLogger(__name__)

KMEANS_SEED = 1234  # the reference's DEFAULT_KMEANS_SEED: clustering i uses 1234 + i


def _faiss():
    try:
        import faiss
    except ImportError:
        raise UsageError(
            "k-means needs faiss, which is not installed: pip install 'scenecut[train]'"
        ) from None
    return faiss


def _faiss_gpus(faiss) -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    seed: int,
    niter: int = 20,
    nredo: int = 5,
    min_points: int = 10,
    max_points: int = 1000,
    gpu: bool | None = None,
    device: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """faiss k-means of the rows of ``x`` ``[n, d]`` with the reference's settings -> centroids
    ``[k, d]`` float32, assignment ``[n]`` int64 (nearest centroid), squared L2 distance to it
    ``[n]`` float32.

    ``gpu``: an exact L2 index on GPU ``device`` (None: when faiss has GPUs). More than
    ``k * max_points`` rows: faiss trains on a seeded sample of them, then assigns all.
    """
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"k-means needs a [points, dims] array, got shape {x.shape}")
    n, d = x.shape
    if not 1 <= k <= n:
        raise UsageError(
            f"cannot make {k} clusters from {n} points: use fewer clusters (at most {n})"
        )
    if not np.isfinite(x).all():
        raise ValueError("k-means input holds NaN or infinite values")
    gpus = _faiss_gpus(faiss)
    if gpu is None:
        gpu = gpus > 0
    elif gpu and not gpus:
        raise UsageError("GPU k-means needs a faiss build with GPUs (this faiss has none)")

    clus = faiss.Clustering(d, k)
    clus.verbose = False
    clus.niter, clus.nredo, clus.seed = niter, nredo, seed
    clus.max_points_per_centroid = max_points
    clus.min_points_per_centroid = min_points
    if n < k * min_points:
        # the minimum only triggers faiss's warning, printed on stderr from C++: log it instead
        log.warning(
            "k-means of %d points into %d clusters: fewer than %d per cluster", n, k, min_points
        )
        clus.min_points_per_centroid = 0
    if gpu:
        res = faiss.StandardGpuResources()
        cfg = faiss.GpuIndexFlatConfig()
        cfg.useFloat16 = False
        cfg.device = device
        index = faiss.GpuIndexFlatL2(res, d, cfg)
    else:
        index = faiss.IndexFlatL2(d)
    clus.train(x, index)
    distances, nearest = index.search(x, 1)
    centroids = faiss.vector_to_array(clus.centroids).reshape(k, d)
    return centroids, nearest[:, 0].astype(np.int64), distances[:, 0]


def concentration(distances: np.ndarray, assign: np.ndarray, k: int, t: float = 0.07) -> np.ndarray:
    """PCL's phi ``[k]`` float64 from each point's squared distance to its centroid: mean(sqrt)
    / log(n_c + 10) for clusters of more than one point, the largest of those for the others,
    clipped to the [10th, 90th] percentile and rescaled to mean ``t``. If every value is 0
    (no cluster with two distinct points) all are ``t``, where the reference divides by 0."""
    assign = np.asarray(assign, dtype=np.int64).reshape(-1)
    root = np.sqrt(np.maximum(np.asarray(distances, dtype=np.float64).reshape(-1), 0.0))
    counts = np.bincount(assign, minlength=k).astype(np.float64)
    sums = np.bincount(assign, weights=root, minlength=k)
    many = counts > 1
    phi = np.zeros(k)
    phi[many] = sums[many] / counts[many] / np.log(counts[many] + 10)
    phi[~many] = phi.max()
    phi = phi.clip(np.percentile(phi, 10), np.percentile(phi, 90))
    mean = phi.mean()
    if mean <= 0:
        return np.full(k, float(t))
    return t * phi / mean


def cluster(
    features: torch.Tensor,
    ks: Sequence[int],
    seeds: Sequence[int] | None = None,
    t: float = 0.07,
    **kw,
) -> list[Clustering]:
    """One faiss k-means per entry of ``ks`` (seeds default to 1234 + i) of the rows of
    ``features`` ``[slots, dim]`` as given (the reference clusters z, already unit length),
    with concentrations of mean ``t``. Results live on ``features``' device; the GPU index is
    used when faiss has GPUs and ``features`` is on CUDA (``gpu=`` in ``kw`` overrides).
    ``kw``: ``kmeans`` settings."""
    seeds = [KMEANS_SEED + i for i in range(len(ks))] if seeds is None else list(seeds)
    if len(seeds) != len(ks):
        raise UsageError(f"{len(ks)} cluster counts but {len(seeds)} seeds")
    kw.setdefault("gpu", None if features.is_cuda else False)
    if features.is_cuda:
        kw.setdefault("device", features.device.index)
    x = features.detach().float().cpu().numpy()
    out = []
    for k, seed in zip(ks, seeds, strict=True):
        centroids, assign, distances = kmeans(x, int(k), seed=int(seed), **kw)
        phi = concentration(distances, assign, int(k), t)
        out.append(
            Clustering(
                centroids=torch.from_numpy(centroids).to(features.device),
                assign=torch.from_numpy(assign).to(features.device),
                phi=torch.from_numpy(phi).float().to(features.device),
            )
        )
    return out
