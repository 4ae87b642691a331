"""Synthetic films with known shots and scenes, for tests and benchmarks.

A film is a run of scenes. Each scene happens in one *place*: a procedural panorama (three frames
wide and high) with its own palette and layout or, with ``places="photos"``, a photograph (see
``find_photos``). Each shot frames part of that panorama (zoom 1-2x) and pans slowly across it;
with ``reverse_shot`` a scene alternates two or three fixed camera angles, as a dialogue does.
Cuts are hard, except the optional fades through black and dissolves between scenes.

Every option beyond the original ones (photos, dissolves, grading, ``n_shots``, the transition
mix) is off by default and draws from its own random stream, so the default spec renders the
same pictures it always did.

Frames are rendered with numpy straight into YUV 4:2:0 and piped to ffmpeg (libx264), one shot at
a time, so memory stays bounded however long the film is. Keyframes come every ``gop`` frames
only (x264's own scene-cut keyframes are off), so most cuts do not fall on a keyframe.

Everything is drawn from ``FilmSpec.seed``: the same spec gives the same truth and the same
pictures; with ``threads=1`` and the same ffmpeg, the same file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import subprocess
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from scenecut.data.pictures import (
    Photo,
    ShotPlan,
    even,
    find_photos,
    panorama,
    photo_panorama,
    render_shots,
    resample,
)
from scenecut.errors import OutputError, UsageError
from scenecut.files import replacing
from scenecut.video import ffmpeg_exe

log = logging.getLogger(__name__)


# Bumped whenever the same spec would render different pictures; kept in the truth, so caches of
# generated films can tell they are stale.
GENERATOR_VERSION = 1


AUDIO_RATE = 16_000
_THUMB = (3 * 64, 3 * 36)  # panorama size on which framings are chosen


Progress = Callable[[int, int], None]  # (frames written, total frames)
FrameSink = Callable[[int, bytes], None]  # (frame index, raw yuv420p bytes of that frame)


PLACE_KINDS = ("procedural", "photos")
MAX_SIDE = 4096  # a film's width or height: frames of 4K cinema, not gigabytes each
MAX_FPS = 1000  # ffmpeg's rate parser gives up far above this


@dataclass(frozen=True)
class FilmSpec:
    """What to generate. Ranges are inclusive ``(min, max)``; everything random comes from seed."""

    seed: int = 0
    n_scenes: int = 4
    shots_per_scene: tuple[int, int] = (2, 4)
    shot_frames: tuple[int, int] = (20, 40)
    # When set, scenes are added until the film is exactly this long and n_scenes is ignored.
    total_frames: int | None = None
    width: int = 160
    height: int = 96
    fps: Fraction | int = 25
    reverse_shot: bool = True  # alternate 2-3 fixed camera angles within a scene
    revisit: bool = False  # some later scenes return to an earlier (not the previous) place
    fades: bool = False  # about a third of the scene changes fade through black (>= 1)
    objects: bool = True  # about half the shots have a small moving disc
    audio: bool = False  # an AAC track whose tone changes with the place
    crf: int = 23
    preset: str = "veryfast"
    gop: int | None = None  # keyframe interval in frames [default: 2 s]
    # --- opt-in knobs (their defaults leave the film exactly as without them) ---
    # When set, scenes are added until the film has exactly this many shots (the last scene may
    # then have fewer than shots_per_scene[0]); n_scenes is ignored.
    n_shots: int | None = None
    # "procedural", or "photos": each new place is a different photograph from find_photos()
    # while they last, then procedural. The truth records each place's source.
    places: str = "procedural"
    # With revisit, the chance that a scene returns to an earlier place (one revisit is forced).
    revisit_rate: float = 1 / 3
    # Relative weights (cut, fade through black, dissolve) of each scene change. When set it
    # replaces ``fades``; e.g. (0.6, 0.2, 0.2).
    transitions: tuple[float, float, float] | None = None
    # Length of a fade or dissolve in frames [default: half a second].
    transition_frames: int | None = None
    # Per-shot colour grading strength in [0, 1]: 1 = luma gain +-15%, gamma 0.75-1.25, chroma
    # tint +-8 (on top of the small gain and tint every shot has). 0 = off.
    grading: float = 0.0
    # x264 threads [default: ffmpeg's choice]. Threaded x264 encodes differ from run to run;
    # 1 makes the file itself repeatable byte for byte (the pictures always are).
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fps", Fraction(self.fps))
        object.__setattr__(self, "shots_per_scene", tuple(self.shots_per_scene))
        object.__setattr__(self, "shot_frames", tuple(self.shot_frames))
        if self.transitions is not None:
            object.__setattr__(self, "transitions", tuple(float(v) for v in self.transitions))
        self.check()

    def check(self) -> None:
        """Raise ``UsageError`` for values that cannot make a film."""
        if not (16 <= self.width <= MAX_SIDE and 16 <= self.height <= MAX_SIDE) or (
            self.width % 2 or self.height % 2
        ):
            raise UsageError(
                f"film size {self.width}x{self.height}: use even sizes from 16 to {MAX_SIDE}"
            )
        if not 0 < self.fps <= MAX_FPS:
            raise UsageError(f"fps {self.fps}: must be positive, at most {MAX_FPS}")
        if self.seed < 0:
            raise UsageError(f"seed {self.seed}: must be >= 0")
        lo, hi = self.shots_per_scene
        if not 1 <= lo <= hi:
            raise UsageError(f"shots_per_scene {self.shots_per_scene}: need 1 <= min <= max")
        lo, hi = self.shot_frames
        if not 2 <= lo <= hi:
            raise UsageError(f"shot_frames {self.shot_frames}: need 2 <= min <= max")
        if self.total_frames is None and self.n_scenes < 1:
            raise UsageError(f"n_scenes {self.n_scenes}: must be >= 1")
        if self.total_frames is not None and self.total_frames < 1:
            raise UsageError(f"total_frames {self.total_frames}: must be >= 1")
        if self.n_shots is not None and self.n_shots < 1:
            raise UsageError(f"n_shots {self.n_shots}: must be >= 1")
        if self.n_shots is not None and self.total_frames is not None:
            raise UsageError("n_shots and total_frames both set: give one of them")
        if self.places not in PLACE_KINDS:
            raise UsageError(f"places {self.places!r}: use one of {', '.join(PLACE_KINDS)}")
        if not 0.0 <= self.revisit_rate <= 1.0:
            raise UsageError(f"revisit_rate {self.revisit_rate}: must be in [0, 1]")
        if self.transitions is not None:
            weights = self.transitions
            if len(weights) != 3 or not all(0 <= w < math.inf for w in weights) or not any(weights):
                raise UsageError(
                    f"transitions {self.transitions}: need three weights (cut, fade, dissolve)"
                    " >= 0, not all 0"
                )
            if self.fades:
                raise UsageError(
                    "fades and transitions both set: put the fade weight in transitions"
                )
        if self.transition_frames is not None and self.transition_frames < 2:
            raise UsageError(f"transition_frames {self.transition_frames}: must be >= 2")
        if not 0.0 <= self.grading <= 1.0:
            raise UsageError(f"grading {self.grading}: must be in [0, 1]")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads {self.threads}: must be >= 1")

    @property
    def keyframe_interval(self) -> int:
        return self.gop or max(1, round(2 * self.fps))

    @property
    def transition_length(self) -> int:
        return self.transition_frames or max(2, round(self.fps / 2))


@dataclass
class FilmTruth:
    """The known structure of a generated film. Frames are 0-based; ranges are half-open.

    ``shot_starts[i]`` is the first frame of shot ``i``; a scene starts with its first shot.
    A fade between scenes covers ``fades[k] = (first, end)``: the outgoing shot darkens to a black
    last frame, the incoming shot starts on a black frame and brightens; the truth cut is the
    incoming shot's first frame, the second of the two black frames.

    A dissolve covers ``dissolves[k] = (first, end)``, the same number of frames on each side of
    the cut: each frame mixes the outgoing and incoming pictures, the
    incoming weight rising linearly (before the cut the incoming shot is held on its first frame,
    after it the outgoing one on its last). The truth cut is the middle of the dissolve,
    ``(first + end) // 2``: the incoming shot's first frame, the first in which the incoming
    picture weighs more than half.

    ``place_sources[p]`` says where place ``p`` came from: ``"procedural"``, or a photo's name
    (``"skimage:astronaut"``, ``"wallpaper:<path>"``).
    """

    path: Path
    fps: Fraction
    width: int
    height: int
    frame_count: int
    shot_starts: list[int]
    shot_scene: list[int]  # scene index of each shot
    shot_angle: list[int]  # camera angle of each shot, numbered within its scene
    place_of_scene: list[int]  # place index of each scene, numbered by first appearance
    fades: list[tuple[int, int]]
    seed: int
    generator_version: int = GENERATOR_VERSION
    dissolves: list[tuple[int, int]] = field(default_factory=list)
    place_sources: list[str] = field(default_factory=list)

    @property
    def scene_starts(self) -> list[int]:
        return [s for i, s in enumerate(self.shot_starts) if i == 0 or self._new_scene(i)]

    @property
    def shot_cuts(self) -> list[int]:
        """First frames of every shot but the first: what a shot detector should find."""
        return self.shot_starts[1:]

    def scene_gaps(self) -> list[int]:
        """Scene boundaries as shot-gap indices: gap ``i`` lies between shot ``i`` and ``i + 1``."""
        return [i - 1 for i in range(1, len(self.shot_starts)) if self._new_scene(i)]

    def shot_ranges(self) -> list[tuple[int, int]]:
        return list(zip(self.shot_starts, [*self.shot_starts[1:], self.frame_count], strict=True))

    def scene_ranges(self) -> list[tuple[int, int]]:
        starts = self.scene_starts
        return list(zip(starts, [*starts[1:], self.frame_count], strict=True))

    def _new_scene(self, shot: int) -> bool:
        return self.shot_scene[shot] != self.shot_scene[shot - 1]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["fps"] = f"{self.fps.numerator}/{self.fps.denominator}"
        d["fades"] = [list(f) for f in self.fades]
        d["dissolves"] = [list(f) for f in self.dissolves]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> FilmTruth:
        d = dict(d)
        d["path"] = Path(d["path"])
        d["fps"] = Fraction(d["fps"])
        d["fades"] = [tuple(f) for f in d["fades"]]
        d["dissolves"] = [tuple(f) for f in d.get("dissolves", [])]
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> FilmTruth:
        return cls.from_dict(json.loads(text))


# --- planning (pure: the spec alone decides every shot) ---------------------------------------


def plan_film(spec: FilmSpec, path: Path | str = "") -> FilmTruth:
    """The truth ``make_film`` would produce for ``spec``, without rendering anything."""
    return _truth(spec, Path(path), _plan(spec))


def _truth(spec: FilmSpec, path: Path, shots: list[ShotPlan]) -> FilmTruth:
    places: list[int] = []
    sources: dict[int, str] = {}
    for s in shots:
        if s.scene == len(places):
            places.append(s.place)
        sources.setdefault(s.place, s.photo.name if s.photo else "procedural")
    fades = [
        (s.start - prev.fade_out, s.start + s.fade_in)
        for prev, s in itertools.pairwise(shots)
        if s.fade_in
    ]
    dissolves = [
        (s.start - prev.dissolve_out, s.start + s.dissolve_in)
        for prev, s in itertools.pairwise(shots)
        if s.dissolve_in
    ]
    return FilmTruth(
        path=path,
        fps=Fraction(spec.fps),
        width=spec.width,
        height=spec.height,
        frame_count=shots[-1].start + shots[-1].length,
        shot_starts=[s.start for s in shots],
        shot_scene=[s.scene for s in shots],
        shot_angle=[s.angle for s in shots],
        place_of_scene=places,
        fades=fades,
        seed=spec.seed,
        dissolves=dissolves,
        place_sources=[sources[p] for p in range(len(sources))],
    )


def _plan(spec: FilmSpec) -> list[ShotPlan]:
    rng = np.random.default_rng([spec.seed, 0])
    lengths = _scene_lengths(spec, rng)
    places = _places(len(lengths), spec.revisit, rng, spec.revisit_rate)
    if spec.transitions is None:
        fade_at, dissolve_at = _fade_boundaries(len(lengths), spec.fades, rng), set()
    else:
        fade_at, dissolve_at = _transition_boundaries(len(lengths), spec)
    photos = _place_photos(spec, max(places) + 1)
    grades = np.random.default_rng([spec.seed, 5])
    fade_len = spec.transition_length
    w, h = spec.width, spec.height
    shots: list[ShotPlan] = []
    thumbs: dict[int, np.ndarray] = {}
    start = 0
    dissolve_in = 0  # frames of the next scene's first shot that belong to its dissolve
    for scene, scene_lengths in enumerate(lengths):
        angles = _angle_sequence(len(scene_lengths), spec.reverse_shot, rng)
        photo = photos[places[scene]]
        if places[scene] not in thumbs:
            thumbs[places[scene]] = (
                photo_panorama(photo.path, *_THUMB)
                if photo
                else panorama(spec.seed, places[scene], *_THUMB)
            )
        # Photos are less detailed than they are large: frame wider parts of them.
        framings = _framings(max(angles) + 1, thumbs[places[scene]], rng, 1.5 if photo else 1.0)
        for k, n in enumerate(scene_lengths):
            fx, fy, fw, fh = framings[angles[k]]
            # Pan at most W/200 px a frame and 12% of the width over the shot: far too smooth
            # for a shot detector to see a cut.
            dist = min(rng.uniform(0.03, 0.12) * w, n * w / 200)
            theta = rng.uniform(0, 2 * np.pi)
            dx = even(dist * np.cos(theta))
            dy = even(dist * np.sin(theta) * 0.5)
            # The box the pan sweeps: the framing grown by the pan, shifted back inside.
            bw, bh = fw * (1 + abs(dx) / w), fh * (1 + abs(dy) / h)
            bx = min(max(fx - (bw - fw) / 2, 0.0), 1.0 - bw)
            by = min(max(fy - (bh - fh) / 2, 0.0), 1.0 - bh)
            disc = None
            if spec.objects and rng.random() < 0.5:
                r = max(2, even(h * rng.uniform(0.05, 0.1)))
                travel = min(n * w / 150, w / 2)
                x0 = even(rng.uniform(0, w - 2 * r))
                y0 = even(rng.uniform(0, h - 2 * r))
                x1 = even(np.clip(x0 + rng.uniform(-travel, travel), 0, w - 2 * r))
                y1 = even(np.clip(y0 + rng.uniform(-travel, travel) / 2, 0, h - 2 * r))
                disc = (r, x0, y0, x1, y1)
            last = k == len(scene_lengths) - 1
            fade_in = fade_len - fade_len // 2 if k == 0 and scene in fade_at else 0
            fade_out = fade_len // 2 if last and scene + 1 in fade_at else 0
            fade_in = min(fade_in, n)
            d_in, dissolve_in = (dissolve_in, 0) if k == 0 else (0, 0)
            free = n - fade_in - d_in
            d_out = 0
            if last and scene + 1 in dissolve_at:
                # Half the dissolve on each side of the cut, never more than half the incoming
                # shot (it may need its other half for its own transition out).
                d_out = dissolve_in = min(fade_len // 2, free, lengths[scene + 1][0] // 2)
            gain = rng.uniform(0.92, 1.08)
            tint = (rng.uniform(-4, 4), rng.uniform(-4, 4))
            gamma = 1.0
            if spec.grading:
                g = spec.grading
                gain *= grades.uniform(1 - 0.15 * g, 1 + 0.15 * g)
                gamma = grades.uniform(1 - 0.25 * g, 1 + 0.25 * g)
                tint = (
                    tint[0] + grades.uniform(-8 * g, 8 * g),
                    tint[1] + grades.uniform(-8 * g, 8 * g),
                )
            shots.append(
                ShotPlan(
                    start=start,
                    length=n,
                    scene=scene,
                    place=places[scene],
                    angle=angles[k],
                    box=(bx, by, bw, bh),
                    pan=(dx, dy),
                    gain=gain,
                    tint=tint,
                    disc=disc,
                    fade_in=fade_in,
                    fade_out=min(fade_out, free - d_out),
                    dissolve_in=d_in,
                    dissolve_out=d_out,
                    gamma=gamma,
                    photo=photo,
                )
            )
            start += n
    return shots


def _scene_lengths(spec: FilmSpec, rng: np.random.Generator) -> list[list[int]]:
    lo, hi = spec.shot_frames
    scenes: list[list[int]] = []
    total = count = 0
    open_ended = spec.total_frames is not None or spec.n_shots is not None
    while True:
        if not open_ended and len(scenes) == spec.n_scenes:
            return scenes
        scene: list[int] = []
        for _ in range(int(rng.integers(spec.shots_per_scene[0], spec.shots_per_scene[1] + 1))):
            n = int(rng.integers(lo, hi + 1))
            if spec.total_frames is not None:
                left = spec.total_frames - total
                if left - n < lo:  # too little would be left for another shot: take it all
                    n = left
            scene.append(n)
            total += n
            count += 1
            if total == spec.total_frames or count == spec.n_shots:
                scenes.append(scene)
                return scenes
        scenes.append(scene)


def _places(
    n_scenes: int, revisit: bool, rng: np.random.Generator, rate: float = 1 / 3
) -> list[int]:
    """Place of each scene: a new one, or with ``revisit`` sometimes an earlier non-adjacent one."""
    forced = int(rng.integers(2, n_scenes)) if revisit and n_scenes >= 3 else -1
    places: list[int] = []
    for s in range(n_scenes):
        earlier = sorted({p for p in places[: max(0, s - 1)] if p != places[s - 1]})
        if earlier and (s == forced or rng.random() < rate):
            places.append(int(rng.choice(earlier)))
        else:
            places.append(max(places, default=-1) + 1)
    return places


def _fade_boundaries(n_scenes: int, fades: bool, rng: np.random.Generator) -> set[int]:
    """Scenes entered through a fade: about a third of the scene changes, at least one."""
    if not fades or n_scenes < 2:
        return set()
    chosen = {s for s in range(1, n_scenes) if rng.random() < 1 / 3}
    return chosen or {int(rng.integers(1, n_scenes))}


def _transition_boundaries(n_scenes: int, spec: FilmSpec) -> tuple[set[int], set[int]]:
    """Scenes entered through a fade, and through a dissolve, drawn from ``spec.transitions``."""
    assert spec.transitions is not None
    rng = np.random.default_rng([spec.seed, 4])
    weights = np.array(spec.transitions) / sum(spec.transitions)
    kinds = {s: int(rng.choice(3, p=weights)) for s in range(1, n_scenes)}
    return {s for s, k in kinds.items() if k == 1}, {s for s, k in kinds.items() if k == 2}


def _angle_sequence(n_shots: int, reverse_shot: bool, rng: np.random.Generator) -> list[int]:
    if not reverse_shot or n_shots < 2:
        return list(range(n_shots))
    n_angles = 2 if n_shots <= 3 else int(rng.integers(2, 4))
    seq = [0, 1]
    while len(seq) < n_shots:
        seq.append(int(rng.choice([a for a in range(n_angles) if a != seq[-1]])))
    return seq[:n_shots]


def _framings(
    n: int, thumb: np.ndarray, rng: np.random.Generator, scale: float = 1.0
) -> list[tuple[float, float, float, float]]:
    """``n`` crop windows (panorama fractions, zoom 1-2x) that look clearly different.

    A window is ``scale`` times half the panorama at zoom 1.

    Candidates are compared on ``thumb``, a small render of the panorama, with the measure
    PySceneDetect's content detector uses, so every cut between two of them is detectable.
    """
    th, tw = thumb.shape[:2]
    chosen: list[tuple[float, float, float, float]] = []
    views: list[np.ndarray] = []
    for _ in range(n):
        best, best_view, best_score = None, None, -1.0
        for _try in range(64):
            f = scale * 0.5 / rng.uniform(1.0, 2.0)
            cand = (rng.uniform(0, 1 - f), rng.uniform(0, 1 - f), f, f)
            view = _hsv(resample(thumb, (cand[0] * tw, cand[1] * th, f * tw, f * th), 32, 18))
            diff = min((float(np.abs(view - v).mean()) for v in views), default=255.0)
            overlap = max((_iou(cand, c) for c in chosen), default=0.0)
            score = diff * (1 - overlap)
            if score > best_score:
                best, best_view, best_score = cand, view, score
            if diff >= _MIN_VIEW_DIFFERENCE and overlap < 0.25:
                break
        assert best is not None and best_view is not None
        chosen.append(best)
        views.append(best_view)
    return chosen


# Mean absolute HSV difference (0-255 scale, PySceneDetect's "content_val") wanted between the
# framings of one scene; its adaptive detector needs at least 15.
_MIN_VIEW_DIFFERENCE = 35.0


def _hsv(rgb: np.ndarray) -> np.ndarray:
    """OpenCV-style HSV: hue 0-180, saturation and value 0-255."""
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = hi - lo
    safe = np.where(chroma > 0, chroma, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(
        hi == r, ((g - b) / safe) % 6, np.where(hi == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = np.where(chroma > 0, hue * 30.0, 0.0)
    sat = np.where(hi > 0, chroma / np.where(hi > 0, hi, 1.0), 0.0) * 255.0
    return np.stack([hue, sat, hi * 255.0], axis=-1)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _place_photos(spec: FilmSpec, n_places: int) -> list[Photo | None]:
    """The photograph of each place: distinct ones in a seeded order, then None (procedural)."""
    if spec.places != "photos":
        return [None] * n_places
    library = find_photos()
    if not library:
        log.info("synth: no photographs found, using procedural places")
        return [None] * n_places
    order = np.random.default_rng([spec.seed, 6]).permutation(len(library))
    return [library[int(order[p])] if p < len(library) else None for p in range(n_places)]


def make_film(
    path: Path | str,
    spec: FilmSpec | None = None,
    *,
    progress: Progress | None = None,
    frame_sink: FrameSink | None = None,
    **params,
) -> FilmTruth:
    """Render a film to ``path`` (format from the suffix) and return its truth.

    ``params`` override fields of ``spec`` (or of the default ``FilmSpec``), e.g.
    ``make_film(p, seed=3, n_scenes=5)``. The file appears only when complete. ``frame_sink``
    is called with every frame as rendered, before encoding (see ``yuv420_to_rgb``).
    """
    spec = dataclasses.replace(spec or FilmSpec(), **params)
    path = Path(path)
    shots = _plan(spec)
    truth = _truth(spec, path, shots)
    workdir = tempfile.TemporaryDirectory(prefix="scenecut-synth-")
    with replacing(path) as tmp, workdir:
        audio = Path(workdir.name) / "audio.wav" if spec.audio else None
        if audio:
            _write_audio(audio, spec, shots)
        cmd = _encode_command(spec, tmp, audio)
        log.debug("synth: %s", " ".join(cmd))
        errors = Path(workdir.name) / "ffmpeg.log"
        with open(errors, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
        assert proc.stdin is not None
        try:
            for shot, frames in render_shots(shots, spec.width, spec.height, spec.seed):
                for i, frame in enumerate(frames):
                    if frame_sink:
                        frame_sink(shot.start + i, frame)
                    proc.stdin.write(frame)
                if progress:
                    progress(shot.start + shot.length, truth.frame_count)
            proc.stdin.close()
        except BrokenPipeError:  # ffmpeg stopped early; its log says why
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.wait() != 0:
            lines = [line.strip() for line in errors.read_text(errors="replace").splitlines()]
            tail = "; ".join([line for line in lines if line][-3:])[-800:]  # one line of error
            raise OutputError(f"ffmpeg could not write {path}: {tail or 'no message'}")
    return truth


def _encode_command(spec: FilmSpec, out: Path, audio: Path | None) -> list[str]:
    fps = f"{spec.fps.numerator}/{spec.fps.denominator}"
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{spec.width}x{spec.height}"]
    cmd += ["-framerate", fps, "-i", "pipe:0"]
    if audio:
        cmd += ["-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "48k"]
    cmd += ["-c:v", "libx264", "-preset", spec.preset, "-crf", str(spec.crf)]
    if spec.threads:
        cmd += ["-threads", str(spec.threads)]
    cmd += ["-g", str(spec.keyframe_interval), "-sc_threshold", "0", "-pix_fmt", "yuv420p"]
    return [*cmd, str(out)]


def _write_audio(path: Path, spec: FilmSpec, shots: list[ShotPlan]) -> None:
    """A mono 16-bit WAV: a tone and hum per place, hard-cut with the scenes, written per shot."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE)
        for shot in shots:
            # Sample ranges from frame ranges, rounded the same way on both ends: no drift.
            a = round(shot.start * AUDIO_RATE / spec.fps)
            b = round((shot.start + shot.length) * AUDIO_RATE / spec.fps)
            t = np.arange(a, b) / AUDIO_RATE
            f = 110.0 * 2 ** ((shot.place * 5 % 24) / 12)
            rng = np.random.default_rng([spec.seed, 3, shot.start])
            signal = 0.25 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 1.5 * f * t)
            signal += rng.normal(0, 0.02, size=t.shape)
            wav.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())


