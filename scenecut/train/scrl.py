"""SCRL (Wu et al., CVPR 2022): MoCo v2 with scene-consistent positives, on shot puzzles."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from scenecut.data.puzzles import INDEX_FILE, PUZZLE_FRAMES, PUZZLE_SHOTS, puzzle_path
from scenecut.errors import InputError, UsageError
from scenecut.models import archives, hub
from scenecut.models.bassl import ShotEncoder, TinyEncoder
from scenecut.models.checkpoints import convert_state_dict, read_checkpoint
from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from scenecut.train.config import PretrainConfig
from scenecut.train.datasets import Transform, decode_rgb
from scenecut.train.pretext import Objective, check_model_config, gather, rank_world

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
        check_model_config(model_config, config)
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

        rank, world = rank_world()
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
    if not isinstance(trunk, ShotEncoder):
        raise UsageError("ImageNet initialisation needs the ResNet-50 encoder")
    state = convert_state_dict(read_checkpoint(hub.resolve(weights)), "torchvision")
    state = {
        k[len("shot_encoder.") :]: v
        for k, v in state.items()
        if not k.startswith("shot_encoder.conv1.")
    }
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise InputError(
            f"{weights} is not a torchvision ResNet-50 state dict ({archives.reason(error)})"
        ) from None
    # resnet50-19c8e357.pth (SCRL's file) predates BatchNorm's num_batches_tracked
    wrong = [
        k
        for k in missing
        if not k.startswith(("conv1.", "fc.")) and not k.endswith("num_batches_tracked")
    ] + list(unexpected)
    if wrong:
        raise InputError(f"{weights} is not a torchvision ResNet-50 state dict ({wrong[:5]} ...)")


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
    """SCRL's pre-training items from the puzzles ``scenecut.data.puzzles.make_puzzles`` wrote:
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
