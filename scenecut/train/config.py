"""A training run's configuration: the papers' defaults, a config file, options, ``--set``.

Plain data, no torch: the CLI builds and checks it before any worker starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from scenecut.errors import OutputError, UsageError
from scenecut.models.options import check_precision

CHECKPOINT = "checkpoint.pt"  # under the run folder: the resumable state
MODEL_FILE = "model.safetensors"  # under the run folder: what `segment --model` / extract use
METRICS = "metrics.jsonl"
CONFIG = "config.json"
SCHEDULES = "cosine, quarter-cosine, constant or steps-E1-E2..."
_SCHEDULE = re.compile(r"cosine|quarter-cosine|constant|steps(-\d+)+")

METHODS = ("bassl", "instance", "temporal", "shotcol", "bassl+shotcol", "scrl", "saccade")
TASKS = ("finetune", "pretrain", "probe")
CLIP_ENCODERS = ("r3d10", "r21d10", "r3d18", "r2plus1d18", "tiny", "small")  # Saccade-VSSL
BASSL_TASKS = ("ssm", "cgm", "pp", "msm")


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    """One training run. Defaults are BaSSL's fine-tuning settings; ``defaults_for`` gives each
    task's paper settings. Every field can be set from a TOML/YAML file or ``--set key=value``."""

    task: str = "finetune"  # finetune | pretrain | probe (action labels: linear probe, fine-tune)
    data: str = ""  # MovieNet-style tree (Saccade-VSSL and probe: a UCF101/HMDB51-style tree)
    out: str = ""  # run folder
    features: str = ""  # finetune: folder written by `extract`
    init: str = ""  # pretrain: encoder weights to start from (name or path); "" = random
    head: str = "crn"  # finetune: crn (BaSSL) | lstm (SCRL's downstream protocol)
    seq_len: int = 40  # finetune with the lstm head: clip length (a multiple of 4)
    method: str = "bassl"  # pretrain: one of METHODS
    encoder: str = (
        "resnet50"  # pretrain: resnet50 | resnet50-9ch | effnet-lite0 | tiny | CLIP_ENCODERS
    )
    model: dict = field(default_factory=dict)  # ModelConfig / CRNConfig overrides ("crn.x": v)
    pretext: dict = field(default_factory=dict)  # PretrainConfig overrides
    train_split: str = "train"
    val_split: str = "val"
    epochs: int = 20
    batch_size: int = 1024  # items per optimizer step, over all processes
    micro_batch: int = 0  # items per process per forward pass; 0 = batch_size / processes
    optimizer: str = "adam"  # adam | sgd | lars
    # The peak learning rate; 0 = base_lr x batch_size / 256, the papers' linear scaling rule.
    lr: float = 0.0
    base_lr: float = 2.5e-6  # per 256 items (BaSSL fine-tuning: 1e-5 at a batch of 1024)
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup: float = 0.0  # share of all steps with a linear warm-up
    schedule: str = "cosine"  # cosine (per step) | quarter-cosine (SCRL, per epoch) | constant
    lr_decay: float = 0.1  # the factor at each epoch of a steps-E1-E2... schedule
    fold: int = 1  # action trees (UCF101 / HMDB51): the split list trainlist0N / testlist0N
    # probe: "reference" reproduces downstream.py (raw [0, 1] inputs, BN statistics adapting,
    # colour jitter at test time, the epoch kept by test accuracy); "clean" normalises inputs
    # as in pre-training, freezes BN, keeps the epoch by a validation split carved from train
    protocol: str = "reference"
    workers: int = 4  # data-loading processes per training process
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast; fp16 with loss scaling)
    seed: int = 0
    checkpoint_every: int = 200  # optimizer steps
    max_steps: int = 0  # stop after this many optimizer steps (0: all epochs)
    log_every: int = 10
    image_size: int = 224

    @property
    def run(self) -> Path:
        return Path(self.out)

    @property
    def peak_lr(self) -> float:
        """The learning rate after warm-up: ``lr`` when set, else scaled from ``base_lr``."""
        return self.lr or self.base_lr * self.batch_size / 256


# --------------------------------------------------------------------------------------------
# Pre-training objectives (``--set pretext.KEY=VALUE``)


