"""Shot features: one ``.npy`` per film written by ``scenecut train extract``, read by fine-tuning.

A feature folder holds ``<video_id>.npy`` (``[shots, dim]`` float32, shot order, the mean of the
encoder's output over the shot's 3 keyframes as BaSSL extracts them, or the 9-channel early
fusion for SCRL's encoder), ``features.json`` (the model configuration and where the features
came from) and ``encoder.safetensors`` (the shot encoder, so that fine-tuning can write a
complete model that ``scenecut segment --model`` runs on videos).

A clip model (Saccade-VSSL, ``scenecut.models.saccade``) extracts too, although a tree holds 3
keyframes per shot, not clips: the 3 keyframes are one clip, each repeated in order to fill
``clip_len`` frames (``models.clipshots.keyframe_clip``, an approximation: no motion within a
keyframe), and a shot's feature is that clip's embedding z. Its ``features.json`` says so
(``clip``: the clip model's configuration, ``frames``: how the clips were made; ``config``: a
``ModelConfig`` with encoder ``clip``) and ``encoder.safetensors`` is the clip model itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from scenecut.data.tree import read_tree
from scenecut.errors import InputError, UsageError
from scenecut.files import replacing, write_json
from scenecut.models import bassl, checkpoints, effnet, hub
from scenecut.models.clipshots import ClipShotEncoder
from scenecut.models.config import CRNConfig, ModelConfig
from scenecut.models.inference import encode_shots, normalize_film, prepare_image
from scenecut.models.options import check_precision
from scenecut.models.runner import Runner, normalize
from scenecut.models.saccade import ClipConfig, SaccadeNet, is_clip_model, load_model, save_model
from scenecut.shotclips import square
from scenecut.train.datasets import FilmShots

META = "features.json"
ENCODER = "encoder.safetensors"
CLIP_FRAMES = (
    "3 keyframes per shot as one clip, each repeated in order to fill clip_len frames "
    "(an approximation of a clip: no motion within a keyframe)"
)


# --------------------------------------------------------------------------------------------
# Encoders


def load_encoder(spec: str) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """``effnet-lite0`` (shipped ImageNet weights), a weights name or a checkpoint path ->
    the model configuration and a state dict holding at least ``shot_encoder.*``."""
    if spec == "effnet-lite0":
        state = {f"shot_encoder.{k}": v for k, v in effnet.load_lite0().state_dict().items()}
        return effnet.model_config(), state
    path = hub.resolve(spec)
    state, config = checkpoints.load_state(path)
    if not any(k.startswith("shot_encoder.") for k in state):
        raise InputError(f"{path} holds no shot encoder; extract needs one")
    return config, state


class ImageTransform:
    """The model's TEST transform on ``[N, 3, H, W]`` uint8 (picklable, for loader workers):
    resized and cropped in PIL as the reference code does (``inference.prepare_image``), then
    normalised."""

    def __init__(self, config: ModelConfig):
        self.config = config

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.permute(0, 2, 3, 1).numpy()
        prepared = np.stack([prepare_image(self.config, image) for image in pixels])
        config = self.config
        return normalize(torch.from_numpy(prepared), config.mean, config.std, torch.device("cpu"))


@dataclass(frozen=True)
class ExtractResult:
    out: Path
    written: list[str]
    skipped: list[str]
    shots: int
    seconds: float


def extract(
    tree_root: str | Path,
    encoder: str,
    out: str | Path,
    *,
    split: str = "pretrain",
    batch_shots: int = 32,
    workers: int = 2,
    precision: str = "auto",
    rank: int = 0,
    world: int = 1,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Write the shot features of every film of ``split`` (this rank's share: films
    ``rank::world``). Films already written with the right shot count are skipped, so an
    interrupted extraction resumes; each file appears complete or not at all."""
    out = Path(out)
    check_precision(precision)
    if batch_shots < 1 or workers < 0:
        raise UsageError(
            f"extract needs a batch of 1 shot or more and 0 or more workers, "
            f"got {batch_shots} and {workers}"
        )
    tree = read_tree(tree_root)
    device = torch.device(device)
    clip = clip_model_path(encoder)
    if clip is None:
        extractor = _ShotEncoder(encoder, device, precision, batch_shots)
    else:
        extractor = _ClipEncoder(clip, device, precision, batch_shots)
    config = extractor.config
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        extra = extractor.save(out / ENCODER)
        meta = {"encoder": encoder, "config": json.loads(config.to_json()), "tree": str(tree_root)}
        write_json(out / META, {**meta, **extra})
    movies = tree.split(split)[rank::world]
    written, skipped, shots, start = [], [], 0, time.perf_counter()
    transform = extractor.transform
    for done, movie in enumerate(movies):
        target = out / f"{movie.video_id}.npy"
        if _complete(target, movie.num_shots):
            skipped.append(movie.video_id)
            continue
        dataset = FilmShots(tree, movie.video_id, transform=transform, keyframes="all")
        loader = DataLoader(dataset, batch_size=batch_shots, num_workers=workers)
        feats = []
        with torch.inference_mode():
            for batch in loader:  # images: [b, 3 keyframes, C, H, W]
                feats.append(extractor.encode(batch["images"]))
        array = torch.cat(feats).numpy().astype(np.float32)
        with replacing(target) as tmp, open(tmp, "wb") as f:
            np.save(f, array)
        written.append(movie.video_id)
        shots += movie.num_shots
        if progress:
            progress(done + 1, len(movies))
    return ExtractResult(out, written, skipped, shots, time.perf_counter() - start)


