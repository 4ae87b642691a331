"""Saccade-VSSL pre-training (SACCADE.md): ``scenecut train pretrain --method saccade``.

One training step (spec 4.4) on a batch of videos, six 16-frame clips each (A0 A1 A2 B0 B1 B2:
fixation i's clip at its start and half a fixation later, ``scenecut.train.clips``):

* the clips are normalised as the encoder expects (ImageNet) and the fixated cell emphasised,
  ``x (1 + m)`` (the network's focus input);
* **L_nce**: each clip against the memory-bank slot of its (video, fixation) and 1024 uniformly
  drawn slots; the bank moves towards the clip's pooled feature afterwards;
* **L_ppm**: the PPM prediction of the B-clips' projected conv5 maps from the A-clips' and back;
* **L_proto** (from ``cluster_from`` on, every ``cluster_every`` epochs): ProtoNCE against three
  k-means clusterings of per-fixation embeddings computed at the start of those epochs.

The memory-bank negatives are drawn inside each dataset item (``WithNegatives``), seeded per
(seed, epoch, item) by the training loop, so a run draws the same negatives whatever the number
of processes; the bank update is gathered over processes (the reference keeps only one GPU's).
The cluster features (the reference's ``memory_curr``) are a buffer of the objective, saved in
every checkpoint with the epoch that computed them: a resumed run clusters them again at once
(spec 4.3), a run resumed at a clustering epoch's start computes them as the uninterrupted run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from scenecut.data.actions import ActionTree, ActionVideo
from scenecut.errors import InputError, UsageError
from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD
from scenecut.models.saccade import ClipConfig, SaccadeNet, build, save_model
from scenecut.train.clips import EvalClips, Quirks, SaccadeClips
from scenecut.train.config import MODEL_FILE, PretrainConfig, TrainConfig, pretrain_config
from scenecut.train.kmeans import Clustering, cluster
from scenecut.train.loop import Task
from scenecut.train.pretext import rank_world
from scenecut.train.saccade_losses import MemoryBank, nce_loss, ppm_loss, proto_nce

log = logging.getLogger(__name__)

VideoItem = tuple[Sequence[Path], object, int]  # frames, scanpath rows or None, label


# --------------------------------------------------------------------------------------------
# Data


def action_videos(
    tree: ActionTree, which: str, fold: int, *, grid: int = 7, scanpaths: bool = True,
    clip_len: int = 16,
) -> list[VideoItem]:  # fmt: skip
    """``(frames, scanpath rows or None, label)`` of a split, as the clip datasets take them;
    videos too short for a clip are left out (``split`` says so)."""
    videos = tree.split(which, fold, min_frames=clip_len + 1)
    if not videos:
        raise InputError(f"{tree.root}: the {which} split of fold {fold} lists no videos")
    return [_item(tree, v, grid, scanpaths) for v in videos]


def _item(tree: ActionTree, video: ActionVideo, grid: int, scanpaths: bool) -> VideoItem:
    rows = tree.scanpath(video, grid) if scanpaths else None
    return (video.frames, rows, video.label)


class WithNegatives(Dataset):
    """Adds ``negatives`` ``[clips, k]``: memory-bank slots drawn uniformly with replacement
    from torch's generator, which the training loop seeds per item (spec 4.1: the own slot is
    not excluded)."""

    def __init__(self, inner: Dataset, slots: int, k: int):
        self.inner, self.slots, self.k = inner, slots, k

    @property
    def epoch(self) -> int:
        return getattr(self.inner, "epoch", 0)

    @epoch.setter
    def epoch(self, value: int) -> None:
        if hasattr(self.inner, "epoch"):
            self.inner.epoch = value

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.inner[index])
        clips = item["slot"].shape[0]
        item["negatives"] = torch.randint(self.slots, (clips, self.k))
        return item


# --------------------------------------------------------------------------------------------
# The objective


class SaccadeObjective(nn.Module):
    """The network being pre-trained (``net``), its memory bank (``bank``), the cluster
    features and the clusterings made of them."""

    def __init__(self, clip_config: ClipConfig, config: PretrainConfig, videos: int, epochs: int):
        super().__init__()
        self.config, self.clip_config, self.epochs = config, clip_config, epochs
        self.net: SaccadeNet = build(clip_config)
        slots = config.focus_num * videos
        self.bank = MemoryBank(slots, self.net.feature_dim)
        self.register_buffer("cluster_features", torch.zeros(slots, clip_config.embed_dim))
        self.register_buffer("cluster_epoch", torch.tensor(-1, dtype=torch.int64))
        mean, std = _norm(clip_config)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.clusterings: list[Clustering] = []
        self.cluster_source: Dataset | None = None  # the cluster-feature clips (set by the task)
        self.cluster_batch = 8
        self.cluster_workers = 0

    @property
    def slots(self) -> int:
        return self.bank.memory.shape[0]

    def normalise(self, clips: torch.Tensor) -> torch.Tensor:
        """``[..., 3, T, H, W]`` in [0, 1] -> the encoder's input normalisation."""
        shape = (3, 1, 1, 1)
        return (clips - self.mean.view(shape)) / self.std.view(shape)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        clips, masks = batch["clips"], batch["masks"]
        b, n = clips.shape[:2]
        if n != 2 * self.config.focus_num:
            raise InputError(f"expected {2 * self.config.focus_num} clips per video, got {n}")
        out = self.net(self.normalise(clips.flatten(0, 1)), masks.flatten(0, 1), ppm=True)
        feat = out["feat"]
        z = self.net.embed(feat)
        y = batch["slot"].flatten()
        nce = nce_loss(z, y, batch["negatives"].flatten(0, 1), self.bank, self.net.embed,
                       self.config.nce_t)  # fmt: skip
        ppm = self._ppm(out["proj"], b, n)
        self.bank.update(y, feat.detach(), self.config.nce_m)
        loss = self.config.nce_weight * nce + self.config.ppm_weight * ppm
        parts = {"nce_loss": float(nce.detach()), "ppm_loss": float(ppm.detach())}
        if self.clusterings:
            proto = proto_nce(z, y, self.clusterings, negatives=self.config.nce_k)
            loss = loss + self.config.proto_weight * proto
            parts["proto_loss"] = float(proto.detach())
        return loss, parts

    def _ppm(self, proj: torch.Tensor, b: int, n: int) -> torch.Tensor:
        """Spec 3.2 / 4.2: the A-clips' maps concatenated on time predict the B-clips' and
        back; the targets are detached (inside ``ppm_loss``)."""
        c, t, h, w = proj.shape[1:]
        maps = proj.view(b, n, c, t, h, w).transpose(1, 2)  # [B, C, 6, t, h, w]
        half = n // 2
        first = maps[:, :, :half].reshape(b, c, half * t, h, w)
        second = maps[:, :, half:].reshape(b, c, half * t, h, w)
        kind = self.config.ppm_loss
        return 0.5 * (
            ppm_loss(self.net.ppm(first), second, kind)
            + ppm_loss(self.net.ppm(second), first, kind)
        )

    # ----------------------------------------------------------------------------------------
    # Clustering (spec 4.3)

    def before_epoch(self, epoch: int, resumed: bool) -> None:
        """At the start of a clustering epoch: new cluster features and clusterings; on the
        first epoch of a resumed run: the clusterings of the saved features."""
        if self.config.clusters_at(epoch, self.epochs) and int(self.cluster_epoch) != epoch:
            self._cluster_features()
            self.cluster_epoch.fill_(epoch)
            self._cluster()
        elif resumed and int(self.cluster_epoch) >= 0:
            self._cluster()

    @torch.no_grad()
    def _cluster_features(self) -> None:
        """z of every video's fixation clips (eval mode, focus on) into ``cluster_features``,
        each process computing a share and all of them gathering the rest."""
        if self.cluster_source is None:
            raise InputError("the objective has no cluster-feature clips to compute")
        rank, world = rank_world()
        device = self.cluster_features.device
        share = list(range(rank, len(self.cluster_source), world))
        loader = DataLoader(
            torch.utils.data.Subset(self.cluster_source, share),
            batch_size=self.cluster_batch,
            num_workers=self.cluster_workers,
        )
        training = self.training
        self.eval()
        features = torch.zeros_like(self.cluster_features)
        try:
            for batch in loader:
                clips = batch["clips"].to(device)
                masks = batch["masks"].to(device)
                index = batch["index"].to(device)
                k = clips.shape[1]
                out = self.net(self.normalise(clips.flatten(0, 1)), masks.flatten(0, 1), ppm=False)
                z = self.net.embed(out["feat"]).float()
                slots = (index[:, None] * k + torch.arange(k, device=device)).flatten()
                features[slots] = z
        finally:
            self.train(training)
        if world > 1:
            torch.distributed.all_reduce(features)  # each slot is written by one process
        self.cluster_features.copy_(features)

    def _cluster(self) -> None:
        """Three k-means of the cluster features (process 0; the others receive them)."""
        rank, world = rank_world()
        ks = self.config.clusters_k
        seeds = [1234 + i for i in range(len(ks))]
        device = self.cluster_features.device
        if rank == 0:
            made = cluster(self.cluster_features.float().cpu(), ks, seeds, t=self.config.nce_t)
        if world > 1:
            shared = [made if rank == 0 else None]
            torch.distributed.broadcast_object_list(shared, src=0)
            made = shared[0]
        self.clusterings = [
            Clustering(c.centroids.to(device), c.assign.to(device), c.phi.to(device)) for c in made
        ]
        log.info("clustered %d fixations into %s clusters", self.slots, ks)


