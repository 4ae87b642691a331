"""A synthetic scene-segmentation benchmark: many generated films, as videos and as a MovieNet tree.

``make_corpus(out)`` renders ``movies`` films with ``scenecut.data.synth`` and writes, all decided
by one seed::

    OUT/videos/<id>.mp4            the film
    OUT/videos/<id>.json           its FilmTruth (path relative to OUT); written last, so a film
                                   whose truth exists is complete
    OUT/240P_frames/, scene318/,   the same films in the MovieNet-SSeg layout (``scenecut.data``):
    OUT/anno/                      keyframes = first, middle, last frame of each shot taken from
                                   the rendered frames (no decode), label 1 = scene ends after
                                   the shot, splits train/val/test = 70/15/15 (at least one film
                                   each from 3 films on)
    OUT/corpus.json                generator version, seed, knobs, photo source, splits

Film ``i`` depends only on the seed, ``i`` and the knobs, so re-running the same command skips
finished films, and a larger ``movies`` extends a corpus (its splits are then re-drawn).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from scenecut.data.tree import FRAMES_DIR, LABELS_DIR, SHOTS_DIR
from scenecut.data.writer import MovieEntry, MovieWriter, write_annotations
from scenecut.errors import OutputError, UsageError
from scenecut.files import atomic_write, write_json
from scenecut.keyframes import keyframe_indices

log = logging.getLogger(__name__)


CORPUS_FILE = "corpus.json"
VIDEOS_DIR = "videos"
FORMAT = "scenecut-synth-corpus"
SPLIT_RATIO = {"train": 0.70, "val": 0.15, "test": 0.15}


Progress = Callable[[int, int], None]  # (films done, films in all)


@dataclass(frozen=True)
class CorpusSpec:
    """The knobs of a corpus. Every film gets its own seed drawn from ``seed`` and its index.

    Difficulty: fewer ``shots_per_scene`` and more ``revisit_rate`` (scenes returning to an
    earlier place) make scenes harder to tell apart; fades and dissolves in ``transitions``
    (weights of cut, fade through black, dissolve at each scene change) hide the scene cuts from
    shot detectors; ``grading`` varies colour from shot to shot within a scene.
    """

    movies: int = 100
    shots_per_movie: int = 64
    seed: int = 0
    shots_per_scene: tuple[int, int] = (2, 6)  # so about 16 scenes a film by default
    shot_frames: tuple[int, int] = (20, 40)
    revisit_rate: float = 1 / 3  # 0 = every scene in a new place
    transitions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # cut, fade, dissolve
    grading: float = 0.3
    places: str = "photos"  # or "procedural"; photos fall back to procedural when there are none
    width: int = 320
    height: int = 180
    fps: int = 25
    crf: int = 20  # below synth's 23: keyframe pulsing on detailed photos can look like a cut

    def __post_init__(self) -> None:
        object.__setattr__(self, "shots_per_scene", tuple(self.shots_per_scene))
        object.__setattr__(self, "shot_frames", tuple(self.shot_frames))
        object.__setattr__(self, "transitions", tuple(float(v) for v in self.transitions))
        if self.movies < 1:
            raise UsageError(f"movies {self.movies}: must be >= 1")
        if self.shots_per_movie < 1:
            raise UsageError(f"shots_per_movie {self.shots_per_movie}: must be >= 1")
        if self.seed < 0:
            raise UsageError(f"seed {self.seed}: must be >= 0")
        self.film_spec(0)  # FilmSpec checks the rest

    def film_spec(self, index: int):
        """The ``FilmSpec`` of film ``index``."""
        import numpy as np

        from scenecut.data.synth import FilmSpec

        seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        return FilmSpec(
            seed=seed,
            n_shots=self.shots_per_movie,
            shots_per_scene=self.shots_per_scene,
            shot_frames=self.shot_frames,
            width=self.width,
            height=self.height,
            fps=self.fps,
            revisit=self.revisit_rate > 0,
            revisit_rate=self.revisit_rate,
            transitions=self.transitions,
            grading=self.grading,
            places=self.places,
            crf=self.crf,
            threads=1,  # films are encoded in parallel anyway; one thread = repeatable files
        )

    def video_id(self, index: int) -> str:
        return f"synth{index:0{max(4, len(str(self.movies - 1)))}d}"

    def knobs(self) -> dict:
        """Everything but ``movies``: what a corpus must share with the run that resumes it."""
        d = dataclasses.asdict(self)
        del d["movies"]
        d["shots_per_scene"] = list(self.shots_per_scene)
        d["shot_frames"] = list(self.shot_frames)
        d["transitions"] = list(self.transitions)
        return d


@dataclass
class CorpusSummary:
    root: Path
    movies: int
    rendered: int  # films made by this run (the others were already there)
    shots: int
    scenes: int
    frames: int
    splits: dict[str, int]  # films per split
    photo_source: str
    disk_bytes: int


def split_ids(ids: list[str], seed: int) -> dict[str, list[str]]:
    """Deterministic 70/15/15 train/val/test split; each split non-empty from 3 films on."""
    import numpy as np

    order = [ids[i] for i in np.random.default_rng([seed, 7]).permutation(len(ids))]
    n = len(ids)
    n_val = max(1, round(n * SPLIT_RATIO["val"])) if n >= 3 else 0
    n_test = max(1, round(n * SPLIT_RATIO["test"])) if n >= 2 else 0
    parts = {
        "train": order[: n - n_val - n_test],
        "val": order[n - n_val - n_test : n - n_test],
        "test": order[n - n_test :],
    }
    return {name: sorted(part) for name, part in parts.items()}


def photo_source(spec: CorpusSpec) -> dict:
    """Where the corpus's photographed places come from, for ``corpus.json``."""
    from scenecut.data.pictures import find_photos

    photos = find_photos() if spec.places == "photos" else ()
    kinds = sorted({p.name.split(":")[0] for p in photos})
    text = "procedural only" if not photos else f"{len(photos)} photos ({', '.join(kinds)})"
    if "skimage" in kinds:
        from importlib.metadata import PackageNotFoundError, version

        with contextlib.suppress(PackageNotFoundError):
            text += f", scikit-image {version('scikit-image')}"
    return {"summary": text, "photos": [p.name for p in photos]}


