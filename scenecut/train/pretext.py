"""Self-supervised pre-training objectives: BaSSL and its SimCLR/ShotCoL baselines (SCRL's is
``scenecut.train.scrl``).

An objective is an ``nn.Module`` that owns the backbone being pre-trained and its pretext heads.
The training loop (``scenecut.train.loop.fit``) drives every method the same way::

    objective = build_objective(model_config, pretrain_config)       # scenecut.train.pretrain
    dataset = pretrain_dataset(tree_or_puzzles, pretrain_config)    # default collate
    optimizer, scheduler = build_optimizer(objective, train_config, total_steps, steps_per_epoch)
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

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from scenecut.errors import UsageError
from scenecut.models.bassl import CRN, BaSSL
from scenecut.models.config import ModelConfig
from scenecut.train.config import PretrainConfig

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Distributed helpers (no-ops without torch.distributed)


def rank_world() -> tuple[int, int]:
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

        ctx.rank, world = rank_world()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()  # all_reduce works in place
        dist.all_reduce(grad)
        return grad.chunk(rank_world()[1])[ctx.rank]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``[n, ...]`` on each rank -> ``[world * n, ...]`` rank-major, gradients flowing back."""
    if rank_world()[1] == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """all_gather without gradient (MoCo's ``concat_all_gather``)."""
    import torch.distributed as dist

    world = rank_world()[1]
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
    rank = rank_world()[0]
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
        """``shot_encoder.*`` (and ``crn.*`` when trained) under ``scenecut.models.bassl.BaSSL``'s
        names, detached: what ``checkpoints.save_state`` writes and fine-tuning loads."""
        raise NotImplementedError


def check_model_config(model_config: ModelConfig, config: PretrainConfig) -> None:
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
        check_model_config(model_config, config)
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
