"""Saccade-VSSL's clip encoder (``shared/spec/SACCADE.md`` section 3), its files, and the
downstream action heads of section 7.

``SaccadeNet`` is a 3D backbone (``scenecut.models.video3d``) with the focus modulation at its
input (``x * (1 + m)``), the pixel-propagation branch on its conv5 map (projector ``P`` and
value ``g``, both ``1x1x1`` convs with biases) and the embedding head ``h`` (Linear, bias
zeroed, then L2 normalisation). Its shape is a ``ClipConfig`` stored in the safetensors
metadata of every file ``save_model`` writes, so a file rebuilds its own network.

``import_reference`` reads the reference's ``train_ssl_full.py`` checkpoints (``ckpt.pth``,
``ckpt_epoch_N.pth``) as plain data: ``model`` (backbone, ``projector``, ``value_transform``)
and the head ``feature_proj`` of ``contrast`` are renamed into ours and checked; its memory
banks, optimiser state and arguments are not weights and are left out.

This module imports torch at the top: import it only where a network is used.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from scenecut.errors import InputError, OutputError
from scenecut.files import replacing
from scenecut.models import archives, checkpoints
from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD, MAX_PARAMETERS, _number, _show
from scenecut.models.video3d import BACKBONES, build_backbone

log = logging.getLogger(__name__)

METADATA_KEY = "scenecut_clip"  # BaSSL-family files use checkpoints' "scenecut_config"
CLASSIFIER_KEY = "scenecut_action"  # a downstream ActionClassifier
MAX_CLASSES = 10_000
INPUT_NORMS = ("imagenet", "none")
INT_LIMITS = {"embed_dim": (1, 8192), "clip_len": (1, 1024), "size": (16, 1024)}
MAX_PPM_P = 16.0
FINETUNE_DROPOUT = 0.7  # downstream.py's fine-tuning head (spec 7)


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ClipConfig:
    """The shape of a clip encoder and what its inputs were: saved inside its file."""

    backbone: str = "r3d10"  # one of video3d.BACKBONES
    embed_dim: int = 512  # output width of the head h
    clip_len: int = 16  # frames per clip
    size: int = 112  # clip height and width
    ppm_p: float = 1.0  # PPM's sharpness (4.0 for r21d10, spec 3.2)
    ppm_clamp: float = 0.0  # PPM's similarity floor
    input_norm: str = "imagenet"  # what the encoder's inputs were normalised with: imagenet | none

    @classmethod
    def for_backbone(cls, backbone: str, **changes) -> ClipConfig:
        """The spec's settings for ``backbone``: PPM p = 4 for R(2+1)D-10, else 1."""
        ppm_p = 4.0 if backbone == "r21d10" else 1.0
        return cls(**{"backbone": backbone, "ppm_p": ppm_p, **changes})

    def check(self) -> None:
        """Raise ``InputError`` unless every field has the right type and a usable value (a
        configuration read from a file is checked before any network is built from it)."""
        if self.backbone not in BACKBONES:
            raise _bad(f"unknown backbone {_show(self.backbone)}; known: {', '.join(BACKBONES)}")
        for name, (least, most) in INT_LIMITS.items():
            value = getattr(self, name)
            if type(value) is not int or not least <= value <= most:
                raise _bad(
                    f"{name} must be a whole number from {least} to {most}, not {_show(value)}"
                )
        p, clamp = self.ppm_p, self.ppm_clamp
        if not _number(p) or not 0 < p <= MAX_PPM_P:
            raise _bad(f"ppm_p must be a number above 0 and at most {MAX_PPM_P:g}, not {_show(p)}")
        if not _number(clamp) or not -1 <= clamp <= 1:
            raise _bad(f"ppm_clamp must be a number from -1 to 1, not {_show(clamp)}")
        if clamp < 0 and p != int(p):  # a negative similarity to a fractional power is NaN
            raise _bad(f"a negative ppm_clamp ({clamp:g}) needs a whole ppm_p, not {p:g}")
        if self.input_norm not in INPUT_NORMS:
            raise _bad(
                f"unknown input_norm {_show(self.input_norm)}; known: {', '.join(INPUT_NORMS)}"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClipConfig:
        """The configuration in ``text``, checked; ``InputError`` on anything else."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise _bad(f"not valid JSON ({archives.reason(error)})") from None
        if not isinstance(data, dict):
            raise _bad("not a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in data if k not in known)
        if unknown:
            raise _bad(f"unknown fields {', '.join(ascii(k[:40]) for k in unknown[:5])}")
        config = cls(**data)
        config.check()
        return replace(config, ppm_p=float(config.ppm_p), ppm_clamp=float(config.ppm_clamp))


def _bad(problem: str) -> InputError:
    return InputError(f"clip model configuration: {problem}")


# --------------------------------------------------------------------------------------------
# The network


class SaccadeNet(nn.Module):
    """Backbone + focus modulation + PPM branch (``proj`` = P, ``value`` = g) + head ``h``.

    Inputs are clips ``[N, 3, T, H, W]`` already normalised as ``config.input_norm`` says
    (``normalise``); masks ``[N, 1, H, W]`` hold the focus weight m in [0, 1].
    """

    def __init__(self, config: ClipConfig):
        super().__init__()
        config.check()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        d = self.feature_dim = self.backbone.out_channels
        self.proj = nn.Conv3d(d, d, 1)  # P
        self.value = nn.Conv3d(d, d, 1)  # g
        self.head = nn.Linear(d, config.embed_dim)  # h: PyTorch's default weights, bias zeroed
        nn.init.zeros_(self.head.bias)

    def conv5(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The backbone's last map, with the focus ``x * (1 + m)`` applied first when ``mask``
        is given (broadcast over colour and time; resized bilinearly, corners aligned, as the
        reference, when its size is not the clip's)."""
        if mask is not None:
            if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0]:
                raise ValueError(f"focus masks must be [N, 1, H, W]; got {list(mask.shape)}")
            if mask.shape[-2:] != x.shape[-2:]:
                mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True)
            x = x * (1 + mask.unsqueeze(2))
        return self.backbone(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, ppm: bool = True) -> dict:
        """``{"feat": [N, D] pooled conv5, "conv5": its map, "proj": P(conv5)}`` (no
        ``"proj"`` when ``ppm`` is false)."""
        conv5 = self.conv5(x, mask)
        out = {"feat": conv5.mean(dim=(2, 3, 4)), "conv5": conv5}
        if ppm:
            out["proj"] = self.proj(conv5)
        return out

    def ppm(self, f: torch.Tensor) -> torch.Tensor:
        """Pixel propagation over all ``L = T*H*W`` positions of ``f`` ``[B, C, T, H, W]``:
        out_i = sum_j max(cos(f_i, f_j), clamp)^p * v_j with v = channel-L2-normalised g(f).
        Rows are not normalised, nor is the output (as the reference)."""
        b, c, t, h, w = f.shape
        v = F.normalize(self.value(f), dim=1).flatten(2)  # [B, C, L]
        k = F.normalize(f, dim=1).flatten(2)
        attention = torch.bmm(k.transpose(1, 2), k).clamp(min=self.config.ppm_clamp)
        if self.config.ppm_p < 1:  # the reference's: keeps p-th powers of 0 differentiable
            attention = attention + 1e-6
        attention = attention**self.config.ppm_p
        return torch.bmm(v, attention.transpose(1, 2)).view(b, c, t, h, w)

    def embed(self, feat: torch.Tensor) -> torch.Tensor:
        """z = L2norm(h(feat)): ``[N, D]`` -> ``[N, embed_dim]``."""
        return F.normalize(self.head(feat), dim=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding z of each clip with the focus off (retrieval, shot encoding); put the
        network in eval mode first."""
        return self.embed(self.conv5(x).mean(dim=(2, 3, 4)))

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The backbone's weights and BatchNorm statistics (``video3d`` names, no prefix)."""
        return {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}


def build(config: ClipConfig) -> SaccadeNet:
    return SaccadeNet(config)


def fixation_maps(proj: torch.Tensor, fixations: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec 3.2 steps 2-3: ``[B * 2F, C, T, H, W]`` maps of clips ordered A0..A(F-1),
    B0..B(F-1) per video -> (T1, T2), each ``[B, C, F * T, H, W]``: the A (or B) clips of a
    video concatenated on the time axis, fixation by fixation."""
    n, c, t, h, w = proj.shape
    if n % (2 * fixations):
        raise ValueError(f"{n} maps are not whole videos of {2 * fixations} clips")
    views = proj.view(n // (2 * fixations), 2, fixations, c, t, h, w).transpose(2, 3)
    views = views.reshape(-1, 2, c, fixations * t, h, w)
    return views[:, 0], views[:, 1]


def normalise(clips: torch.Tensor, input_norm: str) -> torch.Tensor:
    """``[..., 3, T, H, W]`` clips in [0, 1] -> the encoder's inputs (``ClipConfig.input_norm``)."""
    if input_norm == "none":
        return clips
    if input_norm != "imagenet":
        raise ValueError(f"unknown input_norm {input_norm!r}")
    shape = (3, 1, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=clips.dtype, device=clips.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=clips.dtype, device=clips.device).view(shape)
    return (clips - mean) / std


# --------------------------------------------------------------------------------------------
# Downstream heads (spec 7)


class ActionClassifier(nn.Module):
    """A backbone's pooled conv5 feature -> class logits, as ``downstream.py``.

    ``probe``: L2 normalisation -> BatchNorm1d (weight 1, bias 0) -> Linear; the backbone's
    parameters are frozen, but in train mode its BatchNorm statistics still follow the data
    (the reference's probe does the same; call ``backbone.eval()`` for a frozen-feature probe).
    ``finetune``: Dropout(0.7) -> Linear; everything trains.
    """

    def __init__(self, backbone: nn.Module, classes: int, mode: str = "probe"):
        super().__init__()
        if mode not in ("probe", "finetune"):
            raise ValueError(f"unknown mode {mode!r}; known: probe, finetune")
        if type(classes) is not int or classes < 1:
            raise ValueError(f"classes must be a positive whole number, not {classes!r}")
        d = backbone.out_channels
        self.mode = mode
        self.backbone = backbone
        if mode == "probe":
            self.final_bn = nn.BatchNorm1d(d)
            nn.init.ones_(self.final_bn.weight)
            nn.init.zeros_(self.final_bn.bias)
            backbone.requires_grad_(False)
        else:
            self.dropout = nn.Dropout(FINETUNE_DROPOUT)
        self.linear = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x).mean(dim=(2, 3, 4))
        if self.mode == "probe":
            return self.linear(self.final_bn(F.normalize(feat, dim=1)))
        return self.linear(self.dropout(feat))


# --------------------------------------------------------------------------------------------
# Our files: safetensors with the configuration in the metadata


def save_model(net: SaccadeNet, config: ClipConfig, path: str | Path) -> None:
    """Write ``net``'s weights atomically to ``path`` with ``config`` in the metadata."""
    config.check()
    if (net.config.backbone, net.config.embed_dim) != (config.backbone, config.embed_dim):
        raise ValueError(f"the network is a {net.config}, not a {config}")
    _write(net.state_dict(), {METADATA_KEY: config.to_json()}, Path(path))


def load_model(path: str | Path, device: str = "cpu") -> tuple[SaccadeNet, ClipConfig]:
    """Rebuild a clip encoder from our safetensors file, or from a reference checkpoint
    (``import_reference``); in eval mode on ``device``. Everything is checked first."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    if path.suffix.lower() == ".safetensors" or is_clip_model(path):
        state, config = read_model(path)
    else:
        state, config = import_reference(path)
    net = build(config)
    _load(net, state, path)
    return net.to(device).eval(), config


def read_model(path: str | Path) -> tuple[dict[str, torch.Tensor], ClipConfig]:
    """The checked tensors and configuration of our clip-model file (see ``_read``)."""

    def layout(text: str):
        config = ClipConfig.from_json(text)
        return config, _expected(build, config), f"{config.backbone} clip-model"

    return _read(Path(path), METADATA_KEY, "clip-model", layout)


def save_classifier(
    classifier: ActionClassifier, config: ClipConfig, classes: Sequence[str], path: str | Path
) -> None:
    """Write a downstream classifier atomically: its weights, and in the metadata the clip
    configuration of its backbone, its head's mode and the class names in label order."""
    config.check()
    classes = list(classes)
    if len(classes) != classifier.linear.out_features:
        raise ValueError(f"{len(classes)} class names for {classifier.linear.out_features} classes")
    expected = _expected(_classifier_for, config, len(classes), classifier.mode)
    state = classifier.state_dict()
    if expected != {k: (tuple(v.shape), checkpoints._kind(v.dtype)) for k, v in state.items()}:
        raise ValueError(f"the classifier's backbone is not the {config.backbone} of {config}")
    about = {"clip": asdict(config), "mode": classifier.mode, "classes": classes}
    _write(state, {CLASSIFIER_KEY: json.dumps(about)}, Path(path))


def load_classifier(
    path: str | Path, device: str = "cpu"
) -> tuple[ActionClassifier, ClipConfig, tuple[str, ...]]:
    """The classifier ``save_classifier`` wrote, checked like ``read_model``; in eval mode."""
    path = Path(path)

    def layout(text: str):
        config, mode, classes = _classifier_about(text)
        expected = _expected(_classifier_for, config, len(classes), mode)
        return (config, mode, classes), expected, f"{config.backbone} {mode} classifier"

    state, (config, mode, classes) = _read(path, CLASSIFIER_KEY, "action-classifier", layout)
    classifier = _classifier_for(config, len(classes), mode)
    _load(classifier, state, path)
    return classifier.to(device).eval(), config, classes


def _classifier_for(config: ClipConfig, classes: int, mode: str) -> ActionClassifier:
    return ActionClassifier(build_backbone(config.backbone), classes, mode)


def _classifier_about(text: str) -> tuple[ClipConfig, str, tuple[str, ...]]:
    try:
        about = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InputError(
            f"classifier metadata is not valid JSON ({archives.reason(error)})"
        ) from None
    if not isinstance(about, dict) or not isinstance(about.get("clip"), dict):
        raise InputError("classifier metadata: no clip configuration")
    config = ClipConfig.from_json(json.dumps(about["clip"]))
    mode, classes = about.get("mode"), about.get("classes")
    if mode not in ("probe", "finetune"):
        raise InputError(f"classifier metadata: unknown mode {_show(mode)}")
    if (
        not isinstance(classes, list)
        or not 1 <= len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and len(c) <= 200 for c in classes)
    ):
        raise InputError(f"classifier metadata: classes must be 1 to {MAX_CLASSES} names")
    return config, mode, tuple(classes)


