"""The smallest BaSSL the model tests build: a tiny encoder, a one-layer CRN."""

from __future__ import annotations

from scenecut.models.config import CRNConfig, ModelConfig

TINY = ModelConfig(
    encoder="tiny",
    crn=CRNConfig(
        input_dim=16,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    ),
    resize=64,
    image_size=56,
)
