"""Pre-training objectives: DTW, NT-Xent (also across 2 gloo ranks), SCRL's k-means and queue,
LARS and schedules, checkpoint keys, and each method's loss going down on synthetic scenes."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from scenecut.errors import UsageError
from scenecut.models.bassl import BaSSL
from scenecut.models.config import CRNConfig, ModelConfig
from scenecut.train.config import METHODS, PretrainConfig, make_config
from scenecut.train.datasets import ShotPairs
from scenecut.train.optim import LARS, build_optimizer, decay_groups, quarter_cosine, warmup_cosine
from scenecut.train.pretext import (
    BaSSLObjective,
    closed_form_boundary,
    dtw_boundaries,
    dtw_boundary,
    dtw_path,
    nce_loss,
)
from scenecut.train.pretrain import build_objective, decay_all, pretrain_dataset
from scenecut.train.scrl import PuzzleShots, SCRLObjective, kmeans_choice_points

N = 2  # neighbor size of the tiny configs: windows of 5 shots
TINY_CRN = CRNConfig(
    input_dim=32,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    neighbor_size=N,
)
TINY = ModelConfig(encoder="tiny", crn=TINY_CRN)


def tiny_pretrain(method: str, **kw) -> PretrainConfig:
    base = dict(
        method=method,
        neighbor_size=N,
        head_hidden=32,
        head_dim=16,
        scrl_dim=16,
        queue_size=64,
        clusters=4,
    )
    return PretrainConfig(**{**base, **kw})


# --- DTW -------------------------------------------------------------------------------------


def _all_paths(n: int, m: int):
    """Every monotone path (steps (1,1), (1,0), (0,1)) from (0, 0) to (n-1, m-1), as the list
    of backward moves (0 diagonal, 1 up, 2 left) from the end, and its cells."""

    def walk(i, j):
        if (i, j) == (0, 0):
            yield [], [(0, 0)]
            return
        for move, (a, b) in enumerate(((i - 1, j - 1), (i - 1, j), (i, j - 1))):
            if a >= 0 and b >= 0:
                for moves, cells in walk(a, b):
                    yield [*moves, move], [*cells, (i, j)]

    for moves, cells in walk(n - 1, m - 1):
        yield moves[::-1], cells


def _brute_force(cost: np.ndarray):
    """The minimum-cost path; among equal costs the one tslearn's backtracking takes: the
    lexicographically smallest sequence of backward moves with diagonal < up < left."""
    best = min(
        (sum(cost[c] for c in cells), moves, cells) for moves, cells in _all_paths(*cost.shape)
    )
    return best[2]


@pytest.mark.parametrize("levels", [None, 4])  # None: continuous costs; 4: many exact ties
def test_dtw_matches_brute_force(levels) -> None:
    rng = np.random.default_rng(0 if levels is None else 1)
    for _ in range(150):
        t = int(rng.integers(2, 9))
        n = 2 if rng.random() < 0.7 else 3
        cost = rng.random((n, t))
        if levels:
            cost = np.floor(cost * levels) / levels  # exact in binary: sums tie exactly
        expected = _brute_force(cost)
        assert dtw_path(torch.tensor(cost)[None])[0] == expected
        if n == 2:
            assert dtw_boundary(torch.tensor(cost)) == max(j for i, j in expected if i == 0)


def test_dtw_boundary_closed_form_and_batch() -> None:
    rng = np.random.default_rng(2)
    costs = []
    for seed in range(300):
        t = int(rng.integers(2, 18))
        cost = rng.random((2, t))
        if seed % 2:
            cost = np.floor(cost * 4) / 4  # exact in binary
        split = min(
            range(t - 1), key=lambda k: (cost[0, : k + 1].sum() + cost[1, k + 1 :].sum(), -k)
        )
        cost_t = torch.tensor(cost)
        assert closed_form_boundary(cost_t) == dtw_boundary(cost_t)
        if not seed % 2:  # no ties: every split point checked by brute force
            assert dtw_boundary(cost_t) == split
        if t == 17:
            costs.append(cost)
    # batched: one call, same answers; aligned rows cover the path (a vertical step is shared)
    batch = torch.tensor(np.stack(costs), dtype=torch.float32)
    bd, aligned = dtw_boundaries(batch)
    for k, cost in enumerate(costs):
        assert bd[k] == dtw_boundary(torch.tensor(cost, dtype=torch.float32))
        assert aligned[k, 0, : bd[k] + 1].all() and not aligned[k, 0, bd[k] + 1 :].any()
        assert aligned[k, 1, bd[k] + 1 :].all() and aligned[k].any(0).all()


def test_dtw_tie_prefers_diagonal() -> None:
    # all-zero costs: every path ties; backtracking takes the diagonal at the last column
    assert dtw_boundary(torch.zeros(2, 17)) == 15
    # a perfect split after shot 5
    cost = torch.ones(2, 17)
    cost[0, :6] = 0
    cost[1, 6:] = 0
    assert dtw_boundary(cost) == 5 == closed_form_boundary(cost)


# --- NT-Xent ---------------------------------------------------------------------------------


def test_nce_hand_computed() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.6, 0.8], [0.8, -0.6]])
    t = 0.5
    z = torch.cat([a, b])
    expected = 0.0
    for i in range(4):
        partner = (i + 2) % 4
        sims = {j: float(z[i] @ z[j]) / t for j in range(4) if j != i}
        expected -= math.log(math.exp(sims[partner]) / sum(math.exp(v) for v in sims.values()))
    assert float(nce_loss(a, b, t)) == pytest.approx(expected / 4, rel=1e-6)
    # one pair only: no negatives, log(1) = 0
    assert float(nce_loss(a[:1], b[:1], t)) == pytest.approx(0.0, abs=1e-7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nce_rank(rank: int, world: int, port: int, a, b, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        n = a.shape[0] // world
        la = a[rank * n : (rank + 1) * n].clone().requires_grad_(True)
        lb = b[rank * n : (rank + 1) * n].clone().requires_grad_(True)
        loss = nce_loss(la, lb, 0.1)
        loss.backward()
        # SCRL's key path: batch-shuffle BN across ranks, then the gathered enqueue
        torch.manual_seed(0)
        scrl = SCRLObjective(TINY, tiny_pretrain("scrl", queue_size=16))
        images = torch.randn(8, 9, 16, 16, generator=torch.Generator().manual_seed(1))
        keys = scrl._keys(images[rank * 4 : (rank + 1) * 4])
        scrl.enqueue(keys)
        torch.save(
            {
                "loss": loss.detach(),
                "ga": la.grad,
                "gb": lb.grad,
                "keys": keys,
                "queue": scrl.queue.clone(),
                "ptr": int(scrl.queue_ptr),
            },
            f"{out}/{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_gathered_across_two_gloo_ranks(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    a = F.normalize(torch.randn(6, 8), dim=1)
    b = F.normalize(a + 0.3 * torch.randn(6, 8), dim=1)
    ga, gb = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    # the global batch in one process, ordered as the gather orders it: [a0; b0; a1; b1]
    single = nce_loss(ga, gb, 0.1)
    single.backward()
    single = single.detach()
    mp.spawn(_nce_rank, args=(2, _free_port(), a, b, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    # every anchor sees the same negatives, so the mean of the rank losses is the global loss
    mean = (ranks[0]["loss"] + ranks[1]["loss"]) / 2
    # the two rank orders differ from [a; b], but the loss is a mean over anchors: same value
    assert float(mean) == pytest.approx(float(single), rel=1e-5)
    # backward all-reduces: each rank holds d(sum of rank losses)/d(local) = world x global
    # gradient; DDP's averaging over 2 ranks brings it back to the single-process gradient
    for r in range(2):
        assert torch.allclose(ranks[r]["ga"] / 2, ga.grad[3 * r : 3 * r + 3], atol=1e-6)
        assert torch.allclose(ranks[r]["gb"] / 2, gb.grad[3 * r : 3 * r + 3], atol=1e-6)
    # shuffled across ranks and back: each rank gets the keys of its own images; both queues
    # hold the keys of all 8 images in rank order
    torch.manual_seed(0)
    scrl = SCRLObjective(TINY, tiny_pretrain("scrl", queue_size=16))
    images = torch.randn(8, 9, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = scrl.embed(scrl.encoder_k, images)
    for r in range(2):
        assert torch.allclose(ranks[r]["keys"], expected[4 * r : 4 * r + 4], atol=1e-5)
        assert torch.allclose(ranks[r]["queue"][:, :8], expected.T, atol=1e-5)
        assert ranks[r]["ptr"] == 8


# --- SCRL pieces -----------------------------------------------------------------------------


def test_kmeans_choice_points() -> None:
    torch.manual_seed(0)
    for trial in range(20):
        centres = torch.randn(6, 8) * 5
        x = torch.cat([c + 0.1 * torch.randn(10, 8) for c in centres])[torch.randperm(60)]
        k = 6 if trial % 2 else 4
        # threshold 0: run to a fixed point, where the last assignment is to the final centres
        labels, points = kmeans_choice_points(x, k, max_iter=50, shift_threshold=0.0)
        assert points.shape == (k,) and len(set(points.tolist())) == k  # distinct samples
        assert labels.shape == (60,) and labels.min() >= 0 and labels.max() < k
        d = ((x[:, None] - x[points][None]) ** 2).sum(-1)
        assert torch.equal(labels, d.argmin(1))  # nearest centre
        assert torch.equal(labels[points], torch.arange(k))  # a centre's sample is its own
    with pytest.raises(Exception, match="clusters"):
        kmeans_choice_points(torch.randn(3, 2), 4)


def test_kmeans_one_iteration_by_hand() -> None:
    """One iteration: assign to the random initial samples, move each centre to its cluster
    mean, snap it to the nearest sample not taken by an earlier cluster."""
    x = torch.randn(30, 4)
    torch.manual_seed(5)
    init = torch.randperm(30)[:5]
    torch.manual_seed(5)
    labels, points = kmeans_choice_points(x, 5, max_iter=1)
    d = ((x[:, None] - x[init][None]) ** 2).sum(-1)
    assert torch.equal(labels, d.argmin(1))
    taken: list[int] = []
    for c in range(5):
        mean = x[labels == c].mean(0)
        order = ((x - mean) ** 2).sum(-1).argsort().tolist()
        taken.append(next(i for i in order if i not in taken))
    assert points.tolist() == taken


def test_kmeans_with_duplicate_samples() -> None:
    torch.manual_seed(1)
    x = torch.cat([torch.zeros(5, 3), torch.ones(5, 3)])  # only two distinct points
    labels, points = kmeans_choice_points(x, 4)
    assert len(set(points.tolist())) == 4  # still distinct samples, no NaN centres
    assert labels.min() >= 0 and labels.max() < 4


def test_moco_queue_and_momentum() -> None:
    torch.manual_seed(0)
    obj = SCRLObjective(TINY, tiny_pretrain("scrl", queue_size=12))
    assert obj.queue.shape == (16, 12) and int(obj.queue_ptr) == 0
    assert torch.allclose(obj.queue.norm(dim=0), torch.ones(12))
    keys = [torch.randn(4, 16) for _ in range(4)]
    for step, k in enumerate(keys):
        obj.enqueue(k)
        assert int(obj.queue_ptr) == (4 * (step + 1)) % 12
    # the 4th batch overwrote the 1st: columns 0..3 hold keys[3], 4..11 keys[1], keys[2]
    assert torch.equal(obj.queue[:, :4], keys[3].T)
    assert torch.equal(obj.queue[:, 4:8], keys[1].T)
    assert torch.equal(obj.queue[:, 8:], keys[2].T)
    with pytest.raises(Exception, match="multiple"):
        obj.enqueue(torch.randn(5, 16))
    # momentum update: k <- m k + (1 - m) q
    q_params = list(obj.encoder_q.parameters())
    k_params = list(obj.encoder_k.parameters())
    assert all(torch.equal(q, k) for q, k in zip(q_params, k_params, strict=True))
    assert not any(k.requires_grad for k in k_params)
    with torch.no_grad():
        for q in q_params:
            q.add_(torch.randn_like(q))
    before = [k.clone() for k in k_params]
    obj.momentum_update()
    m = obj.config.key_momentum
    for q, k, old in zip(q_params, k_params, before, strict=True):
        assert torch.allclose(k, m * old + (1 - m) * q, atol=1e-7)


def test_scrl_forward_soft_positive_and_enqueue() -> None:
    torch.manual_seed(0)
    obj = SCRLObjective(TINY, tiny_pretrain("scrl", queue_size=32, clusters=4))
    batch = {"q": torch.randn(1, 16, 9, 32, 32), "k": torch.randn(1, 16, 9, 32, 32)}
    _, logs = obj(batch)
    assert set(logs) == {"scrl_loss"} and math.isfinite(logs["scrl_loss"])
    assert int(obj.queue_ptr) == 16
    # the enqueued keys are the mixed ones: 0.5 (k_i + k_medoid(i)), not unit vectors in general
    norms = obj.queue[:, :16].norm(dim=0)
    assert (norms <= 1 + 1e-5).all()
    obj.eval()
    obj(batch)
    assert int(obj.queue_ptr) == 16  # no enqueue in eval mode


# --- optimisation ----------------------------------------------------------------------------


def test_lars_step_matches_formula() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    bias = torch.nn.Parameter(torch.randn(3))
    opt = LARS(
        [{"params": [w], "weight_decay": 1e-2}, {"params": [bias], "weight_decay": 0.0}],
        lr=0.5,
        momentum=0.9,
        trust_coefficient=0.001,
    )
    w0, b0 = w.detach().clone(), bias.detach().clone()
    gw, gb = torch.randn(4, 3), torch.randn(3)
    w.grad, bias.grad = gw.clone(), gb.clone()
    opt.step()
    ratio = 0.001 * w0.norm() / (gw.norm() + 1e-2 * w0.norm() + 1e-8)
    assert torch.allclose(w, w0 - 0.5 * (gw + 1e-2 * w0) * ratio)
    assert torch.allclose(bias, b0 - 0.5 * gb)  # weight decay 0: no trust ratio
    # second step: momentum buffer
    w1 = w.detach().clone()
    w.grad = gw.clone()
    opt.step()
    ratio1 = 0.001 * w1.norm() / (gw.norm() + 1e-2 * w1.norm() + 1e-8)
    buf = 0.9 * (gw + 1e-2 * w0) * ratio + (gw + 1e-2 * w1) * ratio1
    assert torch.allclose(w, w1 - 0.5 * buf, atol=1e-7)


def test_weight_decay_exclusion_and_schedules() -> None:
    obj = build_objective(TINY, tiny_pretrain("bassl"))
    groups = decay_groups(obj, 1e-6)
    names = {id(p): n for n, p in obj.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    skipped = {names[id(p)] for p in groups[1]["params"]}
    assert all("bn" in n or "bias" in n for n in skipped)
    assert not any("bn" in n or "bias" in n for n in decayed)
    assert "crn.shot_embedding.LayerNorm.weight" in decayed  # name-based, as BaSSL
    assert "head_msm.predictions.bias" in skipped
    # BaSSL pre-training: LARS at 0.3 per 256 items, scaled to a batch of 512 (base_lr x 2)
    config = make_config("pretrain", data="d", out="o", batch_size=512)
    opt, sched = build_optimizer(obj, config, total_steps=100, steps_per_epoch=10)
    assert isinstance(opt, LARS) and opt.defaults["lr"] == pytest.approx(0.6)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-6, 0.0]
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0 and lrs[5] == pytest.approx(0.3) and lrs[10] == pytest.approx(0.6)
    assert lrs[55] == pytest.approx(0.6 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    f = warmup_cosine(10, 100)
    assert f(100) == pytest.approx(0.0) and f(10) == 1.0
    # SCRL: SGD, quarter cosine per epoch, weight decay on every parameter
    scrl = build_objective(TINY, tiny_pretrain("scrl"))
    config = make_config("pretrain", data="d", out="o", method="scrl", epochs=4)
    groups = decay_all(scrl, config)
    opt, sched = build_optimizer(scrl, config, total_steps=40, steps_per_epoch=10, groups=groups)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["lr"] == 0.06
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4]
    trainable = [p for p in scrl.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)
    seen = []
    for _ in range(40):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:10] == [0.06] * 10
    assert seen[10] == pytest.approx(0.06 * quarter_cosine(1, 4))
    assert quarter_cosine(4, 4) == pytest.approx(0.5)


def test_learning_rate_scales_with_the_batch_and_pretext_settings_are_checked() -> None:
    """BaSSL's lr = base_lr x batch / 256 reaches the optimiser; a --set pretext.* key that
    nothing reads is refused instead of silently ignored (it used to be: pretext.base_lr)."""
    assert make_config("pretrain", data="d", out="o").peak_lr == pytest.approx(0.3)
    halved = make_config("pretrain", data="d", out="o", batch_size=128)
    assert halved.peak_lr == pytest.approx(0.15)
    custom = make_config("pretrain", None, ["base_lr=0.1"], data="d", out="o", batch_size=512)
    assert custom.peak_lr == pytest.approx(0.2)
    assert make_config("pretrain", data="d", out="o", lr=0.05).peak_lr == 0.05  # --lr: as given
    assert make_config("finetune", data="d", out="o").peak_lr == pytest.approx(1e-5)
    for dead in ("base_lr", "momentum", "warmup", "batch_size"):
        with pytest.raises(UsageError, match=f"pretext.{dead}"):
            make_config("pretrain", None, [f"pretext.{dead}=0.1"], data="d", out="o")
    with pytest.raises(UsageError, match="mask_prob"):
        make_config("pretrain", None, ["pretext.mask_prob=2"], data="d", out="o")
    with pytest.raises(UsageError, match="schedule"):
        make_config("pretrain", None, ["schedule=cosin"], data="d", out="o")
    obj = build_objective(TINY, tiny_pretrain("bassl"))
    opt, _ = build_optimizer(obj, custom, total_steps=10, steps_per_epoch=10)
    assert opt.defaults["lr"] == pytest.approx(0.2)


# --- checkpoint keys -------------------------------------------------------------------------


def test_backbone_state_loads_strictly() -> None:
    for method in ("bassl", "instance", "bassl+shotcol"):
        obj = build_objective(TINY, tiny_pretrain(method))
        state = obj.backbone_state()
        model = BaSSL(TINY)
        enc = {k[13:]: v for k, v in state.items() if k.startswith("shot_encoder.")}
        model.shot_encoder.load_state_dict(enc, strict=True)
        crn = {k[4:]: v for k, v in state.items() if k.startswith("crn.")}
        assert bool(crn) == (method != "instance")
        if crn:
            model.crn.load_state_dict(crn, strict=True)
        assert set(state) <= set(model.state_dict())
    # heads carry BaSSL's names (Lightning keys are loss.<these>)
    keys = set(build_objective(TINY, tiny_pretrain("bassl")).state_dict())
    for key in (
        "head_nce.model.0.weight",
        "head_nce.model.2.bias",
        "head_msm.predictions.transform.dense.weight",
        "head_msm.predictions.transform.LayerNorm.weight",
        "head_msm.predictions.decoder.weight",
        "head_msm.predictions.bias",
        "head_pp.weight",
        "head_cgm.weight",
    ):
        assert key in keys
    # SCRL on the real 9-channel ResNet-50: the query trunk becomes shot_encoder.*
    config = ModelConfig(encoder="resnet50-9ch")
    scrl = build_objective(config, PretrainConfig(method="scrl", scrl_dim=32, queue_size=64))
    state = scrl.backbone_state()
    model = BaSSL(config)
    model.shot_encoder.load_state_dict({k[13:]: v for k, v in state.items()}, strict=True)
    assert state["shot_encoder.conv1.weight"].shape == (64, 9, 7, 7)
    assert "encoder_q.fc.0.weight" in scrl.state_dict() and "queue_ptr" in scrl.state_dict()


def test_scrl_imagenet_init(tmp_path: Path) -> None:
    from torchvision.models import resnet50

    torch.manual_seed(0)
    reference = resnet50().state_dict()
    # like resnet50-19c8e357.pth: no num_batches_tracked
    old = {k: v for k, v in reference.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "resnet50.pth")
    config = PretrainConfig(
        method="scrl", scrl_dim=32, queue_size=64, imagenet_weights=str(tmp_path / "resnet50.pth")
    )
    with_init = make_config("pretrain", data="d", out="o", method="scrl", init=str(tmp_path))
    assert with_init.peak_lr == 0.03  # SCRL: 0.03 from ImageNet, 0.06 from scratch
    scrl = build_objective(ModelConfig(encoder="resnet50-9ch"), config)
    state = scrl.encoder_q.state_dict()
    assert torch.equal(state["layer3.2.conv2.weight"], reference["layer3.2.conv2.weight"])
    assert torch.equal(state["bn1.running_var"], reference["bn1.running_var"])
    assert state["conv1.weight"].shape == (64, 9, 7, 7)  # random: SCRL skips conv1 and fc
    k_state = scrl.encoder_k.state_dict()
    assert all(torch.equal(v, k_state[k]) for k, v in state.items())


def test_config_checks() -> None:
    with pytest.raises(Exception, match="method"):
        PretrainConfig(method="simclr")
    with pytest.raises(Exception, match="at least one"):
        PretrainConfig(ssm=False, cgm=False, pp=False, msm=False)
    with pytest.raises(Exception, match="neighbor_size"):
        build_objective(TINY, PretrainConfig(method="bassl"))  # CRN for 2, sampling 8
    with pytest.raises(Exception, match="9-channel"):
        build_objective(ModelConfig(), PretrainConfig(method="scrl"))
    assert PretrainConfig().sparse_positions == (0, 16)
    assert PretrainConfig(method="bassl+shotcol").sparse_positions == (0, 16, 8)
    assert make_config("pretrain", data="d", out="o", method="bassl+shotcol").peak_lr == 0.3


# --- losses go down on synthetic scenes ------------------------------------------------------


class Scenes:
    """A fixed pool of synthetic films: each scene a random coloured pattern, its shots the
    pattern with a shot-specific change; every draw adds fresh pixel noise (the augmentation)."""

    def __init__(self, seed: int, films: int = 4, shots: int = 24, size: int = 32):
        g = torch.Generator().manual_seed(seed)
        self.g = g
        self.films = []
        for _ in range(films):
            lengths = []
            while sum(lengths) < shots:
                lengths.append(int(torch.randint(2, 6, (1,), generator=g)))
            frames = []
            for n in lengths:
                base = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=size) * 2 - 1
                for _ in range(n):
                    frames.append(base[0] + 0.3 * torch.randn(3, size, size, generator=g))
            self.films.append(torch.stack(frames[:shots]))

    def view(self, images: torch.Tensor) -> torch.Tensor:
        return images + 0.2 * torch.randn(images.shape, generator=self.g)

    def windows(self, batch: int, sparse: tuple[int, ...]) -> dict:
        t = 2 * N + 1
        dense, edges = [], []
        for _ in range(batch):
            film = self.films[int(torch.randint(len(self.films), (1,), generator=self.g))]
            start = int(torch.randint(film.shape[0] - t + 1, (1,), generator=self.g))
            window = film[start : start + t]
            dense.append(self.view(window))
            edges.append(self.view(window[list(sparse)]))
        return {"images": torch.stack(dense), "sparse_images": torch.stack(edges)}

    def puzzles(self, batch: int) -> dict:
        """``[batch, 16, 9, H, W]``: 3 'keyframes' per shot = the shot with different noise."""
        q, k = [], []
        for _ in range(batch):
            film = self.films[int(torch.randint(len(self.films), (1,), generator=self.g))]
            start = int(torch.randint(film.shape[0] - 16 + 1, (1,), generator=self.g))
            shots = film[start : start + 16]
            q.append(torch.cat([self.view(shots) for _ in range(3)], dim=1))
            k.append(torch.cat([self.view(shots) for _ in range(3)], dim=1))
        return {"q": torch.stack(q), "k": torch.stack(k)}


def _train(method: str, steps: int, lr: float = 2e-3, **kw) -> list[float]:
    torch.manual_seed(0)
    config = tiny_pretrain(method, **kw)
    objective = build_objective(TINY, config)
    optimizer = torch.optim.Adam(objective.parameters(), lr=lr)
    losses = []
    data = Scenes(seed=1, films=8, shots=32) if method == "scrl" else Scenes(seed=1, size=16)
    for _ in range(steps):
        if method == "scrl":
            batch = data.puzzles(2)
        elif method in ("instance", "temporal"):
            b = data.windows(8, (N,))
            batch = {"images": b["images"][:, N : N + 1], "sparse_images": b["sparse_images"]}
        else:
            batch = data.windows(8, config.sparse_positions)
        loss, _ = objective(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("scrl", "saccade")])
def test_bassl_family_loss_decreases(method: str) -> None:
    losses = _train(method, 30)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"{method}: first5 {first:.3f} last5 {last:.3f}")
    assert last < 0.8 * first, losses


def test_scrl_loss_decreases() -> None:
    # The queue (64 keys = 2 batches) starts random, so the loss first rises while it fills
    # with real keys: measure from step 5. Key momentum 0.99 instead of 0.999, or the key
    # encoder would hardly move in 100 steps.
    losses = _train("scrl", 100, lr=5e-3, queue_size=64, clusters=4, key_momentum=0.99)[5:]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    print(f"scrl: first10 {first:.3f} last10 {last:.3f}")
    assert last < 0.8 * first, losses


# --- datasets --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    from scenecut.data.writer import MovieEntry, write_annotations, write_movie

    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    entries = []
    for v in range(2):
        n = 18
        colours = rng.integers(0, 255, (n, 3))
        keyframes = (
            np.stack([np.full((24, 32, 3), (colours[s] + 60 * k) % 256) for k in range(3)]).astype(
                np.uint8
            )
            for s in range(n)
        )
        shots = [(10 * i, 10 * i + 10) for i in range(n)]
        entries.append(write_movie(root, f"tt{v:02d}", shots, keyframes, [0] * (n - 1)))
    write_annotations(
        root,
        [MovieEntry(e.video_id, e.shots, e.labels) for e in entries],
        {"train": ["tt00", "tt01"]},
    )
    return root


def _small(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255


def test_datasets_feed_the_objectives(tree: Path, tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from scenecut.data.puzzles import make_puzzles

    torch.manual_seed(0)
    for method in ("bassl", "bassl+shotcol", "instance", "temporal"):
        config = tiny_pretrain(method)
        dataset = pretrain_dataset(tree, config, transform=_small)
        if method in ("instance", "temporal"):
            assert isinstance(dataset, ShotPairs)
        batch = next(iter(DataLoader(dataset, batch_size=4)))
        s = len(config.sparse_positions)
        t = 1 if method in ("instance", "temporal") else 2 * N + 1
        assert batch["images"].shape == (4, t, 3, 24, 32)
        assert batch["sparse_images"].shape == (4, s, 3, 24, 32)
        objective = build_objective(TINY, config)
        loss, logs = objective(batch)
        assert math.isfinite(float(loss.detach())) and logs
    # instance: one keyframe, two (here identical) transforms; temporal as released: the second
    # view is a freshly drawn keyframe of the same shot
    pairs = ShotPairs(tree, mode="instance", transform=_small)
    items = [pairs[i] for i in range(20)]
    assert all(torch.equal(it["images"], it["sparse_images"]) for it in items)
    pairs = ShotPairs(tree, mode="temporal", transform=_small)
    items = [pairs[i] for i in range(20)]
    assert any(not torch.equal(it["images"], it["sparse_images"]) for it in items)
    assert all(it["shots"].tolist() == [it["center"]] for it in items)
    make_puzzles(tree, tmp_path / "puzzles", workers=1)
    dataset = PuzzleShots(tmp_path / "puzzles", size=16)
    assert len(dataset) == 2  # 18 shots per film: one puzzle each
    item = dataset[0]
    assert item["q"].shape == item["k"].shape == (16, 9, 16, 16)
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    objective = build_objective(TINY, tiny_pretrain("scrl", queue_size=64))
    loss, logs = objective(batch)
    assert math.isfinite(float(loss.detach()))


def test_puzzle_frames_go_to_their_channels(tree: Path, tmp_path: Path) -> None:
    """Without augmentation, channels 3k..3k+2 of shot s are keyframe k of shot s."""
    from scenecut.data.puzzles import make_puzzles
    from scenecut.data.tree import load_keyframes

    make_puzzles(tree, tmp_path / "p", workers=1)
    dataset = PuzzleShots(tmp_path / "p", transform_q=_small, transform_k=_small)
    item = dataset[1]
    for shot in (0, 7, 15):
        frames = load_keyframes(tree, item["video_id"], shot)  # [3, H, W, 3]
        for k in range(3):
            got = item["q"][shot, 3 * k : 3 * k + 3].mean(dim=(1, 2)) * 255
            want = torch.tensor(frames[k].reshape(-1, 3).mean(0), dtype=torch.float32)
            assert torch.allclose(got, want, atol=4)


def test_msm_mask() -> None:
    torch.manual_seed(0)
    objective = BaSSLObjective(TINY, tiny_pretrain("bassl", mask_prob=0.01))
    mask = objective.draw_mask((500, 17), torch.device("cpu"))
    assert (mask.sum(1) >= 1).all()  # at least one masked shot per window
    mask = BaSSLObjective(TINY, tiny_pretrain("bassl")).draw_mask((4000, 17), torch.device("cpu"))
    assert float(mask.float().mean()) == pytest.approx(0.15 + 0.85**17 / 17, abs=0.01)
