"""BaSSL: a ResNet-50 shot encoder, a contextual relation network (CRN) and a boundary head.

Module and parameter names copy the reference implementation (kakaobrain/bassl, ModelScope's
``damo/cv_resnet50-bert_video-scene-segmentation_movienet``) so their state dicts load without
renaming. Our checkpoints are safetensors files carrying ``ModelConfig`` as JSON metadata, so a
file rebuilds its own model. Foreign ``.pt``/``.pth``/``.ckpt`` files are read only with
``torch.load(weights_only=True)`` and checked key by key before use.

This module imports torch at the top: import it only when a deep model is used.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from scenecut.errors import InputError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

ENCODERS = ("resnet50", "resnet50-9ch", "effnet-lite0", "tiny")
SOURCES = ("modelscope", "lightning", "torchvision", "scrl")
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


# --------------------------------------------------------------------------------------------
# Modules


class ShotEncoder(nn.Module):
    """torchvision ResNet-50 v1.5 trunk without ``fc``: image -> 2048-d pooled feature.

    ``in_channels=9`` is SCRL's early-fusion variant (3 keyframes stacked on channels).
    """

    def __init__(self, in_channels: int = 3):
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet

        trunk = ResNet(Bottleneck, [3, 4, 6, 3], zero_init_residual=True)
        if in_channels != 3:
            trunk.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1, self.bn1, self.relu, self.maxpool = (
            trunk.conv1,
            trunk.bn1,
            trunk.relu,
            trunk.maxpool,
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            trunk.layer1,
            trunk.layer2,
            trunk.layer3,
            trunk.layer4,
        )
        self.out_dim = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class TinyEncoder(nn.Module):
    """Two strided convolutions and a global average: a stand-in encoder for fast tests."""

    def __init__(self, out_dim: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=5, stride=4, padding=2)
        self.conv2 = nn.Conv2d(16, out_dim, kernel_size=3, stride=2, padding=1)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class ShotEmbedding(nn.Module):
    """Mask -> prepend [CLS] = mean of the inputs -> project -> add positions -> LayerNorm."""

    def __init__(self, cfg: CRNConfig):
        super().__init__()
        self.shot_embedding = nn.Linear(cfg.input_dim, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.seq_len, cfg.hidden_size)
        self.mask_embedding = nn.Embedding(2, cfg.input_dim, padding_idx=0)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.register_buffer("pos_ids", torch.arange(cfg.seq_len, dtype=torch.long))

    def forward(self, shots: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            # A masked shot becomes the learned mask vector (row 1); row 0 must stay zero.
            with torch.no_grad():
                self.mask_embedding.weight[0].zero_()
            keep = (1 - mask.long()).to(shots.dtype)[:, :, None]
            shots = shots * keep + self.mask_embedding(mask.long())
        cls = shots.mean(dim=1, keepdim=True)  # [CLS] is the mean input, not a learned token
        tokens = self.shot_embedding(torch.cat([cls, shots], dim=1))
        # Shorter sequences (BaSSL's sparse pre-training pairs) take the first positions.
        tokens = tokens + self.position_embedding(self.pos_ids[: tokens.shape[1]])[None]
        return self.dropout(self.LayerNorm(tokens))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: CRNConfig):
        super().__init__()
        if cfg.hidden_size % cfg.num_attention_heads:
            raise InputError(
                f"hidden_size {cfg.hidden_size} is not a multiple of "
                f"num_attention_heads {cfg.num_attention_heads}"
            )
        self.heads = cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, s, self.heads, h // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        # softmax(QK^T / sqrt(d) + mask) V with dropout on the probabilities, as in BERT
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=additive_mask.to(q.dtype),
            dropout_p=self.dropout_p if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(b, s, h)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg: CRNConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: CRNConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, additive_mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: CRNConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact erf GELU (HF "gelu")


class BertOutput(nn.Module):
    def __init__(self, cfg: CRNConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertLayer(nn.Module):
    """Post-LN BERT layer with HuggingFace's parameter names."""

    def __init__(self, cfg: CRNConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, additive_mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: CRNConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, additive_mask)
        return x


