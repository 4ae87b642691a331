"""Saccade-VSSL's objectives: the memory bank (also across 2 gloo ranks), NCE, PPM, PCL's
concentration and ProtoNCE against hand-computed cases, faiss k-means, retrieval top-k."""

from __future__ import annotations

import logging
import math
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from scenecut.errors import UsageError
from scenecut.train.kmeans import cluster, concentration, kmeans
from scenecut.train.retrieval import per_class_accuracy, retrieval_hits, retrieval_topk
from scenecut.train.saccade_losses import (
    Clustering,
    MemoryBank,
    nce_loss,
    negative_prototypes,
    ppm_loss,
    proto_nce,
    sample_negatives,
)


def _lse(row) -> float:
    return math.log(sum(math.exp(v) for v in row))


# --- memory bank -----------------------------------------------------------------------------


def test_memory_bank_starts_uniform_in_plus_minus_s() -> None:
    bank = MemoryBank(300, 12, generator=torch.Generator().manual_seed(0))
    s = 1 / math.sqrt(12 / 3)  # 0.5
    assert bank.memory.shape == (300, 12)
    assert float(bank.memory.abs().max()) <= s
    assert float(bank.memory.min()) < -0.95 * s and float(bank.memory.max()) > 0.95 * s
    again = MemoryBank(300, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(bank.memory, again.memory)  # same seed on every rank: the same bank
    assert "memory" in dict(bank.named_buffers())  # saved with the module, never trained


def test_memory_update_is_a_raw_momentum_average_and_the_last_duplicate_wins() -> None:
    bank = MemoryBank(5, 3)
    old = torch.arange(15, dtype=torch.float32).reshape(5, 3)
    bank.memory.copy_(old)
    feat = torch.tensor([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]], requires_grad=True)
    bank.update(torch.tensor([1, 3, 1]), feat)
    expected = old.clone()
    expected[1] = 0.5 * old[1] + 0.5 * feat[2].detach()  # slot 1 twice: the last write
    expected[3] = 0.5 * old[3] + 0.5 * feat[1].detach()
    assert torch.equal(bank.memory, expected)  # no normalisation, other rows untouched
    bank.update(torch.tensor([0]), torch.ones(1, 3), momentum=0.25)
    assert torch.equal(bank.memory[0], 0.25 * old[0] + 0.75)
    keys = bank.keys(torch.tensor([[3, 1]]))
    assert keys.shape == (1, 2, 3) and torch.equal(keys[0, 0], expected[3])
    assert not keys.requires_grad
    with pytest.raises(ValueError, match="slot ids"):
        bank.update(torch.tensor([5]), torch.ones(1, 3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# two steps of 2 videos x 6 clips (one video per rank); slots shared across ranks (3 in the
# first step, all in the second) take the last write in rank order: rank 1's
SLOTS = [
    torch.tensor([0, 3, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]),
    torch.tensor([3, 7, 8, 3, 7, 8, 3, 7, 8, 3, 7, 8]),
]
UNEVEN = torch.tensor([0, 1, 6, 1, 6])


def _features(step: int) -> torch.Tensor:
    return torch.randn(12, 4, generator=torch.Generator().manual_seed(10 + step))


def _bank_rank(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        bank = MemoryBank(9, 4, generator=torch.Generator().manual_seed(0))
        for step, slots in enumerate(SLOTS):
            half = slice(6 * rank, 6 * rank + 6)
            bank.update(slots[half], _features(step)[half])
        uneven = slice(0, 4) if rank == 0 else slice(4, 5)  # 4 rows on rank 0, 1 on rank 1
        bank.update(UNEVEN[uneven], _features(2)[uneven])
        torch.save(bank.memory, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_update_the_bank_as_one(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    single = MemoryBank(9, 4, generator=torch.Generator().manual_seed(0))
    alone = MemoryBank(9, 4, generator=torch.Generator().manual_seed(0))
    for step, slots in enumerate(SLOTS):
        single.update(slots, _features(step))
        alone.update(slots[:6], _features(step)[:6])  # what rank 0 keeps without gathering
    single.update(UNEVEN, _features(2)[:5])
    mp.spawn(_bank_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    banks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    assert torch.equal(banks[0], single.memory)
    assert torch.equal(banks[1], single.memory)
    assert not torch.equal(alone.memory, single.memory)


def test_negatives_are_uniform_slot_ids_drawn_with_replacement() -> None:
    ids = sample_negatives(3, 4, 50, generator=torch.Generator().manual_seed(1))
    assert ids.shape == (4, 50) and ids.dtype == torch.long
    assert set(ids.unique().tolist()) == {0, 1, 2}  # every slot, own slots included
    assert torch.equal(ids, sample_negatives(3, 4, 50, torch.Generator().manual_seed(1)))
    drawn = sample_negatives(3, 4, 50, np.random.default_rng(1))
    assert drawn.shape == (4, 50) and drawn.dtype == torch.long
    assert set(drawn.unique().tolist()) == {0, 1, 2}
    assert torch.equal(drawn, sample_negatives(3, 4, 50, np.random.default_rng(1)))
    torch.manual_seed(5)
    a = sample_negatives(1000, 2, 8)
    torch.manual_seed(5)
    assert torch.equal(a, sample_negatives(1000, 2, 8))  # the item-seeded default generator


# --- NCE and PPM -----------------------------------------------------------------------------


def test_nce_loss_scores_the_embedded_bank_rows_against_column_zero() -> None:
    bank = MemoryBank(4, 2)
    memory = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [3.0, 4.0]])
    bank.memory.copy_(torch.tensor(memory))
    h = nn.Linear(2, 2)
    w, b = np.array([[1.0, 0.5], [0.0, 1.0]]), np.array([0.1, -0.2])
    with torch.no_grad():
        h.weight.copy_(torch.tensor(w))
        h.bias.copy_(torch.tensor(b))
    z = np.array([[0.6, 0.8], [1.0, 0.0]])
    y, neg = [0, 3], [[1, 2], [0, 0]]
    t = 0.5
    expected = 0.0
    for q in range(2):
        rows = [y[q], *neg[q]]
        keys = [(w @ memory[r] + b) / np.linalg.norm(w @ memory[r] + b) for r in rows]
        logits = [float(z[q] @ key) / t for key in keys]
        expected += (_lse(logits) - logits[0]) / 2
    zt = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    loss = nce_loss(zt, torch.tensor(y), torch.tensor(neg), bank, h, t=t)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert h.weight.grad is not None and float(h.weight.grad.abs().sum()) > 0  # h via the keys
    assert zt.grad is not None and float(zt.grad.abs().sum()) > 0


def test_ppm_losses_against_hand_computed_values() -> None:
    pred = np.array([[[1.0, 2.0], [0.0, 1.0]], [[3.0, -1.0], [4.0, 0.0]]])  # [B=2, C=2, L=2]
    target = np.array([[[0.0, 2.0], [1.0, 3.0]], [[3.0, 1.0], [0.0, 1.0]]])
    p = torch.tensor(pred, requires_grad=True)
    tg = torch.tensor(target, requires_grad=True)
    assert float(ppm_loss(p, tg, "l1").detach()) == pytest.approx(np.abs(pred - target).mean())
    assert float(ppm_loss(p, tg, "l2").detach()) == pytest.approx(((pred - target) ** 2).mean())
    cosines = [
        pred[i, :, j]
        @ target[i, :, j]
        / (np.linalg.norm(pred[i, :, j]) * np.linalg.norm(target[i, :, j]))
        for i in range(2)
        for j in range(2)
    ]
    loss = ppm_loss(p, tg, "cos")
    assert float(loss.detach()) == pytest.approx(-np.mean(cosines))
    loss.backward()
    assert p.grad is not None and tg.grad is None  # the target is detached
    with pytest.raises(UsageError, match="l1, l2, cos"):
        ppm_loss(p, tg, "huber")


# --- clustering ------------------------------------------------------------------------------


def test_concentration_against_a_hand_computed_case() -> None:
    assign = np.array([0, 0, 1, 1, 1, 2])
    squared = np.array([1.0, 4.0, 1.0, 1.0, 4.0, 0.0])
    a = (1 + 2) / 2 / math.log(2 + 10)  # sqrt distances 1, 2
    b = (1 + 1 + 2) / 3 / math.log(3 + 10)
    # cluster 2 has one member: the largest (a); sorted [b, a, a]: 10th pct b + 0.2 (a - b)
    low = b + 0.2 * (a - b)
    raw = np.array([a, low, a])
    expected = 0.07 * raw / raw.mean()
    phi = concentration(squared, assign, 3, t=0.07)
    assert phi == pytest.approx(expected, rel=1e-9)
    assert phi.mean() == pytest.approx(0.07)
    # nothing to measure (singletons, an empty cluster): every cluster gets t, not NaN
    assert concentration(np.zeros(2), np.array([0, 1]), 3, t=0.2) == pytest.approx([0.2] * 3)


def _blobs(per: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 5.0]])
    labels = np.repeat(np.arange(3), per)
    return (centres[labels] + 0.1 * rng.standard_normal((3 * per, 3))).astype(np.float32), labels


def test_kmeans_assigns_every_point_to_its_nearest_centroid() -> None:
    x, labels = _blobs()
    centroids, assign, dist = kmeans(x, 3, seed=1234)
    assert centroids.shape == (3, 3) and assign.shape == (36,) and assign.dtype == np.int64
    squared = ((x[:, None] - centroids[None]) ** 2).sum(-1)
    assert np.array_equal(assign, squared.argmin(1))
    assert dist == pytest.approx(squared.min(1), abs=1e-4)
    for blob in range(3):  # the blobs are the clusters, whatever their numbering
        members = assign[labels == blob]
        assert (members == members[0]).all()
        assert centroids[members[0]] == pytest.approx(x[labels == blob].mean(0), abs=1e-4)
    again = kmeans(x, 3, seed=1234)
    assert all(np.array_equal(u, v) for u, v in zip((centroids, assign, dist), again, strict=True))


def test_kmeans_refuses_what_faiss_would_abort_on(monkeypatch) -> None:
    x, _ = _blobs(1)
    with pytest.raises(UsageError, match="cannot make 4 clusters from 3 points"):
        kmeans(x, 4, seed=1234)
    import faiss

    if not faiss.get_num_gpus():
        with pytest.raises(UsageError, match="faiss build with GPUs"):
            kmeans(x, 2, seed=1234, gpu=True)
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss were not installed
    with pytest.raises(UsageError, match=r"pip install 'scenecut\[train\]'"):
        kmeans(x, 2, seed=1234)


def test_cluster_returns_clusterings_with_mean_t_concentrations(capfd, caplog) -> None:
    x, labels = _blobs(6)
    with caplog.at_level(logging.WARNING, logger="scenecut.train.kmeans"):
        result = cluster(torch.from_numpy(x), ks=(3, 2), t=0.1)
    assert [c.k for c in result] == [3, 2]
    for c in result:
        assert c.assign.shape == (18,) and c.assign.dtype == torch.long
        assert c.phi.dtype == torch.float32 and float(c.phi.mean()) == pytest.approx(0.1)
    for blob in range(3):
        assert len(result[0].assign[torch.from_numpy(labels == blob)].unique()) == 1
    seeded = kmeans(x, 2, seed=1235)  # clustering i is seeded 1234 + i
    assert np.array_equal(result[1].assign.numpy(), seeded[1])
    # 18 points for 3 clusters is under faiss's 10 per cluster: logged, not printed by faiss
    assert "WARNING clustering" not in capfd.readouterr().err
    assert "fewer than 10 per cluster" in caplog.text
    with pytest.raises(UsageError, match="2 cluster counts but 1 seeds"):
        cluster(torch.from_numpy(x), ks=(3, 2), seeds=(1,))


def test_negative_prototypes_avoid_every_positive() -> None:
    positives = torch.tensor([1, 4, 4, 7])
    drawn = negative_prototypes(positives, 10, 3, torch.Generator().manual_seed(0))
    assert len(drawn) == 3 and len(set(drawn.tolist())) == 3
    assert not set(drawn.tolist()) & {1, 4, 7}
    again = negative_prototypes(positives, 10, 3, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)
    every = negative_prototypes(positives, 10, 1024, np.random.default_rng(0))
    assert sorted(every.tolist()) == [0, 2, 3, 5, 6, 8, 9]  # fewer remain: all of them


def test_proto_nce_against_a_hand_computed_case() -> None:
    centroids = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]])  # normalised inside
    phi = np.array([0.1, 0.2, 0.3])
    first = Clustering(
        centroids=torch.tensor(centroids, dtype=torch.float32),
        assign=torch.tensor([0, 0, 1, 2]),
        phi=torch.tensor(phi, dtype=torch.float32),
    )
    z = np.array([[1.0, 0.0], [0.6, 0.8]])
    y = torch.tensor([1, 2])  # positives: clusters 0 and 1; the only negative: cluster 2
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    logits = (z @ unit.T) / phi  # columns [pos of row 0, pos of row 1, negative]
    expected_first = np.mean([_lse(logits[q]) - logits[q, q] for q in range(2)])
    zt = torch.tensor(z, dtype=torch.float32)
    assert float(proto_nce(zt, y, [first])) == pytest.approx(expected_first, rel=1e-5)

    # a second clustering where both rows share a cluster: its positive is also a negative
    second = Clustering(
        centroids=torch.tensor([[1.0, 1.0], [0.0, -1.0]]),
        assign=torch.tensor([0, 0, 0, 1]),
        phi=torch.tensor([0.5, 0.25]),
    )
    c = np.array([1.0, 1.0]) / math.sqrt(2)
    rows = [[z[q] @ c / 0.5, z[q] @ c / 0.5, -z[q, 1] / 0.25] for q in range(2)]
    expected_second = np.mean([_lse(rows[q]) - rows[q][q] for q in range(2)])
    both = proto_nce(zt, y, [first, second], negatives=8)
    assert float(both) == pytest.approx((expected_first + expected_second) / 2, rel=1e-5)


