"""3D convolutional clip backbones: clip ``[N, 3, T, H, W]`` -> conv5 map ``[N, C, T', H', W']``.

``r3d10`` and ``r21d10`` are the ResNet-10-like R3D and R(2+1)D of VCOP that Saccade-VSSL
trains (one basic block per stage, no max-pool; 14.36 M and 14.37 M parameters with the
BatchNorm weights and biases), built here with our own module names (the reference's keys map
onto them in ``scenecut.models.saccade``). ``r3d18`` and ``r2plus1d18`` are torchvision's
18-layer networks without their pool and classifier (randomly initialised, nothing is
downloaded; their keys are torchvision's, so its weights load as they are). ``tiny`` is the
R3D layout with a few thousand parameters, for tests; ``small`` the R3D layout at a quarter of
r3d10's widths (0.9 M parameters), for runs that must learn something on a CPU in minutes
(``bench/saccade_synth.py``).

Every backbone returns its last stage's map, not pooled, and says its width in
``out_channels``. This module imports torch at the top: import it only where a network is used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BACKBONES = ("r3d10", "r21d10", "r3d18", "r2plus1d18", "tiny", "small")
# Stage widths of our own layouts; conv5 (the last) is the feature width.
WIDTHS = {"r3d10": (64, 64, 128, 256, 512), "r21d10": (64, 64, 128, 256, 512)}
TINY_WIDTHS = (4, 4, 4, 4, 8)
SMALL_WIDTHS = (16, 16, 32, 64, 128)


def midplanes(c_in: int, c_out: int, kernel: tuple[int, int, int]) -> int:
    """R(2+1)D's intermediate width: the factored pair has as many weights as the full
    ``kernel`` conv (Tran et al. 2018, section 3.5), rounded down."""
    kt, kh, kw = kernel
    return math.floor(kt * kh * kw * c_in * c_out / (kh * kw * c_in + kt * c_out))


class Conv2Plus1D(nn.Module):
    """A ``kt x k x k`` conv split into a spatial ``1 x k x k`` conv to ``midplanes`` channels,
    BatchNorm, ReLU, and a temporal ``kt x 1 x 1`` conv (no biases)."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        super().__init__()
        kernel, stride, padding = (_triple(v) for v in (kernel, stride, padding))
        mid = midplanes(c_in, c_out, kernel)
        self.spatial = nn.Conv3d(
            c_in,
            mid,
            (1, kernel[1], kernel[2]),
            stride=(1, stride[1], stride[2]),
            padding=(0, padding[1], padding[2]),
            bias=False,
        )
        self.bn = nn.BatchNorm3d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.temporal = nn.Conv3d(
            mid,
            c_out,
            (kernel[0], 1, 1),
            stride=(stride[0], 1, 1),
            padding=(padding[0], 0, 0),
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.relu(self.bn(self.spatial(x))))


def _triple(value) -> tuple[int, int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value, value)


def _conv(kind: str, c_in: int, c_out: int, kernel, stride=1, padding=0) -> nn.Module:
    if kind == "2+1d":
        return Conv2Plus1D(c_in, c_out, kernel, stride, padding)
    return nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the shortcut, then ReLU. A block that changes width or
    ``stride`` strides its first conv and has a strided ``1x1x1`` conv + BN shortcut (factored
    too in R(2+1)D, as in the reference)."""

    def __init__(self, kind: str, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv(kind, c_in, c_out, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.conv2 = _conv(kind, c_out, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                _conv(kind, c_in, c_out, 1, stride=stride), nn.BatchNorm3d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class VideoResNet(nn.Module):
    """VCOP's R3D / R(2+1)D: stem conv ``3x7x7`` stride ``1x2x2`` + BN + ReLU (no max-pool),
    then four stages of ``depth`` basic blocks; stages 2-4 halve T, H and W. Keys:
    ``stem.0`` (conv), ``stem.1`` (BN), ``layer1..4.<i>.{conv1,bn1,conv2,bn2,downsample}``."""

    def __init__(self, kind: str = "3d", widths=WIDTHS["r3d10"], depth: int = 1):
        super().__init__()
        if kind not in ("3d", "2+1d"):
            raise ValueError(f"unknown convolution kind {kind!r}")
        stem, *stages = widths
        self.stem = nn.Sequential(
            _conv(kind, 3, stem, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3)),
            nn.BatchNorm3d(stem),
            nn.ReLU(inplace=True),
        )
        c_in = stem
        for index, width in enumerate(stages, start=1):
            blocks = [BasicBlock(kind, c_in, width, stride=1 if index == 1 else 2)]
            blocks += [BasicBlock(kind, width, width) for _ in range(depth - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            c_in = width
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TorchvisionVideo(nn.Module):
    """torchvision's ``r3d_18`` / ``r2plus1d_18`` up to ``layer4`` (no pool, no ``fc``);
    randomly initialised, its keys torchvision's."""

    def __init__(self, name: str):
        super().__init__()
        from torchvision.models import video

        net = getattr(video, name)(weights=None)
        self.stem = net.stem
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.out_channels = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def build_backbone(name: str) -> nn.Module:
    """The backbone called ``name`` (one of ``BACKBONES``), randomly initialised: PyTorch's
    default initialisation for ours (as the reference), torchvision's for its networks."""
    if name == "r3d10":
        return VideoResNet("3d", WIDTHS[name])
    if name == "r21d10":
        return VideoResNet("2+1d", WIDTHS[name])
    if name == "r3d18":
        return TorchvisionVideo("r3d_18")
    if name == "r2plus1d18":
        return TorchvisionVideo("r2plus1d_18")
    if name == "tiny":
        return VideoResNet("3d", TINY_WIDTHS)
    if name == "small":
        return VideoResNet("3d", SMALL_WIDTHS)
    raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")


def feature_dim(name: str) -> int:
    """The conv5 width of backbone ``name`` without building it."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return {"tiny": TINY_WIDTHS[-1], "small": SMALL_WIDTHS[-1]}.get(name, 512)


def count_parameters(module: nn.Module) -> int:
    """Learnable values: conv and linear weights and biases, BatchNorm weights and biases
    (not its running statistics)."""
    return sum(p.numel() for p in module.parameters())
