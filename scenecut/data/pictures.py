"""What the synthetic films look like: places (procedural panoramas or photographs), the camera
views that pan across them, and frames rendered straight into YUV 4:2:0."""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PANORAMA_SCALE = 3  # a place's panorama is this many frames wide and high


def even(x: float) -> int:
    return 2 * round(float(x) / 2)


# --- places ----------------------------------------------------------------------------------

# Colour photographs shipped inside the scikit-image wheel (no download), varied enough that
# framings of one photo look different. Left out: retina (its framings look alike, so cuts
# between them go unseen) and hubble_deep_field (its star noise makes x264 keyframes pulse,
# which detectors take for cuts).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "ihc.png",
)
WALLPAPER_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Photo:
    name: str  # "skimage:astronaut" or "wallpaper:<path>"
    path: Path


@functools.cache
@dataclass(frozen=True)
class ShotPlan:
    """What one planned shot shows: its place, framing, pan, grading and transitions."""

    start: int
    length: int
    scene: int
    place: int
    angle: int
    box: tuple[float, float, float, float]  # panorama region (x, y, w, h) the pan sweeps over
    pan: tuple[int, int]  # frame pixels (even) the view moves over the shot; sign = direction
    gain: float  # luma gain around black
    tint: tuple[float, float]  # added to Cb, Cr
    disc: tuple[int, int, int, int, int] | None  # radius, x0, y0, x1, y1 in frame pixels (even)
    fade_in: int = 0  # frames at the start rising from black
    fade_out: int = 0  # frames at the end falling to black
    dissolve_in: int = 0  # first frames mixed with the previous shot's last frame
    dissolve_out: int = 0  # last frames mixed with the next shot's first frame
    gamma: float = 1.0  # luma gamma of the grading
    photo: Photo | None = None  # the place's photograph; None = procedural panorama


def find_photos() -> tuple[Photo, ...]:
    """The photographs this machine has for ``places="photos"``, in a fixed order.

    scikit-image's bundled colour photos (``SKIMAGE_PHOTOS``) when scikit-image is installed,
    then Debian desktop wallpapers under ``WALLPAPER_DIRS`` (of a KDE theme's many sizes of one
    picture, the largest file). Empty when there are none: films then use procedural places.
    """
    import importlib.util

    photos: list[Photo] = []
    spec = importlib.util.find_spec("skimage")
    if spec and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "data"
        for name in SKIMAGE_PHOTOS:
            if (folder / name).is_file():
                photos.append(Photo(f"skimage:{Path(name).stem}", folder / name))
    seen: set[Path] = set()
    for top in map(Path, WALLPAPER_DIRS):
        if not top.is_dir():
            continue
        best: dict[Path, Path] = {}  # theme folder -> its largest picture
        for path in sorted(top.rglob("*")):
            if path.suffix.lower() not in _PHOTO_SUFFIXES or not path.is_file():
                continue
            real = path.resolve()
            if real in seen or real.stat().st_size < 20_000:
                continue
            seen.add(real)
            # KDE themes hold one picture in many sizes under <theme>/contents/images/.
            parts = path.relative_to(top).parts
            theme = top.joinpath(*parts[: parts.index("contents")]) if "contents" in parts else path
            if theme not in best or real.stat().st_size > best[theme].stat().st_size:
                best[theme] = path
        photos += [Photo(f"wallpaper:{p}", p) for p in sorted(best.values())]
    return tuple(photos)


@functools.lru_cache(maxsize=16)
def photo_panorama(path: Path, width: int, height: int) -> np.ndarray:
    """``path`` centre-cropped to the panorama's shape and resized: float32 RGB in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    scale = min(rgb.width / width, rgb.height / height)
    cw, ch = min(width * scale, rgb.width), min(height * scale, rgb.height)
    left, top = max(0.0, (rgb.width - cw) / 2), max(0.0, (rgb.height - ch) / 2)
    rgb = rgb.resize((width, height), Image.Resampling.BICUBIC, (left, top, left + cw, top + ch))
    pano = np.asarray(rgb, dtype=np.float32) / 255.0
    pano.flags.writeable = False
    return pano


def _palette(seed: int, place: int) -> list[tuple[float, float, float]]:
    """The place's five colours and an accent (last), RGB in [0, 1]."""
    rng = np.random.default_rng([seed, 1, place])
    # Golden-ratio hue steps keep any number of places far apart on the colour wheel; the
    # lightness band cycles too, so neighbouring places differ in both.
    hue = (np.random.default_rng([seed, 1]).uniform() + place * 0.618034) % 1.0
    values = [(0.08, 0.55), (0.3, 0.8), (0.55, 1.0)][(place + seed) % 3]
    # Lightness and saturation spread evenly over the band, so framings of one place differ.
    lightness = rng.permutation(np.linspace(*values, 5))
    saturation = rng.permutation(np.linspace(0.3, 0.95, 5))
    colours = [
        colorsys.hsv_to_rgb((hue + rng.uniform(-0.08, 0.08)) % 1.0, sat, val)
        for sat, val in zip(saturation, lightness, strict=True)
    ]
    colours.append(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.8, 0.85))
    return colours


