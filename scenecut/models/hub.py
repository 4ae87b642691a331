"""Pretrained weights: a registry of records, a download cache, and name-or-path resolution.

The registry below is the one source of truth; ``weights/README.md`` is generated from it
(``python -m scenecut.models > weights/README.md``) and a test keeps the two in step.

Downloads stream to ``<file>.part`` in small reads (resumed with an HTTP Range request; a
server that stalls for ``$SCENECUT_DOWNLOAD_TIMEOUT`` seconds, default 30, or trickles slower
than 1 KiB/s over that long, is given up on and the bytes received are kept for the next
try), are checked for size and sha256 in chunks, must load as the checkpoint the record
describes, and only then move into place with ``os.replace``, so the cache never holds a
half-written or wrong file under its final name. Nothing is fetched at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from scenecut.errors import InputError, ScenecutError, UsageError
from scenecut.files import make_dir
from scenecut.models import archives
from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD, PARTS

log = logging.getLogger(__name__)


Progress = Callable[[int, int | None], None]


# Shown when a URL cannot be reached. Any caller may pass a local file instead of a name.
OFFLINE_HINT = (
    "if this machine is offline, download the file elsewhere and pass its path instead of the name"
)


_CHUNK = 1 << 16  # bytes per read: progress moves, and a stall loses nothing already received
_HASH_CHUNK = 1 << 20
_ATTEMPTS = 3  # connections per download() call; a dropped one is resumed with a Range request
_TIMEOUT_S = 30.0  # default stall deadline, in seconds ($SCENECUT_DOWNLOAD_TIMEOUT)
_MIN_RATE = 1024  # bytes/s: slower than this over a whole stall deadline counts as a stall


class WeightsError(ScenecutError):
    """An unknown weights name, or registered weights that are not in the cache."""


class DownloadError(WeightsError):
    """A download failed: unreachable URL, HTTP error, or a file that fails its checks."""


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
    url: str | None  # None: no direct link (e.g. a Google Drive folder; see ``homepage``)
    filename: str  # the file's name in the cache (the archive's, for tarballs)
    # encoder: a pre-trained shot encoder; pretrained: encoder + CRN from self-supervised
    # pre-training (no boundary head yet); finetuned: scores scene boundaries as it is
    kind: Literal["encoder", "pretrained", "finetuned"]
    architecture: str  # "resnet50", "resnet50-9ch", "bassl-crn"
    preprocessing: Preprocessing
    licence: str
    description: str
    sha256: str | None = None
    size: int | None = None
    archive_member: str | None = None  # path of the checkpoint inside a tarball
    metrics: dict[str, float] = field(default_factory=dict)  # as reported by the publisher
    url_verified: bool = False  # copied verbatim from the publisher (not fetched while writing)
    url_source: str = ""
    homepage: str = ""

    @property
    def sha256_prefix(self) -> str | None:
        """The hash prefix torchvision-style URLs embed (``resnet50-11ad3fa6.pth``), if any."""
        if self.url is None:
            return None
        match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z]", self.url.rsplit("/", 1)[-1])
        return match.group(1) if match else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["sha256_prefix"] = self.sha256_prefix
        return data


def _torchvision(name: str, file: str, version: str, top1: float, resize: int, docs: str):
    return WeightRecord(
        name=name,
        url=f"https://download.pytorch.org/models/{file}",
        filename=file,
        kind="encoder",
        architecture="resnet50",
        # torchvision's own eval transform for these weights (bilinear, unlike BaSSL's bicubic).
        preprocessing=Preprocessing(resize=resize, interpolation="bilinear"),
        licence="BSD-3-Clause (torchvision)",
        description=f"torchvision ResNet-50 ImageNet-1k {version}, with fc. {docs}",
        metrics={"imagenet_top1": top1},
        url_verified=True,
        url_source=f"torchvision ResNet50_Weights.{version}",
        homepage="https://pytorch.org/vision/stable/models/resnet.html",
    )


def _bassl(name: str, top: str, ap: float, kind: str, architecture: str, what: str):
    return WeightRecord(
        name=name,
        url=f"https://twg.kakaocdn.net/brainrepo/bassl/checkpoints/{top}.tar.gz",
        filename=f"{top}.tar.gz",
        kind=kind,
        architecture=architecture,
        preprocessing=BASSL_PREPROCESSING,
        licence="Apache-2.0 (kakaobrain/bassl)",
        description=(
            f"Kakao Brain {what}, self-supervised on MovieNet, not fine-tuned: needs fine-tuning "
            "for scene boundaries. PyTorch Lightning 1.3 checkpoint plus config.json. "
            f"The member path {top}/model-v1.ckpt is inferred from the loader "
            "(<ckpt>/<name>/model-v1.ckpt), not verified; any single model-v1.ckpt is accepted."
        ),
        archive_member=f"{top}/model-v1.ckpt",
        metrics={"movienet_ap_after_finetune": ap},
        url_verified=True,
        url_source="kakaobrain/bassl README, Model Zoo",
        homepage="https://github.com/kakaobrain/bassl",
    )


def _scrl(name: str, imagenet: bool, ap: float, f1: float, folder: str):
    init = "with" if imagenet else "without"
    return WeightRecord(
        name=name,
        url=None,
        filename=f"{name}.pth.tar",
        kind="encoder",
        architecture="resnet50-9ch",
        preprocessing=SCRL_PREPROCESSING,
        licence="unstated (the repo LICENSE lists only third-party notices)",
        description=(
            f"SCRL MoCo encoder pre-trained {init} ImageNet-1k init "
            f"(SCRL_pretrain_{init}_imagenet1k.yaml); keys module.encoder_q.*, conv1 [64,9,7,7]. "
            "Published only as a Google Drive folder (checkpoint file name inside unknown): "
            "download by hand from the homepage."
        ),
        metrics={"movienet_ap_per_movie": ap, "movienet_f1_per_movie": f1},
        url_source="TencentYoutuResearch/SceneSegmentation-SCRL README, Models",
        homepage=f"https://drive.google.com/drive/folders/{folder}",
    )


REGISTRY: dict[str, WeightRecord] = {
    r.name: r
    for r in (
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
            url="https://download.pytorch.org/models/resnet50-19c8e357.pth",
            filename="resnet50-19c8e357.pth",
            kind="encoder",
            architecture="resnet50",
            preprocessing=Preprocessing(resize=256, interpolation="bilinear"),
            licence="BSD-3-Clause (torchvision)",
            description=(
                "The pre-0.13 torchvision ResNet-50 file that SCRL initialises from "
                "(all tensors but conv1 and fc)."
            ),
            url_verified=True,
            url_source="TencentYoutuResearch/SceneSegmentation-SCRL README",
            homepage="https://github.com/TencentYoutuResearch/SceneSegmentation-SCRL",
        ),
        _bassl(
            "bassl", "bassl", 56.26, "pretrained", "bassl-crn", "BaSSL, 10 epochs (encoder + CRN)"
        ),
        _bassl(
            "bassl-40epoch",
            "bassl_40epoch",
            57.40,
            "pretrained",
            "bassl-crn",
            "BaSSL, 40 epochs (encoder + CRN)",
        ),
        _bassl(
            "simclr-instance", "Simclr_instance", 51.51, "encoder", "resnet50", "SimCLR instance"
        ),
        _bassl(
            "simclr-temporal", "Simclr_temporal", 50.05, "encoder", "resnet50", "SimCLR temporal"
        ),
        _bassl("simclr-nn", "Simclr_NN", 51.17, "encoder", "resnet50", "SimCLR NN (ShotCoL)"),
        _scrl("scrl", False, 55.16, 51.32, "1ZYg9PFRU_lt3G5qJrldkguA52T2oxErR"),
        _scrl("scrl-imagenet", True, 56.65, 52.45, "1BG5ZLqrPKKGTtDIZj8aps_QuWc6K3c3V"),
        WeightRecord(
            name="modelscope-bassl",
            url=(
                "https://modelscope.cn/api/v1/models/damo/"
                "cv_resnet50-bert_video-scene-segmentation_movienet/repo"
                "?Revision=master&FilePath=pytorch_model.pt"
            ),
            filename="modelscope-bassl.pt",
            kind="finetuned",
            architecture="bassl-crn",
            preprocessing=BASSL_PREPROCESSING,
            licence="not checked: see the ModelScope model card",
            description=(
                "damo/cv_resnet50-bert_video-scene-segmentation_movienet pytorch_model.pt: "
                "BaSSL fine-tuned on MovieNet-SSeg, flat state dict with shot_encoder.*, crn.*, "
                "head_sbd.* (class 1 = boundary). The only public fine-tuned BaSSL. ModelScope "
                "thresholds at > 0.8."
            ),
            metrics={"movienet_ap": 57.40, "movienet_f1": 47.02},
            url_source="ModelScope hub client URL template (api/v1/models/<id>/repo?...)",
            homepage=(
                "https://modelscope.cn/models/damo/"
                "cv_resnet50-bert_video-scene-segmentation_movienet"
            ),
        ),
    )
}


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
        known = ", ".join(REGISTRY)
        raise WeightsError(
            f"unknown weights {name!r}; registered names: {known} (see `scenecut weights list`)"
        ) from None


def installed_path(record: WeightRecord) -> Path:
    """Where the checkpoint lives once pulled (a tarball's member is extracted beside its name)."""
    if record.archive_member:
        return weights_dir() / record.name / Path(record.archive_member).name
    return weights_dir() / record.filename


def is_installed(record: WeightRecord) -> bool:
    return installed_path(record).is_file()


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
    load (damaged, or a bad file left by an older version) is skipped with a warning."""
    candidates = [
        (r.name, installed_path(r))
        for r in REGISTRY.values()
        if r.kind == "finetuned" and is_installed(r)
    ]
    names = imported_names()
    if not candidates and not names:
        return []
    from scenecut.models.checkpoints import check_file, checkpoint_parts

    candidates += [(n, imported_path(n)) for n in names]
    found = []
    for name, path in candidates:
        parts = checkpoint_parts(path) if name in names else PARTS
        if parts and "head_sbd" not in parts:
            continue  # an imported encoder, for training; no parts at all: broken, said below
        try:
            check_file(path)
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


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registered name that has been pulled, an imported name, or an existing local file."""
    name = str(name_or_path)
    if name in REGISTRY:
        path = installed_path(REGISTRY[name])
        if not path.is_file():
            raise WeightsError(
                f"weights {name!r} are not downloaded; run `scenecut weights pull {name}`"
            )
        return path
    if name in imported_names():
        return imported_path(name)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise WeightsError(f"{path} is not a file; give a checkpoint file or a registered name")
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


def import_weights(path: str | os.PathLike, name: str, overwrite: bool = False) -> ImportedWeights:
    """Convert a foreign checkpoint into our safetensors format under ``name`` in the cache.

    The file is read as data only (``torch.load(weights_only=True)``), its keys mapped to ours
    and checked tensor by tensor; a checkpoint that does not match is refused. A scenecut
    safetensors file keeps its own configuration.
    """
    dest = imported_path(name)
    if dest.exists() and not overwrite:  # said before torch loads (seconds)
        raise WeightsError(f"imported weights {name!r} exist ({dest}); pass --overwrite")
    from scenecut.models.checkpoints import read_any, save_state

    state, config, source = read_any(path)
    _make_dir(dest.parent)
    parts = save_state(state, config, dest)
    return ImportedWeights(name, dest, source, parts, config.encoder)


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


def download(
    record: WeightRecord, *, force: bool = False, progress: Progress | None = None
) -> Path:
    """Fetch, check and install ``record``; return the checkpoint's path.

    Already installed (matching its sha256 when one is known, and loading) -> returned at once
    unless ``force``. A ``.part`` left by an interrupted download is resumed.
    ``progress(done, total)`` gets byte counts after every read; ``total`` is None when neither
    the record nor the server gives a size. Nothing is installed unless it loads as the
    checkpoint the record describes (its kind of model and parts).
    """
    dest = installed_path(record)
    if not force and dest.is_file() and _still_valid(record, dest):
        return dest
    if record.url is None:
        raise DownloadError(
            f"{record.name} has no direct download link; get it by hand from {record.homepage} "
            "and pass the file's path instead of the name"
        )
    folder = weights_dir()
    _make_dir(folder)
    part = folder / (record.filename + ".part")
    if force:
        part.unlink(missing_ok=True)
    _fetch(record, part, progress)
    digest = _check(record, part)
    if record.archive_member:
        _extract(record, part, digest)
        part.unlink()
    else:
        _verify(record, part, part)
        os.replace(part, dest)
    return dest


class _Interrupted(Exception):
    """The connection ended or stalled before the whole file came: retried, then reported."""


def _fetch(record: WeightRecord, part: Path, progress: Progress | None) -> None:
    """Stream ``record.url`` into ``part``, resuming what is there; retry dropped connections."""
    # http.client and urllib take a tenth of `scenecut --help`'s start-up: loaded here only.
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    url = record.url
    assert url is not None
    timeout = download_timeout()
    announced: int | None = None  # the file's size as the server first gave it
    for attempt in range(1, _ATTEMPTS + 1):
        offset = part.stat().st_size if part.exists() else 0
        if record.size is not None and offset >= record.size:
            if offset == record.size:
                return
            part.unlink()  # longer than the file can be: start again
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
                    part.unlink()
                    continue
                size = _range_total(response.headers) if offset else None
                length = response.headers.get("Content-Length")
                if size is None and length and length.isdigit():
                    size = int(length) + offset
                announced = _consistent(record, part, announced, size)
                total = record.size or announced
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
                    _consistent(record, part, announced, full)
                    return
                part.unlink()
                continue
            raise DownloadError(
                f"HTTP {exc.code} {exc.reason} for {url}; the file may have moved "
                f"(see {record.homepage or 'the registry'}). {OFFLINE_HINT}"
            ) from None
        except urllib.error.URLError as exc:
            raise DownloadError(f"cannot reach {url} ({exc.reason}); {OFFLINE_HINT}") from None
        except (_Interrupted, HTTPException, OSError) as exc:
            got = part.stat().st_size if part.exists() else 0
            log.warning("download of %s interrupted at %d bytes (%s)", record.name, got, exc)
            if attempt == _ATTEMPTS:
                raise DownloadError(
                    f"download of {url} kept failing ({exc}); {got} bytes are kept in {part} "
                    f"and the next `scenecut weights pull {record.name}` resumes. {OFFLINE_HINT}"
                ) from None
    # Every attempt had to start again (the server refused each resume): nothing was kept.
    raise DownloadError(
        f"{url} answered {_ATTEMPTS} resume requests with something else than the rest of the "
        "file; try again later"
    )


def _consistent(
    record: WeightRecord, part: Path, announced: int | None, size: int | None
) -> int | None:
    """The file's size once the server has given it; a server that changes its mind (a body
    shorter than its first Content-Length, then "the file ends here") is not believed."""
    if size is None or announced is None or size == announced:
        return announced if size is None else size
    part.unlink(missing_ok=True)
    raise DownloadError(
        f"{record.url} first announced {announced} bytes, then {size}: the file is incomplete "
        "or changed on the server; the download was deleted, try again later"
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


def _check(record: WeightRecord, part: Path) -> str:
    """Size and hash of the finished ``.part``; on a mismatch delete it and raise."""
    size = part.stat().st_size
    if record.size is not None and size != record.size:
        part.unlink()
        raise DownloadError(
            f"{record.url} gave {size} bytes, expected {record.size}; deleted it, try again"
        )
    digest = file_sha256(part)
    expected, prefix = record.sha256, record.sha256_prefix
    if (expected and digest != expected) or (
        not expected and prefix and not digest.startswith(prefix)
    ):
        part.unlink()
        want = expected or f"{prefix}... (from the file name)"
        raise DownloadError(
            f"sha256 mismatch for {record.name} from {record.url}: expected {want}, got {digest}; "
            "the download was deleted. Try again; if it persists the file changed upstream"
        )
    if not expected:
        log.info("%s: no published sha256; downloaded file has sha256 %s", record.name, digest)
    return digest


# The shot encoder each registered architecture holds ("bassl-crn": BaSSL's ResNet-50 + CRN);
# any other architecture names its encoder.
_ENCODER_OF = {"bassl-crn": "resnet50"}
_PARTS_OF = {"encoder": ("shot_encoder",), "pretrained": ("shot_encoder", "crn")}


def _usable(record: WeightRecord, path: Path) -> None:
    """Raise ``InputError`` unless ``path`` loads as the checkpoint ``record`` describes."""
    from scenecut.models.checkpoints import check_file

    encoder = _ENCODER_OF.get(record.architecture, record.architecture)
    check_file(path, encoder=encoder, parts=_PARTS_OF.get(record.kind, PARTS))


def _verify(record: WeightRecord, path: Path, download: Path) -> None:
    """``_usable`` on a finished download; if not, delete ``download`` and raise."""
    try:
        _usable(record, path)
    except InputError as exc:
        download.unlink(missing_ok=True)
        raise DownloadError(
            f"{record.url} did not give a usable {record.name} checkpoint ({exc}); the download "
            "was deleted. If it persists the file changed upstream (or the server answers with a "
            f"page instead of the file): get it by hand from {record.homepage or record.url}"
        ) from None


def _still_valid(record: WeightRecord, dest: Path) -> bool:
    """Whether an installed checkpoint matches what the record says, and loads."""
    if record.archive_member:
        # The tarball is gone after extraction; its hash was checked then and is kept beside it.
        stamp = dest.parent / ".sha256"
        if record.sha256 and not (stamp.is_file() and stamp.read_text().strip() == record.sha256):
            return False
    else:
        if record.size is not None and dest.stat().st_size != record.size:
            return False
        expected, prefix = record.sha256, record.sha256_prefix
        if expected or prefix:
            digest = file_sha256(dest)
            if not (digest == expected if expected else digest.startswith(prefix or "")):
                return False
    try:
        _usable(record, dest)
    except ScenecutError as exc:
        log.warning("installed %s does not load (%s); downloading it again", record.name, exc)
        return False
    return True


def _extract(record: WeightRecord, archive: Path, digest: str) -> None:
    """Unpack the checkpoint and its sibling files (config.json) into ``weights/<name>/``,
    check that it loads, then move the folder into place. A damaged, truncated, unsafe or
    oversized archive is deleted and nothing is installed."""
    member_path = record.archive_member or ""
    target = weights_dir() / record.name
    staging = weights_dir() / f"{record.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            with archives.open_tar(archive, record.filename) as tar:
                found = archives.members(tar, archive.stat().st_size, record.filename)
                files = [m for m in found if m.isfile()]
                member = next((m for m in files if m.name.lstrip("./") == member_path), None)
                if member is None:
                    base = Path(member_path).name
                    matches = [m for m in files if Path(m.name).name == base]
                    if len(matches) != 1:
                        shown = ", ".join(m.name for m in files[:10]) or "no files"
                        raise InputError(
                            f"{record.filename} holds no single {base} (found: {shown}); "
                            "the registry's archive path is wrong, please report it"
                        )
                    member = matches[0]
                parent = Path(member.name).parent
                _make_dir(staging)
                for m in files:
                    if Path(m.name).parent != parent:
                        continue
                    out_path = staging / Path(m.name).name
                    try:
                        out = out_path.open("wb")
                    except OSError as exc:
                        raise _write_error(out_path, exc) from None
                    with out:
                        archives.copy_member(tar, m, out, str(out_path))
        except InputError as exc:
            archive.unlink(missing_ok=True)
            raise DownloadError(
                f"{exc}; the download was deleted, run `scenecut weights pull {record.name}` again"
            ) from None
        _verify(record, staging / Path(member.name).name, archive)
        try:
            (staging / ".sha256").write_text(digest + "\n")
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
        "with `scenecut weights pull NAME`.",
        "`sha256`: `-` means the publisher gives none (a torchvision file name's hash prefix is",
        "still checked). Metrics are as reported by the publisher; none were re-measured here.",
        "",
        "| name | kind | architecture | preprocessing | reported | sha256 | URL |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in REGISTRY.values():
        p = r.preprocessing
        prep = f"{p.resize} {p.interpolation} / {p.crop}, {p.keyframes} kf" + (
            f" {p.fusion}" if p.fusion else ""
        )
        metrics = ", ".join(f"{k} {v:g}" for k, v in r.metrics.items()) or "-"
        sha = r.sha256 or (f"prefix {r.sha256_prefix}" if r.sha256_prefix else "-")
        if r.url:
            url = f"[{'link' if r.url_verified else 'link (unverified form)'}]({r.url})"
        else:
            url = f"none: [by hand]({r.homepage})"
        lines.append(
            f"| `{r.name}` | {r.kind} | {r.architecture} | {prep} | {metrics} | {sha} | {url} |"
        )
    lines += ["", "## Notes", ""]
    lines += [f"- `{r.name}`: {r.description} Licence: {r.licence}." for r in REGISTRY.values()]
    return "\n".join(lines) + "\n"
