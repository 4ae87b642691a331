"""Running an image network for inference: device, autocast precision, batches, torch.compile."""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


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
    """``[N, H, W, 3]`` uint8 -> ``[N, 3, crop, crop]`` normalised float (EfficientNet-Lite0;
    BaSSL models take the reference's PIL resize instead: ``transforms.resize_crop``).

    The shorter side is resized to ``resize`` (bicubic, antialiased; skipped when it already
    is), then the centre ``crop`` square is taken.
    """
    from torchvision.transforms.v2 import functional as TF

    x = frames.to(device).permute(0, 3, 1, 2)
    if min(x.shape[-2:]) != resize:
        x = TF.resize(x, [resize], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    return _standardize(TF.center_crop(x, [crop, crop]), mean, std)


def normalize(
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
) -> torch.Tensor:
    """``[N, H, W, 3]`` uint8 -> ``[N, 3, H, W]`` float, as torchvision's ``ToTensor`` and
    ``Normalize`` compute it (images already resized and cropped: ``transforms.resize_crop``).
    To a GPU, the uint8 pixels go through pinned memory and the copy does not block the CPU."""
    if device.type == "cuda" and images.device.type == "cpu":
        images = images.pin_memory().to(device, non_blocking=True)
    else:
        images = images.to(device)
    return _standardize(images.permute(0, 3, 1, 2), mean, std)


def _standardize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``[N, 3, H, W]`` uint8 -> float in [0, 1], less ``mean``, over ``std`` (per channel)."""
    x = x.float().div_(255.0)
    mean_t = torch.tensor(mean, device=x.device)[None, :, None, None]
    std_t = torch.tensor(std, device=x.device)[None, :, None, None]
    return (x - mean_t) / std_t


def default_batch(device: torch.device | str) -> int:
    """Images per network call when the user does not say: small on CPUs, where activations
    that stay in cache beat large batches (EfficientNet-Lite0 bf16 here: 130 images/s at 8-16,
    64 at 64), larger on GPUs."""
    return 64 if torch.device(device).type == "cuda" else 16


class Runner:
    """An image network ready for inference on ``device``: eval mode, channels-last, autocast
    in ``precision`` (see ``autocast_dtype``), ``batch_images`` images per call.

    With ``compile``, the network goes through ``torch.compile`` (inductor, weights frozen into
    the graph) on first use, and every call is padded to ``batch_images`` images so that it compiles
    once. That costs 10-25 s once per process and pays back on long films: on the 2-core CPU of
    bench/README.md, ResNet-50 bf16 goes from ~38 to ~49 images/s and EfficientNet-Lite0 from
    ~130 to ~300. A compiler failure (no C++ compiler, say) logs a warning and runs uncompiled.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        batch_images: int = 0,
        compile: bool = False,
        channels_last: bool = True,
    ):
        self.device = torch.device(device)
        self.dtype = autocast_dtype(self.device, precision)
        self.batch_images = batch_images or default_batch(self.device)
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
        step = self.batch_images
        return torch.cat([self._run(x[i : i + step]) for i in range(0, len(x), step)])

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
        padded = x.new_zeros(self.batch_images, *x.shape[1:])
        padded = padded.contiguous(memory_format=memory_format)
        padded[:m] = x
        with inductor.patch(freezing=True):
            return self.compiled(padded)[:m].float()