def panorama(seed: int, place: int, width: int, height: int) -> np.ndarray:
    """The place's panorama: ``[height, width, 3]`` float32 RGB in [0, 1]."""
    rng = np.random.default_rng([seed, 2, place])
    cols = np.array(_palette(seed, place), dtype=np.float32)
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    # Background: a linear gradient between two palette colours along a random direction.
    theta = rng.uniform(0, 2 * np.pi)
    t = xs * np.cos(theta) + ys * np.sin(theta)
    t = (t - t.min()) / (t.max() - t.min())
    img = cols[0] + (cols[1] - cols[0]) * t[..., None]
    # Large shapes in palette colours, an accent one now and then.
    for _ in range(int(rng.integers(24, 36))):
        colour = cols[-1] if rng.random() < 0.12 else cols[int(rng.integers(0, len(cols) - 1))]
        rx = rng.uniform(0.03, 0.15) * width
        ry = rng.uniform(0.03, 0.15) * height
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        x0, x1 = int(max(0, cx - rx)), int(min(width, cx + rx + 1))
        y0, y1 = int(max(0, cy - ry)), int(min(height, cy + ry + 1))
        if x1 <= x0 or y1 <= y0:
            continue
        gx = (np.arange(x0, x1, dtype=np.float32)[None, :] - cx) / rx
        gy = (np.arange(y0, y1, dtype=np.float32)[:, None] - cy) / ry
        ellipse = rng.random() < 0.5
        d = np.sqrt(gx * gx + gy * gy) if ellipse else np.maximum(np.abs(gx), np.abs(gy))
        # A two-pixel soft edge keeps resampled edges from shimmering while the camera pans.
        alpha = np.clip((1.0 - d) * min(rx, ry) / 2, 0.0, 1.0)[..., None]
        region = img[y0:y1, x0:x1]
        region += (colour - region) * alpha
    # Smooth texture: two octaves of value noise, on lightness.
    for cells, amp in ((6, 0.07), (24, 0.035)):
        grid = rng.uniform(-amp, amp, size=(cells + 1, cells * width // height + 1, 1))
        img += resample(
            grid.astype(np.float32), (0, 0, grid.shape[1], grid.shape[0]), width, height
        )
    np.clip(img, 0.0, 1.0, out=img)
    return img


def resample(img: np.ndarray, box: tuple[float, ...], out_w: int, out_h: int) -> np.ndarray:
    """Bilinear resampling of region ``box = (x, y, w, h)`` (pixels) of ``img`` to out_w x out_h."""
    x, y, w, h = box
    ih, iw = img.shape[:2]
    xs = x + (np.arange(out_w, dtype=np.float64) + 0.5) * (w / out_w) - 0.5
    ys = y + (np.arange(out_h, dtype=np.float64) + 0.5) * (h / out_h) - 0.5
    xi = np.clip(np.floor(xs).astype(np.intp), 0, iw - 2)
    yi = np.clip(np.floor(ys).astype(np.intp), 0, ih - 2)
    fx = np.clip(xs - xi, 0, 1).astype(np.float32)[None, :, None]
    fy = np.clip(ys - yi, 0, 1).astype(np.float32)[:, None, None]
    lo, hi = xi.min(), xi.max() + 2
    rows = img[yi, lo:hi] * (1 - fy) + img[yi + 1, lo:hi] * fy
    xi = xi - lo
    return rows[:, xi] * (1 - fx) + rows[:, xi + 1] * fx


# --- rendering -------------------------------------------------------------------------------

# BT.601 limited range, what decoders assume for untagged yuv420p.
_RGB_TO_YUV = np.array(
    [[65.481, -37.797, 112.0], [128.553, -74.203, -93.786], [24.966, 112.0, -18.214]],
    dtype=np.float32,
)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def _to_yuv(rgb: np.ndarray) -> np.ndarray:
    return rgb @ _RGB_TO_YUV + _YUV_OFFSET


def _canvas(pano: np.ndarray, shot: ShotPlan, w: int, h: int) -> tuple[np.ndarray, ...]:
    """The shot's view of the panorama with room to pan: Y, Cb, Cr planes as uint8."""
    ph, pw = pano.shape[:2]
    bx, by, bw, bh = shot.box
    cw, ch = w + abs(shot.pan[0]), h + abs(shot.pan[1])
    yuv = _to_yuv(resample(pano, (bx * pw, by * ph, bw * pw, bh * ph), cw, ch))
    if shot.gamma != 1.0:
        yuv[..., 0] = 16 + 219 * np.clip((yuv[..., 0] - 16) / 219, 0, 1) ** shot.gamma
    yuv[..., 0] = 16 + (yuv[..., 0] - 16) * shot.gain
    yuv[..., 1] += shot.tint[0]
    yuv[..., 2] += shot.tint[1]
    luma = yuv[..., 0]
    chroma = yuv[..., 1:].reshape(ch // 2, 2, cw // 2, 2, 2).mean(axis=(1, 3))
    planes = (luma, chroma[..., 0], chroma[..., 1])
    return tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes)


def _disc_masks(r: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.arange(2 * r) - r + 0.5
    luma = g[None, :] ** 2 + g[:, None] ** 2 <= r * r
    c = np.arange(r) - r / 2 + 0.5
    chroma = c[None, :] ** 2 + c[:, None] ** 2 <= r * r / 4
    return luma, chroma


class _View:
    """One shot's pictures: any frame index, clamped to the shot (held before and after it)."""

    def __init__(self, shot: ShotPlan, pano: np.ndarray, accent: tuple[int, ...], w: int, h: int):
        self.shot, self.accent, self.w, self.h = shot, accent, w, h
        self.canvas = _canvas(pano, shot, w, h)
        self.masks = _disc_masks(shot.disc[0]) if shot.disc else None

    def planes(self, i: int) -> list[np.ndarray]:
        """Y, Cb, Cr of frame ``i`` (may be views into the canvas: do not modify)."""
        shot = self.shot
        dx, dy = shot.pan
        n = shot.length
        t = min(max(i / (n - 1), 0.0), 1.0) if n > 1 else 0.0
        if shot.photo is None:
            ox = even(t * abs(dx)) if dx >= 0 else abs(dx) - even(t * abs(dx))
            oy = even(t * abs(dy)) if dy >= 0 else abs(dy) - even(t * abs(dy))
            planes = self._crop(ox, oy)
        else:
            planes = self._subpixel_crop(t)
        level = 1.0
        if 0 <= i < shot.fade_in:
            level = i / shot.fade_in
        elif n - shot.fade_out <= i < n:
            level = (n - 1 - i) / shot.fade_out
        if self.masks is not None or level < 1.0:
            planes = [p.copy() for p in planes]
        if self.masks is not None:
            r, x0, y0, x1, y1 = shot.disc
            x, y = even(x0 + (x1 - x0) * t), even(y0 + (y1 - y0) * t)
            planes[0][y : y + 2 * r, x : x + 2 * r][self.masks[0]] = self.accent[0]
            for p, value in zip(planes[1:], self.accent[1:], strict=True):
                p[y // 2 : y // 2 + r, x // 2 : x // 2 + r][self.masks[1]] = value
        if level < 1.0:
            for p, zero in zip(planes, (16, 128, 128), strict=True):
                p[...] = np.rint(zero + (p.astype(np.float32) - zero) * level).astype(np.uint8)
        return planes

    def _crop(self, ox: int, oy: int) -> list[np.ndarray]:
        cy_, cb_, cr_ = self.canvas
        w, h = self.w, self.h
        return [
            cy_[oy : oy + h, ox : ox + w],
            cb_[oy // 2 : (oy + h) // 2, ox // 2 : (ox + w) // 2],
            cr_[oy // 2 : (oy + h) // 2, ox // 2 : (ox + w) // 2],
        ]

    def _subpixel_crop(self, t: float) -> list[np.ndarray]:
        """The crop at fractional offsets: detailed photos pan smoothly, not in 2 px jumps.

        Procedural places keep whole even steps: they are smooth enough, and old films stay the
        same.
        """
        dx, dy = self.shot.pan
        x = t * abs(dx) if dx >= 0 else abs(dx) - t * abs(dx)
        y = t * abs(dy) if dy >= 0 else abs(dy) - t * abs(dy)
        x0, y0 = 2 * int(x // 2), 2 * int(y // 2)  # pans are even, so x0 <= abs(dx)
        x1, y1 = min(x0 + 2, abs(dx)), min(y0 + 2, abs(dy))
        fx = (x - x0) / 2 if x1 > x0 else 0.0
        fy = (y - y0) / 2 if y1 > y0 else 0.0
        corners = [
            (self._crop(x0, y0), (1 - fx) * (1 - fy)),
            (self._crop(x1, y0), fx * (1 - fy)),
            (self._crop(x0, y1), (1 - fx) * fy),
            (self._crop(x1, y1), fx * fy),
        ]
        planes = []
        for k in range(3):
            acc = sum(c[k].astype(np.float32) * wgt for c, wgt in corners if wgt > 0)
            planes.append(np.rint(acc).astype(np.uint8))
        return planes


def _mix(a: list[np.ndarray], b: list[np.ndarray], weight: float) -> list[np.ndarray]:
    """``a`` cross-faded towards ``b`` by ``weight`` (0 = a, 1 = b)."""
    return [
        np.rint(p.astype(np.float32) * (1 - weight) + q.astype(np.float32) * weight).astype(
            np.uint8
        )
        for p, q in zip(a, b, strict=True)
    ]


def _shot_frames(
    view: _View, before: Callable[[], _View] | None, after: Callable[[], _View] | None
) -> Iterator[bytes]:
    """Each frame of ``view``'s shot as the bytes of its Y, Cb and Cr planes.

    ``before`` and ``after`` give the neighbouring shots' views, needed only for dissolves.
    """
    shot = view.shot
    n = shot.length
    for i in range(n):
        planes = view.planes(i)
        if before is not None and i < shot.dissolve_in:
            # Incoming half of a dissolve of 2 * dissolve_in frames: this frame is at position
            # dissolve_in + i; the outgoing shot is held on its last frame.
            prev = before()
            weight = (shot.dissolve_in + i + 0.5) / (2 * shot.dissolve_in)
            planes = _mix(prev.planes(prev.shot.length - 1), planes, weight)
        elif after is not None and i >= n - shot.dissolve_out:
            k = i - (n - shot.dissolve_out)  # position in the dissolve
            weight = (k + 0.5) / (2 * shot.dissolve_out)
            planes = _mix(planes, after().planes(0), weight)
        yield b"".join(p.tobytes() for p in planes)


def render_shots(
    shots: list[ShotPlan], width: int, height: int, seed: int
) -> Iterator[tuple[ShotPlan, Iterator[bytes]]]:
    """Each shot with an iterator over its frames as raw yuv420p bytes (procedural places
    drawn from ``seed``)."""
    w, h = width, height
    panos: dict[int, tuple[np.ndarray, tuple[int, ...]]] = {}
    views: dict[int, _View] = {}

    def place(shot: ShotPlan) -> tuple[np.ndarray, tuple[int, ...]]:
        if shot.place not in panos:
            panos.clear()  # keep the current place only (a dissolve adds the next one)
            if shot.photo:
                pano = photo_panorama(shot.photo.path, PANORAMA_SCALE * w, PANORAMA_SCALE * h)
            else:
                pano = panorama(seed, shot.place, PANORAMA_SCALE * w, PANORAMA_SCALE * h)
            yuv = _to_yuv(np.array(_palette(seed, shot.place)[-1], np.float32))
            panos[shot.place] = pano, tuple(int(v) for v in np.clip(np.rint(yuv), 0, 255))
        return panos[shot.place]

    def view(k: int) -> _View:
        if k not in views:
            views[k] = _View(shots[k], *place(shots[k]), w, h)
        return views[k]

    for k, shot in enumerate(shots):
        for old in [j for j in views if j < k - 1]:
            del views[old]
        before = functools.partial(view, k - 1) if shot.dissolve_in else None
        after = functools.partial(view, k + 1) if shot.dissolve_out else None
        current = view(k)
        yield shot, _shot_frames(current, before, after)


def yuv420_to_rgb(frame: bytes, width: int, height: int) -> np.ndarray:
    """A raw yuv420p frame (BT.601 limited range, as rendered) as ``[H, W, 3]`` uint8 RGB.

    Chroma is upsampled by repeating each sample 2x2.
    """
    y_size, c_size = width * height, (width // 2) * (height // 2)
    data = np.frombuffer(frame, dtype=np.uint8)
    luma = data[:y_size].reshape(height, width).astype(np.float32)
    chroma = [
        data[y_size + k * c_size : y_size + (k + 1) * c_size]
        .reshape(height // 2, width // 2)
        .repeat(2, axis=0)
        .repeat(2, axis=1)
        .astype(np.float32)
        for k in range(2)
    ]
    yuv = np.stack([luma, *chroma], axis=-1) - _YUV_OFFSET
    rgb = yuv @ np.linalg.inv(_RGB_TO_YUV)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
