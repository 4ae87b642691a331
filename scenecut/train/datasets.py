"""PyTorch datasets over a MovieNet-style tree (see ``scenecut.data``) and BaSSL's transforms.

Three consumers, one family:

* ``PretrainWindows``: one item per shot, a window of ``2 * neighbor_size + 1`` consecutive
  shots shifted to stay inside the film (BaSSL pre-training), no labels;
* ``FilmShots``: every shot of one or more films in order, for feature extraction;
* ``LabelledWindows``: one item per labelled shot, the window centred on it with edge shots
  repeated (BaSSL fine-tuning and evaluation) and the label of the gap after the centre shot.

JPEG decoding and augmentation happen in ``__getitem__``, so ``DataLoader(num_workers=N)`` runs
them in worker processes. A transform is any callable taking a ``[N, 3, H, W]`` uint8 tensor (all
images of one call) and returning a ``[N, 3, h, w]`` float tensor; BaSSL draws its augmentation
once per call, so one window is augmented consistently. Randomness comes from torch's generator,
which ``DataLoader`` seeds differently in every worker.

Sharding for DDP: every dataset is map-style with a fixed, deterministic item order, so
``torch.utils.data.DistributedSampler`` shards it::

    sampler = DistributedSampler(dataset, shuffle=True, seed=0)  # rank, world from torchrun
    loader = DataLoader(dataset, batch_size=32, sampler=sampler, num_workers=8, drop_last=True)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # same permutation on every rank, disjoint slices
        ...

With ``drop_last=False`` (the sampler's default) the last shard is padded with repeated items
so that every rank gets the same count; pass ``drop_last=True`` to the sampler for exactly
disjoint shards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from scenecut.data.tree import KEYFRAMES_PER_SHOT, PRETRAIN, Movie, Tree, read_tree
from scenecut.errors import InputError, UsageError
from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD

KEYFRAME_CHOICES = ("all", "random", "middle")


Transform = Callable[[torch.Tensor], torch.Tensor]


# --- transforms ------------------------------------------------------------------------------


def train_transform(size: int = 224) -> Transform:
    """BaSSL's pre-training augmentation (spec section 2.4), drawn once per call.

    RandomResizedCrop(size, scale 0.14-1, ratio 3/4-4/3, bilinear as BaSSL really runs it),
    horizontal flip p 0.5, colour jitter (brightness, contrast, saturation 0.2, hue 0.05) p 0.8
    with the same factors for every image, Gaussian blur (sigma 0.1-2 per image) p 0.5 for the
    whole call, ImageNet normalisation. BaSSL has no grayscale step (SCRL's key view does).
    """
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(
                size,
                scale=(0.14, 1.0),
                ratio=(3 / 4, 4 / 3),
                interpolation=v2.InterpolationMode.BILINEAR,
                antialias=True,
            ),
            v2.RandomHorizontalFlip(0.5),
            ColorJitter(0.2, 0.2, 0.2, 0.05, p=0.8),
            GaussianBlur((0.1, 2.0), p=0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def test_transform(resize: int = 224, crop: int = 224) -> Transform:
    """Resize the shorter side to ``resize``, centre-crop ``crop``, ImageNet normalisation.

    224/224 is SCRL's extraction recipe; BaSSL's feature extraction used Resize(256, bicubic)
    then CenterCrop(224): pass ``resize=256`` for its geometry.
    """
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class ColorJitter:
    """Colour jitter applied with probability ``p``, one set of factors (in a random order) for
    every image of the call, like BaSSL's ``VideoRandomColorJitter``.

    Same formulas as torchvision's ``adjust_brightness/contrast/saturation/hue``, computed with
    OpenCV on 8-bit images (the hue shift in 8-bit HSV: steps of 1/256 turn); about five times
    faster than torchvision on one CPU thread.
    """

    def __init__(self, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=0.8):
        self.factors = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        self.hue = hue
        self.p = p

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return images
        steps = [
            (name, float(torch.empty(()).uniform_(1 - amount, 1 + amount)))
            for name, amount in self.factors.items()
            if amount
        ]
        if self.hue:
            steps.append(("hue", float(torch.empty(()).uniform_(-self.hue, self.hue))))
        order = [steps[i] for i in torch.randperm(len(steps)).tolist()]
        hwc = _to_hwc(images)
        for image in hwc:
            for name, value in order:
                _ADJUST[name](image, value)
        return _from_hwc(hwc, images)


def _brightness(image, factor: float) -> None:
    import cv2
    import numpy as np

    lut = np.clip(np.arange(256) * factor, 0, 255).astype(np.uint8)
    cv2.LUT(image, lut, dst=image)


def _contrast(image, factor: float) -> None:
    import cv2
    import numpy as np

    mean = float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean())
    lut = np.clip(np.arange(256) * factor + mean * (1 - factor), 0, 255).astype(np.uint8)
    cv2.LUT(image, lut, dst=image)


def _saturation(image, factor: float) -> None:
    import cv2

    gray = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    cv2.addWeighted(image, factor, gray, 1 - factor, 0, dst=image)


def _hue(image, shift: float) -> None:
    import cv2
    import numpy as np

    delta = round(shift * 256) % 256
    if delta:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        np.add(hsv[..., 0], delta, out=hsv[..., 0], casting="unsafe")  # wraps around mod 256
        cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL, dst=image)


_ADJUST = {
    "brightness": _brightness,
    "contrast": _contrast,
    "saturation": _saturation,
    "hue": _hue,
}


class GaussianBlur:
    """Gaussian blur with probability ``p`` for the whole call, sigma drawn per image (BaSSL's
    ``VideoRandomGaussianBlur``); OpenCV on uint8 images, much faster than a torch convolution
    on one CPU thread."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5):
        self.sigma = sigma
        self.p = p

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        import cv2

        if torch.rand(()) >= self.p:
            return images
        hwc = _to_hwc(images)
        for image in hwc:
            sigma = float(torch.empty(()).uniform_(*self.sigma))
            cv2.GaussianBlur(image, (0, 0), sigma, dst=image)
        return _from_hwc(hwc, images)


def _to_hwc(images: torch.Tensor):
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}; put this before ToDtype")
    return images.reshape(-1, *images.shape[-3:]).permute(0, 2, 3, 1).contiguous().numpy()


