"""What a BaSSL-family model is: its shape and preprocessing, stored inside every checkpoint.

No torch here: the configuration is plain data that checkpoints, the weights registry and the
training configuration read without loading a network.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from scenecut.errors import InputError

# Shot encoders a checkpoint may hold, with what ``--help`` says of them.
ENCODERS = {
    "resnet50": "",
    "resnet50-9ch": "SCRL",
    "effnet-lite0": "offline ImageNet weights",
    "tiny": "tests",
    "clip": "features of a clip model (train extract --encoder CLIP.safetensors)",
}


PARTS = ("shot_encoder", "crn", "head_sbd")  # a BaSSL model (the CRN head)
HEADS = ("crn", "lstm")
FEATURE_NORMS = ("none", "film")
ALL_PARTS = (*PARTS, "lstm_head")


def parts_for(config: ModelConfig) -> tuple[str, ...]:
    """The parts a complete model with ``config`` has."""
    return ("shot_encoder", "lstm_head") if config.head == "lstm" else PARTS


METADATA_KEY = "scenecut_config"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class CRNConfig:
    """Shape of the contextual relation network (BaSSL ``params.trn``)."""

    input_dim: int = 2048
    hidden_size: int = 768
    num_hidden_layers: int = 2
    num_attention_heads: int = 8
    intermediate_size: int = 3072
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    neighbor_size: int = 8  # shots on each side of the centre (BaSSL's config stores 2 x this)
    pooling: str = "center"

    @property
    def window(self) -> int:
        """Shots per window: the centre shot and ``neighbor_size`` on each side."""
        return 2 * self.neighbor_size + 1

    @property
    def seq_len(self) -> int:
        """Tokens the CRN sees: the window plus the [CLS] token."""
        return self.window + 1


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it: stored inside every checkpoint."""

    # "resnet50" | "resnet50-9ch" (SCRL early fusion) | "effnet-lite0" (offline) | "tiny" (tests)
    encoder: str = "resnet50"
    crn: CRNConfig = field(default_factory=CRNConfig)
    # Preprocessing, stored with the weights like timm's pretrained_cfg: the shorter side is
    # resized to ``resize`` with ``interpolation``, then centre-cropped to ``image_size``.
    image_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"  # "bicubic" (BaSSL, ModelScope) | "bilinear" (SCRL)
    keyframes: int = 3
    head: str = "crn"  # "crn": BaSSL's CRN + head_sbd; "lstm": SCRL's BiLSTM protocol
    seq_len: int = 40  # the BiLSTM's clip length (a multiple of 4)
    # "none" (BaSSL, SCRL) or "film": shot features centred on their film's mean and
    # L2-normalised before the boundary head, in training and inference alike
    feature_norm: str = "none"
    # The boundary threshold the model was published with (ModelScope's ``save_threshold`` 0.8),
    # used when the user gives none; None: ``segment``'s own default (the papers' 0.5).
    threshold: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        try:
            data = json.loads(text)
            unknown = set(data) - {f.name for f in fields(cls)}
            unknown |= set(data.get("crn", {})) - {f.name for f in fields(CRNConfig)}
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            crn = CRNConfig(**data.pop("crn", {}))
            for name in ("mean", "std"):
                if isinstance(data.get(name), list):
                    data[name] = tuple(data[name])
            config = cls(crn=crn, **data)
        except (ValueError, TypeError, AttributeError, RecursionError) as error:
            raise InputError(
                f"the model configuration in this checkpoint is invalid ({error}); "
                "re-create the checkpoint with this version of scenecut"
            ) from error
        check_config(config)
        return config


# --------------------------------------------------------------------------------------------
# Limits on what a checkpoint may declare, checked before anything is allocated. Generous next
# to the real models (BaSSL: 2048-d shots, a 768-d CRN of 2 layers, 8 heads, 3072 inner, 8
# neighbours, ~45M parameters), small enough that a hostile file cannot ask for gigabytes.

