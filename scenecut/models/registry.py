"""The registry of pretrained weights: one record per downloadable checkpoint.

The registry is the one source of truth; ``weights/README.md`` is generated from it
(``python -m scenecut.models > weights/README.md``) and a test keeps the two in step.
A record holds candidate URLs, tried in order until one gives the file (``download``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from scenecut.errors import ScenecutError, UsageError
from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD


class WeightsError(ScenecutError):
    """An unknown weights name, or registered weights that are not in the cache."""


class DownloadError(WeightsError):
    """A download failed: unreachable URL, HTTP error, or a file that fails its checks."""


class OfflineError(WeightsError, UsageError):
    """Weights that must be downloaded, asked for while downloads are off (exit code 2)."""


class WeightsChanged(WeightsError):
    """An installed file no longer matches the size and sha256 recorded when it came."""


@dataclass(frozen=True)
class Preprocessing:
    """How images were prepared for the checkpoint: shorter side -> ``resize``, centre ``crop``."""

    resize: int
    interpolation: Literal["bicubic", "bilinear"]
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    keyframes: int = 1  # keyframes per shot the encoder sees
    # "mean": each keyframe encoded alone, features averaged (BaSSL); "channels": keyframes
    # stacked on the channel axis, 9 channels in (SCRL); None: one image.
    fusion: Literal["mean", "channels"] | None = None


# BaSSL / ModelScope test transform (spec 1.1): Resize(256, BICUBIC), CenterCrop(224).
BASSL_PREPROCESSING = Preprocessing(resize=256, interpolation="bicubic", keyframes=3, fusion="mean")
# SCRL extract_embeddings.py (spec 4.4): Resize(224) (torchvision's bilinear), CenterCrop(224).
SCRL_PREPROCESSING = Preprocessing(
    resize=224, interpolation="bilinear", keyframes=3, fusion="channels"
)


@dataclass(frozen=True)
class WeightRecord:
    """One downloadable checkpoint. ``sha256``/``size`` are None where the publisher gives none."""

    name: str
    # Candidate URLs of the same file, tried in order; () where there is no direct link (a
    # Google Drive folder: see ``homepage``).
    urls: tuple[str, ...]
    filename: str  # the file's name in the cache (the archive's, for tarballs)
    # encoder: a pre-trained shot encoder; pretrained: encoder + CRN from self-supervised
    # pre-training (no boundary head yet); finetuned: scores scene boundaries as it is
    kind: Literal["encoder", "pretrained", "finetuned"]
    architecture: str  # "resnet50", "resnet50-9ch", "bassl-crn"
    preprocessing: Preprocessing
    licence: str
    title: str  # a few words for the download line: what this is, from whom
    description: str
    sha256: str | None = None
    size: int | None = None
    # For tarballs: the checkpoint's file name inside (any folder); when no member has that
    # name, the one *.ckpt file is taken. The member used is recorded beside the install.
    archive_member: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # as reported by the publisher
    url_verified: bool = False  # every URL copied verbatim from the publisher
    url_source: str = ""
    homepage: str = ""

    @property
    def url(self) -> str | None:
        """The first candidate URL."""
        return self.urls[0] if self.urls else None

    @property
    def sha256_prefix(self) -> str | None:
        """The hash prefix torchvision-style URLs embed (``resnet50-11ad3fa6.pth``), if any."""
        if self.url is None:
            return None
        match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z]", self.url.rsplit("/", 1)[-1])
        return match.group(1) if match else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["urls"] = list(self.urls)
        data["sha256_prefix"] = self.sha256_prefix
        return data


def _torchvision(name: str, file: str, version: str, top1: float, resize: int, docs: str):
    return WeightRecord(
        name=name,
        urls=(f"https://download.pytorch.org/models/{file}",),
        filename=file,
        kind="encoder",
        architecture="resnet50",
        # torchvision's own eval transform for these weights (bilinear, unlike BaSSL's bicubic).
        preprocessing=Preprocessing(resize=resize, interpolation="bilinear"),
        licence="BSD-3-Clause (torchvision)",
        title=f"torchvision ResNet-50 {version}",
        description=f"torchvision ResNet-50 ImageNet-1k {version}, with fc. {docs}",
        metrics={"imagenet_top1": top1},
        url_verified=True,
        url_source=f"torchvision ResNet50_Weights.{version}",
        homepage="https://pytorch.org/vision/stable/models/resnet.html",
    )


def _kakao(name: str, top: str, ap: float, kind: str, architecture: str, what: str):
    return WeightRecord(
        name=name,
        urls=(f"https://twg.kakaocdn.net/brainrepo/bassl/checkpoints/{top}.tar.gz",),
        filename=f"{top}.tar.gz",
        kind=kind,
        architecture=architecture,
        preprocessing=BASSL_PREPROCESSING,
        licence="Apache-2.0 (kakaobrain/bassl)",
        title=f"Kakao Brain {what}, pre-trained, not fine-tuned",
        description=(
            f"Kakao Brain {what}, self-supervised on MovieNet, not fine-tuned: needs fine-tuning "
            "for scene boundaries. PyTorch Lightning 1.3 checkpoint plus config.json. "
            "The member is found by name: model-v1.ckpt (what kakaobrain/bassl's loader reads "
            f"from <ckpt>/{top}/), else the one *.ckpt; the archive's layout is not verified."
        ),
        archive_member="model-v1.ckpt",
        metrics={"movienet_ap_after_finetune": ap},
        url_verified=True,
        url_source="kakaobrain/bassl README, Model Zoo",
        homepage="https://github.com/kakaobrain/bassl",
    )


def _scrl(name: str, imagenet: bool, ap: float, f1: float, folder: str):
    init = "with" if imagenet else "without"
    return WeightRecord(
        name=name,
        urls=(),
        filename=f"{name}.pth.tar",
        kind="encoder",
        architecture="resnet50-9ch",
        preprocessing=SCRL_PREPROCESSING,
        licence="unstated (the repo LICENSE lists only third-party notices)",
        title=f"SCRL encoder, {init} ImageNet init",
        description=(
            f"SCRL MoCo encoder pre-trained {init} ImageNet-1k init "
            f"(SCRL_pretrain_{init}_imagenet1k.yaml); keys module.encoder_q.*, conv1 [64,9,7,7]. "
            "Published only as a Google Drive folder (checkpoint file name inside unknown): "
            "download by hand from the homepage and `scenecut weights import` it."
        ),
        metrics={"movienet_ap_per_movie": ap, "movienet_f1_per_movie": f1},
        url_source="TencentYoutuResearch/SceneSegmentation-SCRL README, Models",
        homepage=f"https://drive.google.com/drive/folders/{folder}",
    )


# ModelScope's file URL, as its hub client builds it (modelscope/hub/file_download.py
# get_file_download_url: {endpoint}/api/v1/models/{model_id}/repo?Revision=..&FilePath=..;
# endpoint https:// + DEFAULT_MODELSCOPE_DOMAIN = www.modelscope.cn since August 2022).
_MODELSCOPE_MODEL = "cv_resnet50-bert_video-scene-segmentation_movienet"
_MODELSCOPE_FILE = "repo?Revision=master&FilePath=pytorch_model.pt"
_MODELSCOPE_URLS = (
    # The model page lists it under iic/ now (not checked here: no network).
    f"https://www.modelscope.cn/api/v1/models/iic/{_MODELSCOPE_MODEL}/{_MODELSCOPE_FILE}",
    # The id ModelScope's own pipeline tests and metainfo.py use.
    f"https://www.modelscope.cn/api/v1/models/damo/{_MODELSCOPE_MODEL}/{_MODELSCOPE_FILE}",
    f"https://modelscope.cn/api/v1/models/damo/{_MODELSCOPE_MODEL}/{_MODELSCOPE_FILE}",
)

REGISTRY: dict[str, WeightRecord] = {
    r.name: r
    for r in (
        WeightRecord(
            name="bassl",
            urls=_MODELSCOPE_URLS,
            filename="modelscope-bassl.pt",  # the name older versions cached it under
            kind="finetuned",
            architecture="bassl-crn",
            preprocessing=BASSL_PREPROCESSING,
            licence="not checked: see the ModelScope model card",
            title="BaSSL fine-tuned on MovieNet-SSeg, from ModelScope",
            description=(
                f"ModelScope {_MODELSCOPE_MODEL} pytorch_model.pt (damo/, now iic/): "
                "BaSSL fine-tuned on MovieNet-SSeg, flat state dict with shot_encoder.*, crn.*, "
                "head_sbd.* (class 1 = boundary). The only public fine-tuned BaSSL. ModelScope "
                "thresholds at > 0.8. No published hash: the first download's sha256 is "
                "recorded and checked on every later load."
            ),
            metrics={"movienet_ap": 57.40, "movienet_f1": 47.02},
            url_source=(
                "URL form and default domain from the ModelScope hub client "
                "(get_file_download_url, DEFAULT_MODELSCOPE_DOMAIN); the iic/ id from the model "
                "page, unverified; that the file downloads without a login, unverified"
            ),
            homepage=f"https://www.modelscope.cn/models/iic/{_MODELSCOPE_MODEL}",
        ),
        _torchvision(
            "resnet50-imagenet-v1",
            "resnet50-0676ba61.pth",
            "IMAGENET1K_V1",
            76.13,
            256,
            "The original-paper recipe.",
        ),
        _torchvision(
            "resnet50-imagenet-v2",
            "resnet50-11ad3fa6.pth",
            "IMAGENET1K_V2",
            80.858,
            232,
            "torchvision's newer training recipe.",
        ),
        WeightRecord(
            name="resnet50-imagenet-legacy",
            urls=("https://download.pytorch.org/models/resnet50-19c8e357.pth",),
            filename="resnet50-19c8e357.pth",
            kind="encoder",
            architecture="resnet50",
            preprocessing=Preprocessing(resize=256, interpolation="bilinear"),
            licence="BSD-3-Clause (torchvision)",
            title="torchvision ResNet-50, pre-0.13 file",
            description=(
                "The pre-0.13 torchvision ResNet-50 file that SCRL initialises from "
                "(all tensors but conv1 and fc)."
            ),
            url_verified=True,
            url_source="TencentYoutuResearch/SceneSegmentation-SCRL README",
            homepage="https://github.com/TencentYoutuResearch/SceneSegmentation-SCRL",
        ),
        _kakao(
            "bassl-pretrained",
            "bassl",
            56.26,
            "pretrained",
            "bassl-crn",
            "BaSSL, 10 epochs (encoder + CRN)",
        ),
        _kakao(
            "bassl-pretrained-40epoch",
            "bassl_40epoch",
            57.40,
            "pretrained",
            "bassl-crn",
            "BaSSL, 40 epochs (encoder + CRN)",
        ),
        _kakao(
            "simclr-instance", "Simclr_instance", 51.51, "encoder", "resnet50", "SimCLR instance"
        ),
        _kakao(
            "simclr-temporal", "Simclr_temporal", 50.05, "encoder", "resnet50", "SimCLR temporal"
        ),
        _kakao("simclr-nn", "Simclr_NN", 51.17, "encoder", "resnet50", "SimCLR NN (ShotCoL)"),
        _scrl("scrl", False, 55.16, 51.32, "1ZYg9PFRU_lt3G5qJrldkguA52T2oxErR"),
        _scrl("scrl-imagenet", True, 56.65, 52.45, "1BG5ZLqrPKKGTtDIZj8aps_QuWc6K3c3V"),
    )
}

# Names older versions used. Asked for, they say the new name instead of "unknown". (The
# old `bassl` was Kakao's pre-trained tarball; `bassl` is now the fine-tuned model a user
# means, so that name cannot also stay an alias.)
RENAMED = {"modelscope-bassl": "bassl", "bassl-40epoch": "bassl-pretrained-40epoch"}


def renamed_message(name: str) -> str | None:
    """What to say when a user asks for a name an older version used, else None."""
    new = RENAMED.get(name)
    if new is None:
        return None
    return f"weights {name!r} are now called {new!r}; use {new}"


def get(name: str) -> WeightRecord:
    """The registered record called ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        if message := renamed_message(name):
            raise WeightsError(message) from None
        known = ", ".join(REGISTRY)
        raise WeightsError(
            f"unknown weights {name!r}; registered names: {known} (see `scenecut weights list`)"
        ) from None


