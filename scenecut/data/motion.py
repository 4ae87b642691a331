"""A synthetic action corpus whose classes differ only in motion, in the action-tree layout.

Each video shows one textured object on a textured background. The class says how the object
moves: left, right, up, down, clockwise, anticlockwise, towards or away from the camera
(classes 1-8), and the same eight twice as fast (classes 9-16). Everything else is drawn at
random per video: the textures and colours, the frame count, where the object is, its angle and
size. Where an attribute does not move, its value is drawn from the distribution the moving
classes give it at a random frame (the start of a motion is drawn so that the motion stays in
the frame), so the object's place, angle and size in one frame do not tell the class; only
frames together do, which is what a 3D encoder has to learn.

Three options leave *motion* as what tells one video from another, for self-supervised
instance discrimination on a CPU budget (``bench/saccade_synth.py``): ``textures=N`` draws every
video's object texture and background from a pool of ``N`` shared by the corpus (0, the default:
a new one per video), so appearance no longer tells the videos apart; ``flip_invariant`` uses
classes that a horizontal flip (an augmentation of pre-training and of the downstream protocol)
leaves as they are: left and right become one class ``MoveSideways`` whose direction is drawn
per video, and the two rotations one class ``Rotate``; ``speed=S`` multiplies every step, so
that short, small clips show the motion (videos then have at most ``1 + 63 / S`` frames). The
defaults render what they rendered before these options existed, byte for byte.

``make_actions(out)`` writes, all decided by one seed::

    OUT/jpegs_256/v_<Class>_g<NN>_c01/frame000001.jpg ...   (171x128 by default)
    OUT/split/classInd.txt, trainlist01.txt, testlist01.txt  (UCF101's formats; 30% test)
    OUT/scan_idx_7/<video>.txt                               (with ``scanpaths``)
    OUT/actions.json                                         generator version and settings

Video ``i`` of class ``c`` depends only on the seed, ``c`` and ``i``; each is written
atomically, so re-running the same command resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.data.actions import (
    CLASS_FILE,
    FRAME_NAME,
    FRAMES_DIR,
    SPLIT_DIR,
    list_name,
    video_folders,
)
from scenecut.errors import OutputError, UsageError
from scenecut.files import atomic_write, make_dir, staged_folder, write_json

if TYPE_CHECKING:
    import numpy as np

ACTIONS_FILE = "actions.json"
FORMAT = "scenecut-synth-actions"
GENERATOR_VERSION = 1
MAX_FRAMES = 64  # the fast motions stay in a 128-px frame for this long (at speed 1)
MAX_SPEED = 8.0
_NAME_RE = re.compile(r"v_[A-Za-z]+_g\d+_c01")

# (class name, what moves, direction); classes 9-16 are 1-8 at twice the speed
MOTIONS = (
    ("MoveLeft", "x", -1),
    ("MoveRight", "x", 1),
    ("MoveUp", "y", -1),
    ("MoveDown", "y", 1),
    ("RotateClockwise", "angle", 1),  # image y points down: a growing angle turns clockwise
    ("RotateAnticlockwise", "angle", -1),
    ("ZoomIn", "size", 1),
    ("ZoomOut", "size", -1),
)
# ``flip_invariant``'s classes: a mirrored video keeps its class. Direction 0: either way,
# drawn per video. Classes 7-12 are 1-6 at twice the speed.
FLIP_INVARIANT_MOTIONS = (
    ("MoveUp", "y", -1),
    ("MoveDown", "y", 1),
    ("ZoomIn", "size", 1),
    ("ZoomOut", "size", -1),
    ("MoveSideways", "x", 0),
    ("Rotate", "angle", 0),
)
# Per frame at normal speed, for a frame whose shorter side is 128 px: pixels, radians, and the
# log of the size factor.
STEPS = {"x": 1.0, "y": 1.0, "angle": math.radians(4), "size": math.log(1.015)}
SIZES = (12.0, 84.0)  # object side in pixels for a 128-px shorter side (zoom ranges over 7x)
TEXTURE = 48  # object texture resolution
MAX_TEXTURES = 1000
_POOL = 1000  # seeds appearance k of the pool as [seed, _POOL, k]; videos use [seed, c < 16, i]


@dataclass(frozen=True)
class ActionSpec:
    classes: int = 8
    videos_per_class: int = 6
    frames: tuple[int, int] = (24, 40)  # MIN,MAX frames of a video
    width: int = 171
    height: int = 128
    seed: int = 0
    test_share: float = 0.3
    quality: int = 90
    textures: int = 0  # appearances shared by all videos (object texture + background); 0: own
    flip_invariant: bool = False  # FLIP_INVARIANT_MOTIONS instead of MOTIONS
    speed: float = 1.0  # every motion's step (STEPS) times this

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(self.frames))
        most = 2 * len(self.motions)
        if not 2 <= self.classes <= most:
            kind = " with --flip-invariant" if self.flip_invariant else ""
            raise UsageError(f"--classes must be 2 to {most}{kind}, got {self.classes}")
        if self.videos_per_class < 1:
            raise UsageError(f"--videos-per-class must be at least 1, got {self.videos_per_class}")
        if not 0 < self.speed <= MAX_SPEED:
            raise UsageError(f"--speed must be above 0 and at most {MAX_SPEED:g}, got {self.speed}")
        low, high = self.frames
        most = self.max_frames
        if not 2 <= low <= high <= most:
            raise UsageError(
                f"--frames {low},{high}: need 2 <= MIN <= MAX <= {most} "
                f"{f'at --speed {self.speed:g} ' if self.speed != 1 else ''}"
                "(a 16-frame clip needs 17 frames)"
            )
        if not (32 <= self.width <= 1024 and 32 <= self.height <= 1024):
            raise UsageError(f"--size {self.width}x{self.height}: each side must be 32 to 1024")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        if not 0 <= self.test_share < 1:
            raise UsageError(f"test share must be in [0, 1), got {self.test_share}")
        if not 0 <= self.textures <= MAX_TEXTURES:
            raise UsageError(f"--textures must be 0 to {MAX_TEXTURES}, got {self.textures}")

    @property
    def max_frames(self) -> int:
        """The longest video whose fast motions stay in the frame at this ``speed``."""
        return 1 + math.floor((MAX_FRAMES - 1) / self.speed + 1e-9)

    @property
    def motions(self) -> tuple[tuple[str, str, int], ...]:
        """(class name, what moves, direction) of the first half of the classes."""
        return FLIP_INVARIANT_MOTIONS if self.flip_invariant else MOTIONS

    def class_name(self, c: int) -> str:
        name = self.motions[c % len(self.motions)][0]
        return name if c < len(self.motions) else f"{name}Fast"

    def video_name(self, c: int, i: int) -> str:
        return f"v_{self.class_name(c)}_g{i + 1:02d}_c01"

    def is_test(self, i: int) -> bool:
        n = self.videos_per_class
        tests = max(1, round(n * self.test_share)) if n >= 2 and self.test_share else 0
        return i >= n - tests


@dataclass(frozen=True)
class ObjectTrack:
    """Where the object is in each frame: centre (px), angle (radians), side (px)."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    size: np.ndarray