INT_LIMITS = {  # field: (least, most)
    "input_dim": (1, 4096),
    "hidden_size": (1, 4096),
    "num_hidden_layers": (0, 48),
    "num_attention_heads": (1, 256),
    "intermediate_size": (1, 16384),
    "neighbor_size": (0, 256),
    "image_size": (8, 2048),
    "resize": (8, 4096),
    "keyframes": (1, 16),
    "seq_len": (4, 4096),
}
PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob")
POOLINGS = ("center", "cls", "avg", "max")
INTERPOLATIONS = ("bicubic", "bilinear")
MAX_PARAMETERS = 250_000_000  # 1 GB of float32: five times BaSSL


def _bad(problem: str) -> InputError:
    return InputError(f"model configuration: {problem}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_field(owner: object, name: str) -> None:
    value = getattr(owner, name)
    least, most = INT_LIMITS[name]
    if type(value) is not int:
        raise _bad(f"{name} must be a whole number, not {_show(value)}")
    if not least <= value <= most:
        raise _bad(f"{name} {value} is outside {least}..{most}")


def _number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def check_config(config: ModelConfig) -> None:
    """Raise ``InputError`` unless every field has the right type and a sane value: a
    configuration read from a file is checked here before any network is built from it."""
    crn = config.crn
    if not isinstance(crn, CRNConfig):
        raise _bad(f"crn must be a CRN configuration, not {_show(crn)}")
    for name in ("input_dim", "hidden_size", "num_hidden_layers", "num_attention_heads"):
        _int_field(crn, name)
    for name in ("intermediate_size", "neighbor_size"):
        _int_field(crn, name)
    if not isinstance(config.encoder, str) or not isinstance(config.head, str):
        raise _bad(
            f"encoder and head must be names, not {_show(config.encoder)}, {_show(config.head)}"
        )
    for name in ("image_size", "resize", "keyframes", "seq_len"):
        _int_field(config, name)
    # The CRN's big matrices alone (checkpoints counts every tensor exactly, on the meta device)
    h = crn.hidden_size
    least = crn.input_dim * h + crn.num_hidden_layers * (4 * h * h + 2 * h * crn.intermediate_size)
    if least > MAX_PARAMETERS:
        raise _bad(
            f"a CRN of {least:,} values or more; scenecut refuses more than {MAX_PARAMETERS:,}"
        )
    if crn.hidden_size % crn.num_attention_heads:
        raise _bad(
            f"hidden_size {crn.hidden_size} is not a multiple of "
            f"num_attention_heads {crn.num_attention_heads}"
        )
    for name in PROBABILITIES:
        value = getattr(crn, name)
        if not _number(value) or not 0 <= value < 1:
            raise _bad(f"{name} must be a number in [0, 1), not {_show(value)}")
    if not _number(crn.layer_norm_eps) or not 0 < crn.layer_norm_eps < 1:
        raise _bad(f"layer_norm_eps must be a number in (0, 1), not {_show(crn.layer_norm_eps)}")
    if crn.pooling not in POOLINGS:
        raise _bad(f"unknown CRN pooling {_show(crn.pooling)}; known: {', '.join(POOLINGS)}")
    if config.seq_len % 4:
        raise _bad(f"seq_len {config.seq_len} is not a multiple of 4")
    for name in ("mean", "std"):
        value = getattr(config, name)
        if not (
            isinstance(value, tuple) and len(value) == 3 and all(_number(v) for v in value)
        ) or (name == "std" and min(value) <= 0):
            raise _bad(f"{name} must be 3 numbers (std above 0), not {_show(value)}")
    if config.encoder not in ENCODERS:
        raise _bad(f"unknown encoder {_show(config.encoder)}; known: {', '.join(ENCODERS)}")
    if config.head not in HEADS:
        raise _bad(f"unknown head {_show(config.head)}; known: {', '.join(HEADS)}")
    if config.feature_norm not in FEATURE_NORMS:
        raise _bad(f"unknown feature_norm {_show(config.feature_norm)}")
    if config.interpolation not in INTERPOLATIONS:
        raise _bad(
            f"unknown interpolation {_show(config.interpolation)}; "
            f"known: {', '.join(INTERPOLATIONS)}"
        )
    threshold = config.threshold
    if threshold is not None and not (_number(threshold) and 0 <= threshold <= 1):
        raise _bad(f"threshold must be a number from 0 to 1 (or null), not {_show(threshold)}")
