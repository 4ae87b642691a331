"""A clip encoder (Saccade-VSSL, ``scenecut.models.saccade``) as a shot encoder.

``segment --model CLIP.safetensors`` collects a few clips inside each shot in its one decode
pass (``scenecut.shotclips``); a shot's embedding is the mean of its clips' embeddings
``z`` (the L2-normalised head output, focus off, as spec 6 retrieves with), L2-normalised
again. Boundaries are scored by the training-free overlapping-links scorer the other
offline encoders use (``links.CoherenceScorer``), with EfficientNet-Lite0's settings: the
film's mean direction removed, the link curve free to follow the data.

Where a shot has keyframes only (a MovieNet-style tree: 3 JPEGs per shot), its keyframes
are one clip, each repeated in order to fill ``clip_len`` frames (``keyframe_clip``): an
approximation of the clips the encoder was trained on, with no motion within a keyframe.
``train extract`` makes shot features that way, and ``train finetune`` on them writes a
*clip boundary model* (``save_clip_boundary``): the clip model and the fine-tuned head in one
safetensors file, which ``segment --model`` runs on each shot's keyframes made into a clip
the same way (``ClipBoundaryScorer``), so that the head sees the features it was trained on.

This module imports torch at the top: import it only where a network is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scenecut.errors import InputError
from scenecut.models import archives, saccade
from scenecut.models.bassl import CRN, BiLSTMHead
from scenecut.models.config import ModelConfig, parts_for
from scenecut.models.inference import boundary_probs
from scenecut.models.links import CoherenceScorer
from scenecut.models.runner import Runner
from scenecut.models.saccade import ClipConfig, SaccadeNet, build, load_model, normalise
from scenecut.shotclips import CLIPS_PER_SHOT, ClipSpec, square, stretch

KEYFRAME_HEIGHT = 128  # the small keyframes ``segment`` still takes (unused by the encoder)
BATCH_SHOTS = 8  # shots per embedding batch in ``segment``: 8 x 3 clips of 16 x 112 x 112


class _Encode(nn.Module):
    """``SaccadeNet.encode`` as a module's forward, for ``Runner``."""

    def __init__(self, net: SaccadeNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode(x)


def clip_tensor(clips: np.ndarray | torch.Tensor, config: ClipConfig, device) -> torch.Tensor:
    """``[N, T, S, S, 3]`` uint8 RGB -> ``[N, 3, T, S, S]`` float, normalised as the encoder's
    inputs were (``config.input_norm``)."""
    x = torch.as_tensor(clips).to(device).permute(0, 4, 1, 2, 3).float().div_(255.0)
    return normalise(x, config.input_norm)


def keyframe_clip(images: np.ndarray | torch.Tensor, clip_len: int) -> np.ndarray | torch.Tensor:
    """A shot's ``[k, ...]`` prepared keyframes (``prepare``: each its centre square) -> one
    ``[clip_len, ...]`` clip: each keyframe repeated in order to fill it."""
    return images[stretch(len(images), clip_len)]


@dataclass
class ClipShotEncoder:
    """Shot embeddings from a clip encoder: ``embed`` takes each shot's clips ``[n, K, T, S,
    S, 3]``, or its keyframes ``[n, k, S, S, 3]`` made ``S`` x ``S`` by ``prepare`` (one clip
    of them, ``keyframe_clip``)."""

    net: SaccadeNet
    device: str = "cpu"
    batch_images: int = 0  # clips per network call; 0: runner.default_batch
    precision: str = "auto"
    compile: bool = False
    clips: int = CLIPS_PER_SHOT
    keyframe_height: int = KEYFRAME_HEIGHT
    batch_shots: int = BATCH_SHOTS
    # The overlapping-links settings EfficientNet-Lite0 uses (``effnet.EfficientNetEncoder``).
    center: bool = True
    link_floor: float = 0.0
    runner: Runner | None = field(default=None, repr=False)

    @property
    def config(self) -> ClipConfig:
        return self.net.config

    @property
    def clip_spec(self) -> ClipSpec:
        return ClipSpec(self.clips, self.config.clip_len, self.config.size)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """A full-size RGB keyframe -> its clip frame (``shotclips.square``)."""
        return square(image, self.config.size)

    def clip_embeddings(self, clips: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[N, T, S, S, 3]`` uint8 clips -> ``[N, embed_dim]`` float32 z on the CPU."""
        if self.runner is None:
            self.runner = Runner(
                _Encode(self.net),
                device=self.device,
                precision=self.precision,
                batch_images=self.batch_images,
                compile=self.compile,
                channels_last=False,  # 5-D clips: Runner's channels-last is for images
            )
        out = torch.empty(len(clips), self.config.embed_dim)
        step = self.runner.batch_images
        for start in range(0, len(clips), step):
            x = clip_tensor(clips[start : start + step], self.config, self.runner.device)
            out[start : start + len(x)] = self.runner(x).cpu()
        return out

    def embed(self, shots: np.ndarray) -> np.ndarray:
        """Per shot the mean of its clips' z, L2-normalised: ``[n, embed_dim]`` float32."""
        shots = np.asarray(shots)
        if shots.ndim == 5:  # prepared keyframes
            shots = np.stack([keyframe_clip(k, self.config.clip_len) for k in shots])[:, None]
        n, k = shots.shape[:2]
        z = self.clip_embeddings(shots.reshape(n * k, *shots.shape[2:])).view(n, k, -1)
        return nn.functional.normalize(z.mean(dim=1), dim=1).numpy()


@dataclass
class ClipScorer(CoherenceScorer):
    """``CoherenceScorer`` on a ``ClipShotEncoder``; ``segment`` collects the clips that
    ``clip_spec`` asks for and embeds ``batch_shots`` shots at a time."""

    @property
    def clip_spec(self) -> ClipSpec:
        return self.encoder.clip_spec

    @property
    def batch_shots(self) -> int:
        return self.encoder.batch_shots

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """For keyframes outside ``segment`` (``scenecut eval`` on a tree)."""
        return self.encoder.prepare(image)

    @classmethod
    def from_file(cls, path: str | Path, name: str, device: str = "cpu", **runtime) -> ClipScorer:
        """The scorer of the clip-model file at ``path`` (checked by ``saccade.load_model``;
        a damaged or hostile file is an ``InputError``)."""
        net, _ = load_model(path, device=device)
        return cls(ClipShotEncoder(net, device=device, **runtime), name=name)


# --------------------------------------------------------------------------------------------
# A clip model with a boundary head fine-tuned on its features


BOUNDARY_KEY = "scenecut_clip_boundary"  # metadata: {"clip": ClipConfig, "model": ModelConfig}
CLIP_PREFIX = "clip."  # the clip model's tensors; the head's keep their own names


class BoundaryHead(nn.Module):
    """The head ``train finetune`` trains on shot features (``model.config.head``): BaSSL's CRN
    and ``head_sbd``, or SCRL's BiLSTM; its keys are those of the full BaSSL model's parts."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if config.head == "lstm":
            self.lstm_head = BiLSTMHead(config.crn.input_dim)
        else:
            self.crn = CRN(config.crn)
            self.head_sbd = nn.Linear(config.crn.hidden_size, 2)


def _head_parts(config: ModelConfig) -> tuple[str, ...]:
    return tuple(p for p in parts_for(config) if p != "shot_encoder")


def save_clip_boundary(net: SaccadeNet, head: nn.Module, path: str | Path) -> Path:
    """Write the clip model ``net`` and the boundary ``head`` (a module with a ``ModelConfig``
    ``config`` whose ``crn.input_dim`` is ``net``'s embedding width) to ``path`` atomically."""
    path = Path(path)
    config: ModelConfig = head.config
    if config.encoder != "clip" or config.crn.input_dim != net.config.embed_dim:
        raise ValueError(f"a head for {config.crn.input_dim}-d {config.encoder} features")
    parts = _head_parts(config)
    state = {CLIP_PREFIX + k: v for k, v in net.state_dict().items()}
    state.update((k, v) for k, v in head.state_dict().items() if k.split(".")[0] in parts)
    meta = {"clip": json.loads(net.config.to_json()), "model": json.loads(config.to_json())}
    saccade._write(state, {BOUNDARY_KEY: json.dumps(meta)}, path)
    return path


def is_clip_boundary_file(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file written by ``save_clip_boundary`` (its header
    only is read)."""
    return saccade.has_metadata(path, BOUNDARY_KEY)


def _configs(text: str) -> tuple[ClipConfig, ModelConfig]:
    """The two configurations of a clip boundary model's metadata, checked (``InputError``)."""
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InputError(f"its metadata is not valid JSON ({archives.reason(error)})") from None
    if not isinstance(meta, dict) or set(meta) != {"clip", "model"}:
        raise InputError("its metadata must hold exactly a 'clip' and a 'model' configuration")
    clip = ClipConfig.from_json(json.dumps(meta["clip"]))
    model = ModelConfig.from_json(json.dumps(meta["model"]))
    if model.encoder != "clip" or model.crn.input_dim != clip.embed_dim:
        raise InputError(
            f"its head takes {model.crn.input_dim}-d {model.encoder} features, not the "
            f"{clip.embed_dim}-d embeddings of its clip model"
        )
    return clip, model


def load_clip_boundary(path: str | Path, device: str = "cpu") -> tuple[SaccadeNet, BoundaryHead]:
    """The clip model and head in ``path``, in eval mode on ``device``, read as clip-model files
    are (``saccade.read_model``): the header's size, both configurations, every tensor's name,
    shape and kind of number and the file's size are checked before any tensor is read; then
    every value must be finite. Anything else is an ``InputError``."""
    path = Path(path)

    def layout(text: str):
        clip, model = _configs(text)
        expected = {CLIP_PREFIX + k: v for k, v in saccade._expected(build, clip).items()}
        expected.update(saccade._expected(BoundaryHead, model))
        return (clip, model), expected, f"{clip.backbone} clip boundary model"

    state, (clip, model) = saccade._read(path, BOUNDARY_KEY, "clip boundary model", layout)
    net, head = build(clip), BoundaryHead(model)
    n = len(CLIP_PREFIX)
    saccade._load(net, {k[n:]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}, path)
    saccade._load(head, {k: v for k, v in state.items() if not k.startswith(CLIP_PREFIX)}, path)
    return net.to(device).eval(), head.to(device).eval()


@dataclass
class ClipBoundaryScorer:
    """The ``Scorer`` of a clip boundary model: each shot's 3 keyframes made one clip (as
    ``train extract`` made the features its head was fine-tuned on), the head's boundary
    probabilities (``inference.boundary_probs``)."""

    encoder: ClipShotEncoder
    head: BoundaryHead
    name: str

    @property
    def keyframe_height(self) -> int:
        return self.encoder.keyframe_height

    @property
    def default_threshold(self) -> float | None:
        return self.head.config.threshold

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return self.encoder.prepare(image)

    def embed(self, keyframes: np.ndarray) -> np.ndarray:
        return self.encoder.embed(keyframes)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        return boundary_probs(self.head, embeddings, device=self.encoder.device).numpy()

    @classmethod
    def from_file(
        cls, path: str | Path, name: str, device: str = "cpu", **runtime
    ) -> ClipBoundaryScorer:
        net, head = load_clip_boundary(path, device=device)
        return cls(ClipShotEncoder(net, device=device, **runtime), head, name)
