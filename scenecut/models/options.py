"""How a model runs: the inference settings, checked in one place, and the device parser.

The CLI builds one ``InferenceOptions`` from ``--model --device --batch-size --precision
--compile --offline`` and hands it, by keyword, down to the scorer and the network runner. No
torch here: ``check`` validates spelling; ``resolve_device`` (which needs torch) checks the
hardware.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scenecut.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class InferenceOptions:
    """Which model scores the boundaries and how its network runs.

    ``batch_images`` counts keyframe images per network call (0: 16 on CPUs, 64 on GPUs);
    ``precision`` is autocast's (``auto``: bf16/fp16 on GPUs, bf16 on CPUs with native bf16);
    ``compile`` runs the shot encoder through ``torch.compile``. The classic model has no
    network and ignores all but ``model``. A registered ``model`` not in the cache is
    downloaded on first use unless ``offline`` (or ``$SCENECUT_OFFLINE=1``).
    """

    model: str = "auto"  # auto, classic, effnet-lite0, a weights name or a checkpoint path
    device: str = "auto"
    batch_images: int = 0
    precision: str = "auto"
    compile: bool = False
    offline: bool = False

    def check(self) -> None:
        """Raise ``UsageError`` for a setting no model could accept."""
        check_device(self.device)
        if self.batch_images < 0:
            raise UsageError(
                f"--batch-size must be positive (or 0 for auto), got {self.batch_images}"
            )
        check_precision(self.precision)


def check_precision(precision: str) -> None:
    """Raise ``UsageError`` unless ``precision`` is one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be {', '.join(PRECISIONS)}, not {precision}")


def check_device(device: str) -> None:
    """Raise ``UsageError`` unless ``device`` is spelled as a device scenecut can use."""
    if not _DEVICE.fullmatch(device):
        raise UsageError(f"unknown device {device!r}; use {DEVICES}")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; a named device must exist here."""
    import torch

    check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple's Metal backend is not available here")
    return device