def clip_model_path(spec: str) -> Path | None:
    """The clip-model file ``spec`` names (``saccade.is_clip_model``), else None."""
    if spec == "effnet-lite0":
        return None
    path = hub.resolve(spec)
    return path if is_clip_model(path) else None


def clip_feature_config(clip: ClipConfig) -> ModelConfig:
    """The ``ModelConfig`` of a clip model's features: a CRN on ``embed_dim``-d shots."""
    return ModelConfig(
        encoder="clip",
        crn=CRNConfig(input_dim=clip.embed_dim),
        image_size=clip.size,
        resize=clip.size,
    )


class _ShotEncoder:
    """A BaSSL-family shot encoder on each shot's 3 keyframes (BaSSL's extraction)."""

    def __init__(self, spec: str, device: torch.device, precision: str, batch_shots: int):
        config, state = load_encoder(spec)
        shot_encoder = bassl.build(config).shot_encoder
        prefix = "shot_encoder."
        shot_encoder.load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
        self.config, self.state, self.device = config, state, device
        self.runner = Runner(
            shot_encoder,
            device=device,
            precision=precision,
            batch_images=batch_shots * config.keyframes,
            channels_last=config.encoder != "tiny",
        )
        self.transform = ImageTransform(config)
        self.fused = config.encoder == "resnet50-9ch"  # SCRL's early fusion of the 3 keyframes

    def save(self, path: Path) -> dict:
        state = {k: v for k, v in self.state.items() if k.startswith(("shot_encoder.", "crn."))}
        checkpoints.save_state(state, self.config, path)
        return {}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return encode_shots(self.runner, images.to(self.device), self.fused)


class KeyframeSquares:
    """``[N, 3, H, W]`` uint8 keyframes -> ``[N, 3, size, size]`` uint8: each its clip frame
    (``shotclips.square``), as ``segment`` makes a clip boundary model's keyframes
    (picklable, for loader workers)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.permute(0, 2, 3, 1).numpy()
        squares = np.stack([square(image, self.size) for image in pixels])
        return torch.from_numpy(squares).permute(0, 3, 1, 2)


class _ClipEncoder:
    """A clip model on each shot's 3 keyframes made one clip (``CLIP_FRAMES``)."""

    def __init__(self, path: Path, device: torch.device, precision: str, batch_shots: int):
        net, clip = load_model(path, device=str(device))
        self.net, self.clip, self.config = net, clip, clip_feature_config(clip)
        self.shots = ClipShotEncoder(
            net, device=str(device), precision=precision, batch_images=batch_shots
        )
        self.transform = KeyframeSquares(clip.size)

    def save(self, path: Path) -> dict:
        save_model(self.net, self.clip, path)
        return {"clip": json.loads(self.clip.to_json()), "frames": CLIP_FRAMES}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[b, 3, 3, S, S]`` uint8 squares -> ``[b, embed_dim]`` z."""
        keyframes = images.permute(0, 1, 3, 4, 2).numpy()  # [b, 3, S, S, 3]
        return torch.from_numpy(self.shots.embed(keyframes))


def _complete(path: Path, shots: int) -> bool:
    if not path.is_file():
        return False
    try:
        return np.load(path, mmap_mode="r").shape[0] == shots
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# Reading them back


@dataclass(frozen=True)
class FeatureSet:
    root: Path
    config: ModelConfig
    encoder: str
    clip: ClipConfig | None = None  # the clip model that made them (``encoder.safetensors``)

    @classmethod
    def open(cls, root: str | Path) -> FeatureSet:
        root = Path(root)
        if not (root / META).is_file():
            raise InputError(f"{root} is not a feature folder (no {META}); run `train extract`")
        meta = json.loads((root / META).read_text())
        clip = meta.get("clip")
        clip = None if clip is None else ClipConfig.from_json(json.dumps(clip))
        return cls(root, ModelConfig.from_json(json.dumps(meta["config"])), meta["encoder"], clip)

    def film(self, video_id: str) -> np.ndarray:
        path = self.root / f"{video_id}.npy"
        if not path.is_file():
            raise InputError(f"{path} is missing; run `scenecut train extract` on this tree")
        return np.load(path, mmap_mode="r")

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The extractor's weights, checked like any weights file (a damaged folder is an
        ``InputError``, not a crash); none for a clip model's features (``clip_encoder``)."""
        path = self.root / ENCODER
        if not path.is_file():
            raise InputError(f"{path} is missing; run `scenecut train extract` again")
        if self.clip is not None:
            return {}
        return checkpoints.load_state(path)[0]

    def clip_encoder(self) -> SaccadeNet:
        """The clip model that made these features (checked as any clip-model file)."""
        net, config = load_model(self.root / ENCODER)
        if config != self.clip:
            raise InputError(f"{self.root / ENCODER} is not the clip model {META} names")
        return net


