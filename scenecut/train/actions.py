"""Clip encoders judged on action labels (SACCADE.md sections 6 and 7).

* ``retrieval``: ``scenecut eval retrieval``. Every video's 10 uniformly spaced 16-frame clips
  through the encoder (focus off), the head's L2-normalised outputs averaged and normalised
  again; the test split queries the train split by cosine similarity; a query is right at k
  when any of its k nearest train videos has its class (VCOP / IIC convention).
* ``probe_task``: ``scenecut train probe``. A linear probe (L2 norm, BatchNorm, linear) or full
  fine-tuning (dropout 0.7, linear) of the pre-trained backbone on the train split, one random
  clip per video per epoch; test top-1 from the 10 clips' averaged logits.

``protocol="reference"`` reproduces ``downstream.py``: raw [0, 1] inputs (pre-training saw
ImageNet-normalised ones), the backbone's BN statistics adapting during the probe, colour
jitter (p 0.3) on test clips, and the epoch kept by *test* accuracy (so the figure is the best
test accuracy over epochs). ``protocol="clean"`` normalises as in pre-training, freezes BN
under the linear probe (fine-tuning trains it), drops the test jitter and keeps the epoch by a
validation split carved from train, so the test split is looked at once. Retrieval keeps every
video (the reference drops the last partial batch: 1 train and 7 test UCF101 videos).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from scenecut.data.actions import ActionTree
from scenecut.errors import InputError, UsageError
from scenecut.files import write_json
from scenecut.models import hub
from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD
from scenecut.models.saccade import (
    ActionClassifier,
    ClipConfig,
    SaccadeNet,
    build,
    load_model,
    save_classifier,
)
from scenecut.train.clips import EvalClips, TrainClips
from scenecut.train.config import MODEL_FILE, TrainConfig
from scenecut.train.loop import Task
from scenecut.train.retrieval import retrieval_topk
from scenecut.train.saccade import action_videos

log = logging.getLogger(__name__)

TEST_FILE = "test.json"  # under a probe run: the test split's top-1 of the kept model
KS = (1, 5, 10, 20, 50)


RANDOM = "random:"  # ``random:r3d10``: a randomly initialised encoder, the protocol's baseline


def load_clip_encoder(path: str, seed: int = 0) -> tuple[SaccadeNet, ClipConfig]:
    """A clip encoder from our safetensors file, the reference's ``.pth``, a name given by
    ``scenecut weights import``, or ``random:BACKBONE`` initialised from ``seed``."""
    if path.startswith(RANDOM):
        try:
            config = ClipConfig.for_backbone(path[len(RANDOM) :])
            config.check()
        except InputError as error:
            raise UsageError(f"--model {path}: {error}") from None
        torch.manual_seed(seed)
        return build(config), config
    return load_model(hub.resolve(path))


class Normalise(nn.Module):
    """``[N, 3, T, H, W]`` in [0, 1] -> what the encoder takes (``none`` leaves it)."""

    def __init__(self, kind: str):
        super().__init__()
        mean, std = (
            (IMAGENET_MEAN, IMAGENET_STD) if kind == "imagenet" else ((0.0,) * 3, (1.0,) * 3)
        )
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


# --------------------------------------------------------------------------------------------
# Retrieval (spec 6)


@torch.no_grad()
def video_embeddings(
    net: SaccadeNet, videos, *, jitter: bool, batch_size: int = 8, workers: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """One L2-normalised embedding per video: the mean of its 10 clips' head outputs."""
    norm = Normalise(net.config.input_norm).to(device)
    net = net.to(device).eval()
    data = EvalClips(
        videos, clip_len=net.config.clip_len, size=net.config.size, jitter_p=0.3 if jitter else 0.0
    )
    out = torch.zeros(len(videos), net.config.embed_dim)
    for batch in DataLoader(data, batch_size=batch_size, num_workers=workers):
        clips = batch["clips"].to(device)
        b, k = clips.shape[:2]
        z = net.encode(norm(clips.flatten(0, 1))).float().view(b, k, -1)
        out[batch["index"]] = F.normalize(z.mean(1), dim=1).cpu()
    return out


def retrieval(
    root: str | Path, model: str, *, fold: int = 1, protocol: str = "reference",
    batch_size: int = 8, workers: int = 0, device: str = "cpu",
) -> dict:  # fmt: skip
    """Spec 6: the test split's videos query the train split's; top-k accuracy in percent."""
    tree = ActionTree.open(root)
    net, config = load_clip_encoder(model)
    jitter = protocol == "reference"
    gallery = action_videos(tree, "train", fold, scanpaths=False, clip_len=config.clip_len)
    queries = action_videos(tree, "test", fold, scanpaths=False, clip_len=config.clip_len)
    kw = dict(jitter=jitter, batch_size=batch_size, workers=workers, device=device)
    g = video_embeddings(net, gallery, **kw)
    q = video_embeddings(net, queries, **kw)
    labels = lambda items: torch.tensor([label for _, _, label in items])  # noqa: E731
    ks = tuple(k for k in KS if k <= len(gallery))
    top = retrieval_topk(q, labels(queries), g, labels(gallery), ks)
    return {
        "data": str(root),
        "model": str(model),
        "backbone": config.backbone,
        "fold": fold,
        "protocol": protocol,
        "gallery": len(gallery),
        "queries": len(queries),
        "top_k": {str(k): round(100.0 * float(top[k]), 2) for k in ks},
    }