def long_film_spec(
    minutes: float = 10.0,
    *,
    width: int = 1280,
    height: int = 720,
    fps: Fraction | int = 24,
    seed: int = 0,
    **params,
) -> FilmSpec:
    """A benchmark film of ``minutes``: 2-8 s shots, 2-7 per scene, some places revisited.

    Encoded with x264 ``ultrafast`` at CRF 30; ``params`` override other ``FilmSpec`` fields.
    """
    fps = Fraction(fps)
    spec = FilmSpec(
        seed=seed,
        total_frames=max(1, round(Fraction(str(minutes)) * 60 * fps)),
        shots_per_scene=(2, 7),
        shot_frames=(round(2 * fps), round(8 * fps)),
        width=width,
        height=height,
        fps=fps,
        revisit=True,
        crf=30,
        preset="ultrafast",
    )
    return dataclasses.replace(spec, **params)


def make_long_film(
    path: Path | str,
    minutes: float = 10.0,
    *,
    progress: Progress | None = None,
    **params,
) -> FilmTruth:
    """Render ``long_film_spec(minutes, **params)`` to ``path`` (10 min of 720p: about 1 min)."""
    return make_film(path, long_film_spec(minutes, **params), progress=progress)


def make_bad_inputs(directory: Path | str) -> dict[str, Path]:
    """Files a video tool must reject or survive, made in ``directory``.

    ``text``: an .mp4 that is plain text. ``empty``: a 0-byte .mp4. ``audio_only``: an .mp4 with
    one AAC stream and no video. ``truncated``: the first 30% of a real 2 s mp4 whose index
    (moov) is at the end, so nothing is readable. ``truncated_faststart``: the same with the index
    first, so the first part of the frames decodes and the rest is missing. ``single_shot``: a 2 s
    video, 50 frames at 25 fps, of one continuous shot.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {name: directory / f"{name}.mp4" for name in _BAD_NAMES}
    out["text"].write_text("This is not a video.\n" * 40)
    out["empty"].write_bytes(b"")
    make_film(out["single_shot"], seed=7, n_scenes=1, shots_per_scene=(1, 1), shot_frames=(50, 50))
    source = directory / ".source.mp4"
    make_film(source, seed=8, n_scenes=2, shots_per_scene=(1, 1), shot_frames=(25, 25), audio=True)
    faststart = directory / ".faststart.mp4"
    _ffmpeg("-i", str(source), "-c", "copy", "-movflags", "+faststart", str(faststart))
    for name, full in (("truncated", source), ("truncated_faststart", faststart)):
        data = full.read_bytes()
        out[name].write_bytes(data[: int(len(data) * 0.3)])
        full.unlink()
    sine = "sine=frequency=440:sample_rate=16000:duration=2"
    _ffmpeg("-f", "lavfi", "-i", sine, "-c:a", "aac", "-b:a", "32k", str(out["audio_only"]))
    return out


_BAD_NAMES = ("text", "empty", "audio_only", "truncated", "truncated_faststart", "single_shot")


def _ffmpeg(*args: str) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OutputError(f"ffmpeg failed: {proc.stderr.strip()[-800:]}")