class FeatureWindows(Dataset):
    """BaSSL fine-tuning items: for every labelled shot, the ``2n+1`` shot features centred on
    it (indices clipped, so edge shots repeat) and the label of the gap after it."""

    def __init__(
        self, features: FeatureSet, movies, neighbor_size: int = 8, feature_norm: str = "none"
    ):
        self.features = features
        self.feature_norm = feature_norm
        self.movies = [m for m in movies if m.labels is not None]
        if not self.movies:
            raise InputError("no labelled films to fine-tune on")
        self.n = neighbor_size
        self.items = [(i, s) for i, m in enumerate(self.movies) for s in range(m.num_shots - 1)]
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _film(self, i: int) -> np.ndarray:
        if i not in self._cache:
            film = self.features.film(self.movies[i].video_id)
            if film.shape[0] != self.movies[i].num_shots:
                raise InputError(
                    f"{self.movies[i].video_id}: {film.shape[0]} feature rows for "
                    f"{self.movies[i].num_shots} shots; extract again"
                )
            if self.feature_norm != "none":
                film = normalize_film(np.asarray(film, dtype=np.float32), self.feature_norm)
            self._cache[i] = film
        return self._cache[i]

    def __getitem__(self, index: int) -> dict:
        m, center = self.items[index]
        film = self._film(m)
        idx = np.clip(np.arange(center - self.n, center + self.n + 1), 0, film.shape[0] - 1)
        return {
            "windows": torch.from_numpy(np.ascontiguousarray(film[idx], dtype=np.float32)),
            "label": torch.tensor(int(self.movies[m].labels[center])),
        }


def check_features(features: FeatureSet, config: ModelConfig) -> None:
    if features.config.crn.input_dim != config.crn.input_dim:
        raise UsageError(
            f"features are {features.config.crn.input_dim}-d but the CRN expects "
            f"{config.crn.input_dim}-d inputs"
        )


class FeatureClips(Dataset):
    """SCRL's BiLSTM training clips: per film ``labelled // seq_len - 1`` clips (at least one
    when the film is long enough) of ``seq_len`` consecutive labelled shots from an offset drawn
    per film and epoch; the clip's last label is forced to 0, and with probability
    ``shuffle_scenes`` the clip is cut after each boundary and its scenes put in random order
    (REFERENCE.md 4.5). Items: ``clip`` ``[seq_len, D]`` and ``labels`` ``[seq_len]``."""

    def __init__(
        self,
        features: FeatureSet,
        movies,
        seq_len: int = 40,
        shuffle_scenes=1.0,
        feature_norm: str = "none",
    ):
        self.feature_norm = feature_norm
        if seq_len < 4 or seq_len % 4:
            raise UsageError(f"seq_len must be a positive multiple of 4, got {seq_len}")
        self.features, self.seq_len, self.shuffle_scenes = features, seq_len, shuffle_scenes
        self.movies = [m for m in movies if m.labels is not None and len(m.labels) >= seq_len]
        if not self.movies:
            raise InputError(f"no labelled film has {seq_len} shots for the BiLSTM clips")
        self.items = []
        for i, m in enumerate(self.movies):
            count = max(1, len(m.labels) // seq_len - 1)
            self.items += [(i, k) for k in range(count)]
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        m, k = self.items[index]
        movie = self.movies[m]
        count = max(1, len(movie.labels) // self.seq_len - 1)
        # one offset per film and epoch, shared by its clips (independent of worker order)
        room = len(movie.labels) - count * self.seq_len
        offset = int(np.random.default_rng([self.epoch, m]).integers(0, room + 1))
        start = offset + k * self.seq_len
        film = self.features.film(movie.video_id)
        if self.feature_norm != "none":
            film = normalize_film(np.asarray(film, dtype=np.float32), self.feature_norm)
        clip = np.array(film[start : start + self.seq_len], dtype=np.float32)
        labels = np.array(movie.labels[start : start + self.seq_len], dtype=np.int64)
        labels[-1] = 0
        if float(torch.rand(())) < self.shuffle_scenes:
            ends = [i + 1 for i in np.nonzero(labels)[0]] + [self.seq_len]
            pieces = [(a, b) for a, b in zip([0, *ends[:-1]], ends, strict=True) if b > a]
            order = torch.randperm(len(pieces)).tolist()
            clip = np.concatenate([clip[pieces[i][0] : pieces[i][1]] for i in order])
            labels = np.concatenate([labels[pieces[i][0] : pieces[i][1]] for i in order])
            labels[-1] = 0
        return {"clip": torch.from_numpy(clip), "labels": torch.from_numpy(labels)}
