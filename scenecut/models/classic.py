"""The classic shot encoder: keyframes in, one vector per shot out, no weights.

``ClassicEncoder`` describes each keyframe by a colour histogram, a coarse colour layout and an
edge-orientation histogram, averaged over the shot's keyframes. The learned encoders
(``effnet.EfficientNetEncoder``) share its ``embed`` signature and its keyframe pooling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


_HUE_BINS, _SAT_BINS, _VAL_BINS, _GRAY_BINS = 12, 3, 3, 8
_GRID = 4
_ORIENT_BINS = 8
# Relative weights of the three parts in the cosine similarity.
_W_HIST, _W_LAYOUT, _W_EDGES = 0.6, 0.3, 0.1


class ClassicEncoder:
    """Training-free colour/layout/texture descriptor of a shot."""

    name = "classic"
    keyframe_height = 64

    def embed(self, keyframes: np.ndarray) -> np.ndarray:
        """``[shots, k, H, W, 3]`` uint8 RGB -> ``[shots, D]`` float32.

        The direction describes the shot; the norm (0..1] is how much picture the shot has:
        near 0 for black, white or plain title-card shots, which say nothing about the place.
        """
        import numpy as np

        n, k = keyframes.shape[:2]
        flat = keyframes.reshape(n * k, *keyframes.shape[2:]).astype(np.float32) / 255.0
        per_frame = np.stack([_describe(image) for image in flat]).reshape(n, k, -1)
        weights = np.array([informativeness(image) for image in flat]).reshape(n, k, 1)
        return pool_keyframes(per_frame, weights)


def pool_keyframes(per_frame: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[shots, k, D]`` keyframe descriptors and ``[shots, k, 1]`` informativeness ->
    ``[shots, D]`` float32: the weighted mean direction, scaled by the shot's most
    informative keyframe (so a black or blank shot gets a norm near 0)."""
    import numpy as np

    direction = _l2((per_frame * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-6))
    return (direction * weights.max(axis=1)).astype(np.float32)


def _describe(rgb: np.ndarray) -> np.ndarray:
    import numpy as np

    parts = (
        (_colour_histogram(rgb), _W_HIST),
        (_layout(rgb), _W_LAYOUT),
        (_edge_orientations(rgb), _W_EDGES),
    )
    return np.concatenate([np.sqrt(w) * _l2(p) for p, w in parts]).astype(np.float32)


def informativeness(rgb: np.ndarray) -> float:
    """Near 0 for black or flat frames (fades, blank or title cards), 1 for ordinary pictures,
    so that fade-in/fade-out keyframes and title cards do not make unrelated shots look alike."""
    import numpy as np

    brightness = min(1.0, float(rgb.mean()) / 0.1)  # the mean luma
    background = np.median(rgb[::2, ::2].reshape(-1, 3), axis=0)
    # A pixel is flat when all three channels are near the background (per-channel planes:
    # numpy reduces over a last axis of 3 slowly).
    near = np.abs(rgb - background) < 0.06
    flat = float((near[..., 0] & near[..., 1] & near[..., 2]).mean())
    busy = min(1.0, max(0.0, (0.985 - flat) / 0.3))
    return 1e-3 + brightness * busy


def _colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """HSV histogram with separate grey bins for unsaturated or dark pixels; square-rooted so
    that cosine similarity is the Bhattacharyya coefficient."""
    import numpy as np

    mx = rgb.max(axis=2)
    mn = rgb.min(axis=2)
    delta = mx - mn
    sat = np.where(mx > 0, delta / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(delta, 1e-6)
    hue = np.where(
        mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = hue / 6.0
    chroma = (sat > 0.15) & (mx > 0.12)
    h = np.minimum((hue * _HUE_BINS).astype(int), _HUE_BINS - 1)
    s = np.minimum(((sat - 0.15) / 0.85 * _SAT_BINS).astype(int), _SAT_BINS - 1)
    v = np.minimum((mx * _VAL_BINS).astype(int), _VAL_BINS - 1)
    colour_bin = (h * _SAT_BINS + s) * _VAL_BINS + v
    grey_bin = _HUE_BINS * _SAT_BINS * _VAL_BINS + np.minimum(
        (mx * _GRAY_BINS).astype(int), _GRAY_BINS - 1
    )
    bins = np.where(chroma, colour_bin, grey_bin).ravel()
    hist = np.bincount(bins, minlength=_HUE_BINS * _SAT_BINS * _VAL_BINS + _GRAY_BINS)
    return np.sqrt(hist / max(1, bins.size))


def _layout(rgb: np.ndarray) -> np.ndarray:
    """Mean opponent colour of a coarse grid of cells, centred on mid-grey."""
    import numpy as np

    h, w = rgb.shape[:2]
    ys = np.linspace(0, h, _GRID + 1).astype(int)
    xs = np.linspace(0, w, _GRID + 1).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    opponent = np.stack([(r + g + b) / 3 - 0.45, (r - g) / 2, (r + g) / 4 - b / 2], axis=-1)
    cells = [
        opponent[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].mean(axis=(0, 1))
        for i in range(_GRID)
        for j in range(_GRID)
    ]
    return np.concatenate(cells)


def _edge_orientations(rgb: np.ndarray) -> np.ndarray:
    """Magnitude-weighted histogram of gradient orientations, whole frame and 2x2 quadrants."""
    import numpy as np

    grey = rgb.mean(axis=2)
    gy, gx = np.gradient(grey)
    mag = np.hypot(gx, gy)
    ang = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * _ORIENT_BINS).astype(int), 7)
    h, w = grey.shape
    regions = [(slice(None), slice(None))] + [
        (slice(i * h // 2, (i + 1) * h // 2), slice(j * w // 2, (j + 1) * w // 2))
        for i in range(2)
        for j in range(2)
    ]
    hists = [
        np.bincount(ang[r].ravel(), weights=mag[r].ravel(), minlength=_ORIENT_BINS) for r in regions
    ]
    return np.sqrt(np.concatenate(hists) / max(1.0, float(mag.sum())))


def _l2(x: np.ndarray) -> np.ndarray:
    import numpy as np

    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-8)