def _track(
    rng: np.random.Generator, low: float, high: float, step: float, n: int, moving: bool
) -> np.ndarray:
    """``n`` values from ``low`` to ``high`` moving by ``step`` a frame, or, not ``moving``, the
    value of such a motion (either way) at a random frame, held."""
    import numpy as np

    if not moving:
        step *= rng.choice((-1.0, 1.0))
    travel = step * (n - 1)
    start = rng.uniform(low + max(-travel, 0.0), high - max(travel, 0.0))
    values = start + step * np.arange(n)
    return values if moving else np.full(n, values[rng.integers(n)])


def plan_video(spec: ActionSpec, c: int, i: int) -> tuple[ObjectTrack, np.random.Generator]:
    """The object's track in video ``i`` of class ``c``, and the generator that draws the rest."""
    import numpy as np

    rng = np.random.default_rng([spec.seed, c, i])
    n = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
    _, moves, sign = spec.motions[c % len(spec.motions)]
    if sign == 0:
        sign = int(rng.choice((-1, 1)))
    speed = sign * (2.0 if c >= len(spec.motions) else 1.0)
    scale = min(spec.width, spec.height) / 128
    values = {}
    for what, low, high in (
        ("x", 0.0, spec.width),
        ("y", 0.0, spec.height),
        ("size", math.log(SIZES[0] * scale), math.log(SIZES[1] * scale)),
    ):
        step = STEPS[what] * (scale if what in "xy" else 1.0) * spec.speed
        moving = what == moves
        values[what] = _track(rng, low, high, step * speed if moving else step, n, moving)
    turn = STEPS["angle"] * np.arange(n) * (moves == "angle") * speed * spec.speed
    angle = rng.uniform(0, 2 * math.pi) + turn
    return ObjectTrack(values["x"], values["y"], angle, np.exp(values["size"])), rng