# --------------------------------------------------------------------------------------------
# Linear probe and fine-tuning (spec 7)


class ProbeModule(nn.Module):
    """The classifier with its input normalisation and loss; ``freeze_bn`` keeps the backbone's
    BatchNorm statistics fixed (the clean protocol)."""

    def __init__(self, classifier: ActionClassifier, norm: str, freeze_bn: bool):
        super().__init__()
        self.classifier, self.norm, self.freeze_bn = classifier, Normalise(norm), freeze_bn

    def train(self, mode: bool = True) -> ProbeModule:
        super().train(mode)
        if mode and self.freeze_bn:
            for module in self.classifier.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def logits(self, clips: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(clips))

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.logits(batch["clips"][:, 0])
        loss = F.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(1) == batch["label"]).float().mean()
        return loss, {"accuracy": float(accuracy)}


@torch.no_grad()
def top1(module: ProbeModule, videos, *, jitter: bool, batch_size: int, workers: int) -> float:
    """Top-1 accuracy (percent) of the 10 clips' averaged pre-softmax logits."""
    device = next(module.parameters()).device
    config = module.classifier.config
    data = EvalClips(
        videos, clip_len=config.clip_len, size=config.size, jitter_p=0.3 if jitter else 0.0
    )
    training = module.training
    module.eval()
    right = 0
    try:
        for batch in DataLoader(data, batch_size=batch_size, num_workers=workers):
            clips = batch["clips"].to(device)
            b, k = clips.shape[:2]
            logits = module.logits(clips.flatten(0, 1)).view(b, k, -1).mean(1)
            right += int((logits.argmax(1).cpu() == batch["label"]).sum())
    finally:
        module.train(training)
    return 100.0 * right / max(1, len(videos))


def carve_validation(videos: Sequence, names: Sequence[str]) -> tuple[list, list]:
    """The clean protocol's validation split: UCF101-style names (``_gNN_``) hold out whole
    groups (every 9th group: no actor is in both); other names every 9th video of a class."""
    groups = [re.search(r"_g(\d+)_", name) for name in names]
    if all(groups):
        numbers = sorted({int(g.group(1)) for g in groups})
        held = set(numbers[4::9]) or {numbers[-1]}
        val = [int(g.group(1)) in held for g in groups]
    else:
        seen: dict[int, int] = {}
        val = []
        for _, _, label in videos:
            seen[label] = seen.get(label, 0) + 1
            val.append(seen[label] % 9 == 0)
    train = [v for v, held in zip(videos, val, strict=True) if not held]
    kept = [v for v, held in zip(videos, val, strict=True) if held]
    if not train or not kept:
        raise InputError("the train split is too small to carve a validation split from")
    return train, kept


def probe_task(config: TrainConfig) -> Task:
    """``train probe``: the classifier on the pre-trained backbone, its clips and its export."""
    tree = ActionTree.open(config.data)
    net, clip_config = load_clip_encoder(config.init or RANDOM + "r3d10", config.seed)
    mode = "probe" if config.head == "linear" else "finetune"
    classifier = ActionClassifier(net.backbone, len(tree.classes), mode=mode)
    classifier.config = clip_config
    clean = config.protocol == "clean"
    # clean: the linear probe reads frozen features, BN statistics included; fine-tuning
    # (--head full) trains the whole backbone, its BN statistics with it
    freeze_bn = clean and mode == "probe"
    module = ProbeModule(classifier, clip_config.input_norm if clean else "none", freeze_bn)
    length = clip_config.clip_len
    videos = action_videos(tree, "train", config.fold, scanpaths=False, clip_len=length)
    names = [v.name for v in tree.split("train", config.fold, min_frames=length + 1)]
    test = action_videos(tree, "test", config.fold, scanpaths=False, clip_len=length)
    train, val = carve_validation(videos, names) if clean else (videos, test)
    dataset: Dataset = TrainClips(train, clip_len=clip_config.clip_len, size=clip_config.size)
    evaluate = dict(jitter=not clean, batch_size=max(1, config.batch_size), workers=config.workers)

    def validate(m: nn.Module) -> dict[str, float]:
        return {"top1": top1(m, val, **evaluate)}

    def export(m: nn.Module, run: Path) -> Path:
        save_classifier(m.classifier, clip_config, tree.classes, run / MODEL_FILE)
        result = {
            "top1": round(top1(m, test, **evaluate), 2),
            "split": "test",
            "fold": config.fold,
            "videos": len(test),
            "head": config.head,
            "protocol": config.protocol,
            "selected_by": "validation (carved from train)" if clean else "test",
        }
        write_json(run / TEST_FILE, result, sort_keys=True)
        log.info("test top-1 %.2f%%", result["top1"])
        return run / TEST_FILE

    if mode == "probe":
        for name, param in classifier.named_parameters():
            param.requires_grad = not name.startswith("backbone.")
    if not any(p.requires_grad for p in classifier.parameters()):
        raise UsageError("the classifier has nothing to train")
    return Task(module, dataset, validate=validate, select="top1", export=export,
                param_groups=_trainable)  # fmt: skip


def _trainable(module: nn.Module, config: TrainConfig) -> list[dict]:
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": params, "weight_decay": config.weight_decay}]


def read_test(run: Path) -> dict | None:
    """The test record a finished probe run wrote, or None."""
    try:
        return json.loads((run / TEST_FILE).read_text())
    except (OSError, ValueError):
        return None