def _norm(config: ClipConfig) -> tuple[torch.Tensor, torch.Tensor]:
    if config.input_norm == "imagenet":
        return torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return torch.zeros(3), torch.ones(3)


# --------------------------------------------------------------------------------------------
# The task


def clip_config_for(config: TrainConfig) -> ClipConfig:
    """The network of ``--encoder`` (the spec's PPM p for it) with ``--set model.*``."""
    try:
        clip = ClipConfig.for_backbone(config.encoder, size=config.image_size, **config.model)
        clip.check()
    except (TypeError, InputError) as error:
        raise UsageError(f"bad model setting for {config.encoder} ({error})") from None
    return clip


def quirks_for(config: PretrainConfig) -> Quirks:
    return Quirks(
        mask_flip=config.mask_flip, mask_jitter=config.mask_jitter, test_jitter=config.test_jitter
    )


def saccade_task(config: TrainConfig) -> Task:
    """``train pretrain --method saccade``: the objective, its clips and its model export."""
    pcfg = pretrain_config(config)
    clip_config = clip_config_for(config)
    tree = ActionTree.open(config.data)
    videos = action_videos(
        tree, "train", config.fold, grid=pcfg.grid, scanpaths=pcfg.fixations == "scanpath",
        clip_len=clip_config.clip_len,
    )  # fmt: skip
    slots = pcfg.focus_num * len(videos)
    clusters = any(pcfg.clusters_at(e, config.epochs) for e in range(config.epochs))
    if clusters and max(pcfg.clusters_k) > slots:
        raise UsageError(
            f"pretext.num_clusters {pcfg.num_clusters}: more prototypes than the {slots} "
            f"fixations of {len(videos)} videos; lower it (--set pretext.num_clusters=...)"
        )
    objective = SaccadeObjective(clip_config, pcfg, len(videos), config.epochs)
    quirks = quirks_for(pcfg)
    clips = SaccadeClips(
        videos,
        clip_len=clip_config.clip_len,
        size=clip_config.size,
        focus_num=pcfg.focus_num,
        dedup=pcfg.dedup,
        random_fixations=pcfg.fixations == "random",
        quirks=quirks,
        seed=config.seed,
        grid=pcfg.grid,
        margin=pcfg.margin,
    )
    objective.cluster_source = cluster_clips(videos, clip_config, pcfg, quirks, clips)
    objective.cluster_batch = max(1, config.batch_size // max(1, rank_world()[1]))
    objective.cluster_workers = config.workers
    dataset = WithNegatives(clips, objective.slots, pcfg.nce_k)

    def export(module: nn.Module, run: Path) -> Path:
        save_model(module.net, clip_config, run / MODEL_FILE)
        return run / MODEL_FILE

    return Task(
        objective,
        dataset,
        export=export,
        before_epoch=objective.before_epoch,
        param_groups=lambda module, cfg: head_groups(module, cfg, pcfg.lr_ratio),
    )


def cluster_clips(videos, clip_config, pcfg, quirks, clips: SaccadeClips) -> Dataset:
    """Spec 4.3: per video, the clip at each fixation's start with its cell's mask, centre
    crop, colour jitter p 0.3 (``test_jitter``)."""
    return EvalClips(
        videos,
        clip_len=clip_config.clip_len,
        size=clip_config.size,
        jitter_p=0.3 if quirks.test_jitter else 0.0,
        masks=True,
        rows_for_masks=clips,
        quirks=quirks,
    )


def head_groups(module: nn.Module, config: TrainConfig, ratio: float) -> list[dict]:
    """Weight decay on every parameter (spec 5); the embedding head at ``lr x lr_ratio``."""
    head = [p for n, p in module.named_parameters() if n.startswith("net.head.")]
    ids = {id(p) for p in head}
    rest = [p for p in module.parameters() if id(p) not in ids and p.requires_grad]
    return [
        {"params": rest, "weight_decay": config.weight_decay},
        {"params": head, "weight_decay": config.weight_decay, "lr": config.peak_lr * ratio},
    ]