def registry_markdown() -> str:
    """The table in ``weights/README.md``."""
    lines = [
        "# Registered weights",
        "",
        "Generated from `scenecut/models/registry.py`",
        "(`python -m scenecut.models > weights/README.md`); edit the registry there, not this",
        "file. Files download to `$SCENECUT_HOME/weights` (default `~/.cache/scenecut/weights`)",
        "with `scenecut weights pull NAME`, or on first use by `--model NAME` (`segment`, `eval`)",
        "and `train extract --encoder NAME`; `--offline` or `SCENECUT_OFFLINE=1` forbids that.",
        "A record's URLs are tried in order. `sha256`: `-` means the publisher gives none (a",
        "torchvision file name's hash prefix is still checked); then the sha256 of the first",
        "download is recorded beside the file and checked on every later load",
        "(`scenecut weights info NAME` says which). Metrics are as reported by the publisher;",
        "none were re-measured here.",
        "",
        "| name | kind | architecture | preprocessing | reported | sha256 | URLs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in REGISTRY.values():
        p = r.preprocessing
        prep = f"{p.resize} {p.interpolation} / {p.crop}, {p.keyframes} kf" + (
            f" {p.fusion}" if p.fusion else ""
        )
        metrics = ", ".join(f"{k} {v:g}" for k, v in r.metrics.items()) or "-"
        sha = r.sha256 or (f"prefix {r.sha256_prefix}" if r.sha256_prefix else "-")
        if r.urls:
            label = "link" if r.url_verified else "link (unverified)"
            url = ", ".join(f"[{label} {i}]({u})" for i, u in enumerate(r.urls, 1))
        else:
            url = f"none: [by hand]({r.homepage})"
        lines.append(
            f"| `{r.name}` | {r.kind} | {r.architecture} | {prep} | {metrics} | {sha} | {url} |"
        )
    lines += ["", "## Notes", ""]
    lines += [
        f"- `{r.name}`: {r.description} Licence: {r.licence}. URLs: {r.url_source}."
        for r in REGISTRY.values()
    ]
    renamed = ", ".join(f"`{old}` is now `{new}`" for old, new in RENAMED.items())
    lines += [
        "",
        f"Renamed: {renamed}; `bassl` was Kakao's pre-trained tarball, now `bassl-pretrained`.",
    ]
    return "\n".join(lines) + "\n"
