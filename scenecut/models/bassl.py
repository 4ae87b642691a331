"""BaSSL: a ResNet-50 shot encoder, a contextual relation network (CRN) and a boundary head.

Module and parameter names copy the reference implementation (kakaobrain/bassl, ModelScope's
``damo/cv_resnet50-bert_video-scene-segmentation_movienet``) so their state dicts load without
renaming. SCRL's downstream BiLSTM head lives here too. This module imports torch at the top:
import it only when a deep model is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from scenecut.errors import InputError
from scenecut.models.config import ENCODERS, CRNConfig, ModelConfig
from scenecut.models.effnet import HEAD, EfficientNetLite

if TYPE_CHECKING:
    pass


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


def additive_mask(keep: torch.Tensor) -> torch.Tensor:
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
        self.register_buffer("attention_mask", additive_mask(torch.ones(1, cfg.seq_len)))
        self.apply(_bert_init)

    def forward(
        self, shots: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.shot_embedding(shots, mask)
        additive = self.attention_mask
        if additive.shape[-1] != tokens.shape[1]:
            additive = additive_mask(torch.ones(1, tokens.shape[1], device=tokens.device))
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
        if config.encoder == "clip":  # its model is a clip model and a head (models.clipshots)
            raise InputError("a clip model's features have no BaSSL shot encoder")
        channels = 3 * config.keyframes if config.encoder == "resnet50-9ch" else 3
        if config.encoder == "tiny":
            self.shot_encoder = TinyEncoder(config.crn.input_dim, channels)
        elif config.encoder == "effnet-lite0":
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
