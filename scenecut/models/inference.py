"""BaSSL inference: shot features from keyframes, boundary probabilities from shot features.

``BaSSLScorer`` is the ``Scorer`` that ``segment`` runs for a checkpoint (``--model PATH``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from scenecut.errors import InputError
from scenecut.models.bassl import BaSSL, BiLSTMHead
from scenecut.models.checkpoints import load
from scenecut.models.config import ModelConfig
from scenecut.models.runner import Runner, normalize
from scenecut.models.transforms import resize_crop

if TYPE_CHECKING:
    import numpy as np


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


def encoder_runner(
    model: BaSSL,
    *,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    batch_images: int = 0,
    compile: bool = False,
) -> Runner:
    """A ``Runner`` for ``model``'s shot encoder."""
    return Runner(
        model.shot_encoder,
        device=device,
        precision=precision,
        batch_images=batch_images,
        compile=compile,
        channels_last=model.config.encoder != "tiny",
    )


def shot_features(
    model: BaSSL,
    keyframes: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    batch_images: int = 0,
    precision: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    runner: Runner | None = None,
    prepared: bool = False,
) -> torch.Tensor:
    """``[n, k, H, W, 3]`` uint8 RGB keyframes -> ``[n, input_dim]`` float32 shot features.

    Keyframes are resized and cropped as the model's configuration says (``prepare_image``),
    unless ``prepared`` says they already were.
    Each keyframe goes through the encoder alone and the shot is the mean over its keyframes
    (BaSSL); the 9-channel SCRL encoder instead takes the k keyframes stacked on channels.
    ``batch_images`` counts images per network call (0: ``default_batch``); ``runner`` reuses a
    prepared encoder (device, precision and batch then come from it).
    ``progress(done_shots, total_shots)`` is called after each batch.
    """
    config = model.config
    runner = runner or encoder_runner(
        model, device=device, precision=precision, batch_images=batch_images
    )
    if not prepared:
        keyframes = prepare_images(config, keyframes)
    frames = torch.as_tensor(keyframes)
    n, k = frames.shape[:2]
    fused = config.encoder == "resnet50-9ch"
    if fused and k != config.keyframes:
        raise InputError(f"the SCRL encoder needs exactly {config.keyframes} keyframes per shot")
    out = torch.empty(n, model.shot_encoder.out_dim, dtype=torch.float32)
    step = max(1, runner.batch_images // (1 if fused else k))
    with torch.inference_mode():
        for start in range(0, n, step):
            chunk = frames[start : start + step]
            m = chunk.shape[0]
            images = chunk.reshape(m * k, *chunk.shape[2:])
            x = normalize(images, config.mean, config.std, runner.device)
            x = x.reshape(m, k, *x.shape[1:])
            out[start : start + m] = encode_shots(runner, x, fused)
            if progress is not None:
                progress(start + m, n)
    return out


def prepare_image(config: ModelConfig, image: np.ndarray) -> np.ndarray:
    """One ``[H, W, 3]`` uint8 RGB image (full size) -> the ``[crop, crop, 3]`` uint8 pixels
    the network sees: resized and cropped the reference's way (``transforms.resize_crop``)."""
    return resize_crop(image, config.resize, config.image_size, config.interpolation)


def prepare_images(config: ModelConfig, keyframes: np.ndarray | torch.Tensor) -> np.ndarray:
    """``prepare_image`` on every image of ``[n, k, H, W, 3]`` keyframes."""
    import numpy as np

    images = np.asarray(keyframes)
    n, k = images.shape[:2]
    crop = config.image_size
    out = np.empty((n, k, crop, crop, 3), dtype=np.uint8)
    for i in range(n):
        for j in range(k):
            out[i, j] = prepare_image(config, images[i, j])
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
    batch_windows: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """``[n, input_dim]`` shot features -> ``[n-1]`` P(scene ends after shot i), float32.

    One window per shot (edge shots repeated, as in BaSSL fine-tuning and ModelScope), scored
    ``batch_windows`` windows at a time so memory stays flat on long films.
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
        for start in range(0, n - 1, batch_windows):  # the last shot has no gap after it
            windows = feats[index[start : start + batch_windows].to(device)]
            logits = head(crn(windows)[1]).float()
            probs[start : start + windows.shape[0]] = logits.softmax(dim=-1)[:, 1].cpu()
    return probs[: n - 1]


@dataclass
class BaSSLScorer:
    """The ``Scorer`` protocol on a BaSSL model: ResNet shot features, CRN boundary scores."""

    model: BaSSL
    device: str = "cpu"
    name: str = "bassl"
    batch_images: int = 0  # images per encoder call; 0: default_batch
    precision: str = "auto"
    compile: bool = False
    runner: Runner | None = None  # made on first use

    @property
    def keyframe_height(self) -> int:
        return self.model.config.resize

    @property
    def default_threshold(self) -> float | None:
        """The boundary threshold the model came with (None: ``segment``'s default)."""
        return self.model.config.threshold

    @property
    def prepare(self) -> Callable[[np.ndarray], np.ndarray]:
        """A full-size RGB keyframe -> the network's input pixels (``prepare_image``); ``embed``
        takes keyframes prepared by this. A plain function of the configuration's sizes, not
        of the model, so that decode workers (``scenecut.parallel``) can be sent it."""
        config = self.model.config
        return functools.partial(
            resize_crop,
            resize=config.resize,
            crop=config.image_size,
            interpolation=config.interpolation,
        )

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu", **kwargs) -> BaSSLScorer:
        model, _ = load(path)
        return cls(model.to(device), device=device, **kwargs)

    def embed(self, keyframes: np.ndarray) -> np.ndarray:
        if self.runner is None:
            self.runner = encoder_runner(
                self.model,
                device=self.device,
                precision=self.precision,
                batch_images=self.batch_images,
                compile=self.compile,
            )
        return shot_features(self.model, keyframes, runner=self.runner, prepared=True).numpy()

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        return boundary_probs(self.model, embeddings, device=self.device).numpy()