def make_corpus(
    out: str | Path,
    spec: CorpusSpec | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    **params,
) -> CorpusSummary:
    """Render the corpus ``spec`` (``params`` override its fields) into ``out``.

    Films already complete in ``out`` are kept unless ``overwrite``. ``workers`` processes render
    films in parallel [default: one per CPU core]. Raises ``OutputError`` when ``out`` holds
    something else: another kind of folder, or a corpus made with other knobs.
    """
    spec = dataclasses.replace(spec or CorpusSpec(), **params)
    out = Path(out)
    source = photo_source(spec)
    settings = {"generator_version": _generator_version(), **spec.knobs(), "photos": source}
    _check_out(out, settings, overwrite)
    ids = [spec.video_id(i) for i in range(spec.movies)]
    if overwrite:
        _remove_stale(out, set(ids))
    write_json(out / CORPUS_FILE, _corpus_json(spec, settings, None, complete=False))

    todo = [i for i in range(spec.movies) if overwrite or not _film_done(out, spec, i)]
    done = spec.movies - len(todo)
    if progress:
        progress(done, spec.movies)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    if workers == 1:
        for i in todo:
            make_corpus_film(out, spec, i)
            done += 1
            if progress:
                progress(done, spec.movies)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(make_corpus_film, out, spec, i) for i in todo]
            try:
                for future in as_completed(futures):
                    future.result()
                    done += 1
                    if progress:
                        progress(done, spec.movies)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    entries, scenes, frames = [], 0, 0
    for i, video_id in enumerate(ids):
        truth = _read_truth(out, spec, i)
        if truth is None:  # pragma: no cover - a worker finished without its truth file
            raise OutputError(f"{video_id}: rendered but its truth file is missing; run again")
        entries.append(MovieEntry(video_id, truth.shot_ranges(), _labels(truth)))
        scenes += len(truth.scene_starts)
        frames += truth.frame_count
    splits = split_ids(ids, spec.seed)
    write_annotations(out, entries, splits)
    write_json(out / CORPUS_FILE, _corpus_json(spec, settings, splits, complete=True))
    return CorpusSummary(
        root=out,
        movies=spec.movies,
        rendered=len(todo),
        shots=sum(len(e.shots) for e in entries),
        scenes=scenes,
        frames=frames,
        splits={name: len(v) for name, v in splits.items()},
        photo_source=source["summary"],
        disk_bytes=_disk_usage(out),
    )