def _from_hwc(hwc, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous().reshape(like.shape)


# --- datasets --------------------------------------------------------------------------------


class _TreeDataset(Dataset):
    """Common part: the films of a split, keyframe choice, decoding and the transform call."""

    def __init__(
        self,
        tree: Tree,
        movies: Sequence[Movie],
        transform: Transform | None,
        keyframes: str,
    ):
        if keyframes not in KEYFRAME_CHOICES:
            raise UsageError(
                f"keyframes must be one of {', '.join(KEYFRAME_CHOICES)}, got {keyframes!r}"
            )
        self.tree = tree
        self.root = tree.root
        self.movies = list(movies)
        self.transform = transform
        self.keyframes = keyframes
        self.items: list[tuple[int, int]] = []  # (movie index, shot)

    def __len__(self) -> int:
        return len(self.items)

    def _keys(self, shots: Sequence[int]) -> list[tuple[int, int]]:
        """(shot, keyframe) per image: 3 per shot for "all", else 1."""
        if self.keyframes == "all":
            return [(s, k) for s in shots for k in range(KEYFRAMES_PER_SHOT)]
        if self.keyframes == "middle":
            return [(s, 1) for s in shots]
        picks = torch.randint(KEYFRAMES_PER_SHOT, (len(shots),)).tolist()
        chosen: dict[int, int] = {}  # a repeated shot reuses its keyframe (BaSSL's cache)
        return [(s, chosen.setdefault(s, k)) for s, k in zip(shots, picks, strict=True)]

    def _load(self, movie: Movie, keys: list[tuple[int, int]]) -> list[torch.Tensor]:
        """uint8 ``[3, H, W]`` images, each distinct file decoded once."""
        decoded = {key: decode_rgb(self.tree.keyframe_path(movie.video_id, *key)) for key in keys}
        return [decoded[key] for key in keys]

    def _batch(self, images: list[torch.Tensor], shots: int) -> torch.Tensor:
        """Transform ``images`` in one call: ``[shots, C, H, W]`` or ``[shots, 3, C, H, W]``."""
        out = self._transform(images)
        if self.keyframes == "all":
            out = out.reshape(shots, KEYFRAMES_PER_SHOT, *out.shape[1:])
        return out

    def _transform(self, images: list[torch.Tensor]) -> torch.Tensor:
        if len({im.shape for im in images}) == 1:
            batch = torch.stack(images)
            return batch if self.transform is None else self.transform(batch)
        if self.transform is None:
            raise InputError(f"{self.root}: keyframes of one window differ in size")
        # Mixed sizes (an odd tree): each image on its own, so no longer consistently augmented.
        return torch.cat([self.transform(im[None]) for im in images])


_KEYFRAME_HINT = "cannot decode keyframe ({}); run `scenecut data check` on the tree"


def decode_rgb(path: Path, hint: str = _KEYFRAME_HINT) -> torch.Tensor:
    """uint8 ``[3, H, W]`` with torchvision's libjpeg-turbo decoder: 40 % less CPU than PIL
    plus a numpy-to-tensor copy. torchvision 0.29 (pinned) deprecates it for TorchCodec and
    warns on every call, so the warning is silenced around the call."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            return decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise InputError(f"{path}: {hint.format(exc)}") from exc


def _tree(tree: Tree | str | Path) -> Tree:
    return tree if isinstance(tree, Tree) else read_tree(tree)


class PretrainWindows(_TreeDataset):
    """One item per shot of the films in ``split``: ``2 * neighbor_size + 1`` consecutive shots
    around it, shifted (not clipped) to stay inside the film, as BaSSL's SequenceShotSampler;
    films shorter than the window repeat their last shot.

    Item: ``images`` ``[T, C, H, W]`` (``keyframes="random"``: one random keyframe per shot,
    BaSSL's choice) or ``[T, 3, C, H, W]`` (``"all"``), augmented in one call; ``shots`` the
    window's shot indices; ``video_id``; ``center``. With ``sparse`` positions (BaSSL's ``bassl``
    method: ``(0, T - 1)``), ``sparse_images`` holds those shots augmented by a second,
    independent call on the same decoded keyframes.
    """

    def __init__(
        self,
        tree: Tree | str | Path,
        split: str = PRETRAIN,
        *,
        neighbor_size: int = 8,
        transform: Transform | None = None,
        keyframes: str = "random",
        sparse: Sequence[int] = (),
    ):
        tree = _tree(tree)
        super().__init__(tree, tree.split(split), transform or train_transform(), keyframes)
        self.neighbor_size = neighbor_size
        self.sparse = list(sparse)
        window = 2 * neighbor_size + 1
        if any(not -window <= p < window for p in self.sparse):
            raise UsageError(f"sparse positions must lie in the window of {window} shots")
        self.items = [(i, s) for i, m in enumerate(self.movies) for s in range(m.num_shots)]

    def window(self, center: int, num_shots: int) -> list[int]:
        size = 2 * self.neighbor_size + 1
        start = min(max(center - self.neighbor_size, 0), max(num_shots - size, 0))
        return [min(start + i, num_shots - 1) for i in range(size)]

    def __getitem__(self, index: int) -> dict:
        m, center = self.items[index]
        movie = self.movies[m]
        shots = self.window(center, movie.num_shots)
        item = {"video_id": movie.video_id, "center": center, "shots": torch.tensor(shots)}
        images = self._load(movie, self._keys(shots))
        item["images"] = self._batch(images, len(shots))
        if self.sparse:
            # The same decoded keyframes (BaSSL reuses its PIL images), augmented by a second,
            # independent call.
            per = KEYFRAMES_PER_SHOT if self.keyframes == "all" else 1
            positions = [p % len(shots) for p in self.sparse]
            picked = [images[p * per + k] for p in positions for k in range(per)]
            item["sparse_images"] = self._batch(picked, len(positions))
        return item


class FilmShots(_TreeDataset):
    """Every shot of ``videos`` (one id, several, or a whole split) in film and shot order, for
    feature extraction. Item: ``images`` ``[3, C, H, W]`` (``keyframes="all"``, the default) or
    ``[C, H, W]``, ``video_id``, ``shot``."""

    def __init__(
        self,
        tree: Tree | str | Path,
        videos: str | Sequence[str] | None = None,
        *,
        split: str | None = None,
        transform: Transform | None = None,
        keyframes: str = "all",
    ):
        tree = _tree(tree)
        if videos is not None and split is not None:
            raise UsageError("pass videos or split, not both")
        if isinstance(videos, str):
            videos = [videos]
        if videos is None:
            movies = tree.split(split or PRETRAIN)
        else:
            unknown = [v for v in videos if v not in tree.movies]
            if unknown:
                raise InputError(f"{tree.root}: no film {', '.join(unknown)}")
            movies = [tree.movies[v] for v in videos]
        super().__init__(tree, movies, transform or test_transform(), keyframes)
        self.items = [(i, s) for i, m in enumerate(self.movies) for s in range(m.num_shots)]

    def __getitem__(self, index: int) -> dict:
        m, shot = self.items[index]
        movie = self.movies[m]
        return {
            "images": self._batch(self._load(movie, self._keys([shot])), 1)[0],
            "video_id": movie.video_id,
            "shot": shot,
        }


class LabelledWindows(_TreeDataset):
    """One item per labelled shot (all but each film's last) of the films in ``split``: the
    ``2 * neighbor_size + 1`` shots centred on it, indices clipped to the film so edge shots
    repeat (BaSSL's NeighborShotSampler), and ``label`` = 1 when a scene ends after the centre.

    Item: ``images`` ``[T, 3, C, H, W]`` (``keyframes="all"``) or ``[T, C, H, W]``, ``label``,
    ``shots``, ``video_id``, ``center``.
    """

    def __init__(
        self,
        tree: Tree | str | Path,
        split: str = "test",
        *,
        neighbor_size: int = 8,
        transform: Transform | None = None,
        keyframes: str = "all",
    ):
        tree = _tree(tree)
        movies = tree.split(split)
        unlabelled = [m.video_id for m in movies if m.labels is None]
        if unlabelled:
            raise InputError(
                f"{tree.root}: {len(unlabelled)} film(s) in {split} have no labels "
                f"({', '.join(unlabelled[:3])}); run `scenecut data check {tree.root}`"
            )
        super().__init__(tree, movies, transform or test_transform(), keyframes)
        self.neighbor_size = neighbor_size
        self.items = [(i, s) for i, m in enumerate(self.movies) for s in range(m.num_shots - 1)]

    def window(self, center: int, num_shots: int) -> list[int]:
        n = self.neighbor_size
        return [min(max(center + d, 0), num_shots - 1) for d in range(-n, n + 1)]

    def labels(self) -> list[int]:
        """Every item's label, without loading images (for class weights or samplers)."""
        return [self.movies[m].labels[s] for m, s in self.items]

    def __getitem__(self, index: int) -> dict:
        m, center = self.items[index]
        movie = self.movies[m]
        shots = self.window(center, movie.num_shots)
        return {
            "images": self._batch(self._load(movie, self._keys(shots)), len(shots)),
            "label": movie.labels[center],
            "shots": torch.tensor(shots),
            "video_id": movie.video_id,
            "center": center,
        }


# --------------------------------------------------------------------------------------------
# Datasets


class ShotPairs(PretrainWindows):
    """Two views of one shot per item, for the ``instance`` and ``temporal`` baselines:
    ``images`` and ``sparse_images`` ``[1, C, H, W]``, plus ``shots``, ``video_id``, ``center``.

    ``instance``: one random keyframe, augmented twice. ``temporal`` as BaSSL released it
    (spec 2.1: the sampled neighbour is never loaded): the second view is a freshly drawn random
    keyframe of the same shot.
    """

    def __init__(
        self,
        tree: Tree | str | Path,
        split: str = PRETRAIN,
        *,
        mode: str = "instance",
        transform: Transform | None = None,
    ):
        if mode not in ("instance", "temporal"):
            raise UsageError(f"mode must be instance or temporal, got {mode!r}")
        super().__init__(tree, split, neighbor_size=0, transform=transform, sparse=(0,))
        self.mode = mode

    def __getitem__(self, index: int) -> dict:
        if self.mode == "instance":
            return super().__getitem__(index)
        m, center = self.items[index]
        movie = self.movies[m]
        first = self._load(movie, self._keys([center]))
        second = self._load(movie, self._keys([center]))
        return {
            "video_id": movie.video_id,
            "center": center,
            "shots": torch.tensor([center]),
            "images": self._batch(first, 1),
            "sparse_images": self._batch(second, 1),
        }