def _additive_mask(keep: torch.Tensor) -> torch.Tensor:
    """1 = attend, 0 = ignore  ->  0 / -10000 added to the attention scores (BERT)."""
    return (1.0 - keep[:, None, None, :].float()) * -10000.0


def _bert_init(module: nn.Module) -> None:
    """BERT's initialisation (HF ``BertPreTrainedModel._init_weights``, range 0.02) for CRNs
    trained from scratch; PyTorch's defaults (N(0, 1) position embeddings) drown the shots."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()


class CRN(nn.Module):
    """BaSSL's TransformerCRN: ``[B, S, input_dim]`` shots -> (``[B, S+1, hidden]``, pooled)."""

    def __init__(self, cfg: CRNConfig):
        super().__init__()
        if cfg.pooling not in ("center", "cls", "avg", "max"):
            raise InputError(f"unknown CRN pooling {cfg.pooling!r}")
        self.pooling = cfg.pooling
        self.shot_embedding = ShotEmbedding(cfg)
        self.encoder = BertEncoder(cfg)
        self.register_buffer("attention_mask", _additive_mask(torch.ones(1, cfg.seq_len)))
        self.apply(_bert_init)

    def forward(
        self, shots: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.shot_embedding(shots, mask)
        additive = self.attention_mask
        if additive.shape[-1] != tokens.shape[1]:
            additive = _additive_mask(torch.ones(1, tokens.shape[1], device=tokens.device))
        out = self.encoder(tokens, additive)
        return out, self.pool(out)

    def pool(self, out: torch.Tensor) -> torch.Tensor:
        if self.pooling == "center":
            return out[:, out.shape[1] // 2]  # token 9 of 18 = the centre shot
        if self.pooling == "cls":
            return out[:, 0]
        if self.pooling == "avg":
            return out[:, 1:].mean(dim=1)
        return out[:, 1:].max(dim=1).values


class BaSSL(nn.Module):
    """Shot encoder + CRN + ``head_sbd``; ``state_dict()`` keys match ModelScope's file."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.encoder not in ENCODERS:
            raise InputError(f"unknown encoder {config.encoder!r}; known: {', '.join(ENCODERS)}")
        channels = 3 * config.keyframes if config.encoder == "resnet50-9ch" else 3
        if config.encoder == "tiny":
            self.shot_encoder = TinyEncoder(config.crn.input_dim, channels)
        elif config.encoder == "effnet-lite0":
            from scenecut.effnet import HEAD, EfficientNetLite

            if config.crn.input_dim != HEAD:
                raise InputError(
                    f"EfficientNet-Lite0 gives {HEAD}-d shots, not {config.crn.input_dim}"
                )
            self.shot_encoder = EfficientNetLite()
        else:
            if config.crn.input_dim != 2048:
                raise InputError(f"ResNet-50 gives 2048-d shots, not {config.crn.input_dim}")
            self.shot_encoder = ShotEncoder(channels)
        if config.head == "lstm":
            self.lstm_head = BiLSTMHead(config.crn.input_dim)
        else:
            self.crn = CRN(config.crn)
            self.head_sbd = nn.Linear(config.crn.hidden_size, 2)
        self.config = config

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``[B, window, input_dim]`` shot features -> ``[B, 2]`` boundary logits of the centre."""
        return self.head_sbd(self.crn(windows)[1])


def build(config: ModelConfig) -> BaSSL:
    return BaSSL(config)


class BiLSTMHead(nn.Module):
    """SCRL's downstream BiLSTM (LGSS protocol): ``[B, T, input_dim]`` -> ``[B, T, 2]`` logits.

    Input dropout -> Linear -> BatchNorm -> dropout -> 2-layer bidirectional LSTM -> Linear ->
    BatchNorm -> dropout -> ReLU -> Linear (REFERENCE.md 4.5).
    """

    def __init__(self, input_dim: int, fc_dim: int = 1024, hidden: int = 512):
        super().__init__()
        self.input_dropout = nn.Dropout(0.2)
        self.fc1 = nn.Linear(input_dim, fc_dim)
        self.bn1 = nn.BatchNorm1d(fc_dim)
        self.lstm = nn.LSTM(
            fc_dim, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=0.6
        )
        self.fc2 = nn.Linear(2 * hidden, 512)
        self.bn2 = nn.BatchNorm1d(512)
        self.fc3 = nn.Linear(512, 2)
        self.dropout = nn.Dropout(0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(self.input_dropout(x))
        x = self.dropout(self.bn1(x.transpose(1, 2)).transpose(1, 2))
        x, _ = self.lstm(x)
        x = self.bn2(self.fc2(x).transpose(1, 2)).transpose(1, 2)
        return self.fc3(F.relu(self.dropout(x)))


def lstm_probs(head: BiLSTMHead, features: torch.Tensor, seq_len: int = 40) -> torch.Tensor:
    """SCRL's inference: pad with seq_len/4 copies of the first shot in front and enough of the
    last at the back, run windows of ``seq_len`` with stride seq_len/2, keep each window's
    middle half; ``[n, D]`` -> ``[n]`` P(scene ends after shot i)."""
    n = features.shape[0]
    quarter, stride = seq_len // 4, seq_len // 2
    back = quarter + (stride - n % stride if n % stride else 0)
    padded = torch.cat([features[:1].expand(quarter, -1), features, features[-1:].expand(back, -1)])
    starts = range(0, padded.shape[0] - seq_len + 1, stride)
    windows = torch.stack([padded[s : s + seq_len] for s in starts])
    probs = head(windows).float().softmax(dim=-1)[..., 1]
    return probs[:, quarter : quarter + stride].reshape(-1)[:n]


# --------------------------------------------------------------------------------------------
# Inference


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (fp32, bf16, fp16 or auto) on ``device``, or None."""
    if precision == "fp32":
        return None
    if precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16  # only with native bf16 (AVX512-BF16/AMX); emulated bf16 is slower
    return None


def preprocess(
    frames: torch.Tensor,
    resize: int,
    crop: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
) -> torch.Tensor:
    """``[N, H, W, 3]`` uint8 -> ``[N, 3, crop, crop]`` normalised float (BaSSL TEST transform).

    The shorter side is resized to ``resize`` (bicubic, antialiased; skipped when it already
    is), then the centre ``crop`` square is taken.
    """
    from torchvision.transforms.v2 import functional as TF

    x = frames.to(device).permute(0, 3, 1, 2)
    if min(x.shape[-2:]) != resize:
        x = TF.resize(x, [resize], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    x = TF.center_crop(x, [crop, crop])
    x = x.float().div_(255.0)
    mean_t = torch.tensor(mean, device=device)[None, :, None, None]
    std_t = torch.tensor(std, device=device)[None, :, None, None]
    return (x - mean_t) / std_t


def default_batch(device: torch.device | str) -> int:
    """Images per network call when the user does not say: small on CPUs, where activations
    that stay in cache beat large batches (EfficientNet-Lite0 bf16 here: 130 images/s at 8-16,
    64 at 64), larger on GPUs."""
    return 64 if torch.device(device).type == "cuda" else 16


class Runner:
    """An image network ready for inference on ``device``: eval mode, channels-last, autocast
    in ``precision`` (see ``autocast_dtype``), ``batch`` images per call.

    With ``compile``, the network goes through ``torch.compile`` (inductor, weights frozen into
    the graph) on first use, and every call is padded to ``batch`` images so that it compiles
    once. That costs 10-25 s once per process and pays back on long films: on the 2-core CPU of
    bench/README.md, ResNet-50 bf16 goes from ~38 to ~49 images/s and EfficientNet-Lite0 from
    ~130 to ~300. A compiler failure (no C++ compiler, say) logs a warning and runs uncompiled.
    """

    def __init__(
        self,
        net: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        batch: int = 0,
        compile: bool = False,
        channels_last: bool = True,
    ):
        self.device = torch.device(device)
        self.dtype = autocast_dtype(self.device, precision)
        self.batch = batch or default_batch(self.device)
        self.channels_last = channels_last and self.device.type in ("cuda", "cpu")
        net = net.to(self.device).eval()
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.compiled = None
        if compile:
            # torch's C++ builder warns that there is no CUDA runtime on CPU-only machines.
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            self.compiled = torch.compile(net, dynamic=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` normalised images on ``device`` -> ``[N, D]`` float32 there."""
        return torch.cat([self._run(x[i : i + self.batch]) for i in range(0, len(x), self.batch)])

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        enabled = self.dtype is not None
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=enabled),
        ):
            if self.compiled is not None:
                try:
                    return self._run_compiled(x)
                except Exception as error:  # inductor's failures have many types
                    log.warning("torch.compile failed (%s); running uncompiled", error)
                    self.compiled = None
            return self.net(x).float()

    def _run_compiled(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor

        # Every call gets a fresh inference tensor of one shape, zero-padded: one compilation
        # (an input made outside inference mode or a short batch would each compile again).
        m = x.shape[0]
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        padded = x.new_zeros(self.batch, *x.shape[1:]).contiguous(memory_format=memory_format)
        padded[:m] = x
        with inductor.patch(freezing=True):
            return self.compiled(padded)[:m].float()


def encoder_runner(
    model: BaSSL, device: str | torch.device, precision: str, batch: int = 0, compile=False
) -> Runner:
    """A ``Runner`` for ``model``'s shot encoder."""
    channels_last = model.config.encoder != "tiny"
    return Runner(model.shot_encoder, device, precision, batch, compile, channels_last)


def shot_features(
    model: BaSSL,
    keyframes: np.ndarray | torch.Tensor,
    device: str | torch.device = "cpu",
    batch: int = 0,
    precision: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    runner: Runner | None = None,
) -> torch.Tensor:
    """``[n, k, H, W, 3]`` uint8 RGB keyframes -> ``[n, input_dim]`` float32 shot features.

    Each keyframe goes through the encoder alone and the shot is the mean over its keyframes
    (BaSSL); the 9-channel SCRL encoder instead takes the k keyframes stacked on channels.
    ``batch`` counts images (0: ``default_batch``); ``runner`` reuses a prepared encoder
    (device, precision and batch then come from it). ``progress(done_shots, total_shots)`` is
    called after each batch.
    """
    config = model.config
    runner = runner or encoder_runner(model, device, precision, batch)
    frames = torch.as_tensor(keyframes)
    n, k = frames.shape[:2]
    fused = config.encoder == "resnet50-9ch"
    if fused and k != config.keyframes:
        raise InputError(f"the SCRL encoder needs exactly {config.keyframes} keyframes per shot")
    out = torch.empty(n, model.shot_encoder.out_dim, dtype=torch.float32)
    step = max(1, runner.batch // (1 if fused else k))
    with torch.inference_mode():
        for start in range(0, n, step):
            chunk = frames[start : start + step]
            m = chunk.shape[0]
            images = chunk.reshape(m * k, *chunk.shape[2:])
            x = preprocess(
                images, config.resize, config.image_size, config.mean, config.std, runner.device
            )
            x = x.reshape(m, k, *x.shape[1:])
            out[start : start + m] = encode_shots(runner, x, fused)
            if progress is not None:
                progress(start + m, n)
    return out


def encode_shots(runner: Runner, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
    """``[b, k, 3, H, W]`` normalised keyframes -> ``[b, dim]`` float32 shot features on the
    CPU: the mean of the keyframes' features (BaSSL), or with ``fused`` (SCRL's encoder) one
    pass over the k keyframes stacked on channels."""
    b, k = x.shape[:2]
    x = x.reshape(b, k * x.shape[2], *x.shape[3:]) if fused else x.flatten(0, 1)
    y = runner(x)
    return (y if fused else y.reshape(b, k, -1).mean(dim=1)).cpu()


def normalize_film(features, how: str = "film"):
    """A whole film's ``[n, D]`` shot features, centred on their mean and L2-normalised
    (``how="film"``), or as they are (``"none"``). Pooled ImageNet features share a large
    common component that otherwise hides what changes from shot to shot."""
    if how == "none":
        return features
    centred = features - features.mean(0, keepdims=True)
    if isinstance(centred, torch.Tensor):
        return centred / (centred.norm(dim=1, keepdim=True) + 1e-6)
    import numpy as np

    return centred / (np.linalg.norm(centred, axis=1, keepdims=True) + 1e-6)


def window_indices(n: int, neighbor_size: int) -> torch.Tensor:
    """``[n, 2*neighbor_size+1]`` shot indices centred on each shot, clipped to [0, n-1]."""
    offsets = torch.arange(-neighbor_size, neighbor_size + 1)
    return (torch.arange(n)[:, None] + offsets[None]).clamp_(0, max(n - 1, 0))


def boundary_probs(
    model: BaSSL,
    features: np.ndarray | torch.Tensor,
    batch: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """``[n, input_dim]`` shot features -> ``[n-1]`` P(scene ends after shot i), float32.

    One window per shot (edge shots repeated, as in BaSSL fine-tuning and ModelScope), scored
    ``batch`` windows at a time so memory stays flat on long films.
    """
    feats = torch.as_tensor(features, dtype=torch.float32)
    n = feats.shape[0]
    if n < 2:
        return torch.zeros(0)
    feats = normalize_film(feats, model.config.feature_norm)
    if device is None:
        device = next(model.parameters()).device
    model = model.eval()
    if model.config.head == "lstm":
        with torch.inference_mode():
            head = model.lstm_head.to(device)
            return lstm_probs(head, feats.to(device), model.config.seq_len).cpu()[: n - 1]
    crn, head = model.crn.to(device), model.head_sbd.to(device)
    index = window_indices(n, model.config.crn.neighbor_size)
    feats = feats.to(device)
    probs = torch.empty(n)
    with torch.inference_mode():
        for start in range(0, n - 1, batch):  # the last shot has no gap after it
            windows = feats[index[start : start + batch].to(device)]
            logits = head(crn(windows)[1]).float()
            probs[start : start + windows.shape[0]] = logits.softmax(dim=-1)[:, 1].cpu()
    return probs[: n - 1]


@dataclass
class BaSSLScorer:
    """The ``Scorer`` protocol on a BaSSL model: ResNet shot features, CRN boundary scores."""

    model: BaSSL
    device: str = "cpu"
    name: str = "bassl"
    batch: int = 0  # images per encoder call; 0: default_batch
    precision: str = "auto"
    compile: bool = False
    runner: Runner | None = None  # made on first use

    @property
    def keyframe_height(self) -> int:
        return self.model.config.resize

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu", **kwargs) -> BaSSLScorer:
        model, _ = load(path)
        return cls(model.to(device), device=device, **kwargs)

    def embed(self, keyframes: np.ndarray) -> np.ndarray:
        if self.runner is None:
            self.runner = encoder_runner(
                self.model, self.device, self.precision, self.batch, self.compile
            )
        return shot_features(self.model, keyframes, runner=self.runner).numpy()

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        return boundary_probs(self.model, embeddings, device=self.device).numpy()


# --------------------------------------------------------------------------------------------
# Our checkpoints: safetensors + config in the metadata


def save(model: BaSSL, config: ModelConfig, path: str | Path) -> None:
    """Write ``path`` atomically as safetensors with the config in the metadata."""
    save_state(model.state_dict(), config, path)


def save_state(state: dict[str, torch.Tensor], config: ModelConfig, path: str | Path) -> tuple:
    """Write a (possibly partial: encoder only) state dict like ``save``; returns its parts."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    part = path.with_name(f".{path.name}.part")
    save_file(tensors, str(part), metadata={METADATA_KEY: config.to_json()})
    part.replace(path)
    return tuple(p for p in ALL_PARTS if any(k.startswith(p + ".") for k in tensors))


def checkpoint_parts(path: str | Path) -> tuple[str, ...]:
    """Which of ``PARTS`` a scenecut safetensors file holds (reads the header only)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except (SafetensorError, OSError):
        return ()
    return tuple(p for p in ALL_PARTS if any(k.startswith(p + ".") for k in keys))


def load(path: str | Path, device: str = "cpu") -> tuple[BaSSL, ModelConfig]:
    """Rebuild a model from a scenecut safetensors file, or a complete foreign checkpoint."""
    path = Path(path)
    state, config = load_state(path)
    if path.suffix != ".safetensors":
        missing = [p for p in PARTS if not any(k.startswith(p + ".") for k in state)]
        if missing:
            raise InputError(
                f"{path} holds no {', '.join(missing)} weights, so it cannot score boundaries; "
                "use it to initialise training instead"
            )
    model = build(config)
    _check(state, config, parts_for(config), str(path))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), config


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The tensors and configuration of a checkpoint, complete or not: a scenecut safetensors
    file, or a foreign checkpoint converted by ``import_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    if path.suffix != ".safetensors":
        return import_checkpoint(path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as error:
        raise InputError(f"{path} is not a readable safetensors file ({error})") from error
    if METADATA_KEY not in metadata:
        raise InputError(
            f"{path} has no scenecut model configuration in its metadata; "
            "import foreign weights with import_checkpoint first"
        )
    return state, ModelConfig.from_json(metadata[METADATA_KEY])


# --------------------------------------------------------------------------------------------
# Foreign checkpoints


# Training frameworks whose bookkeeping objects (callbacks, hyper-parameter containers) sit in
# Lightning checkpoints. Under weights_only they are replaced by inert placeholders: nothing
# from the file is ever executed. Anything else that is not plain data is refused.
_FRAMEWORK_MODULES = ("pytorch_lightning", "lightning", "lightning_fabric", "omegaconf")


class _Inert:
    """Stands in for a framework object found in a checkpoint; keeps its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


def _torch_load(data: io.BytesIO, what: str) -> object:
    try:
        return torch.load(data, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        listed = _unsafe_globals(data)  # every global, in zip files; else the first one
        names = listed or re.findall(r"GLOBAL ([\w.]+)", str(error))
        if not names:  # not a pickle problem: a corrupt or foreign file
            raise InputError(f"{what} is not a readable PyTorch checkpoint") from None
        foreign = [n for n in names if n.split(".")[0] not in _FRAMEWORK_MODULES]
        if foreign or not listed:
            listed = ", ".join(foreign or names)
            raise InputError(
                f"refusing to load {what}: it contains pickled Python objects ({listed}) and "
                "scenecut only reads plain tensors (torch.load weights_only=True); "
                "re-save the state dict alone or convert it to safetensors"
            ) from None
        stubs = [(type(n.rsplit(".", 1)[-1], (_Inert,), {}), n) for n in names]
        data.seek(0)
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(data, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as again:
            raise InputError(
                f"refusing to load {what}: its training-framework objects ({', '.join(names)}) "
                f"need more than plain data to rebuild ({str(again).splitlines()[0]}); "
                "re-save ckpt['state_dict'] alone"
            ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"{what} is not a readable PyTorch checkpoint ({error})") from error


def _unsafe_globals(data: io.BytesIO) -> list[str]:
    data.seek(0)
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(data))
    except Exception:  # legacy (non-zip) files cannot be listed: refuse them like the rest
        return []
    finally:
        data.seek(0)


def _read_bytes(path: Path) -> io.BytesIO:
    """The checkpoint bytes, from the file itself or the one checkpoint inside a tar archive."""
    if not zipfile.is_zipfile(path) and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            wanted = [m for m in members if m.name.endswith("model-v1.ckpt")] or [
                m for m in members if m.name.endswith((".ckpt", ".pt", ".pth"))
            ]
            if len(wanted) != 1:
                names = ", ".join(m.name for m in wanted) or "none"
                raise InputError(
                    f"{path} should hold exactly one model-v1.ckpt (or .ckpt/.pt/.pth) file; "
                    f"found: {names}"
                )
            log.debug("reading %s from %s", wanted[0].name, path)
            return io.BytesIO(archive.extractfile(wanted[0]).read())
    return io.BytesIO(path.read_bytes())


def detect_source(obj: object) -> str:
    """Which layout a loaded checkpoint uses: one of ``SOURCES``."""
    if not isinstance(obj, dict):
        raise InputError(f"expected a dict of tensors, got {type(obj).__name__}")
    wrapped = isinstance(obj.get("state_dict"), dict)
    keys = list(obj["state_dict"] if wrapped else obj)
    if any(str(k).startswith("module.encoder_q.") for k in keys):
        return "scrl"
    if any(str(k).startswith(("shot_encoder.", "crn.")) for k in keys):
        lightning = wrapped and ("epoch" in obj or "pytorch-lightning_version" in obj)
        return (
            "lightning"
            if lightning or any(str(k).startswith("loss.") for k in keys)
            else ("modelscope")
        )
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        return "torchvision"
    shown = ", ".join(map(str, keys[:8]))
    raise InputError(
        f"unrecognised checkpoint layout (first keys: {shown}); expected a ModelScope BaSSL "
        "pytorch_model.pt, a Kakao BaSSL model-v1.ckpt, a torchvision ResNet-50 .pth or an "
        "SCRL checkpoint"
    )


def convert_state_dict(sd: dict, source: str) -> dict[str, torch.Tensor]:
    """Rename a foreign state dict into our keys (``shot_encoder.*``, ``crn.*``, ``head_sbd.*``).

    ``sd`` is the flat state dict; for "lightning" and "scrl" the wrapping dict is accepted too.
    """
    if source not in SOURCES:
        raise InputError(f"unknown checkpoint source {source!r}; known: {', '.join(SOURCES)}")
    if source in ("lightning", "scrl") and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if source in ("modelscope", "lightning"):
        # Lightning pre-training files also hold the pretext heads (loss.head_*): not ours.
        keep = ("shot_encoder.", "crn.", "head_sbd.")
        out = {k: v for k, v in sd.items() if source == "modelscope" or k.startswith(keep)}
    elif source == "torchvision":
        out = {f"shot_encoder.{k}": v for k, v in sd.items() if not k.startswith("fc.")}
    else:
        prefix = "module.encoder_q."
        out = {
            "shot_encoder." + k[len(prefix) :]: v
            for k, v in sd.items()
            if k.startswith(prefix) and not k[len(prefix) :].startswith("fc.")
        }
        if not out:
            raise InputError("no module.encoder_q.* weights in this SCRL checkpoint")
    for key, value in out.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"checkpoint entry {key} is a {type(value).__name__}, not a tensor")
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}


def infer_config(sd: dict[str, torch.Tensor], heads: int | None = None) -> ModelConfig:
    """The ``ModelConfig`` that a converted state dict implies (heads cannot be read from
    weights: 8 for BaSSL's 768-d CRN unless ``heads`` says otherwise)."""
    conv1 = sd.get("shot_encoder.conv1.weight")
    if "shot_encoder.layer1.0.conv1.weight" in sd or conv1 is None:
        encoder = "resnet50-9ch" if conv1 is not None and conv1.shape[1] == 9 else "resnet50"
        input_dim = 2048
    else:
        encoder = "tiny"
        input_dim = sd["shot_encoder.conv2.weight"].shape[0]
    crn = CRNConfig(input_dim=input_dim)
    proj = sd.get("crn.shot_embedding.shot_embedding.weight")
    if proj is not None:
        hidden, input_dim = proj.shape
        layers = {k.split(".")[3] for k in sd if k.startswith("crn.encoder.layer.")}
        inter = sd.get("crn.encoder.layer.0.intermediate.dense.weight")
        positions = sd.get("crn.shot_embedding.position_embedding.weight")
        if heads is None:
            heads = 8 if hidden % 8 == 0 else 1
        crn = CRNConfig(
            input_dim=input_dim,
            hidden_size=hidden,
            num_hidden_layers=len(layers),
            num_attention_heads=heads,
            intermediate_size=inter.shape[0] if inter is not None else 4 * hidden,
            neighbor_size=(positions.shape[0] - 2) // 2 if positions is not None else 8,
        )
    resize = 224 if encoder == "resnet50-9ch" else 256  # SCRL extracts at Resize(224)
    return ModelConfig(encoder=encoder, crn=crn, resize=resize)


def _expected(config: ModelConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {k: v.shape for k, v in build(config).state_dict().items()}


def _check(state: dict, config: ModelConfig, parts: tuple[str, ...], what: str) -> None:
    """Refuse ``state`` unless, for each of ``parts``, its keys and shapes are exactly ours."""
    expected = {k: s for k, s in _expected(config).items() if k.split(".")[0] in parts}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {list(state[k].shape)} (expected {list(s)})"
        for k, s in expected.items()
        if k in state and state[k].shape != s
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" ... and {len(items) - 10} more" if len(items) > 10 else ""
            problems.append(f"{label} ({len(items)}): {', '.join(items[:10])}{more}")
    if problems:
        raise InputError(
            f"{what} does not match the {config.encoder} BaSSL layout: " + "; ".join(problems)
        )


def _fill_buffers(state: dict, config: ModelConfig) -> None:
    """Buffers some files leave out: recomputed, they carry no learned information."""
    if "crn.shot_embedding.shot_embedding.weight" in state:
        seq = config.crn.seq_len
        state.setdefault("crn.attention_mask", _additive_mask(torch.ones(1, seq)))
        state.setdefault("crn.shot_embedding.pos_ids", torch.arange(seq, dtype=torch.long))
    # torchvision files from before BatchNorm counted its batches (e.g. resnet50-19c8e357.pth)
    for key in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))


def read_checkpoint(path: str | Path) -> object:
    """Load a foreign checkpoint file as plain data (``weights_only``; never runs its code)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    return _torch_load(_read_bytes(path), str(path))


def import_checkpoint(
    path: str | Path, source: str | None = None, config: ModelConfig | None = None
) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Read a foreign checkpoint (.pt/.pth/.ckpt, or a tar archive holding model-v1.ckpt) into
    our key layout, checked key by key and shape by shape against the model it implies.

    The result may hold only some of ``shot_encoder``/``crn``/``head_sbd`` (a torchvision or
    SCRL file is an encoder only); each part present is complete.
    """
    state, config, _ = convert_checkpoint(read_checkpoint(path), str(path), source, config)
    return state, config


def convert_checkpoint(
    obj: object, what: str, source: str | None = None, config: ModelConfig | None = None
) -> tuple[dict[str, torch.Tensor], ModelConfig, str]:
    """``import_checkpoint`` on an already loaded object; also returns the detected source."""
    source = source or detect_source(obj)
    log.info("%s: %s checkpoint", what, source)
    if source == "scrl":
        conv1 = obj.get("state_dict", obj).get("module.encoder_q.conv1.weight")
        if conv1 is not None and conv1.shape[1] == 9:
            log.info("SCRL early-fusion encoder: importing as resnet50-9ch (not BaSSL's encoder)")
    state = convert_state_dict(obj, source)
    config = config or infer_config(state)
    _fill_buffers(state, config)
    parts = tuple(p for p in PARTS if any(k.startswith(p + ".") for k in state))
    required = PARTS if source == "modelscope" else ("shot_encoder",)
    _check(state, config, tuple(dict.fromkeys(required + parts)), f"{what} ({source})")
    with torch.device("meta"):
        probe = build(config)
    for part in parts:  # the authoritative check: torch's own strict loading, shapes included
        sub = {k[len(part) + 1 :]: v for k, v in state.items() if k.startswith(part + ".")}
        try:
            getattr(probe, part).load_state_dict(sub, strict=True, assign=True)
        except RuntimeError as error:
            raise InputError(f"{what} ({source}): {part} does not load: {error}") from error
    return state, config, source