# --- retrieval -------------------------------------------------------------------------------


def test_retrieval_counts_a_query_found_when_any_of_its_top_k_shares_its_class() -> None:
    angles = torch.tensor([0.0, 0.3, 1.2, 2.0, 3.0])  # gallery on the unit circle, scaled
    gallery = torch.stack([torch.cos(angles), torch.sin(angles)], 1) * torch.tensor(
        [[1.0], [5.0], [0.2], [2.0], [7.0]]
    )  # lengths must not matter: cosine
    gallery_labels = torch.tensor([0, 1, 1, 2, 0])
    query = torch.tensor([[1.0, 0.05], [0.0, 3.0], [-1.0, 0.1]])  # nearest: 0 (0.05), 2, 4
    query_labels = torch.tensor([1, 2, 1])
    # query 0 ranks 0,1,2,...: class 1 second; query 1 ranks 2,3,1: class 2 second;
    # query 2 ranks 4,3,2: class 1 third
    result = retrieval_topk(query, query_labels, gallery, gallery_labels, ks=(1, 2, 3, 50))
    assert result == {1: 0.0, 2: pytest.approx(2 / 3), 3: 1.0, 50: 1.0}
    hits = retrieval_hits(query, query_labels, gallery, gallery_labels, ks=(1, 2))
    assert hits.tolist() == [[False, False, False], [True, True, False]]
    assert per_class_accuracy(hits, query_labels, ks=(1, 2)) == {
        1: {1: 0.0, 2: 0.0},
        2: {1: 0.5, 2: 1.0},
    }
    with pytest.raises(UsageError, match="at least one query"):
        retrieval_topk(query[:0], query_labels[:0], gallery, gallery_labels)