def is_clip_model(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file with a clip-model configuration (reads the
    header only; a reference ``.pth`` is not, until ``weights import`` converts it)."""
    return has_metadata(path, METADATA_KEY)


def has_metadata(path: str | Path, key: str) -> bool:
    """Whether ``path`` is a safetensors file whose metadata holds ``key`` (the header only is
    read, and only when its length is plausible)."""
    from safetensors import SafetensorError, safe_open

    try:
        path = Path(path)
        with path.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
        if not 0 < length <= min(checkpoints.MAX_HEADER, path.stat().st_size - 8):
            return False
        with safe_open(str(path), framework="pt") as f:
            return key in (f.metadata() or {})
    except (SafetensorError, OSError):
        return False


def _write(state: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with replacing(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as error:  # its I/O errors (disk full, file too large) included
            reason = str(error).rpartition("I/O error: ")[2] or str(error)
            raise OutputError(f"cannot write {path} ({reason}); free some space") from None


def _load(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:  # pragma: no cover - the checks before are meant to catch it
        raise InputError(f"{path} does not load: {archives.reason(error)}") from None


def _read(path: Path, key: str, kind: str, layout) -> tuple[dict[str, torch.Tensor], object]:
    """The tensors of our safetensors file ``path`` and what ``layout`` makes of its metadata
    entry ``key``: ``layout(text) -> (result, expected tensors, layout name)``. The header's
    size, the metadata, every tensor's name, shape and kind of number, and the file's size are
    checked before any tensor is read; then every value must be finite."""
    from safetensors import SafetensorError, safe_open

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as error:
        raise InputError(f"cannot read {path} ({error.strerror or error})") from None
    length = int.from_bytes(head, "little") if len(head) == 8 else -1
    if not 0 < length <= min(checkpoints.MAX_HEADER, size - 8):
        raise InputError(f"{path} is not a readable safetensors file (bad header size)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if key not in metadata:
                scene = " (it is a scene model: use it with --model)"
                raise InputError(
                    f"{path} has no scenecut {kind} configuration in its metadata"
                    + (scene if checkpoints.METADATA_KEY in metadata else "")
                )
            try:
                result, expected, described = layout(metadata[key])
            except InputError as error:
                raise InputError(f"{path}: {error}") from None
            declared = {}
            names = list(f.keys())
            for tensor in names:
                piece = f.get_slice(tensor)
                number = checkpoints._ST_KINDS.get(piece.get_dtype())
                declared[tensor] = (tuple(piece.get_shape()), number)
            values = _check_state(declared, expected, described, str(path))
            if size > 8 + length + 8 * values:  # 8 bytes a value: the widest kind accepted
                raise InputError(
                    f"{path} is {size:,} bytes, more than the {described} weights it declares need"
                )
            state = {tensor: f.get_tensor(tensor) for tensor in declared}
    except (SafetensorError, OSError) as error:
        raise InputError(
            f"{path} is not a readable safetensors file ({archives.reason(error)})"
        ) from None
    checkpoints.check_finite(state, path)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, result


def _expected(make, *args) -> dict[str, tuple[tuple[int, ...], str | None]]:
    """Every tensor of the network ``make(*args)`` builds, built on the meta device (nothing
    allocated): name -> (shape, kind of number)."""
    with torch.device("meta"):
        net = make(*args)
    return {k: (tuple(v.shape), checkpoints._kind(v.dtype)) for k, v in net.state_dict().items()}


def _check_state(
    declared: dict, expected: dict, layout: str, what: str, shown: dict | None = None
) -> int:
    """Refuse ``declared`` (name -> (shape, kind)) unless its names, shapes and kinds are
    exactly ``expected``; returns the number of values. ``shown``: the names to use in
    messages (a foreign file's own)."""
    values = sum(math.prod(shape) for shape, _ in expected.values())
    if values > MAX_PARAMETERS:  # pragma: no cover - every backbone we build is far smaller
        raise InputError(f"{what}: a network of {values:,} values; the limit is {MAX_PARAMETERS:,}")
    shown = shown or {}

    def name(key: str) -> str:
        return ascii(shown.get(key, key)[:80])[1:-1]

    problems = []
    for label, items in (
        ("missing", [name(k) for k in expected if k not in declared]),
        ("unexpected", [name(k) for k in declared if k not in expected]),
        (
            "wrong shape",
            [
                f"{name(k)} {list(declared[k][0])} (expected {list(shape)})"
                for k, (shape, _) in expected.items()
                if k in declared and declared[k][0] != shape
            ],
        ),
        (
            "wrong dtype",
            [
                f"{name(k)} {declared[k][1] or 'non-numeric'} (expected {kind})"
                for k, (_, kind) in expected.items()
                if k in declared and declared[k][1] != kind
            ],
        ),
    ):
        if items:
            problems.append(f"{label} ({len(items)}): {checkpoints._first_few(items)}")
    if problems:
        raise InputError(f"{what} does not match the {layout} layout: " + "; ".join(problems))
    return values


# --------------------------------------------------------------------------------------------
# The reference's checkpoints (ashleylqx/Saccades-VSSL train_ssl_full.py)


class _Args(checkpoints._Inert):
    """Stands in for the ``argparse.Namespace`` of a reference checkpoint's ``opt``: keeps
    its fields as data, runs nothing."""


# Reference (after DataParallel's "module.") -> ours. Its SpatioTemporalConv wraps one conv
# (R3D: ``temporal_spatial_conv``) or the factored pair (R(2+1)D: ``spatial_conv``, ``bn``,
# ``temporal_conv``); stage k of its conv2..conv5 is our layer(k-1), block1 our block 0.
_REFERENCE_HEAD = {"feature_proj.0.weight": "head.weight", "feature_proj.0.bias": "head.bias"}
_REFERENCE_BUFFERS = ("memory", "memory_curr", "params")  # the contrast module's, not weights
_BLOCK = re.compile(r"conv([2-5])\.(?:block1|blocks\.(\d{1,3}))\.(\w+)\.(.+)")
_BLOCK_PARTS = {"conv1": "conv1", "conv2": "conv2", "bn1": "bn1", "bn2": "bn2"}
_BLOCK_PARTS.update(downsampleconv="downsample.0", downsamplebn="downsample.1")
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def reference_name(key: str) -> str | None:
    """Our name for the reference's ``model`` key ``key`` ("module." already removed), or
    None when no part of our network holds it."""
    for old, new in (("projector.", "proj."), ("value_transform.0.", "value.")):
        if key.startswith(old) and key[len(old) :] in ("weight", "bias"):
            return new + key[len(old) :]
    if key.startswith("conv1."):
        rest = _conv_part(key[len("conv1.") :])
        return None if rest is None else "backbone.stem.0." + rest
    if key.startswith("bn1.") and key[len("bn1.") :] in _BN_FIELDS:
        return "backbone.stem.1." + key[len("bn1.") :]
    match = _BLOCK.fullmatch(key)
    if not match or match[3] not in _BLOCK_PARTS:
        return None
    stage, extra, part, rest = match.groups()
    block = 0 if extra is None else int(extra) + 1
    rest = rest if part.startswith(("bn", "downsamplebn")) else _conv_part(rest)
    if rest is None or (part.startswith(("bn", "downsamplebn")) and rest not in _BN_FIELDS):
        return None
    return f"backbone.layer{int(stage) - 1}.{block}.{_BLOCK_PARTS[part]}.{rest}"


def _conv_part(rest: str) -> str | None:
    if rest == "temporal_spatial_conv.weight":
        return "weight"
    for old, new in (("spatial_conv.", "spatial."), ("temporal_conv.", "temporal.")):
        if rest == old + "weight":
            return new + "weight"
    if rest.startswith("bn.") and rest[3:] in _BN_FIELDS:
        return rest
    return None


def may_be_reference(path: str | Path) -> bool:
    """A cheap look before ``import_reference`` reads a whole file: whether a ``torch.save``
    zip's pickle names the embedding head (``feature_proj``) of a ``contrast`` module. A file
    that is not such a zip (older formats) may still be one: True."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.endswith("/data.pkl")]
            if len(pickles) != 1 or pickles[0].file_size > 64 << 20:
                return True
            data = archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError):
        return True
    return b"contrast" in data and b"feature_proj" in data


class NotReference(InputError):
    """The file is a readable checkpoint, but not one of Saccade-VSSL's ``train_ssl_full.py``."""


def import_reference(path: str | Path) -> tuple[dict[str, torch.Tensor], ClipConfig]:
    """The weights of a reference ``train_ssl_full.py`` checkpoint in our names, and the
    configuration they imply (R3D-10 or R(2+1)D-10 from the keys; PPM p and clamp and the clip
    size from its ``opt`` when present). Read with ``weights_only`` (its argparse arguments as
    inert data), every name, shape and kind checked, every value finite. Its memory banks,
    optimiser state and bookkeeping are skipped."""
    path = Path(path)
    what = str(path)
    with torch.serialization.safe_globals([(_Args, "argparse.Namespace")]):
        obj = checkpoints.read_checkpoint(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise NotReference(
            f"{what} has no 'model' state dict: not a Saccade-VSSL train_ssl_full.py checkpoint"
        )
    if not isinstance(obj.get("contrast"), dict):
        raise NotReference(
            f"{what} has no 'contrast' state dict, so no embedding head; not a complete "
            "Saccade-VSSL train_ssl_full.py checkpoint"
        )
    state, shown = {}, {}
    unknown, skipped = [], []
    for part, entries in (("model", obj["model"]), ("contrast", obj["contrast"])):
        try:
            checkpoints._names_only(list(entries))
        except InputError as error:
            raise InputError(f"{what}: {part}: {error}") from None
        for key, value in entries.items():
            bare = key[len("module.") :] if key.startswith("module.") else key
            if part == "contrast":
                name = _REFERENCE_HEAD.get(bare)
                if name is None and bare in _REFERENCE_BUFFERS:
                    skipped.append(key)
                    continue
            else:
                name = reference_name(bare)
            if name is None or name in state:
                unknown.append(f"{part}[{key}]")
                continue
            if not isinstance(value, torch.Tensor):
                shown_key = ascii(key[:80])[1:-1]
                raise InputError(
                    f"{what}: {part}[{shown_key}] is a {type(value).__name__}, not a tensor"
                )
            state[name], shown[name] = value, f"{part}[{key}]"
    if unknown:
        raise InputError(
            f"{what}: entries of no R3D-10 / R(2+1)D-10 Saccade network: "
            + checkpoints._listed(unknown)
        )
    if skipped:
        log.info("%s: skipped the contrast module's buffers %s", what, ", ".join(skipped))
    config = _reference_config(state, obj.get("opt"), what)
    for key in [k for k in state if k.endswith(".running_mean")]:  # files from before torch 0.4.1
        state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    declared = {k: (tuple(v.shape), checkpoints._kind(v.dtype)) for k, v in state.items()}
    layout = f"{config.backbone} clip-model"
    _check_state(declared, _expected(build, config), layout, f"{what} (Saccade-VSSL)", shown)
    checkpoints.check_finite(state, path)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, config


def _reference_config(state: dict, opt: object, what: str) -> ClipConfig:
    if "backbone.stem.0.weight" in state:
        backbone = "r3d10"
    elif "backbone.stem.0.spatial.weight" in state:
        backbone = "r21d10"
    else:
        raise InputError(
            f"{what}: no first convolution (model[module.conv1.*]); not R3D or R(2+1)D"
        )
    head = state.get("head.weight")
    embed_dim = head.shape[0] if head is not None and head.dim() == 2 else 512
    config = ClipConfig.for_backbone(backbone, embed_dim=embed_dim)
    args = getattr(opt, "state", None) if isinstance(opt, _Args) else None
    args = args if isinstance(args, dict) else {}
    found = {}
    for field, arg in (
        ("ppm_p", "pro_p"),
        ("ppm_clamp", "pro_clamp_value"),
        ("clip_len", "clip_len"),
        ("size", "crop_size"),
    ):
        value = args.get(arg)
        if value is None:
            continue
        if field in ("ppm_p", "ppm_clamp") and _number(value):
            value = float(value)
        found[field] = value
    level = args.get("focus_level", 0)
    if level not in (0, -1):
        log.warning(
            "%s was trained with the focus at conv level %s; scenecut applies it at the input",
            what,
            _show(level),
        )
    try:
        config = replace(config, **found)
        config.check()
    except InputError as error:
        raise InputError(f"{what}: its arguments (opt): {error}") from None
    return config
