"""Self-supervised pre-training objectives: BaSSL (and its SimCLR/ShotCoL baselines) and SCRL.

An objective is an ``nn.Module`` that owns the backbone being pre-trained and its pretext heads.
The training loop drives every method the same way::

    objective = build_objective(model_config, pretrain_config)
    dataset = pretrain_dataset(tree_or_puzzles, pretrain_config)    # default collate
    optimizer, scheduler = build_optimizer(objective, pretrain_config, total_steps, epochs)
    for batch in loader:
        loss, logs = objective(batch)        # logs: {"ssm_loss": 0.7, ...}
        optimizer.zero_grad(); loss.backward(); optimizer.step(); scheduler.step()
        objective.after_step()
    save_state(objective.backbone_state(), model_config, path)    # shot_encoder.*, crn.*

Batches (``DataLoader`` default collate of the datasets below):

* ``bassl``, ``shotcol``, ``bassl+shotcol``: ``PretrainWindows`` items with ``sparse`` =
  ``PretrainConfig.sparse_positions``: ``images`` ``[B, T, 3, H, W]`` (T = 2 n + 1 dense shots,
  one random keyframe each) and ``sparse_images`` ``[B, S, 3, H, W]`` (the first, last (and
  centre) shots, augmented by a second call). An optional ``mask`` ``[B, T]`` bool fixes the MSM
  mask; otherwise it is drawn here from torch's generator (p 0.15, at least one per window).
* ``instance``, ``temporal``: ``ShotPairs`` items: ``images`` and ``sparse_images``, each
  ``[B, 1, 3, H, W]``, the two views of one shot.
* ``scrl``: ``PuzzleShots`` items: ``q`` and ``k`` ``[B, 16, 9, H, W]`` (16 shots of a puzzle,
  three keyframes stacked on channels), or already flat ``[N, 9, H, W]``.

Under DDP, negatives are gathered from every rank (gradient-preserving gather for NT-Xent; keys
and the SCRL queue without gradient), and SCRL's key encoder uses MoCo's batch-shuffle BN. With
``torch.distributed`` not initialised (or one process) all of that is a no-op.

Spec: REFERENCE.md sections 2 (BaSSL) and 4 (SCRL); the behaviour follows the released code
(kakaobrain/bassl, TencentYoutuResearch/SceneSegmentation-SCRL), quirks included.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from scenecut.data import PRETRAIN, Tree
from scenecut.errors import InputError, UsageError
from scenecut.loader import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainWindows,
    Transform,
    decode_rgb,
)
from scenecut.model import CRN, BaSSL, ModelConfig, ShotEncoder, TinyEncoder

log = logging.getLogger(__name__)

METHODS = ("bassl", "instance", "temporal", "shotcol", "bassl+shotcol", "scrl")
BASSL_TASKS = ("ssm", "cgm", "pp", "msm")
NO_DECAY = ("bn", "bias")  # BaSSL: params whose *name contains* these get no weight decay


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class PretrainConfig:
    """How to pre-train; defaults are the papers' (BaSSL 10-epoch recipe, SCRL MoCo v2)."""

    method: str = "bassl"  # one of METHODS
    # BaSSL tasks (methods bassl and bassl+shotcol): switches and weights (summed)
    ssm: bool = True
    cgm: bool = True
    pp: bool = True
    msm: bool = True
    ssm_weight: float = 1.0
    cgm_weight: float = 1.0
    pp_weight: float = 1.0
    msm_weight: float = 1.0
    shotcol_weight: float = 1.0  # the NN term of bassl+shotcol
    temperature: float = 0.1  # NT-Xent
    mask_prob: float = 0.15  # MSM
    pp_negatives: int = 1  # non-boundary shots per window for PP
    neighbor_size: int = 8  # dense window = 2 n + 1 shots
    head_hidden: int = 2048  # MlpHead: input -> hidden -> ReLU -> head_dim, L2-normalised
    head_dim: int = 128
    # optimisation: BaSSL family = LARS with warmup + cosine per step
    batch_size: int = 256  # global (effective) batch; BaSSL's lr = base_lr * batch_size / 256
    base_lr: float | None = None  # None: 0.3 (BaSSL, per 256), 0.03 / 0.06 (SCRL, +/- ImageNet)
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 1e-6 (BaSSL), 1e-4 (SCRL)
    trust_coefficient: float = 0.001
    warmup: float = 0.1  # fraction of all steps
    # SCRL (MoCo v2 with scene-consistent positives)
    scrl_dim: int = 2048
    queue_size: int = 65536
    key_momentum: float = 0.999
    scrl_temperature: float = 0.07
    clusters: int = 24
    soft_gamma: float = 0.5
    mlp: bool = True
    kmeans_iters: int = 20
    kmeans_threshold: float = 1e-2
    # torchvision ResNet-50 ImageNet weights (a path or a scenecut.hub name) loaded into the
    # query/key encoders except conv1 and fc; None trains from scratch (SCRL's "without" yaml)
    imagenet_weights: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise UsageError(f"unknown pre-training method {self.method!r}; known: {METHODS}")
        if not 0.0 < self.mask_prob <= 1.0:
            raise UsageError(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.neighbor_size < 1:
            raise UsageError(f"neighbor_size must be at least 1, got {self.neighbor_size}")
        if not 1 <= self.pp_negatives <= 2 * self.neighbor_size:
            raise UsageError(
                f"pp_negatives must be 1..{2 * self.neighbor_size} (the non-boundary shots of "
                f"a window), got {self.pp_negatives}"
            )
        if self.clusters < 1 or self.queue_size < 1:
            raise UsageError("clusters and queue_size must be positive")
        if self.method in ("bassl", "bassl+shotcol") and not self.tasks:
            raise UsageError("enable at least one of the BaSSL tasks ssm, cgm, pp, msm")

    @property
    def tasks(self) -> tuple[str, ...]:
        """The enabled BaSSL tasks (empty for the other methods)."""
        if self.method not in ("bassl", "bassl+shotcol"):
            return ()
        return tuple(t for t in BASSL_TASKS if getattr(self, t))

    @property
    def uses_crn(self) -> bool:
        return any(t in self.tasks for t in ("cgm", "pp", "msm"))

    @property
    def window(self) -> int:
        return 2 * self.neighbor_size + 1

    @property
    def sparse_positions(self) -> tuple[int, ...]:
        """``PretrainWindows(sparse=...)`` for this method: edges (+ centre), BaSSL's sampler."""
        last = self.window - 1
        if self.method == "bassl":
            return (0, last)
        if self.method in ("shotcol", "bassl+shotcol"):
            return (0, last, self.neighbor_size)
        return (0,)  # instance/temporal: ShotPairs' one-shot window

    @property
    def lr(self) -> float:
        """The peak learning rate, scaled as the reference scripts do."""
        if self.method == "scrl":
            base = self.base_lr or (0.03 if self.imagenet_weights else 0.06)
            return base  # SCRL's 0.03 is for its 1024-shot batch, not scaled
        return (self.base_lr or 0.3) * self.batch_size / 256

    @property
    def decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 1e-4 if self.method == "scrl" else 1e-6

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PretrainConfig:
        data = json.loads(text)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown pre-training config fields {sorted(unknown)}")
        return cls(**data)


# --------------------------------------------------------------------------------------------
# Distributed helpers (no-ops without torch.distributed)


def _world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for the local slice (VISSL's
    ``gather_from_all``); uses only all_gather and all_reduce, so it runs on gloo too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        ctx.rank, world = _world()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()  # all_reduce works in place
        dist.all_reduce(grad)
        return grad.chunk(_world()[1])[ctx.rank]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``[n, ...]`` on each rank -> ``[world * n, ...]`` rank-major, gradients flowing back."""
    if _world()[1] == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """all_gather without gradient (MoCo's ``concat_all_gather``)."""
    import torch.distributed as dist

    world = _world()[1]
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


# --------------------------------------------------------------------------------------------
# NT-Xent


def nce_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """BaSSL's ``_compute_nce_loss`` on L2-normalised ``a[i]``/``b[i]`` positive pairs.

    The local ``[a; b]`` (view-major, ``2n`` rows) is gathered from every rank; each local row's
    positive is its partner, its negatives every other gathered row except itself and the
    partner: ``-mean log(e^(p/T) / (e^(p/T) + sum e^(neg/T)))`` over the ``2n`` local anchors.
    Under DDP, gradients (averaged by DDP) equal those of the loss on the global batch.
    """
    n = a.shape[0]
    local = torch.cat([a, b])
    everything = gather_with_grad(local)
    rank = _world()[0]
    logits = local @ everything.T / temperature  # [2n, world * 2n]
    rows = torch.arange(2 * n, device=a.device)
    own = rank * 2 * n + rows
    partner = rank * 2 * n + (rows + n) % (2 * n)
    logits = logits.masked_fill(F.one_hot(own, logits.shape[1]).bool(), float("-inf"))
    return F.cross_entropy(logits, partner)


# --------------------------------------------------------------------------------------------
# DTW pseudo-boundaries (tslearn.metrics.dtw_path_from_metric, metric="precomputed")


def dtw_accumulated(cost: torch.Tensor) -> torch.Tensor:
    """``[B, N, M]`` cost -> accumulated cost ``A[i,j] = C[i,j] + min(A[i-1,j-1], A[i-1,j],
    A[i,j-1])`` (plain sums, in float64 like tslearn's), on the CPU."""
    c = cost.detach().to("cpu", torch.float64)
    if c.dim() == 2:
        c = c[None]
    b, n, m = c.shape
    acc = torch.full((b, n + 1, m + 1), math.inf, dtype=torch.float64)
    acc[:, 0, 0] = 0.0
    for i in range(n):
        for j in range(m):
            best = torch.minimum(torch.minimum(acc[:, i, j + 1], acc[:, i + 1, j]), acc[:, i, j])
            acc[:, i + 1, j + 1] = c[:, i, j] + best
    return acc[:, 1:, 1:]


def _backtrack(acc) -> list[tuple[int, int]]:
    """tslearn's ``_return_path``: from the end, the first minimum of (diagonal, up, left)."""
    i, j = acc.shape[0] - 1, acc.shape[1] - 1
    path = [(i, j)]
    while (i, j) != (0, 0):
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            steps = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
            move = min(range(3), key=lambda s: (steps[s], s))  # first minimum
            i, j = ((i - 1, j - 1), (i - 1, j), (i, j - 1))[move]
        path.append((i, j))
    return path[::-1]


def dtw_path(cost: torch.Tensor) -> list[list[tuple[int, int]]]:
    """The DTW alignment path of each ``[N, M]`` cost in ``[B, N, M]``, from (0, 0) to the end."""
    acc = dtw_accumulated(cost).numpy()
    return [_backtrack(a) for a in acc]


def dtw_boundaries(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, 2, T]`` cost -> (``bd_idx`` ``[B]``: the last dense position aligned with sparse row
    0; ``aligned`` ``[B, 2, T]`` bool: which dense positions the path aligns to each row).

    A column with a vertical step belongs to both rows, as in BaSSL's SSM.
    """
    paths = dtw_path(cost)
    b, n, m = cost.shape
    aligned = torch.zeros(b, n, m, dtype=torch.bool)
    bd = torch.empty(b, dtype=torch.long)
    for k, path in enumerate(paths):
        rows, cols = zip(*path, strict=True)
        aligned[k, list(rows), list(cols)] = True
        bd[k] = max(j for i, j in path if i == 0)
    return bd.to(cost.device), aligned.to(cost.device)


def dtw_boundary(cost: torch.Tensor) -> int:
    """The pseudo-boundary of one ``[2, T]`` cost matrix (see ``dtw_boundaries``)."""
    return int(dtw_boundaries(cost[None])[0][0])


def closed_form_boundary(cost: torch.Tensor) -> int:
    """k in ``0..T-2`` minimising ``sum(C[0, :k+1]) + sum(C[1, k+1:])``; the largest on ties.

    Equals ``dtw_boundary`` for non-negative costs [inferred in the spec; checked in the tests]:
    a vertical step never costs less than the diagonal one, and backtracking from the end leaves
    row 1 as late as it can.
    """
    c = cost.detach().to("cpu", torch.float64)
    head = torch.cumsum(c[0], 0)[:-1]
    tail = torch.flip(torch.cumsum(torch.flip(c[1], [0]), 0), [0])[1:]
    total = (head + tail).tolist()
    best = min(total)
    return max(k for k, v in enumerate(total) if v == best)


# --------------------------------------------------------------------------------------------
# Heads (names as in BaSSL's Lightning checkpoints, under ``loss.``)


class MlpHead(nn.Module):
    """Linear -> ReLU -> Linear, L2-normalised output (BaSSL's ``model/head.py``)."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 128):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(x), dim=-1)


class _PredictionHeadTransform(nn.Module):
    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class _LMPredictionHead(nn.Module):
    def __init__(self, hidden: int, vocab: int, eps: float):
        super().__init__()
        self.transform = _PredictionHeadTransform(hidden, eps)
        self.decoder = nn.Linear(hidden, vocab, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.decoder.bias = self.bias  # tied, as HuggingFace's BertLMPredictionHead

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class BertMLMHead(nn.Module):
    """HuggingFace ``BertOnlyMLMHead`` with ``vocab_size = input_dim``: 768 -> 2048."""

    def __init__(self, hidden: int, vocab: int, eps: float = 1e-12):
        super().__init__()
        self.predictions = _LMPredictionHead(hidden, vocab, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions(x)


# --------------------------------------------------------------------------------------------
# Objectives


class Objective(nn.Module):
    """What the training loop drives: ``forward(batch) -> (loss, {name: value})``."""

    config: PretrainConfig

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after ``optimizer.step()``; nothing to do for the current objectives."""

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """``shot_encoder.*`` (and ``crn.*`` when trained) under ``scenecut.model.BaSSL``'s
        names, detached: what ``model.save_state`` writes and fine-tuning loads."""
        raise NotImplementedError


def _check_model_config(model_config: ModelConfig, config: PretrainConfig) -> None:
    if config.method == "scrl":
        if model_config.encoder not in ("resnet50-9ch", "tiny"):
            raise UsageError(
                f"SCRL pre-trains the 9-channel early-fusion encoder: use encoder "
                f"'resnet50-9ch' (or 'tiny' in tests), not {model_config.encoder!r}"
            )
        return
    if model_config.encoder == "resnet50-9ch":
        raise UsageError(f"{config.method} pre-trains a 3-channel encoder, not resnet50-9ch")
    if config.uses_crn and model_config.crn.neighbor_size != config.neighbor_size:
        raise UsageError(
            f"the CRN is built for neighbor_size {model_config.crn.neighbor_size} but "
            f"pre-training samples {config.neighbor_size}; make them equal"
        )


def build_objective(model_config: ModelConfig, config: PretrainConfig) -> Objective:
    """The objective for ``config.method``, with a freshly initialised backbone."""
    _check_model_config(model_config, config)
    if config.method == "scrl":
        return SCRLObjective(model_config, config)
    return BaSSLObjective(model_config, config)


class BaSSLObjective(Objective):
    """BaSSL (SSM + CGM + PP + MSM) and the shot-level baselines instance, temporal, shotcol,
    and bassl+shotcol (spec 2.3). Submodules: ``shot_encoder``, ``crn`` (only when a CRN task
    is on), ``head_nce``, ``head_msm``, ``head_pp``, ``head_cgm`` (only the enabled ones).

    Each module exists only when some loss uses it; still, with a BaSSL task switched off some
    parameters get no gradient (``ssm`` off: ``head_nce``, which then only feeds DTW; ``msm``
    off: the CRN's mask embedding), so wrap in DDP with ``find_unused_parameters=True`` then.
    BaSSL trained with SyncBatchNorm: convert the module before wrapping it, as the trainer
    decides.
    """

    def __init__(self, model_config: ModelConfig, config: PretrainConfig):
        super().__init__()
        _check_model_config(model_config, config)
        self.config = config
        self.model_config = model_config
        base = BaSSL(model_config)
        self.shot_encoder = base.shot_encoder
        dim = model_config.crn.input_dim
        self.head_nce = MlpHead(dim, config.head_hidden, config.head_dim)
        self.crn: CRN | None = base.crn if config.uses_crn else None
        hidden, eps = model_config.crn.hidden_size, model_config.crn.layer_norm_eps
        if "msm" in config.tasks:
            self.head_msm = BertMLMHead(hidden, dim, eps)
        if "pp" in config.tasks:
            self.head_pp = nn.Linear(hidden, 2)
        if "cgm" in config.tasks:
            self.head_cgm = nn.Linear(2 * hidden, 2)

    def backbone_state(self) -> dict[str, torch.Tensor]:
        keep = ("shot_encoder.", "crn.") if self.crn is not None else ("shot_encoder.",)
        return {k: v.detach() for k, v in self.state_dict().items() if k.startswith(keep)}

    def _features(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        dense, sparse = batch["images"], batch["sparse_images"]
        if dense.dim() != 5 or sparse.dim() != 5:
            raise UsageError(
                "pre-training batches hold one keyframe per shot: images [B, T, C, H, W] and "
                f"sparse_images [B, S, C, H, W], got {list(dense.shape)} and {list(sparse.shape)}"
            )
        b, s = sparse.shape[:2]
        video = torch.cat([sparse, dense], dim=1)  # BaSSL's cat[sparse, dense]
        feats = self.shot_encoder(video.flatten(0, 1)).view(b, video.shape[1], -1)
        return feats[:, :s], feats[:, s:]

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        sparse, dense = self._features(batch)
        method, cfg = self.config.method, self.config
        s_all, d_emb = self.head_nce(sparse), self.head_nce(dense)
        losses: dict[str, tuple[torch.Tensor, float]] = {}
        if method in ("instance", "temporal"):
            losses["simclr_loss"] = (nce_loss(s_all[:, 0], d_emb[:, 0], cfg.temperature), 1.0)
        elif method == "shotcol":
            losses["simclr_loss"] = (self._shotcol(s_all, d_emb), 1.0)
        else:
            self._need(sparse.shape[1], 2 if method == "bassl" else 3, dense.shape[1])
            s_emb = s_all[:, :2]  # first and last shot
            with torch.no_grad():
                # clamp: a rounding error below 0 could otherwise put the boundary at T - 1
                cost = (1 - torch.bmm(s_emb, d_emb.transpose(1, 2))).clamp_min(0)
            bd_idx, aligned = dtw_boundaries(cost)
            if method == "bassl+shotcol":
                losses["shotcol_loss"] = (self._shotcol(s_all, d_emb), cfg.shotcol_weight)
            if cfg.ssm:
                losses["ssm_loss"] = (self._ssm(s_emb, d_emb, aligned), cfg.ssm_weight)
            if cfg.msm:
                mask = batch.get("mask")
                mask = self.draw_mask(dense.shape[:2], dense.device) if mask is None else mask
                losses["msm_loss"] = (self._msm(dense, mask.to(dense.device)), cfg.msm_weight)
            if cfg.pp or cfg.cgm:
                out = self.crn(dense)[0][:, 1:]  # unmasked, without [CLS]
                if cfg.pp:
                    losses["pp_loss"] = (self._pp(out, bd_idx), cfg.pp_weight)
                if cfg.cgm:
                    losses["cgm_loss"] = (self._cgm(out, bd_idx), cfg.cgm_weight)
        total = sum(weight * value for value, weight in losses.values())
        return total, {name: float(value.detach()) for name, (value, _) in losses.items()}

    def _need(self, sparse: int, wanted: int, dense: int) -> None:
        if sparse < wanted or dense < 3:
            raise UsageError(
                f"{self.config.method} needs {wanted} sparse shots and a window of at least 3, "
                f"got {sparse} and {dense}: build PretrainWindows with "
                "sparse=PretrainConfig.sparse_positions"
            )

    def draw_mask(self, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """MSM mask ``[B, T]``: each shot with probability ``mask_prob``; a window where none
        was drawn gets one uniformly random masked shot (BaSSL's sampler)."""
        b, t = shape
        mask = torch.rand(b, t, device=device) < self.config.mask_prob
        empty = ~mask.any(dim=1)
        if empty.any():
            picks = torch.randint(t, (b,), device=device)
            mask[empty, picks[empty]] = True
        return mask

    def _shotcol(self, s_all: torch.Tensor, d_emb: torch.Tensor) -> torch.Tensor:
        """NT-Xent between the centre's second view and its nearest dense neighbour."""
        self._need(s_all.shape[1], 3, d_emb.shape[1])
        center = d_emb.shape[1] // 2
        with torch.no_grad():
            sim = torch.einsum("bd,btd->bt", d_emb[:, center], d_emb)
            sim[:, center] = -10000.0
            nn_idx = sim.argmax(dim=1)
        rows = torch.arange(d_emb.shape[0], device=d_emb.device)
        return nce_loss(s_all[:, -1], d_emb[rows, nn_idx], self.config.temperature)

    def _ssm(self, s_emb: torch.Tensor, d_emb: torch.Tensor, aligned: torch.Tensor) -> torch.Tensor:
        weights = aligned.to(d_emb.dtype)  # [B, 2, T]
        scene = weights @ d_emb / weights.sum(-1, keepdim=True)  # mean of the aligned shots
        scene = F.normalize(scene, dim=-1)
        rows = s_emb.shape[1]
        return (
            sum(nce_loss(s_emb[:, j], scene[:, j], self.config.temperature) for j in range(rows))
            / rows
        )

    def _msm(self, dense: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.crn(dense, mask)[0][:, 1:]
        mask = mask.bool()
        predicted = self.head_msm(out[mask])
        return F.mse_loss(predicted, dense.detach()[mask])

    def _pp(self, out: torch.Tensor, bd_idx: torch.Tensor) -> torch.Tensor:
        b, t, _ = out.shape
        rows = torch.arange(b, device=out.device)
        # negatives: uniformly random non-boundary positions, without replacement
        score = torch.rand(b, t, device=out.device)
        score[rows, bd_idx] = -1.0
        negatives = score.topk(self.config.pp_negatives, dim=1).indices  # [B, n]
        picked = torch.cat(
            [out[rows, bd_idx], *(out[rows, negatives[:, k]] for k in range(negatives.shape[1]))]
        )
        labels = torch.zeros(picked.shape[0], dtype=torch.long, device=out.device)
        labels[:b] = 1
        return F.cross_entropy(self.head_pp(picked), labels)

    def _cgm(self, out: torch.Tensor, bd_idx: torch.Tensor) -> torch.Tensor:
        b, t, _ = out.shape
        center = t // 2
        positions = torch.arange(t, device=out.device)
        rows = torch.arange(b, device=out.device)
        group1 = positions[None] > bd_idx[:, None]  # [B, T]: after the boundary
        same = group1 == group1[:, center : center + 1]
        not_center = positions[None] != center

        def pick(candidates: torch.Tensor) -> torch.Tensor:  # uniform among the candidates
            return (torch.rand(b, t, device=out.device) * candidates).argmax(dim=1)

        pos_idx, neg_idx = pick(same & not_center), pick(~same)
        c = F.normalize(out[:, center], dim=1)
        pos, neg = F.normalize(out[rows, pos_idx], dim=1), F.normalize(out[rows, neg_idx], dim=1)
        logits = self.head_cgm(torch.cat([torch.cat([c, pos], 1), torch.cat([c, neg], 1)]))
        labels = torch.cat([torch.ones(b), torch.zeros(b)]).long().to(out.device)
        return F.cross_entropy(logits, labels)


# --------------------------------------------------------------------------------------------
# SCRL


@torch.no_grad()
def kmeans_choice_points(
    x: torch.Tensor,
    clusters: int,
    *,
    max_iter: int = 20,
    shift_threshold: float = 1e-2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SCRL's ``Cluster_GPU``: k-means whose centres are snapped to samples ("choice points").

    ``x`` ``[N, D]`` -> (``labels`` ``[N]``: cluster of each sample, from the last assignment
    step; ``points`` ``[clusters]``: the sample index each centre sits on, all distinct).
    Init: distinct random samples (torch's generator). Each iteration assigns by squared
    Euclidean distance, moves each centre to its cluster mean and snaps it to the nearest sample
    not taken by an earlier cluster; stops when (sum of squared shifts)^2 < ``shift_threshold``
    or after ``max_iter`` iterations. An empty cluster (only possible with duplicate samples)
    keeps its previous centre where SCRL would take a NaN mean.
    """
    n = x.shape[0]
    if not 0 < clusters <= n:
        raise UsageError(f"cannot make {clusters} clusters from {n} samples")
    x = x.detach().float()
    points = torch.randperm(n)[:clusters].to(x.device)
    centres = x[points]
    for _ in range(max_iter):
        labels = _sqdist(x, centres).argmin(dim=1)
        counts = torch.bincount(labels, minlength=clusters)[:, None]
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        means = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
        dist = _sqdist(means, x).cpu()  # [clusters, N]
        taken = torch.zeros(n, dtype=torch.bool)
        snapped = []
        for c in range(clusters):
            row = dist[c].masked_fill(taken, math.inf)
            pick = int(row.argmin())
            taken[pick] = True
            snapped.append(pick)
        new_points = torch.tensor(snapped, device=x.device)
        shift = float(((x[new_points] - centres) ** 2).sum())
        points, centres = new_points, x[new_points]
        if shift**2 < shift_threshold:
            break
    return labels, points


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` squared Euclidean distances, summed over the features as SCRL does (exact
    ties stay ties, unlike ``cdist``'s matrix-product shortcut)."""
    return ((a[:, None] - b[None]) ** 2).sum(-1)


class SCRLObjective(Objective):
    """SCRL's MoCo v2 with cluster-based soft positives (spec 4.2).

    Submodules as in SCRL's checkpoints: ``encoder_q`` / ``encoder_k`` (the ResNet trunk with an
    ``fc`` projection: ``fc.0``/``fc.2`` with ``mlp``), buffers ``queue`` ``[dim, K]`` and
    ``queue_ptr``. The key encoder's momentum update, the key computation and the enqueue happen
    in ``forward`` (training mode only), as in the released code; ``after_step`` does nothing.
    """

    def __init__(self, model_config: ModelConfig, config: PretrainConfig):
        super().__init__()
        _check_model_config(model_config, config)
        self.config = config
        self.model_config = model_config
        channels = 3 * model_config.keyframes
        if model_config.encoder == "tiny":
            trunk = TinyEncoder(model_config.crn.input_dim, channels)
        else:
            trunk = ShotEncoder(channels)
        width = trunk.out_dim
        fc = nn.Linear(width, config.scrl_dim)
        trunk.fc = nn.Sequential(nn.Linear(width, width), nn.ReLU(), fc) if config.mlp else fc
        if config.imagenet_weights:
            _load_imagenet(trunk, config.imagenet_weights)
        self.encoder_q = trunk
        self.encoder_k = copy.deepcopy(trunk)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer(
            "queue", F.normalize(torch.randn(config.scrl_dim, config.queue_size), dim=0)
        )
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return {
            f"shot_encoder.{k}": v.detach()
            for k, v in self.encoder_q.state_dict().items()
            if not k.startswith("fc.")
        }

    def embed(self, encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(encoder.fc(encoder(images)), dim=1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``k = m k + (1 - m) q`` for every parameter (buffers such as BN stats are not copied)."""
        m = self.config.key_momentum
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            k.mul_(m).add_(q.detach(), alpha=1.0 - m)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest ``world * n`` queue columns with the gathered ``keys``."""
        keys = gather(keys)
        n, size = keys.shape[0], self.queue.shape[1]
        if size % n:
            raise UsageError(
                f"the queue size {size} must be a multiple of the global batch of {n} shots "
                "(MoCo's rule); use drop_last=True and a batch that divides it"
            )
        ptr = int(self.queue_ptr)
        self.queue[:, ptr : ptr + n] = keys.T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + n) % size

    @torch.no_grad()
    def _keys(self, images: torch.Tensor) -> torch.Tensor:
        """Key embeddings with MoCo's batch-shuffle BN across ranks (no-op in one process)."""
        import torch.distributed as dist

        rank, world = _world()
        if world == 1:
            return self.embed(self.encoder_k, images)
        everything = gather(images)
        order = torch.randperm(everything.shape[0], device=images.device)
        dist.broadcast(order, src=0)
        mine = order.view(world, -1)[rank]
        keys = gather(self.embed(self.encoder_k, everything[mine]))
        return keys[torch.argsort(order).view(world, -1)[rank]]

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        img_q, img_k = _flat_shots(batch["q"]), _flat_shots(batch["k"])
        cfg = self.config
        q = self.embed(self.encoder_q, img_q)
        labels, points = kmeans_choice_points(
            q, cfg.clusters, max_iter=cfg.kmeans_iters, shift_threshold=cfg.kmeans_threshold
        )
        medoid = points[labels]  # key index of each shot: its cluster's choice point
        with torch.no_grad():
            if self.training:
                self.momentum_update()
            k = self._keys(img_k)
            positive = (k[medoid] + k) * cfg.soft_gamma  # soft positive, not re-normalised
        l_pos = (q * positive).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone().detach()
        logits = torch.cat([l_pos, l_neg], dim=1) / cfg.scrl_temperature
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        loss = F.cross_entropy(logits, target)
        if self.training:
            self.enqueue(positive)  # SCRL enqueues the mixed keys
        return loss, {"scrl_loss": float(loss.detach())}


def _flat_shots(images: torch.Tensor) -> torch.Tensor:
    if images.dim() == 5:
        return images.flatten(0, 1)
    if images.dim() != 4:
        raise UsageError(
            f"SCRL batches are [B, 16, 9, H, W] or [N, 9, H, W], got {list(images.shape)}"
        )
    return images


def _load_imagenet(trunk: nn.Module, weights: str) -> None:
    """Every torchvision ResNet-50 tensor except ``conv1.*`` and ``fc.*`` (SCRL's init)."""
    from scenecut import hub
    from scenecut.model import convert_state_dict, read_checkpoint

    if not isinstance(trunk, ShotEncoder):
        raise UsageError("ImageNet initialisation needs the ResNet-50 encoder")
    state = convert_state_dict(read_checkpoint(hub.resolve(weights)), "torchvision")
    state = {
        k[len("shot_encoder.") :]: v
        for k, v in state.items()
        if not k.startswith("shot_encoder.conv1.")
    }
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    # resnet50-19c8e357.pth (SCRL's file) predates BatchNorm's num_batches_tracked
    wrong = [
        k
        for k in missing
        if not k.startswith(("conv1.", "fc.")) and not k.endswith("num_batches_tracked")
    ] + list(unexpected)
    if wrong:
        raise InputError(f"{weights} is not a torchvision ResNet-50 state dict ({wrong[:5]} ...)")


# --------------------------------------------------------------------------------------------
# Datasets


class ShotPairs(PretrainWindows):
    """Two views of one shot per item, for the ``instance`` and ``temporal`` baselines:
    ``images`` and ``sparse_images`` ``[1, C, H, W]``, plus ``shots``, ``video_id``, ``center``.

    ``instance``: one random keyframe, augmented twice. ``temporal`` as BaSSL released it
    (spec 2.1: the sampled neighbour is never loaded): the second view is a freshly drawn random
    keyframe of the same shot.
    """

    def __init__(
        self,
        tree: Tree | str | Path,
        split: str = PRETRAIN,
        *,
        mode: str = "instance",
        transform: Transform | None = None,
    ):
        if mode not in ("instance", "temporal"):
            raise UsageError(f"mode must be instance or temporal, got {mode!r}")
        super().__init__(tree, split, neighbor_size=0, transform=transform, sparse=(0,))
        self.mode = mode

    def __getitem__(self, index: int) -> dict:
        if self.mode == "instance":
            return super().__getitem__(index)
        m, center = self.items[index]
        movie = self.movies[m]
        first = self._load(movie, self._keys([center]))
        second = self._load(movie, self._keys([center]))
        return {
            "video_id": movie.video_id,
            "center": center,
            "shots": torch.tensor([center]),
            "images": self._batch(first, 1),
            "sparse_images": self._batch(second, 1),
        }


def scrl_transform(size: int = 224, color: bool = False) -> Transform:
    """SCRL's view augmentation of the ``[3, 3, H, W]`` uint8 keyframes of one shot, drawn once
    for the three frames (``fixed_aug_shot``): RandomResizedCrop(size, scale 0.2-1), with
    ``color`` (the key view) ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.5 and RandomGrayscale p 0.2,
    Gaussian blur sigma 0.1-2 p 0.5, horizontal flip, ImageNet normalisation."""
    from torchvision.transforms import v2

    kernel = 2 * math.ceil(3 * 2.0 * size / 224) + 1  # covers sigma 2 at 224 px
    steps: list = [v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True)]
    if color:
        steps += [
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.5),
            v2.RandomGrayscale(p=0.2),
        ]
    steps += [
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    return v2.Compose(steps)


class PuzzleShots(Dataset):
    """SCRL's pre-training items from the puzzles ``scenecut.puzzles.make_puzzles`` wrote:
    one item per puzzle, ``q`` and ``k`` ``[16, 9, size, size]`` (the query and key views of
    its 16 shots, the 3 keyframes of a shot stacked on channels), ``video_id``, ``puzzle``.

    Puzzles are listed from ``shot_num.json`` (``{"train": {video_id: shots}}``, shot count //
    16 puzzles per film), as SCRL's loader does.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        size: int = 224,
        transform_q: Transform | None = None,
        transform_k: Transform | None = None,
    ):
        from scenecut.puzzles import INDEX_FILE, PUZZLE_SHOTS

        self.root = Path(root)
        index = self.root / INDEX_FILE
        try:
            films = json.loads(index.read_text())["train"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(
                f"{index} is missing or unreadable ({error}); run `scenecut data puzzles` first"
            ) from error
        self.items = [(v, p) for v, n in films.items() for p in range(int(n) // PUZZLE_SHOTS)]
        if not self.items:
            raise InputError(f"{self.root}: no puzzles (every film has fewer than 16 shots)")
        self.transform_q = transform_q or scrl_transform(size, color=False)
        self.transform_k = transform_k or scrl_transform(size, color=True)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        from scenecut.puzzles import PUZZLE_FRAMES, PUZZLE_SHOTS, puzzle_path

        video_id, puzzle = self.items[index]
        path = puzzle_path(self.root, video_id, puzzle)
        image = decode_rgb(
            path, "cannot decode puzzle ({}); make the puzzles again"
        )  # [3, 16H, 3W]
        _, height, width = image.shape
        h, w = height // PUZZLE_SHOTS, width // PUZZLE_FRAMES
        tiles = image[:, : h * PUZZLE_SHOTS, : w * PUZZLE_FRAMES]
        # [3, 16, h, 3, w] -> [16 shots, 3 frames, 3, h, w]
        shots = tiles.view(3, PUZZLE_SHOTS, h, PUZZLE_FRAMES, w).permute(1, 3, 0, 2, 4).contiguous()
        q = torch.stack([self.transform_q(s).flatten(0, 1) for s in shots])
        k = torch.stack([self.transform_k(s).flatten(0, 1) for s in shots])
        return {"q": q, "k": k, "video_id": video_id, "puzzle": puzzle}


def pretrain_dataset(
    source: str | Path,
    config: PretrainConfig,
    *,
    split: str = PRETRAIN,
    transform: Transform | None = None,
    size: int = 224,
) -> Dataset:
    """The dataset whose default-collated batches ``config.method``'s objective takes:
    ``source`` is a MovieNet-style tree (BaSSL family; ``transform`` defaults to BaSSL's
    ``train_transform``) or a puzzle folder (``scrl``; ``size`` is the crop)."""
    if config.method == "scrl":
        return PuzzleShots(source, size=size)
    if config.method in ("instance", "temporal"):
        return ShotPairs(source, split, mode=config.method, transform=transform)
    return PretrainWindows(
        source,
        split,
        neighbor_size=config.neighbor_size,
        transform=transform,
        keyframes="random",
        sparse=config.sparse_positions,
    )


# --------------------------------------------------------------------------------------------
# Optimisation


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
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def quarter_cosine(epoch: int, epochs: int) -> float:
    """SCRL's per-epoch factor ``0.5 (1 + cos(0.5 pi epoch / epochs))``: ends near 0.5."""
    return 0.5 * (1.0 + math.cos(0.5 * math.pi * epoch / epochs))


def build_optimizer(
    objective: Objective, config: PretrainConfig, total_steps: int, epochs: int = 1
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The reference optimiser and a LambdaLR to ``step()`` after every optimizer step.

    BaSSL family: LARS (lr ``config.lr``, momentum 0.9, wd 1e-6 except bn/bias, trust 0.001),
    linear warmup over ``warmup`` of ``total_steps`` then cosine to 0. SCRL: SGD (lr 0.03 or
    0.06, momentum 0.9, wd 1e-4 on everything), the quarter cosine held constant within each of
    ``epochs`` epochs (``total_steps // epochs`` steps each).
    """
    if total_steps < 1 or epochs < 1:
        raise UsageError(f"total_steps and epochs must be positive, got {total_steps}, {epochs}")
    from torch.optim.lr_scheduler import LambdaLR

    if config.method == "scrl":
        params = [p for p in objective.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.decay
        )
        per_epoch = max(1, total_steps // epochs)
        return optimizer, LambdaLR(optimizer, lambda s: quarter_cosine(s // per_epoch, epochs))
    optimizer = LARS(
        decay_groups(objective, config.decay),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.decay,
        trust_coefficient=config.trust_coefficient,
    )
    warmup = int(total_steps * config.warmup)
    return optimizer, LambdaLR(optimizer, warmup_cosine(warmup, total_steps))