def _smooth_noise(rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]):
    """Low-frequency colour noise: a few random cells resized to ``size`` (w, h), float RGB."""
    import numpy as np
    from PIL import Image

    small = rng.integers(0, 256, (cells[1], cells[0], 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), np.float64)


def _background(rng: np.random.Generator, spec: ActionSpec) -> np.ndarray:

    base = rng.uniform(40, 200, 3)
    texture = _smooth_noise(rng, (4, 3), (spec.width, spec.height)) - 128
    fine = rng.normal(0, 6, (spec.height, spec.width, 1))
    return base + 0.4 * texture + fine


def _object_texture(rng: np.random.Generator) -> np.ndarray:
    """A ``TEXTURE``-square pattern (checks, stripes or blobs in two colours) with a dark rim,
    never symmetric under a quarter turn, so that rotation shows."""
    import numpy as np

    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    while np.abs(a - b).sum() < 150:
        b = rng.uniform(0, 255, 3)
    v, u = np.mgrid[0:TEXTURE, 0:TEXTURE] / TEXTURE
    kind = rng.integers(3)
    if kind == 0:
        k = rng.integers(3, 7)
        mix = ((u * k).astype(int) + (v * (k + 1)).astype(int)) % 2
    elif kind == 1:
        theta = rng.uniform(0, math.pi)
        mix = (np.sin((u * math.cos(theta) + v * math.sin(theta)) * rng.uniform(10, 25)) > 0) * 1.0
    else:
        mix = _smooth_noise(rng, (4, 4), (TEXTURE, TEXTURE))[..., 0] > 128
    texture = np.where(mix[..., None] > 0.5, a, b)
    texture += 0.3 * (_smooth_noise(rng, (3, 3), (TEXTURE, TEXTURE)) - 128)
    texture[:, : TEXTURE // 6] *= 0.6  # one darker side: no quarter-turn symmetry
    rim = TEXTURE // 16
    texture[:rim], texture[-rim:], texture[:, :rim], texture[:, -rim:] = 20, 20, 20, 20
    return texture


def render_video(spec: ActionSpec, c: int, i: int) -> tuple[np.ndarray, ObjectTrack]:
    """Video ``i`` of class ``c`` as ``[frames, height, width, 3]`` uint8 RGB, and its track."""
    import numpy as np

    track, rng = plan_video(spec, c, i)
    look = rng
    if spec.textures:  # appearance k of the shared pool, whatever the video
        look = np.random.default_rng([spec.seed, _POOL, int(rng.integers(spec.textures))])
    background = _background(look, spec)
    texture = _object_texture(look)
    ys, xs = np.mgrid[0 : spec.height, 0 : spec.width] + 0.5
    frames = np.empty((len(track.x), spec.height, spec.width, 3), dtype=np.uint8)
    for t in range(len(track.x)):
        dx, dy = xs - track.x[t], ys - track.y[t]
        cos, sin, side = math.cos(track.angle[t]), math.sin(track.angle[t]), track.size[t]
        u = (cos * dx + sin * dy) / side + 0.5
        v = (-sin * dx + cos * dy) / side + 0.5
        inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
        image = background.copy()
        image[inside] = texture[
            (v[inside] * TEXTURE).astype(int).clip(0, TEXTURE - 1),
            (u[inside] * TEXTURE).astype(int).clip(0, TEXTURE - 1),
        ]
        image += rng.normal(0, 2, image.shape[:2])[..., None]  # sensor noise
        frames[t] = image.clip(0, 255).astype(np.uint8)
    return frames, track


# --- writing the corpus ----------------------------------------------------------------------


@dataclass
class ActionCorpusSummary:
    root: Path
    classes: int
    videos: int
    written: int  # videos rendered by this run (the others were already there)
    frames: int
    splits: dict[str, int]  # videos per list
    scanpaths: int | None  # scanpath files written by this run; None without ``scanpaths``


def make_actions(
    out: str | Path,
    spec: ActionSpec | None = None,
    *,
    overwrite: bool = False,
    scanpaths: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **params,
) -> ActionCorpusSummary:
    """Write the corpus ``spec`` (``params`` override its fields) to ``out``.

    Videos already in ``out`` are kept unless ``overwrite``; with ``scanpaths`` the substitute
    scanpaths (``scenecut.data.scanpaths``) are written too. ``OutputError`` when ``out`` holds
    something else: a folder that is not this corpus, or this corpus made with other settings.
    """
    spec = dataclasses.replace(spec or ActionSpec(), **params)
    out = Path(out)
    settings = {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(spec)}
    settings["frames"] = list(spec.frames)
    _check_out(out, settings, overwrite)
    make_dir(out, "corpus folder", "choose another --out")
    names = {
        (c, i): spec.video_name(c, i)
        for c in range(spec.classes)
        for i in range(spec.videos_per_class)
    }
    if overwrite:
        _remove_stale(out, set(names.values()))
    write_json(out / ACTIONS_FILE, {"format": FORMAT, "complete": False, "settings": settings})
    written = frames = 0
    for done, ((c, i), name) in enumerate(names.items(), 1):
        folder = out / FRAMES_DIR / name
        if overwrite or not folder.is_dir():
            _write_video(out, name, render_video(spec, c, i)[0], spec.quality)
            written += 1
        frames += sum(1 for _ in os.scandir(folder))
        if progress:
            progress(done, len(names))
    splits = _write_lists(out, spec, names)
    scans = None
    if scanpaths:
        from scenecut.data.scanpaths import write_scanpaths

        scans = write_scanpaths(out, overwrite=overwrite, workers=1).written
    write_json(out / ACTIONS_FILE, {"format": FORMAT, "complete": True, "settings": settings})
    return ActionCorpusSummary(out, spec.classes, len(names), written, frames, splits, scans)


def _write_video(out: Path, name: str, frames: np.ndarray, quality: int) -> None:
    """A frame folder that appears complete or not at all."""
    from PIL import Image

    with staged_folder(out / FRAMES_DIR / name) as partial:
        for t, image in enumerate(frames):
            Image.fromarray(image).save(partial / FRAME_NAME.format(t + 1), quality=quality)


def _write_lists(out: Path, spec: ActionSpec, names: dict[tuple[int, int], str]) -> dict:
    classes = "".join(f"{c + 1} {spec.class_name(c)}\n" for c in range(spec.classes))
    train, test = [], []  # UCF101's formats: train lines end in the class index, test lines don't
    for (c, i), name in names.items():
        entry = f"{spec.class_name(c)}/{name}.avi"
        if spec.is_test(i):
            test.append(entry)
        else:
            train.append(f"{entry} {c + 1}")
    atomic_write(out / CLASS_FILE, classes, overwrite=True)
    for which, lines in (("train", train), ("test", test)):
        text = "".join(f"{line}\n" for line in lines)
        atomic_write(out / SPLIT_DIR / list_name(which, 1), text, overwrite=True)
    return {list_name("train", 1): len(train), list_name("test", 1): len(test)}


def _check_out(out: Path, settings: dict, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; give a folder for the corpus")
    meta = out / ACTIONS_FILE
    if meta.is_file():
        try:
            old = json.loads(meta.read_text())
        except (OSError, ValueError):
            old = {}
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            if not overwrite:
                raise OutputError(f"{meta} is not a scenecut action corpus file; use another --out")
        elif old.get("settings") != settings and not overwrite:
            raise OutputError(
                f"{out} holds an action corpus made with other settings; use another --out, or "
                "--overwrite to replace it"
            )
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(
            f"{out} is not empty and holds no {ACTIONS_FILE}; use an empty or new folder, "
            "or --overwrite"
        )


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Videos of an earlier, other corpus in ``out`` that the new one would leave behind."""
    if not (out / ACTIONS_FILE).is_file():
        return  # not ours: leave foreign folders alone
    for name in video_folders(out / FRAMES_DIR):
        if _NAME_RE.fullmatch(name) and name not in keep:
            shutil.rmtree(out / FRAMES_DIR / name, ignore_errors=True)
            for scans in out.glob("scan_idx_*"):
                (scans / f"{name}.txt").unlink(missing_ok=True)
