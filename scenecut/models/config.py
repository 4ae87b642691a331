"""What a BaSSL-family model is: its shape and preprocessing, stored inside every checkpoint.

No torch here: the configuration is plain data that checkpoints, the weights registry and the
training configuration read without loading a network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from scenecut.errors import InputError

# Shot encoders a checkpoint may hold, with what ``--help`` says of them.
ENCODERS = {
    "resnet50": "",
    "resnet50-9ch": "SCRL",
    "effnet-lite0": "offline ImageNet weights",
    "tiny": "tests",
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
    image_size: int = 224
    resize: int = 256  # shorter side before the centre crop, bicubic
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    keyframes: int = 3
    head: str = "crn"  # "crn": BaSSL's CRN + head_sbd; "lstm": SCRL's BiLSTM protocol
    seq_len: int = 40  # the BiLSTM's clip length (a multiple of 4)
    # "none" (BaSSL, SCRL) or "film": shot features centred on their film's mean and
    # L2-normalised before the boundary head, in training and inference alike
    feature_norm: str = "none"

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
                if name in data:
                    data[name] = tuple(data[name])
            config = cls(crn=crn, **data)
        except (ValueError, TypeError, AttributeError) as error:
            raise InputError(
                f"the model configuration in this checkpoint is invalid ({error}); "
                "re-create the checkpoint with this version of scenecut"
            ) from error
        if config.encoder not in ENCODERS:
            raise InputError(f"unknown encoder {config.encoder!r}; known: {', '.join(ENCODERS)}")
        if config.head not in HEADS:
            raise InputError(f"unknown head {config.head!r}; known: {', '.join(HEADS)}")
        if config.feature_norm not in FEATURE_NORMS:
            raise InputError(f"unknown feature_norm {config.feature_norm!r}")
        return config
