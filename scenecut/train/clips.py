"""Saccade-VSSL's clips (spec SACCADE.md 2.3, 2.4, 5, 6, 7): focus masks, fixations, and the
datasets that decode a video's JPEG frames and augment them.

A video is ``(frames, rows, label)``: its sorted JPEG paths, its scanpath rows (``(n, 3)`` ints
``[cell, start, end]``, or ``None``) and its class. As in the reference, ``length = #frames - 1``:
the last frame is never used.

* ``SaccadeClips``: pre-training, 6 clips per video ``[A0, A1, A2, B0, B1, B2]`` with the focus
  mask of each fixation's cell, each clip augmented on its own (spec 5);
* ``EvalClips``: 10 evenly spaced centre-cropped clips (retrieval, downstream test), or with
  ``masks=True`` one clip per fixation with its mask (the cluster-feature pass, spec 4.3);
* ``TrainClips``: one random augmented clip (downstream training).

Outputs are float in [0, 1], not normalised: the objective normalises on the device.
Randomness inside ``__getitem__`` comes from ``random`` (which ``DataLoader`` seeds in every
worker); the completion cells are drawn once per dataset from ``seed``.

``Quirks`` (spec 9) reproduces the reference's side effects by default; ``False`` fields give
the clean protocol. The other quirks of spec 9 that change results (ImageNet normalisation in
pre-training but raw inputs downstream, model selection on the test split) are not the
loader's: they belong to the training and evaluation code.

Speed (``bench/bench_clip_loader.py``): each frame an item needs is decoded once (the A and B
clips of a fixation overlap); OpenCV decodes (libjpeg-turbo); a clip's 16 crops are resized in
one call of torch's antialiased bicubic kernel on uint8 channels-last tensors (PIL's filter:
equal or 1 level apart); colour jitter and blur run on the 112-px uint8 frames with OpenCV in
PIL's arithmetic (8 bits after every step, blends truncated like PIL's), except the hue step,
which goes through OpenCV's 8-bit HSV instead of PIL's (as close to the exact hue shift; see
tests/train/test_clips.py for the tolerances).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from scenecut.data.actions import FrameList
from scenecut.errors import InputError, UsageError
from scenecut.output.readers import read_bytes

CANVAS = (128, 171)  # (h, w): the VCOP resolution the reference draws its masks on
TRAIN_JITTER = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue (spec 5)
EVAL_JITTER = (0.2, 0.2, 0.2, 0.1)  # retrieval, clustering and downstream test (spec 6)
CROP_AREA = (0.175, 1.0)  # RandomSizedCrop's share of the frame area
MAX_FRAME_BYTES = 32 * 2**20  # a 340x256 UCF frame is a few tens of kB
MAX_FRAME_SIDE = 8192  # refuse frames whose header promises more, before decoding them


# --- masks and fixations ---------------------------------------------------------------------


def focus_mask(cell: int, grid: int = 7, margin: int = 12) -> np.ndarray:
    """uint8 0/255 ``[128, 171]``: the window around ``cell`` (row-major in a ``grid`` x ``grid``
    grid), +-32 rows x +-42 cols plus ``margin`` rows (and the same share of columns, 16 for 12)
    split over both sides, clipped at the borders: 76 x 100 for interior cells (spec 2.4)."""
    if not 0 <= cell < grid * grid:
        raise ValueError(f"cell {cell} is outside the {grid}x{grid} grid")
    h, w = CANVAS
    margin_w = int(np.round(margin * w / h))
    row, col = divmod(cell, grid)
    center_h = row * (h // grid) + h // grid // 2
    center_w = col * (w // grid) + w // grid // 2
    top = max(0, center_h - h // 4 - margin // 2)
    left = max(0, center_w - w // 4 - margin_w // 2)
    mask = np.zeros(CANVAS, np.uint8)
    mask[top : center_h + h // 4 + margin // 2, left : center_w + w // 4 + margin_w // 2] = 255
    return mask


def completion_cells(seed: int, focus_num: int = 3, grid: int = 7) -> tuple[int, ...]:
    """The cells that pad short scanpaths: one random ``focus_num``-subset of the grid per
    dataset, the same for every video (spec 2.3)."""
    return tuple(random.Random(seed).sample(range(grid * grid), focus_num))


def scanpath_rows(
    rows: np.ndarray | None,
    length: int,
    *,
    focus_num: int = 3,
    dedup: bool = True,
    completion: Sequence[int],
    rng,
    clip_len: int = 16,
) -> list[tuple[int, int, int]]:
    """``focus_num`` rows ``(cell, start, end)``: the first rows of ``rows`` (with ``dedup``,
    only the first ``focus_num`` are inspected and a repeated cell is dropped), padded with
    ``(completion[k], s, s + clip_len)``, ``s`` uniform in ``1 .. length - clip_len - 1``
    drawn with ``rng.randint`` at every call (spec 2.3). A single row of shape ``(3,)`` is
    one fixation (the reference's ``loadtxt`` without ``ndmin=2`` crashes on it)."""
    kept: list[tuple[int, int, int]] = []
    if rows is not None:
        head = np.asarray(rows, dtype=np.int64).reshape(-1, 3)[:focus_num]
        for cell, start, end in head.tolist():
            if not dedup or cell not in {k[0] for k in kept}:
                kept.append((cell, start, end))
    for k in range(focus_num - len(kept)):
        # numpy's randint(1, length - clip_len) in the reference: at least 1 here, so that a
        # video of clip_len + 1 or + 2 frames does not raise.
        start = rng.randint(1, max(1, length - clip_len - 1))
        kept.append((int(completion[k]), start, start + clip_len))
    return kept


def fixations(
    rows: np.ndarray | None,
    length: int,
    *,
    focus_num: int = 3,
    dedup: bool = True,
    completion: Sequence[int],
    rng,
    clip_len: int = 16,
) -> list[tuple[int, int, int]]:
    """``(cell, a_start, b_start)`` per fixation (spec 2.3): with ``o = (end - start + 1) // 2``,
    the A clip starts at ``min(start, length - clip_len - o)`` and the B clip ``o`` frames
    later. Rows as ``scanpath_rows``; ``rng`` is ``random`` or a ``random.Random``."""
    out = []
    picked = scanpath_rows(
        rows,
        length,
        focus_num=focus_num,
        dedup=dedup,
        completion=completion,
        rng=rng,
        clip_len=clip_len,
    )
    for cell, start, end in picked:
        offset = max(0, (end - start + 1) // 2)
        # When o > length - clip_len the reference's A start is negative and Python's
        # negative indexing silently wraps it to the end of the video (spec 9.18): a bug, not
        # reproduced. Clamped at 0; B keeps the reference's start length - clip_len.
        a = max(0, min(start, length - clip_len - offset))
        out.append((cell, a, min(a + offset, length - clip_len)))
    return out


@dataclass(frozen=True)
class Quirks:
    """Spec section 9: ``True`` reproduces the reference (the default), ``False`` is the clean
    protocol."""

    mask_flip: bool = True  # the mask is flipped independently of its clip (9.6)
    mask_jitter: bool = True  # the mask goes through the clip's blur/brightness/contrast (9.7)
    test_jitter: bool = True  # colour jitter p=0.3 at test time (9.12)


# --- augmentation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """One clip's augmentation parameters, shared by its frames (and its mask)."""

    box: tuple[int, int, int, int] | None  # crop x, y, w, h in frame pixels; None: the
    # reference's fallback (shorter side to the output size, centre crop)
    jitter: tuple[tuple[str, float], ...] = ()  # (brightness|contrast|saturation|hue, factor)
    blur: float | None = None  # sigma of the frames' Gaussian blur
    flip: bool = False
    mask_flip: bool = False
    mask_jitter: bool = False  # the mask takes the brightness and contrast steps
    mask_blur: float | None = None  # the mask's own sigma


def _draw_jitter(amounts: tuple[float, float, float, float], rng) -> tuple[tuple[str, float], ...]:
    b, c, s, h = amounts
    steps = [
        ("brightness", rng.uniform(max(0.0, 1 - b), 1 + b)),
        ("contrast", rng.uniform(max(0.0, 1 - c), 1 + c)),
        ("saturation", rng.uniform(max(0.0, 1 - s), 1 + s)),
        ("hue", rng.uniform(-h, h)),
    ]
    rng.shuffle(steps)
    return tuple(steps)


def train_augment(width: int, height: int, *, quirks: Quirks = Quirks(), rng=random) -> Augment:
    """The reference's training draw (spec 5) for a ``width`` x ``height`` clip: RandomSizedCrop
    (area U(0.175, 1), aspect U(3/4, 4/3), sides swapped with p 0.5, 10 tries), colour jitter
    p 0.8, blur sigma U(0.1, 2) p 0.5 (the mask its own sigma), flip p 0.5 (the mask its own
    coin). Every draw is made whatever ``quirks`` says, so a seed gives the same clips."""
    box = None
    for _ in range(10):
        area = width * height * rng.uniform(*CROP_AREA)
        aspect = rng.uniform(3 / 4, 4 / 3)
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if rng.random() < 0.5:
            w, h = h, w
        if w <= width and h <= height:
            box = (rng.randint(0, width - w), rng.randint(0, height - h), w, h)
            break
    jitter = _draw_jitter(TRAIN_JITTER, rng) if rng.random() < 0.8 else ()
    blur = mask_blur = None
    if rng.random() < 0.5:
        blur, mask_blur = rng.uniform(0.1, 2.0), rng.uniform(0.1, 2.0)
    flip, own_flip = rng.random() < 0.5, rng.random() < 0.5
    return Augment(
        box,
        jitter,
        blur,
        flip,
        mask_flip=own_flip if quirks.mask_flip else flip,
        mask_jitter=quirks.mask_jitter,
        mask_blur=mask_blur if quirks.mask_jitter else None,
    )


def eval_augment(
    width: int,
    height: int,
    *,
    center: int = 196,
    jitter_p: float = 0.3,
    quirks: Quirks = Quirks(),
    rng=random,
) -> Augment:
    """Centre crop ``center`` x ``center`` (PIL's rounding), then colour jitter (0.2, 0.2, 0.2,
    0.1) with probability ``jitter_p``, unless ``quirks.test_jitter`` is off (spec 6)."""
    box = (round((width - center) / 2), round((height - center) / 2), center, center)
    jitter = _draw_jitter(EVAL_JITTER, rng) if rng.random() < jitter_p else ()
    return Augment(box, jitter if quirks.test_jitter else (), mask_jitter=quirks.mask_jitter)


def augment(
    frames: Sequence[np.ndarray], mask: np.ndarray | None, aug: Augment, size: int = 112
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``frames`` (uint8 ``[H, W, 3]`` RGB) and ``mask`` (uint8 ``[H, W]``) augmented by ``aug``:
    float ``[3, T, size, size]`` and ``[1, size, size]`` in [0, 1]."""
    clip, out_mask = _augment(frames, mask, aug, size)
    return clip.float().div_(255), None if out_mask is None else out_mask.float().div_(255)


def _augment(
    frames: Sequence[np.ndarray], mask: np.ndarray | None, aug: Augment, size: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 ``[3, T, size, size]`` and ``[1, size, size]`` (views, maybe not contiguous)."""
    clip = _crop_resize(frames, aug.box, size)  # [T, size, size, 3], contiguous
    small = None if mask is None else _crop_resize([mask[..., None]], aug.box, size)[0, ..., 0]
    rows = clip.reshape(-1, size, 3)  # the clip as one tall image for the per-pixel steps
    for name, factor in aug.jitter:
        _JITTER[name](clip, rows, factor)
        if small is not None and aug.mask_jitter and name in ("brightness", "contrast"):
            # Brightness is a blend with black, contrast with the mask's own mean; saturation
            # and hue leave PIL's 'L' images unchanged.
            mean = int(small.mean() + 0.5) if name == "contrast" else 0
            cv2.LUT(small, _lut(factor, mean), dst=small)
    if aug.blur is not None:
        for image in clip:
            cv2.GaussianBlur(image, (0, 0), aug.blur, dst=image, borderType=cv2.BORDER_REPLICATE)
    if small is not None and aug.mask_blur is not None:
        cv2.GaussianBlur(small, (0, 0), aug.mask_blur, dst=small, borderType=cv2.BORDER_REPLICATE)
    out = torch.from_numpy(clip).permute(3, 0, 1, 2)
    out = out.flip(-1) if aug.flip else out
    if small is None:
        return out, None
    out_mask = torch.from_numpy(small)[None]
    return out, out_mask.flip(-1) if aug.mask_flip else out_mask


def _crop_resize(
    images: Sequence[np.ndarray], box: tuple[int, int, int, int] | None, size: int
) -> np.ndarray:
    """uint8 ``[N, size, size, C]``: each image cropped to ``box`` (zeros outside the image,
    as PIL's crop) and resized with antialiased bicubic, all in one torch call."""
    height, width = images[0].shape[:2]
    if box is None:  # Scale(size) then CenterCrop(size), the reference's fallback
        scale = size / min(width, height)
        h, w = (size, int(width * scale)) if width >= height else (int(height * scale), size)
        resized = _resize(np.stack(images), h, w)
        y, x = round((h - size) / 2), round((w - size) / 2)
        return np.ascontiguousarray(resized[:, y : y + size, x : x + size])
    x, y, w, h = box
    if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
        crops = np.stack([image[y : y + h, x : x + w] for image in images])
    else:
        crops = np.zeros((len(images), h, w, images[0].shape[2]), np.uint8)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        for crop, image in zip(crops, images, strict=True):
            crop[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    return _resize(crops, size, size)


def _resize(images: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[N, H, W, C]`` uint8 to ``[N, h, w, C]``: torch's uint8 channels-last antialiased
    bicubic (PIL's filter, a=-0.5), 3x faster than the NCHW layout and 15x faster than float."""
    if images.shape[1:3] == (h, w):
        return images
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def _lut(factor: float, mean: float = 0.0) -> np.ndarray:
    # PIL's blend: degenerate + factor * (image - degenerate), truncated to 0..255.
    return np.clip(mean + factor * (np.arange(256) - mean), 0, 255).astype(np.uint8)


def _brightness(clip: np.ndarray, rows: np.ndarray, factor: float) -> None:
    cv2.LUT(rows, _lut(factor), dst=rows)


def _contrast(clip: np.ndarray, rows: np.ndarray, factor: float) -> None:
    """Each frame against its own mean grey level, rounded as PIL's ImageEnhance does."""
    gray = cv2.cvtColor(rows, cv2.COLOR_RGB2GRAY).reshape(len(clip), -1)
    for image, mean in zip(clip, gray.mean(axis=1).tolist(), strict=True):
        cv2.LUT(image, _lut(factor, int(mean + 0.5)), dst=image)


def _saturation(clip: np.ndarray, rows: np.ndarray, factor: float) -> None:
    gray = cv2.cvtColor(cv2.cvtColor(rows, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    # OpenCV rounds where PIL's blend truncates: -0.4999 turns the rounding into truncation.
    cv2.addWeighted(rows, factor, gray, 1 - factor, -0.4999, dst=rows)


def _hue(clip: np.ndarray, rows: np.ndarray, factor: float) -> None:
    """Shift the hue by ``uint8(factor * 255)`` steps, wrapping, as torchvision's PIL path does,
    in OpenCV's 8-bit HSV (1/256 turn a step; PIL's are 1/255). PIL also round-trips through
    HSV when the shift is 0; that only adds its quantisation noise and is skipped here."""
    delta = int(factor * 255) % 256
    if delta:
        hsv = cv2.cvtColor(rows, cv2.COLOR_RGB2HSV_FULL)
        np.add(hsv[..., 0], delta, out=hsv[..., 0], casting="unsafe")
        cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL, dst=rows)


_JITTER = {
    "brightness": _brightness,
    "contrast": _contrast,
    "saturation": _saturation,
    "hue": _hue,
}


# --- frames ----------------------------------------------------------------------------------


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None if there is none before the scan."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill, no length
            i += 1 if marker == 0xFF else 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(
                data[i + 5 : i + 7], "big"
            )
        if marker == 0xDA:  # start of scan
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def decode_frame(path: Path) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB of one JPEG frame, read with size limits (OpenCV, libjpeg-turbo;
    EXIF orientation ignored, as PIL does)."""
    data = read_bytes(Path(path), MAX_FRAME_BYTES, "a video frame")
    size = _jpeg_size(data)
    if size is None or min(size) < 1:
        raise InputError(f"{path}: not a JPEG frame")
    if max(size) > MAX_FRAME_SIDE:
        raise InputError(f"{path}: {size[0]}x{size[1]} frame, larger than {MAX_FRAME_SIDE} px")
    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)
    flags = (cv2.IMREAD_COLOR if rgb is None else rgb) | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise InputError(f"{path}: cannot decode this JPEG frame")
    return image if rgb is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


Video = tuple[Sequence[Path], np.ndarray | None, int]


class _Clips(Dataset):
    """Common part: the videos, their checks, frame decoding and the frame-size masks."""

    def __init__(self, videos: Sequence[Video], *, clip_len: int, size: int, grid: int = 7):
        if clip_len < 1 or size < 1:
            raise UsageError(f"clip_len and size must be positive, got {clip_len} and {size}")
        self.clip_len, self.size, self.grid = clip_len, size, grid
        self.videos = []
        for frames, rows, label in videos:
            if not isinstance(frames, FrameList):  # a FrameList stays compact
                frames = tuple(Path(p) for p in frames)
            if len(frames) - 1 < clip_len:
                where = frames[0].parent if frames else "a video"
                raise InputError(
                    f"{where}: {len(frames)} frames; clips need at least {clip_len + 1} "
                    "(the last frame is never used, as in the reference)"
                )
            self.videos.append((frames, self._check_rows(rows, frames), int(label)))
        self._masks: dict[tuple[int, int, int, int], np.ndarray] = {}

    def _check_rows(self, rows, frames) -> np.ndarray | None:
        if rows is None:
            return None
        array = np.asarray(rows)
        whole = np.issubdtype(array.dtype, np.integer) or (
            np.issubdtype(array.dtype, np.floating)
            and np.isfinite(array).all()
            and (np.abs(array) < 2**53).all()
            and (array == np.round(array)).all()
        )
        if array.size % 3 or not whole:
            raise InputError(f"{frames[0].parent}: scanpath rows must be whole [cell, start, end]")
        array = array.astype(np.int64).reshape(-1, 3)
        cells = array[:, 0]
        if len(array) and (cells.min() < 0 or cells.max() >= self.grid**2):
            raise InputError(f"{frames[0].parent}: scanpath cell outside the {self.grid}x grid")
        return array

    def __len__(self) -> int:
        return len(self.videos)

    def _decode(self, frames: Sequence[Path], indices) -> dict[int, np.ndarray]:
        """Each needed frame once, all of one size."""
        decoded = {i: decode_frame(frames[i]) for i in sorted(set(indices))}
        shapes = {image.shape for image in decoded.values()}
        if len(shapes) > 1:
            raise InputError(f"{frames[0].parent}: frames of different sizes {sorted(shapes)}")
        return decoded

    def _mask(self, cell: int, height: int, width: int, margin: int) -> np.ndarray:
        """The cell's mask at the frame size: bicubic as PIL's default filter (Pillow >= 7;
        spec 9.8), equal to PIL's resize here."""
        key = (cell, height, width, margin)
        if key not in self._masks:
            canvas = np.ascontiguousarray(focus_mask(cell, self.grid, margin)[None, ..., None])
            self._masks[key] = _resize(canvas, height, width)[0, ..., 0]
        return self._masks[key]

    def _item(self, index: int, clips, masks=None) -> dict:
        label = self.videos[index][2]
        item = {"clips": clips, "label": torch.tensor(label), "index": torch.tensor(index)}
        if masks is not None:
            item["masks"] = masks
        return item

    def _run(self, decoded, starts, cells, augs, margin: int = 12):
        """float ``[K, 3, T, size, size]`` (and ``[K, 1, size, size]`` when ``cells``)."""
        n, t, s = len(starts), self.clip_len, self.size
        clips = torch.empty(n, 3, t, s, s, dtype=torch.uint8)
        masks = None if cells is None else torch.empty(n, 1, s, s, dtype=torch.uint8)
        for k, (start, aug) in enumerate(zip(starts, augs, strict=True)):
            frames = [decoded[i] for i in range(start, start + t)]
            mask = None if cells is None else self._mask(cells[k], *frames[0].shape[:2], margin)
            clip, small = _augment(frames, mask, aug, s)
            clips[k].copy_(clip)
            if masks is not None:
                masks[k].copy_(small)
        return clips.float().div_(255), None if masks is None else masks.float().div_(255)


class SaccadeClips(_Clips):
    """Pre-training items (spec 2.3-2.4, 5): ``clips`` float ``[6, 3, T, size, size]`` ordered
    ``[A0, A1, A2, B0, B1, B2]``, ``masks`` ``[6, 1, size, size]``, ``slot`` = ``3 * index +
    [0, 1, 2, 0, 1, 2]`` (the memory-bank rows), ``label``, ``index``. ``random_fixations``
    ignores the scanpaths: every fixation is a completion (the random baseline of spec 2.5)."""

    def __init__(
        self,
        videos: Sequence[Video],
        *,
        clip_len: int = 16,
        size: int = 112,
        focus_num: int = 3,
        dedup: bool = True,
        random_fixations: bool = False,
        quirks: Quirks = Quirks(),
        seed: int = 632,
        grid: int = 7,
        margin: int = 12,
    ):
        super().__init__(videos, clip_len=clip_len, size=size, grid=grid)
        if not 1 <= focus_num <= grid * grid:
            raise UsageError(f"focus_num must be 1..{grid * grid}, got {focus_num}")
        self.focus_num, self.dedup, self.random_fixations = focus_num, dedup, random_fixations
        self.quirks, self.margin = quirks, margin
        self.completion = completion_cells(seed, focus_num, grid)

    def __getitem__(self, index: int) -> dict:
        frames, rows, _ = self.videos[index]
        fix = fixations(
            None if self.random_fixations else rows,
            len(frames) - 1,
            focus_num=self.focus_num,
            dedup=self.dedup,
            completion=self.completion,
            rng=random,
            clip_len=self.clip_len,
        )
        starts = [a for _, a, _ in fix] + [b for _, _, b in fix]
        cells = [cell for cell, _, _ in fix] * 2
        decoded = self._decode(frames, [s + t for s in starts for t in range(self.clip_len)])
        height, width = next(iter(decoded.values())).shape[:2]
        augs = [train_augment(width, height, quirks=self.quirks) for _ in starts]
        clips, masks = self._run(decoded, starts, cells, augs, self.margin)
        fixation = torch.arange(self.focus_num).repeat(2)
        item = self._item(index, clips, masks)
        item["slot"] = self.focus_num * index + fixation
        return item


class EvalClips(_Clips):
    """Retrieval and downstream test items (spec 6, 7): ``clips`` float ``[K, 3, T, size,
    size]`` with clip k starting at ``int(c_k - T/2)``, ``c = linspace(T/2, length - T/2, K)``,
    centre crop ``center`` then resize, colour jitter with probability ``jitter_p`` (off with
    ``Quirks(test_jitter=False)``), ``label``, ``index``.

    ``masks=True`` gives the cluster-feature pass instead (spec 4.3): one clip per fixation
    (``focus_num`` of them; ``clips`` is not used) starting at the fixation's start clamped to
    ``0 .. length - T``, with its cell's mask in ``masks`` ``[K, 1, size, size]``. The rows are
    each video's own, or ``rows_for_masks[i]`` when given. ``rows_for_masks`` may also be the
    pre-training ``SaccadeClips``: then its rows (none with ``random_fixations``), ``focus_num``,
    ``dedup``, completion cells, grid, margin and (unless ``quirks`` is given) quirks are used,
    so that clip k is fixation k of memory slot ``focus_num * index + k``. (The reference's
    cluster dataset draws a completion triple of its own; sharing the training one is the
    consistent choice.) Without masks, ``quirks`` defaults to ``Quirks()``."""

    def __init__(
        self,
        videos: Sequence[Video],
        *,
        clips: int = 10,
        clip_len: int = 16,
        size: int = 112,
        center: int = 196,
        jitter_p: float = 0.3,
        masks: bool = False,
        rows_for_masks: Sequence[np.ndarray | None] | SaccadeClips | None = None,
        quirks: Quirks | None = None,
        focus_num: int = 3,
        dedup: bool = True,
        seed: int = 632,
        grid: int = 7,
        margin: int = 12,
    ):
        source = rows_for_masks if isinstance(rows_for_masks, SaccadeClips) else None
        if source is not None:
            grid, margin, focus_num, dedup = (
                source.grid,
                source.margin,
                source.focus_num,
                source.dedup,
            )
            quirks = source.quirks if quirks is None else quirks
            rows_for_masks = [None if source.random_fixations else v[1] for v in source.videos]
        super().__init__(videos, clip_len=clip_len, size=size, grid=grid)
        if clips < 1 or center < 1 or not 0 <= jitter_p <= 1:
            raise UsageError("clips and center must be positive and jitter_p in [0, 1]")
        if rows_for_masks is not None:
            if len(rows_for_masks) != len(self.videos):
                raise UsageError(
                    f"rows_for_masks has {len(rows_for_masks)} rows for {len(self.videos)} videos"
                )
            self.videos = [
                (frames, self._check_rows(rows, frames), label)
                for (frames, _, label), rows in zip(self.videos, rows_for_masks, strict=True)
            ]
        self.clips, self.center, self.jitter_p, self.masks = clips, center, jitter_p, masks
        self.quirks = Quirks() if quirks is None else quirks
        self.focus_num, self.dedup, self.margin = focus_num, dedup, margin
        self.completion = (
            source.completion if source is not None else completion_cells(seed, focus_num, grid)
        )

    def starts(self, index: int) -> list[int]:
        """The first frame of each evenly spaced clip of video ``index`` (not with masks)."""
        length, t = len(self.videos[index][0]) - 1, self.clip_len
        return [int(c - t / 2) for c in np.linspace(t / 2, length - t / 2, self.clips)]

    def __getitem__(self, index: int) -> dict:
        frames, rows, _ = self.videos[index]
        length, cells = len(frames) - 1, None
        if self.masks:
            picked = scanpath_rows(
                rows,
                length,
                focus_num=self.focus_num,
                dedup=self.dedup,
                completion=self.completion,
                rng=random,
                clip_len=self.clip_len,
            )
            starts = [max(0, min(start, length - self.clip_len)) for _, start, _ in picked]
            cells = [cell for cell, _, _ in picked]
        else:
            starts = self.starts(index)
        decoded = self._decode(frames, [s + t for s in starts for t in range(self.clip_len)])
        height, width = next(iter(decoded.values())).shape[:2]
        augs = [
            eval_augment(
                width, height, center=self.center, jitter_p=self.jitter_p, quirks=self.quirks
            )
            for _ in starts
        ]
        return self._item(index, *self._run(decoded, starts, cells, augs, self.margin))


class TrainClips(_Clips):
    """Downstream training items (spec 7): one clip starting at a random frame in ``0 ..
    length - T``, with the pre-training augmentation: ``clips`` float ``[1, 3, T, size,
    size]``, ``label``, ``index``."""

    def __init__(self, videos: Sequence[Video], *, clip_len: int = 16, size: int = 112):
        super().__init__(videos, clip_len=clip_len, size=size)

    def __getitem__(self, index: int) -> dict:
        frames = self.videos[index][0]
        start = random.randint(0, len(frames) - 1 - self.clip_len)
        decoded = self._decode(frames, range(start, start + self.clip_len))
        height, width = decoded[start].shape[:2]
        clips, _ = self._run(decoded, [start], None, [train_augment(width, height)])
        return self._item(index, clips)
