"""A model's own image preparation, done as the reference code does it.

BaSSL, ModelScope and SCRL prepare every keyframe with torchvision's ``Resize(size)`` (shorter
side, PIL, bicubic or bilinear) and ``CenterCrop(crop)`` on a PIL image, then ``ToTensor`` and
``Normalize``. ``resize_crop`` is the first two on the full-size RGB frame, in PIL itself, so
the network sees the reference's pixels; ``runner.normalize`` is the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scenecut.models.config import INTERPOLATIONS

if TYPE_CHECKING:
    import numpy as np


def resize_crop(
    image: np.ndarray, resize: int, crop: int, interpolation: str = "bicubic"
) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[crop, crop, 3]`` uint8: the shorter side resized to
    ``resize`` (the longer one to ``int(resize * long / short)``), then the centre square,
    zero-padded when the image is smaller than the crop (torchvision's rules)."""
    import numpy as np
    from PIL import Image

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}")
    h, w = image.shape[:2]
    size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    picture = Image.fromarray(image)
    if size != (w, h):
        filters = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
        picture = picture.resize(size, filters[interpolation])
    out = np.asarray(picture)
    h, w = out.shape[:2]
    if crop > w or crop > h:
        pad_w, pad_h = max(crop - w, 0), max(crop - h, 0)
        out = np.pad(out, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        h, w = out.shape[:2]
    top, left = round((h - crop) / 2.0), round((w - crop) / 2.0)
    return np.ascontiguousarray(out[top : top + crop, left : left + crop])
