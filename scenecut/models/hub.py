"""Pretrained weights: a registry of records, a download cache, and name-or-path resolution.

The registry below is the one source of truth; ``weights/README.md`` is generated from it
(``python -m scenecut.models > weights/README.md``) and a test keeps the two in step.

A record holds candidate URLs, tried in order until one gives the file. Downloads stream to
``<file>.part`` in small reads (resumed with an HTTP Range request from the URL that started
it; a server that stalls for ``$SCENECUT_DOWNLOAD_TIMEOUT`` seconds, default 30, or trickles
slower than 1 KiB/s over that long, is given up on and the bytes received are kept for the
next try), are checked for size and sha256 in chunks, must load as the checkpoint the record
describes, and only then move into place with ``os.replace``, so the cache never holds a
half-written or wrong file under its final name. The size and sha256 of what was installed
are written beside it (``<file>.json``) and checked on every later load: where the publisher
gives no hash, the first download is the reference. ``SCENECUT_OFFLINE=1`` forbids every
download. Nothing is fetched at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Literal

from scenecut.errors import InputError, ScenecutError, UsageError
from scenecut.files import make_dir
from scenecut.models import archives
from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD, PARTS, ModelConfig

log = logging.getLogger(__name__)


Progress = Callable[[int, int | None], None]
Notice = Callable[[str], None]  # one line for a person: what is downloaded, from where


_CHUNK = 1 << 16  # bytes per read: progress moves, and a stall loses nothing already received
_HASH_CHUNK = 1 << 20
_ATTEMPTS = 3  # connections per URL; a dropped one is resumed with a Range request
_TIMEOUT_S = 30.0  # default stall deadline, in seconds ($SCENECUT_DOWNLOAD_TIMEOUT)
_MIN_RATE = 1024  # bytes/s: slower than this over a whole stall deadline counts as a stall


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


def cache_dir() -> Path:
    """``$SCENECUT_HOME``, else ``$XDG_CACHE_HOME/scenecut``, else ``~/.cache/scenecut``."""
    if home := os.environ.get("SCENECUT_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "scenecut"


def weights_dir() -> Path:
    return cache_dir() / "weights"


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


def installed_path(record: WeightRecord) -> Path:
    """Where the checkpoint lives once pulled (a tarball's is extracted into ``<name>/``)."""
    if record.archive_member:
        return weights_dir() / record.name / PurePosixPath(record.archive_member).name
    return weights_dir() / record.filename


def is_installed(record: WeightRecord) -> bool:
    return installed_path(record).is_file()


# --------------------------------------------------------------------------------------------
# What was installed: size and sha256, recorded beside the file, checked on every load


@dataclass(frozen=True)
class Stamp:
    """The size and sha256 of an installed checkpoint when it came, and where it came from.

    ``published``: the hash the download was checked against (``"sha256"``, ``"prefix"`` for
    the 8 hex digits in a torchvision file name) or None: then this record is the only
    reference (first use). ``archive``: the tarball's own name, size, sha256 and the member
    taken from it. ``mtime_ns`` is when the file was last hashed; a file with the same size
    and time is not hashed again.
    """

    size: int
    sha256: str
    mtime_ns: int
    recorded: str  # UTC, ISO 8601
    source: str  # the URL, or how the file came ("already installed")
    published: Literal["sha256", "prefix"] | None = None
    archive: dict[str, str | int] | None = None


def stamp_path(record: WeightRecord) -> Path:
    path = installed_path(record)
    return path.with_name(path.name + ".json")


def read_stamp(record: WeightRecord) -> Stamp | None:
    """The stamp of an installed record; None when there is none (installed by an older
    version). A damaged stamp is a ``WeightsChanged`` error."""
    path = stamp_path(record)
    try:
        data = json.loads(path.read_text())
        return Stamp(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise WeightsChanged(
            f"{path} (the recorded hash of {record.name}) is unreadable ({exc}); run "
            f"`scenecut weights pull {record.name} --force` to download it again"
        ) from None


def _write_stamp(record: WeightRecord, stamp: Stamp, folder: Path | None = None) -> None:
    """Atomically (a temporary file renamed over the old one); ``folder``: a staging folder."""
    path = stamp_path(record) if folder is None else folder / stamp_path(record).name
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(asdict(stamp), indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None


def _new_stamp(path: Path, digest: str, source: str, **extra) -> Stamp:
    st = path.stat()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017
    return Stamp(st.st_size, digest, st.st_mtime_ns, now, source, **extra)


def check_installed(record: WeightRecord, full: bool = False) -> Stamp | None:
    """Raise ``WeightsChanged`` unless the installed file has the size and sha256 recorded
    when it came. The size is compared every time; the file is hashed again only when its
    modification time changed (or ``full``). None when nothing was recorded."""
    stamp = read_stamp(record)
    if stamp is None:
        return None
    path = installed_path(record)
    st = path.stat()
    again = f"run `scenecut weights pull {record.name} --force` to download it again"
    if st.st_size != stamp.size:
        raise WeightsChanged(
            f"{path} changed since it was installed on {stamp.recorded}: {st.st_size} bytes, "
            f"recorded {stamp.size}; {again}"
        )
    if st.st_mtime_ns == stamp.mtime_ns and not full:
        return stamp
    digest = file_sha256(path)
    if digest != stamp.sha256:
        raise WeightsChanged(
            f"{path} changed since it was installed on {stamp.recorded}: sha256 {digest}, "
            f"recorded {stamp.sha256}; {again}"
        )
    if st.st_mtime_ns != stamp.mtime_ns:
        # Touched, not changed: remember the new time (a read-only cache is fine too).
        with contextlib.suppress(DownloadError):
            _write_stamp(record, replace(stamp, mtime_ns=st.st_mtime_ns))
    return stamp


@dataclass(frozen=True)
class FileCheck:
    """How one file of a record is (or will be) verified, for ``weights info``."""

    file: str
    role: Literal["download", "checkpoint", "download and checkpoint"]
    published: str | None  # the publisher's hash, as "sha256 <hex>" or "prefix <hex>"
    recorded: str | None  # the sha256 recorded at the first download
    verified: Literal["published hash", "first use", "not verified", "not installed"]
    note: str


def verification(record: WeightRecord) -> list[FileCheck]:
    """Which files of ``record`` a published hash verifies, which only the hash recorded at
    their first download, and which nothing (installed by an older version)."""
    published = (
        f"sha256 {record.sha256}"
        if record.sha256
        else (f"prefix {record.sha256_prefix}" if record.sha256_prefix else None)
    )
    installed = is_installed(record)
    stamp = read_stamp(record) if installed else None
    if not installed:
        how = (
            "checked against the published hash when downloaded"
            if published
            else "no published hash: the first download's sha256 will be recorded"
        )
        verdict = "not installed"
    elif stamp is None:
        how = (
            "installed by an older scenecut, before hashes were recorded; "
            f"`scenecut weights pull {record.name}` checks it and records its sha256"
        )
        verdict = "not verified"
    else:
        how = f"sha256 recorded on {stamp.recorded} from {stamp.source}; checked on every load"
        verdict = "published hash" if stamp.published else "first use"
    file = installed_path(record).name
    if not record.archive_member:
        recorded = stamp.sha256 if stamp else None
        return [FileCheck(file, "download and checkpoint", published, recorded, verdict, how)]
    archive = (stamp.archive or {}) if stamp else {}
    kept = f"deleted after extraction; took {archive['member']}" if archive else ""
    return [
        FileCheck(
            record.filename,
            "download",
            published,
            str(archive["sha256"]) if archive else None,
            verdict if published or not stamp else "first use",
            kept or ("deleted after extraction" if installed else how),
        ),
        FileCheck(
            file,
            "checkpoint",
            None,
            stamp.sha256 if stamp else None,
            "first use" if stamp else verdict,
            how,
        ),
    ]


IMPORTED_DIR = "imported"  # under weights_dir(): checkpoints converted by `weights import`


def imported_path(name: str) -> Path:
    """Where ``scenecut weights import ... --as NAME`` keeps the converted checkpoint."""
    if not name or name in REGISTRY or not all(c.isalnum() or c in "-_." for c in name):
        raise WeightsError(
            f"{name!r} cannot name imported weights: use letters, digits, '-', '_' or '.', "
            "and not a registered name"
        )
    return weights_dir() / IMPORTED_DIR / f"{name}.safetensors"


def imported_names() -> list[str]:
    folder = weights_dir() / IMPORTED_DIR
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def boundary_models() -> list[tuple[str, Path]]:
    """Installed checkpoints that can score boundaries, best first: pulled fine-tuned records
    (in registry order), then imported models that carry a boundary head. One that does not
    load, or no longer matches the sha256 recorded when it came, is skipped with a warning.
    Never downloads."""
    records = [r for r in REGISTRY.values() if r.kind == "finetuned" and is_installed(r)]
    names = imported_names()
    if not records and not names:
        return []
    from scenecut.models.checkpoints import check_file, checkpoint_parts

    candidates = [(r.name, installed_path(r)) for r in records]
    candidates += [(n, imported_path(n)) for n in names]
    found = []
    for name, path in candidates:
        parts = checkpoint_parts(path) if name in names else PARTS
        if parts and not ("shot_encoder" in parts and {"head_sbd", "lstm_head"} & set(parts)):
            continue  # an imported encoder or head, for training; no parts: broken, said below
        try:
            # A file unchanged since it was installed was checked to load then.
            if name in names or check_installed(REGISTRY[name]) is None:
                check_file(path)
        except WeightsChanged as exc:  # says how to get it again
            log.warning("skipping %s: %s", name, exc)
            continue
        except ScenecutError as exc:
            again = (
                f"pull {name} --force"
                if name in REGISTRY
                else f"import FILE --as {name} --overwrite"
            )
            log.warning("skipping %s: %s (`scenecut weights %s` replaces it)", name, exc, again)
            continue
        found.append((name, path))
    return found


def resolve(
    name_or_path: str | os.PathLike,
    *,
    fetch: bool = False,
    offline: bool | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Path:
    """A registered name, an imported name, or an existing local file -> the checkpoint.

    A registered name must be in the cache (its recorded size and sha256 are checked), or,
    with ``fetch``, is downloaded now unless ``offline`` (default: ``$SCENECUT_OFFLINE``);
    ``progress`` and ``notice`` are ``download``'s.
    """
    name = str(name_or_path)
    if name in REGISTRY:
        record = REGISTRY[name]
        if is_installed(record):
            check_installed(record)
            return installed_path(record)
        if not fetch:
            raise WeightsError(
                f"weights {name!r} are not downloaded; run `scenecut weights pull {name}`"
            )
        return download(record, progress=progress, notice=notice, offline=offline)
    if name in imported_names():
        return imported_path(name)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise WeightsError(f"{path} is not a file; give a checkpoint file or a registered name")
    if message := renamed_message(name):
        raise WeightsError(message)
    raise WeightsError(
        f"{name!r} is neither a registered or imported weights name nor an existing file "
        "(see `scenecut weights list`)"
    )


@dataclass(frozen=True)
class ImportedWeights:
    name: str
    path: Path
    source: str  # the format it came from: scenecut, modelscope, lightning, torchvision, scrl
    parts: tuple[str, ...]  # which of shot_encoder, crn, head_sbd it holds
    encoder: str


def import_weights(
    paths: str | os.PathLike | Sequence[str | os.PathLike], name: str, overwrite: bool = False
) -> ImportedWeights:
    """Convert foreign checkpoints into our safetensors format under ``name`` in the cache.

    Each file is read as data only (``torch.load(weights_only=True)``), its keys mapped to ours
    and checked tensor by tensor; a checkpoint that does not match is refused. A scenecut
    safetensors file keeps its own configuration. Several files make one model when each holds
    other parts: SCRL publishes its encoder and its BiLSTM head apart (``merge_parts``).
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    dest = imported_path(name)
    if dest.exists() and not overwrite:  # said before torch loads (seconds)
        raise WeightsError(f"imported weights {name!r} exist ({dest}); pass --overwrite")
    from scenecut.models.checkpoints import load_state, read_any, save_state

    read = [(Path(p), *read_any(p)) for p in paths]
    state, config = merge_parts([(path, s, c) for path, s, c, _ in read])
    _make_dir(dest.parent)
    parts = save_state(state, config, dest)
    if len(read) > 1:
        try:
            load_state(dest)  # the parts fit together (shapes against the merged configuration)
        except InputError as exc:
            dest.unlink(missing_ok=True)
            raise InputError(f"these files do not make one model: {exc}") from None
    sources = "+".join(dict.fromkeys(source for *_, source in read))
    return ImportedWeights(name, dest, sources, parts, config.encoder)


# What a shot encoder's file decides in a model's configuration; the rest (the boundary head's
# shape, its threshold) comes from the file holding the head.
_ENCODER_FIELDS = ("encoder", "image_size", "resize", "mean", "std", "interpolation", "keyframes")


def merge_parts(files: list[tuple[Path, dict, ModelConfig]]) -> tuple[dict, ModelConfig]:
    """One state dict and configuration from checkpoints holding different parts; ``InputError``
    when two hold the same part."""
    import dataclasses

    if len(files) == 1:
        return files[0][1], files[0][2]
    owner: dict[str, Path] = {}
    state: dict = {}
    for path, tensors, _ in files:
        for part in sorted({key.split(".", 1)[0] for key in tensors}):
            if part in owner:
                raise InputError(f"both {owner[part]} and {path} hold {part} weights; give one")
            owner[part] = path
        state.update(tensors)
    by_path = {path: config for path, _, config in files}
    head = next((owner[p] for p in ("lstm_head", "head_sbd", "crn") if p in owner), None)
    config = by_path[head] if head is not None else files[0][2]
    if "shot_encoder" in owner:
        encoder = by_path[owner["shot_encoder"]]
        config = dataclasses.replace(config, **{f: getattr(encoder, f) for f in _ENCODER_FIELDS})
    return state, config


def _make_dir(folder: Path) -> None:
    make_dir(folder, "folder", "set SCENECUT_HOME to a writable folder")


def download_timeout() -> float:
    """Seconds without data (or below 1 KiB/s) before a download counts as stalled."""
    text = os.environ.get("SCENECUT_DOWNLOAD_TIMEOUT", "")
    if not text:
        return _TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise UsageError(f"SCENECUT_DOWNLOAD_TIMEOUT={text!r} is not a number of seconds above 0")
    return value


def offline_env() -> bool:
    """Whether ``$SCENECUT_OFFLINE`` forbids downloads (1, true, yes, on)."""
    text = os.environ.get("SCENECUT_OFFLINE", "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"SCENECUT_OFFLINE={text!r}: use 1 to forbid downloads, 0 to allow them")


def _by_hand(record: WeightRecord) -> str:
    """How to get ``record`` onto a machine that cannot download it."""
    local = f"`scenecut weights import FILE --as {record.name}-local`"
    if not record.urls:
        return f"get it by hand from {record.homepage}, then run {local}"
    dest = installed_path(record)
    copied = dest.parent if record.archive_member else dest
    return (
        f"run `scenecut weights pull {record.name}` on a machine with internet and copy its "
        f"{copied.relative_to(weights_dir())}* into {weights_dir()}, or fetch {record.url} "
        f"by hand and run {local}"
    )


def download(
    record: WeightRecord,
    *,
    force: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
    offline: bool | None = None,
) -> Path:
    """Fetch, check and install ``record``; return the checkpoint's path.

    Already installed (matching its recorded or published sha256, and loading) -> returned at
    once unless ``force``. The candidate URLs are tried in order; a ``.part`` left by an
    interrupted download is resumed from the URL that started it. ``progress(done, total)``
    gets byte counts after every read (``total`` None when neither the record nor the server
    gives a size); ``notice`` one line per URL used (what, how big, from where) and the
    tarball member taken. Nothing is installed unless it loads as the checkpoint the record
    describes. ``offline`` (default: ``$SCENECUT_OFFLINE``) forbids fetching.
    """
    dest = installed_path(record)
    if not force and dest.is_file() and _still_valid(record, dest):
        if read_stamp(record) is None:  # installed by an older version: recorded from now on
            _write_stamp(record, _new_stamp(dest, file_sha256(dest), "already installed"))
        return dest
    if not record.urls:
        raise DownloadError(f"{record.name} has no direct download link: {_by_hand(record)}")
    if offline or (offline is None and offline_env()):
        why = "--offline" if offline else "SCENECUT_OFFLINE=1"
        raise OfflineError(
            f"{record.name} is not in the cache and {why} forbids downloading it: "
            f"{_by_hand(record)}"
        )
    download_timeout()  # a bad setting is a usage error before any connection
    folder = weights_dir()
    _make_dir(folder)
    part = folder / (record.filename + ".part")
    if force:
        _discard(part)
    failures: list[str] = []
    network = False
    for number, url in enumerate(record.urls, 1):
        try:
            _fetch(record, url, part, progress, notice)
            digest, published = _check(record, url, part)
            if record.archive_member:
                _extract(record, url, part, digest, published, notice)
            else:
                _verify(record, url, part, part)
                stamp_path(record).unlink(missing_ok=True)
                os.replace(part, dest)
                _write_stamp(record, _new_stamp(dest, digest, url, published=published))
            _discard(part)
            return dest
        except _SourceFailed as exc:
            failures.append(f"{url}: {exc}")
            network = network or exc.network
            if number < len(record.urls):
                log.warning(
                    "%s: %s gave no usable file (%s); trying %s",
                    record.name,
                    url,
                    exc,
                    record.urls[number],
                )
    tried = (
        failures[0]
        if len(failures) == 1
        else f"tried {len(failures)} URLs: "
        + " | ".join(f"{i}. {f}" for i, f in enumerate(failures, 1))
    )
    if part.is_file():  # what a stalled or dropped connection left
        tried += (
            f". {part.stat().st_size} bytes are kept in {part} and the next `scenecut weights "
            f"pull {record.name}` resumes"
        )
    hint = f". If this machine is offline: {_by_hand(record)}" if network else ""
    raise DownloadError(f"cannot download {record.name} from {tried}{hint}")


class _Interrupted(Exception):
    """The connection ended or stalled before the whole file came: retried, then reported."""


class _SourceFailed(Exception):
    """This URL gave no usable file (the reason, without the URL): the next one is tried.
    ``network``: it could not be reached or gave no file at all (not a bad file)."""

    def __init__(self, reason: str, network: bool = False):
        super().__init__(reason)
        self.network = network


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _source_of(part).unlink(missing_ok=True)


def _source_of(part: Path) -> Path:
    """Beside a ``.part``: the URL its bytes came from (resumed only from the same URL)."""
    return part.with_name(part.name + ".url")


def _fetch(
    record: WeightRecord, url: str, part: Path, progress: Progress | None, notice: Notice | None
) -> None:
    """Stream ``url`` into ``part``, resuming what is there; retry dropped connections."""
    # http.client and urllib take a tenth of `scenecut --help`'s start-up: loaded here only.
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    timeout = download_timeout()
    announced: int | None = None  # the file's size as the server first gave it
    said = False
    source = _source_of(part)
    for attempt in range(1, _ATTEMPTS + 1):
        offset = part.stat().st_size if part.exists() else 0
        if offset and source.exists() and source.read_text().strip() != url:
            offset = 0  # bytes from another URL: not mixed with this one's (rewritten below)
        if record.size is not None and offset >= record.size:
            if offset == record.size:
                return
            _discard(part)  # longer than the file can be: start again
            offset = 0
        request = urllib.request.Request(url, headers={"User-Agent": "scenecut"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if offset and response.status != 206:
                    log.info("%s ignored the Range request; downloading from the start", url)
                    offset = 0
                elif offset and not _range_starts_at(response.headers, offset):
                    log.info("%s answered an unexpected Content-Range; restarting", url)
                    _discard(part)
                    continue
                size = _range_total(response.headers) if offset else None
                length = response.headers.get("Content-Length")
                if size is None and length and length.isdigit():
                    size = int(length) + offset
                announced = _consistent(url, part, announced, size)
                if record.size is not None and announced not in (None, record.size):
                    raise _SourceFailed(f"announces {announced} bytes, expected {record.size}")
                total = record.size or announced
                if not said and notice:
                    notice(_download_line(record, url, offset, total))
                said = True
                if not offset:
                    try:
                        source.write_text(url + "\n")
                    except OSError as exc:
                        raise _write_error(source, exc) from None
                _copy(response, part, offset, total, progress, timeout)
            got = part.stat().st_size
            if total is not None and got < total:
                raise _Interrupted(f"connection closed at byte {got} of {total}")
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                # Range not satisfiable: the .part is complete or bigger than the file.
                full = _range_total(exc.headers)
                if full is not None and full == offset:
                    _consistent(url, part, announced, full)
                    return
                _discard(part)
                continue
            raise _SourceFailed(f"HTTP {exc.code} {exc.reason}", network=True) from None
        except urllib.error.URLError as exc:
            raise _SourceFailed(f"cannot reach it ({exc.reason})", network=True) from None
        except (_Interrupted, HTTPException, OSError) as exc:
            got = part.stat().st_size if part.exists() else 0
            log.warning("download of %s interrupted at %d bytes (%s)", record.name, got, exc)
            if attempt == _ATTEMPTS:
                if not got:
                    _discard(part)
                raise _SourceFailed(f"kept failing ({exc})", network=True) from None
    # Every attempt had to start again (the server refused each resume): nothing was kept.
    raise _SourceFailed(
        f"answered {_ATTEMPTS} resume requests with something else than the rest of the file"
    )


def _download_line(record: WeightRecord, url: str, offset: int, total: int | None) -> str:
    size = "size not given" if total is None else archives.size_text(total)
    if offset:
        size = f"resuming at {archives.size_text(offset)} of {size}"
    return f"downloading {record.name} ({record.title}; {size}) from {url}"


def _consistent(url: str, part: Path, announced: int | None, size: int | None) -> int | None:
    """The file's size once the server has given it; a server that changes its mind (a body
    shorter than its first Content-Length, then "the file ends here") is not believed."""
    if size is None or announced is None or size == announced:
        return announced if size is None else size
    _discard(part)
    raise _SourceFailed(
        f"first announced {announced} bytes, then {size}: the file is incomplete or changed "
        "on the server; the download was deleted"
    )


def _copy(
    response,
    part: Path,
    offset: int,
    total: int | None,
    progress: Progress | None,
    timeout: float,
) -> None:
    """Append the body to ``part`` one small read at a time (``read1``: whatever has arrived),
    so progress moves and a stall keeps every byte received; a stall raises ``_Interrupted``."""
    done = offset
    if progress:
        progress(done, total)
    window, window_done = time.monotonic(), done
    try:
        out = part.open("ab" if offset else "wb")
    except OSError as exc:
        raise _write_error(part, exc) from None
    with out:
        while True:
            try:
                chunk = response.read1(_CHUNK)
            except TimeoutError:
                raise _Interrupted(f"stalled: no data for {timeout:g} s") from None
            if not chunk:
                return
            try:
                out.write(chunk)
                out.flush()
            except OSError as exc:
                raise _write_error(part, exc) from None
            done += len(chunk)
            if progress:
                progress(done, total)
            now = time.monotonic()
            if now - window >= timeout:
                if done - window_done < _MIN_RATE * (now - window):
                    raise _Interrupted(
                        f"stalled: {done - window_done} bytes in {now - window:.0f} s"
                    )
                window, window_done = now, done


def _write_error(path: Path, exc: OSError) -> DownloadError:
    return DownloadError(
        f"cannot write {path} ({exc.strerror or exc}); free some space or set SCENECUT_HOME to "
        "another disk"
    )


def _range_starts_at(headers, offset: int) -> bool:
    match = re.match(r"bytes (\d+)-", headers.get("Content-Range", ""))
    return bool(match) and int(match.group(1)) == offset


def _range_total(headers) -> int | None:
    match = re.match(r"bytes [^/]*/(\d+)", headers.get("Content-Range", "") if headers else "")
    return int(match.group(1)) if match else None


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _check(record: WeightRecord, url: str, part: Path) -> tuple[str, str | None]:
    """Size and hash of the finished ``.part``; on a mismatch delete it and raise. Returns the
    sha256 and which published hash it matched (None: there is none)."""
    size = part.stat().st_size
    if record.size is not None and size != record.size:
        _discard(part)
        raise _SourceFailed(f"gave {size} bytes, expected {record.size}; deleted it")
    digest = file_sha256(part)
    expected, prefix = record.sha256, record.sha256_prefix
    if (expected and digest != expected) or (
        not expected and prefix and not digest.startswith(prefix)
    ):
        _discard(part)
        want = expected or f"{prefix}... (from the file name)"
        raise _SourceFailed(
            f"sha256 mismatch for {record.name}: expected {want}, got {digest}; "
            "the download was deleted"
        )
    if not expected and not prefix:
        log.info("%s: no published sha256; %s gave sha256 %s", record.name, url, digest)
    return digest, ("sha256" if expected else "prefix" if prefix else None)


# The shot encoder each registered architecture holds ("bassl-crn": BaSSL's ResNet-50 + CRN);
# any other architecture names its encoder.
_ENCODER_OF = {"bassl-crn": "resnet50"}
_PARTS_OF = {"encoder": ("shot_encoder",), "pretrained": ("shot_encoder", "crn")}


def _usable(record: WeightRecord, path: Path) -> None:
    """Raise ``InputError`` unless ``path`` loads as the checkpoint ``record`` describes."""
    from scenecut.models.checkpoints import check_file

    encoder = _ENCODER_OF.get(record.architecture, record.architecture)
    check_file(path, encoder=encoder, parts=_PARTS_OF.get(record.kind, PARTS))


def _verify(record: WeightRecord, url: str, path: Path, download: Path) -> None:
    """``_usable`` on a finished download; if not, delete ``download`` and raise."""
    try:
        _usable(record, path)
    except InputError as exc:
        _discard(download)
        raise _SourceFailed(
            f"did not give a usable {record.name} checkpoint ({exc}); the download was "
            "deleted (a server may answer with a page instead of the file)"
        ) from None


def _still_valid(record: WeightRecord, dest: Path) -> bool:
    """Whether an installed checkpoint matches what was recorded and published, and loads."""
    try:
        stamp = check_installed(record, full=True)
    except WeightsChanged as exc:
        log.warning("%s; downloading it again", str(exc).split("; run")[0])
        return False
    if record.archive_member:
        archive = (stamp.archive or {}) if stamp else {}
        if record.sha256 and archive.get("sha256") != record.sha256:
            return False
    else:
        if record.size is not None and dest.stat().st_size != record.size:
            return False
        expected, prefix = record.sha256, record.sha256_prefix
        if expected or prefix:
            digest = stamp.sha256 if stamp else file_sha256(dest)
            if not (digest == expected if expected else digest.startswith(prefix or "")):
                return False
    try:
        _usable(record, dest)
    except ScenecutError as exc:
        log.warning("installed %s does not load (%s); downloading it again", record.name, exc)
        return False
    return True


def _member(record: WeightRecord, files: list) -> object:
    """The checkpoint in a tarball: the one member named like ``archive_member`` (in any
    folder), else the one ``*.ckpt``; several, or none, is an ``InputError``."""
    want = PurePosixPath(record.archive_member or "").name
    named = [m for m in files if PurePosixPath(m.name).name == want]
    found = named or [m for m in files if m.name.endswith(".ckpt")]
    if len(found) == 1:
        return found[0]
    shown = ", ".join(m.name for m in (found or files)[:10]) or "no files"
    what = f"several {want} or .ckpt files" if found else f"no {want} and no .ckpt file"
    raise InputError(
        f"{record.filename} holds {what} ({shown}), so which is the model is unclear; "
        "please report it"
    )


def _extract(
    record: WeightRecord,
    url: str,
    archive: Path,
    digest: str,
    published: str | None,
    notice: Notice | None,
) -> None:
    """Unpack the checkpoint and its sibling files (config.json) into ``weights/<name>/``,
    check that it loads, record its hash, then move the folder into place. A damaged,
    truncated, unsafe, ambiguous or oversized archive is deleted and nothing is installed."""
    target = weights_dir() / record.name
    staging = weights_dir() / f"{record.name}.extracting"
    checkpoint = staging / installed_path(record).name
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            with archives.open_tar(archive, record.filename) as tar:
                found = archives.members(tar, archive.stat().st_size, record.filename)
                files = [m for m in found if m.isfile()]
                member = _member(record, files)
                parent = PurePosixPath(member.name).parent
                _make_dir(staging)
                for m in files:
                    if PurePosixPath(m.name).parent != parent:
                        continue
                    out_path = checkpoint if m is member else staging / PurePosixPath(m.name).name
                    if m is not member and out_path == checkpoint:
                        continue  # a sibling with the name the checkpoint is installed under
                    try:
                        out = out_path.open("wb")
                    except OSError as exc:
                        raise _write_error(out_path, exc) from None
                    with out:
                        archives.copy_member(tar, m, out, str(out_path))
        except InputError as exc:
            _discard(archive)
            raise _SourceFailed(
                f"{exc}; the download was deleted, run `scenecut weights pull {record.name}` again"
            ) from None
        _verify(record, url, checkpoint, archive)
        log.info("%s: took %s from %s", record.name, member.name, record.filename)
        if notice:
            notice(f"{record.name}: took {member.name} from {record.filename}")
        size = archive.stat().st_size
        about = {"file": record.filename, "size": size, "sha256": digest, "member": member.name}
        stamp = _new_stamp(checkpoint, file_sha256(checkpoint), url, published=published)
        _write_stamp(record, replace(stamp, archive=about), folder=staging)
        try:
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except OSError as exc:
            raise _write_error(target, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def registry_markdown() -> str:
    """The table in ``weights/README.md``."""
    lines = [
        "# Registered weights",
        "",
        "Generated from `scenecut/models/hub.py`",
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