def make_corpus_film(out: str | Path, spec: CorpusSpec, index: int) -> None:
    """Render film ``index`` of ``spec``: its video, keyframes, shot and label files, truth."""
    import numpy as np

    from scenecut.data.pictures import yuv420_to_rgb
    from scenecut.data.synth import make_film, plan_film

    out = Path(out)
    video_id = spec.video_id(index)
    film = spec.film_spec(index)
    relative = Path(VIDEOS_DIR) / f"{video_id}.mp4"
    truth = plan_film(film, relative)
    ranges = truth.shot_ranges()
    wanted: dict[int, list[int]] = {}  # frame -> which keyframes (0, 1, 2) of its shot it is
    for start, end in ranges:
        for k, frame in enumerate(keyframe_indices(start, end)):
            wanted.setdefault(frame, []).append(k)
    shot_images = np.empty((3, film.height, film.width, 3), dtype=np.uint8)
    writer = MovieWriter(out, video_id)

    def sink(frame: int, data: bytes) -> None:
        # Frames come in order, so a shot's keyframes are complete at its last frame (k = 2).
        for k in wanted.get(frame, ()):
            shot_images[k] = yuv420_to_rgb(data, film.width, film.height)
            if k == 2:
                writer.add(shot_images)

    (out / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    (out / VIDEOS_DIR / f"{video_id}.json").unlink(missing_ok=True)
    try:
        make_film(out / relative, film, frame_sink=sink)
    except BaseException:
        writer.abort()
        raise
    writer.commit(ranges, _labels(truth))
    atomic_write(out / VIDEOS_DIR / f"{video_id}.json", truth.to_json(), overwrite=True)


def _labels(truth) -> list[int]:
    """Label of each gap between shots: 1 when a scene ends after the shot."""
    gaps = set(truth.scene_gaps())
    return [int(i in gaps) for i in range(len(truth.shot_starts) - 1)]


def _read_truth(out: Path, spec: CorpusSpec, index: int):
    """Film ``index``'s truth file, or None when it is missing or from another film."""
    from scenecut.data.synth import GENERATOR_VERSION, FilmTruth

    path = out / VIDEOS_DIR / f"{spec.video_id(index)}.json"
    try:
        truth = FilmTruth.from_json(path.read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None
    same = (
        truth.seed == spec.film_spec(index).seed and len(truth.shot_starts) == spec.shots_per_movie
    )
    return truth if same and truth.generator_version == GENERATOR_VERSION else None


def _film_done(out: Path, spec: CorpusSpec, index: int) -> bool:
    """Complete: the truth file (written last) matches, and the rest is there."""
    video_id = spec.video_id(index)
    return (
        _read_truth(out, spec, index) is not None
        and (out / VIDEOS_DIR / f"{video_id}.mp4").is_file()
        and (out / FRAMES_DIR / video_id).is_dir()
        and (out / SHOTS_DIR / f"{video_id}.txt").is_file()
    )


def _check_out(out: Path, settings: dict, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; give a folder for the corpus")
    meta = out / CORPUS_FILE
    if meta.is_file():
        try:
            old = json.loads(meta.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("format") != FORMAT and not overwrite:
            raise OutputError(f"{meta} is not a scenecut corpus file; use another --out")
        if old.get("settings") != settings and not overwrite:
            raise OutputError(
                f"{out} holds a corpus made with other settings (seed, knobs, generator version "
                "or photos); use another --out, or --overwrite to replace it"
            )
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(
            f"{out} is not empty and holds no {CORPUS_FILE}; use an empty or new folder, "
            "or --overwrite"
        )


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Films of an earlier, larger corpus in ``out`` that the new one would leave behind."""
    videos = out / VIDEOS_DIR
    if not videos.is_dir():
        return
    for truth in videos.glob("synth*.json"):
        video_id = truth.stem
        if video_id in keep:
            continue
        shutil.rmtree(out / FRAMES_DIR / video_id, ignore_errors=True)
        for path in (
            videos / f"{video_id}.mp4",
            out / SHOTS_DIR / f"{video_id}.txt",
            out / LABELS_DIR / f"{video_id}.txt",
            truth,
        ):
            path.unlink(missing_ok=True)


def _corpus_json(spec: CorpusSpec, settings: dict, splits, *, complete: bool) -> dict:
    from scenecut.data.synth import GENERATOR_VERSION

    return {
        "format": FORMAT,
        "complete": complete,
        "generator_version": GENERATOR_VERSION,
        "seed": spec.seed,
        "movies": spec.movies,
        "shots_per_movie": spec.shots_per_movie,
        "fps": str(Fraction(spec.fps)),
        "photo_source": settings["photos"]["summary"],
        "split_ratio": SPLIT_RATIO,
        "splits": splits,
        "settings": settings,
    }


def _generator_version() -> int:
    from scenecut.data.synth import GENERATOR_VERSION

    return GENERATOR_VERSION


def _disk_usage(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total