@dataclass(frozen=True)
class PretrainConfig:
    """What the pre-training objective does; defaults are the papers' (BaSSL, SCRL MoCo v2).

    The optimiser, learning rate and schedule are ``TrainConfig``'s, for every task alike.
    """

    method: str = "bassl"  # one of METHODS
    # BaSSL tasks (methods bassl and bassl+shotcol): switches and weights (summed)
    ssm: bool = True
    cgm: bool = True
    pp: bool = True
    msm: bool = True
    ssm_weight: float = 1.0
    cgm_weight: float = 1.0
    pp_weight: float = 1.0
    msm_weight: float = 1.0
    shotcol_weight: float = 1.0  # the NN term of bassl+shotcol
    temperature: float = 0.1  # NT-Xent
    mask_prob: float = 0.15  # MSM
    pp_negatives: int = 1  # non-boundary shots per window for PP
    neighbor_size: int = 8  # dense window = 2 n + 1 shots
    head_hidden: int = 2048  # MlpHead: input -> hidden -> ReLU -> head_dim, L2-normalised
    head_dim: int = 128
    # SCRL (MoCo v2 with scene-consistent positives)
    scrl_dim: int = 2048
    queue_size: int = 65536
    key_momentum: float = 0.999
    scrl_temperature: float = 0.07
    clusters: int = 24
    soft_gamma: float = 0.5
    mlp: bool = True
    kmeans_iters: int = 20
    kmeans_threshold: float = 1e-2
    # torchvision ResNet-50 ImageNet weights (a path or a weights name) loaded into the
    # query/key encoders except conv1 and fc; None trains from scratch (SCRL's "without" yaml)
    imagenet_weights: str | None = None
    # Saccade-VSSL (SACCADE.md sections 2-5; the README's values)
    nce_k: int = 1024  # memory-bank negatives per clip
    nce_t: float = 0.07
    nce_m: float = 0.5  # memory momentum
    ppm_loss: str = "l1"  # l1 | l2 | cos
    nce_weight: float = 1.0
    ppm_weight: float = 1.0
    proto_weight: float = 1.0
    num_clusters: str = "1500,1500,1500"  # k of each k-means ("" = no prototype loss)
    cluster_from: int = -1  # first epoch that may cluster; -1 = epochs - 59 (241 of 300)
    cluster_every: int = 5
    lr_ratio: float = 0.001  # the embedding head's learning rate, relative
    focus_num: int = 3  # fixations per video (x2 clips)
    grid: int = 7
    dedup: bool = True
    margin: int = 12  # focus mask margin (rows)
    fixations: str = "scanpath"  # scanpath (random where a video has none) | random
    # the reference's quirks (SACCADE.md section 9), reproduced by default; false corrects
    mask_flip: bool = True  # the focus mask is flipped independently of its clip
    mask_jitter: bool = True  # the mask goes through the clip's blur and colour jitter
    test_jitter: bool = True  # colour jitter (p 0.3) on the cluster-feature clips

    def __post_init__(self):
        if self.method not in METHODS:
            raise UsageError(f"unknown pre-training method {self.method!r}; known: {METHODS}")
        if not 0.0 < self.mask_prob <= 1.0:
            raise UsageError(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.neighbor_size < 1:
            raise UsageError(f"neighbor_size must be at least 1, got {self.neighbor_size}")
        if not 1 <= self.pp_negatives <= 2 * self.neighbor_size:
            raise UsageError(
                f"pp_negatives must be 1..{2 * self.neighbor_size} (the non-boundary shots of "
                f"a window), got {self.pp_negatives}"
            )
        if self.clusters < 1 or self.queue_size < 1:
            raise UsageError("clusters and queue_size must be positive")
        if self.method in ("bassl", "bassl+shotcol") and not self.tasks:
            raise UsageError("enable at least one of the BaSSL tasks ssm, cgm, pp, msm")
        if self.method == "saccade":
            self._check_saccade()

    def _check_saccade(self) -> None:
        if self.ppm_loss not in ("l1", "l2", "cos"):
            raise UsageError(f"pretext.ppm_loss must be l1, l2 or cos, not {self.ppm_loss!r}")
        if self.fixations not in ("scanpath", "random"):
            raise UsageError(
                f"pretext.fixations must be scanpath or random, not {self.fixations!r}"
            )
        for name in ("nce_k", "cluster_every", "focus_num", "grid"):
            if getattr(self, name) < 1:
                raise UsageError(f"pretext.{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.nce_t < math.inf or not 0 <= self.nce_m < 1:
            raise UsageError("pretext.nce_t must be positive and pretext.nce_m in [0, 1)")
        if self.margin < 0 or self.lr_ratio < 0:
            raise UsageError("pretext.margin and pretext.lr_ratio must be 0 or more")
        self.clusters_k  # noqa: B018 (checks the list)

    @property
    def clusters_k(self) -> tuple[int, ...]:
        """Saccade-VSSL's k of each k-means run (``num_clusters``)."""
        try:
            ks = tuple(int(k) for k in self.num_clusters.replace(" ", "").split(",") if k)
        except ValueError:
            ks = (0,)
        if any(k < 2 for k in ks):
            raise UsageError(
                f"pretext.num_clusters must be whole numbers >= 2 separated by commas, "
                f"got {self.num_clusters!r}"
            )
        return ks

    def cluster_start(self, epochs: int) -> int:
        """The first epoch that may cluster: ``cluster_from``, or the reference's ``epochs -
        59`` (241 of R3D's 300 epochs, 301 of R(2+1)D's 360)."""
        return self.cluster_from if self.cluster_from >= 0 else max(1, epochs - 59)

    def clusters_at(self, epoch: int, epochs: int) -> bool:
        """Whether the prototypes are (re)computed at the start of ``epoch`` (spec 4.3)."""
        return (
            bool(self.clusters_k)
            and self.cluster_start(epochs) <= epoch < epochs
            and epoch % self.cluster_every == 0
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        """The enabled BaSSL tasks (empty for the other methods)."""
        if self.method not in ("bassl", "bassl+shotcol"):
            return ()
        return tuple(t for t in BASSL_TASKS if getattr(self, t))

    @property
    def uses_crn(self) -> bool:
        return any(t in self.tasks for t in ("cgm", "pp", "msm"))

    @property
    def window(self) -> int:
        return 2 * self.neighbor_size + 1

    @property
    def sparse_positions(self) -> tuple[int, ...]:
        """``PretrainWindows(sparse=...)`` for this method: edges (+ centre), BaSSL's sampler."""
        last = self.window - 1
        if self.method == "bassl":
            return (0, last)
        if self.method in ("shotcol", "bassl+shotcol"):
            return (0, last, self.neighbor_size)
        return (0,)  # instance/temporal: ShotPairs' one-shot window


def defaults_for(
    task: str, method: str = "bassl", head: str = "crn", init: str = "", encoder: str = ""
) -> dict[str, Any]:
    """The papers' settings (REFERENCE.md sections 2.5, 3.3, 4.2, 4.5).

    BaSSL scales its learning rate with the batch (``base_lr`` per 256 items); SCRL and the
    BiLSTM protocol give theirs for their own batch, unscaled (``lr``).
    """
    if task == "probe":  # Saccade-VSSL's downstream.py (SACCADE.md section 7)
        return dict(
            epochs=199, batch_size=32, optimizer="sgd", lr=0.1, weight_decay=5e-4,
            schedule="steps-60-120-160", lr_decay=0.1, head="linear", encoder="",
            seed=42 if head == "linear" else 632, image_size=112,
        )  # fmt: skip
    if method == "saccade":  # the README's R3D / R(2+1)D commands (SACCADE.md section 5)
        r21d = encoder == "r21d10"
        return dict(
            epochs=360 if r21d else 300, batch_size=8 if r21d else 16, optimizer="sgd",
            lr=0.1, weight_decay=1e-4, schedule="steps-90-180-240", lr_decay=0.2,
            encoder=encoder or "r3d10", seed=632, image_size=112,
        )  # fmt: skip
    if task == "finetune" and head == "lstm":  # SCRL / LGSS BiLSTM protocol
        return dict(
            epochs=200, batch_size=12, optimizer="sgd", lr=0.1, weight_decay=1e-4,
            schedule="steps-160-180",
        )  # fmt: skip
    if task == "finetune":
        return dict(epochs=20, batch_size=1024, optimizer="adam", base_lr=2.5e-6, weight_decay=0.0)
    if method == "scrl":  # 0.03 with ImageNet initialisation, 0.06 from scratch
        return dict(
            epochs=100, batch_size=1024, optimizer="sgd", lr=0.03 if init else 0.06,
            weight_decay=1e-4, schedule="quarter-cosine", encoder="resnet50-9ch",
        )  # fmt: skip
    return dict(
        epochs=10, batch_size=256, optimizer="lars", base_lr=0.3, weight_decay=1e-6, warmup=0.1
    )


def make_config(
    task: str,
    file: str | Path | None = None,
    sets: list[str] | None = None,
    fallback: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    **given: Any,
) -> TrainConfig:
    """Paper defaults, then a config file, then keyword options, then ``key=value`` strings.

    ``fallback(settings)`` returns the settings that none of these set, or set empty (the
    CLI's data root and run folder, which may depend on the method the file chose)."""
    values: dict[str, Any] = {}
    if file:
        values.update(_read_config_file(Path(file)))
    values.update({k: v for k, v in given.items() if v is not None})
    types = _field_types(TrainConfig)
    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set takes key=value, got {item!r}")
        key, text = key.strip(), text.strip()
        # a text setting keeps its text as given (a split or path named 2019 stays "2019")
        _set_path(values, key, text if types.get(key) == "str" else _parse_value(text))
    method = values.get("method", "bassl")
    head = values.get("head", "linear" if task == "probe" else "crn")
    encoder = values.get("encoder", "")
    defaults = defaults_for(task, method, head, values.get("init", ""), encoder)
    merged = {**defaults, **values, "task": task}
    if fallback is not None:
        merged.update(fallback(merged))
    unknown = sorted(set(merged) - set(types))
    if unknown:
        raise UsageError(f"unknown training settings: {', '.join(unknown)}")
    config = TrainConfig(**{k: _typed(_setting(k), v, types[k]) for k, v in merged.items()})
    _check_config(config)
    if task == "pretrain":  # refuse a bad --set pretext.* before any worker starts
        pretrain_config(config, config.model.get("crn.neighbor_size"))
    return config


def pretrain_config(config: TrainConfig, neighbor_size: int | None = None) -> PretrainConfig:
    """The run's ``PretrainConfig``: ``--set pretext.*`` on the method's defaults."""
    settings = dict(config.pretext)
    known = {f.name for f in fields(PretrainConfig)} - {"method"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UsageError(
            f"unknown pre-training settings: {', '.join('pretext.' + k for k in unknown)} "
            "(the optimiser and learning rate are --lr, --set base_lr=..., optimizer, warmup)"
        )
    if config.method == "scrl" and config.init:
        settings.setdefault("imagenet_weights", config.init)
    if neighbor_size is not None:
        settings.setdefault("neighbor_size", neighbor_size)
    types = _field_types(PretrainConfig)
    settings = {k: _typed(f"pretext.{k}", v, types[k]) for k, v in settings.items()}
    try:
        return PretrainConfig(method=config.method, **settings)
    except TypeError as error:
        raise UsageError(f"bad pre-training setting ({error})") from error


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise UsageError(f"{path}: config files are .toml, .yaml or .json")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read config file {path} ({error})") from error
    if path.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{path}: invalid TOML ({error})") from error
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: invalid JSON ({error})") from error
    else:
        try:
            import yaml
        except ImportError as error:
            raise UsageError(
                "YAML configs need PyYAML (pip install pyyaml); or use TOML"
            ) from error
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UsageError(f"{path}: invalid YAML ({error})".replace("\n", " ")) from error
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings")
    return data


def _set_path(values: dict, key: str, value: Any) -> None:
    """``model.crn.hidden_size=64`` -> values["model"]["crn.hidden_size"] = 64."""
    head, _, rest = key.partition(".")
    if rest and head in ("model", "pretext"):
        values.setdefault(head, {})[rest] = value
    else:
        values[key] = value


# settings that `scenecut train` commands also take as options (--max-steps is max_steps)
_OPTIONS = (
    "data", "out", "features", "init", "head", "method", "encoder", "epochs", "batch_size",
    "micro_batch", "lr", "workers", "precision", "max_steps",
)  # fmt: skip


def _setting(name: str) -> str:
    """How an error names a setting: ``max_steps (--max-steps)``, or the key alone."""
    return f"{name} (--{name.replace('_', '-')})" if name in _OPTIONS else name


def _field_types(cls) -> dict[str, str]:
    """A dataclass's field names and their annotations as written (``"int"``, ``"float"``)."""
    return {f.name: str(f.type) for f in fields(cls)}


def _typed(name: str, value: Any, kind: str) -> Any:
    """``value`` as a setting of annotation ``kind``, or a ``UsageError`` naming the setting:
    a whole number for ``int``, a number for ``float`` (ints widened), text (or a path) for
    ``str``."""
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind in ("str", "str | None") and isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if kind == "str | None" and value is None:
        return value
    if kind == "dict" and isinstance(value, dict):
        return value
    if kind not in _KINDS:
        return value  # a setting of another type: its own checks apply
    raise UsageError(f"{name} must be {_KINDS[kind]}, got {value!r}")


_KINDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
    "str | None": "text",
    "dict": "a table of settings",
}


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _check_config(c: TrainConfig) -> None:
    if not c.data:
        raise UsageError("--data (a MovieNet-style tree) is required")
    if not c.out:
        raise UsageError("--out (the run folder) is required")
    if c.task not in TASKS:
        raise UsageError(f"unknown task {c.task!r}")
    heads = ("linear", "full") if c.task == "probe" else ("crn", "lstm")
    if c.head not in heads:
        raise UsageError(f"--head must be {' or '.join(heads)}, not {c.head!r}")
    if c.method == "saccade" and c.task == "pretrain" and c.encoder not in CLIP_ENCODERS:
        raise UsageError(f"--encoder for saccade must be one of {', '.join(CLIP_ENCODERS)}")
    if c.protocol not in ("reference", "clean"):
        raise UsageError(f"protocol must be reference or clean, not {c.protocol!r}")
    if c.fold < 1:
        raise UsageError(f"fold must be at least 1, got {c.fold}")
    if not 0 < c.lr_decay <= 1:
        raise UsageError(f"lr_decay must be in (0, 1], got {c.lr_decay}")
    if not _SCHEDULE.fullmatch(c.schedule):
        raise UsageError(f"schedule must be {SCHEDULES}, not {c.schedule!r}")
    if c.optimizer not in ("adam", "sgd", "lars"):
        raise UsageError(f"optimizer must be adam, sgd or lars, not {c.optimizer!r}")
    check_precision(c.precision)
    for name in ("epochs", "batch_size", "checkpoint_every", "log_every", "image_size"):
        if getattr(c, name) < 1:
            raise UsageError(f"{_setting(name)} must be at least 1, got {getattr(c, name)}")
    for name in ("workers", "micro_batch", "max_steps"):
        if getattr(c, name) < 0:
            raise UsageError(f"{_setting(name)} must be 0 or more, got {getattr(c, name)}")
    for name in ("lr", "base_lr", "momentum", "weight_decay"):
        value = getattr(c, name)
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{_setting(name)} must be a finite number, 0 or more, got {value}")
    if not 0 < c.peak_lr < math.inf:
        raise UsageError(f"lr (or base_lr x batch_size / 256) must be positive, got {c.peak_lr}")
    if not 0 <= c.warmup < 1:
        raise UsageError(f"warmup must be in [0, 1), got {c.warmup}")


def with_overrides(config, overrides: dict):
    """``ModelConfig`` with ``{"crn.hidden_size": 64, "image_size": 112, ...}`` applied."""
    top = {k: v for k, v in overrides.items() if not k.startswith("crn.")}
    crn = {k[4:]: v for k, v in overrides.items() if k.startswith("crn.")}
    try:
        return dataclasses.replace(config, crn=dataclasses.replace(config.crn, **crn), **top)
    except TypeError as error:
        raise UsageError(f"unknown model setting ({error})") from error


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: an existing run folder needs --resume (continue) or --overwrite."""
    if not out.exists() or not any(out.iterdir()):
        return
    if overwrite:
        shutil.rmtree(out)
        return
    if not resume:
        raise OutputError(
            f"{out} already holds a run; pass --resume to continue it or --overwrite to restart"
        )
