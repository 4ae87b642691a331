"""The pipeline: video -> shots and keyframes -> shot embeddings -> boundary scores -> scenes."""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import InputError, ScenecutError, UsageError
from scenecut.evidence import Evidence
from scenecut.files import OutputSet, check_names, check_writable, own_files, refuse_existing
from scenecut.models.options import InferenceOptions
from scenecut.models.scorers import load_scorer
from scenecut.output.clips import (
    DEFAULT_TEMPLATE,
    check_template,
    clip_extension,
    clip_names,
    clip_pattern,
    export_clips,
    sample_name,
)
from scenecut.output.editors import check_start_timecode, with_start_timecode
from scenecut.output.formats import check_formats, result_paths, to_json, write_results
from scenecut.output.images import image_pattern, save_images
from scenecut.output.readers import load_result
from scenecut.output.report import report_path, video_href, write_report
from scenecut.parallel import check_workers, detect_shots_parallel
from scenecut.profile import Stages
from scenecut.result import (
    DEFAULT_THRESHOLD,
    Scene,
    SegmentResult,
    Settings,
    Shot,
    VideoInfo,
    pick_boundaries,
    scenes_from_boundaries,
)
from scenecut.shotclips import ClipCollector
from scenecut.shots import check_detector, detect_shots
from scenecut.video import check_hwaccel, probe, stage_threads, using_hwaccel

if TYPE_CHECKING:
    import numpy as np

    from scenecut.models.scorers import Scorer

MAX_SECONDS = 24 * 3600  # no length option means anything longer than a day
MAX_IMAGES = 100  # --save-images per scene or shot
EMBED_SHOTS = 32  # shots handed to the encoder at a time; bounds the keyframes held in memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentOptions:
    """How shots are found and how boundary scores become scenes; ``inference`` says which
    model scores the boundaries and how its network runs."""

    detector: str = "adaptive"
    detector_threshold: float | None = None
    min_shot_seconds: float = 0.6
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    # A gap is a boundary when its score is above this; None: the model's own threshold (the
    # ModelScope BaSSL's 0.8), else ``DEFAULT_THRESHOLD``
    threshold: float | None = None
    scenes: int | None = None
    min_scene_seconds: float = 0.0
    # SMPTE timecode of the first frame in editor files; None: the video's own, else 00:00:00:00
    start_timecode: str | None = None
    # Processes that decode and detect shots in time chunks (``scenecut.parallel``); None: one
    # per core (``video.cores``) for films of 2 minutes or more, else the single pass. Never
    # changes the result.
    decode_workers: int | None = None
    # A hardware decoder (``video.hwaccel_names``: "cuda" is NVDEC); None: software
    hwaccel: str | None = None

    def check(self) -> None:
        check_detector(self.detector, self.detector_threshold)
        check_start_timecode(self.start_timecode)
        self.inference.check()
        check_grouping(self.threshold, self.scenes, self.min_scene_seconds)
        _check_seconds("--min-shot-len", self.min_shot_seconds)
        check_workers(self.decode_workers)
        check_hwaccel(self.hwaccel)

    def threshold_for(self, scorer: Scorer) -> float:
        """The threshold in force with ``scorer``: ours, else the model's own, else the default."""
        if self.threshold is not None:
            return self.threshold
        own = getattr(scorer, "default_threshold", None)
        return DEFAULT_THRESHOLD if own is None else own

    def replace(self, **changes) -> SegmentOptions:
        """A copy with ``changes`` to its fields or to its inference's (``model="classic"``)."""
        inference = {k: changes.pop(k) for k in list(changes) if k in _INFERENCE_FIELDS}
        if inference:
            changes["inference"] = dataclasses.replace(self.inference, **inference)
        return dataclasses.replace(self, **changes)


_INFERENCE_FIELDS = {f.name for f in dataclasses.fields(InferenceOptions)}


def check_grouping(
    threshold: float | None, scenes: int | None, min_scene_seconds: float | None
) -> None:
    """``UsageError`` for a threshold, scene count or minimum scene length (None: not given)
    that cannot group shots into scenes."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1, got {threshold}")
    if scenes is not None and scenes < 1:
        raise UsageError(f"--scenes must be at least 1, got {scenes}")
    if min_scene_seconds is not None:
        _check_seconds("--min-scene-len", min_scene_seconds)


def _check_seconds(option: str, seconds: float) -> None:
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise UsageError(
            f"{option} must be a number of seconds from 0 to {MAX_SECONDS}, got {seconds}"
        )


Progress = Callable[[str, int, int], None]


def segment(
    path: str | Path,
    options: SegmentOptions | None = None,
    *,
    progress: Progress | None = None,
    scorer: Scorer | None = None,
    stages: Stages | None = None,
    **overrides,
) -> SegmentResult:
    """Cut the video at ``path`` into scenes.

    ``options`` (or keyword overrides of its fields and its inference's, e.g.
    ``threshold=0.6, model="classic"``) choose the shot detector, the model and how scores
    become scenes. ``progress(stage, done, total)`` reports the frames decoded (``"decode"``) and
    the shots embedded (``"embed"``, from the embedding thread; its total grows as shots are
    found). ``scorer`` (from ``models.scorers.load_scorer``) reuses a loaded model across videos
    instead of loading ``options.inference.model``. ``stages`` collects busy seconds per stage
    (see ``scenecut.profile``).

    The file is decoded once. Shots are embedded in batches by a background thread while
    decoding and shot detection go on, so the network and the decoder overlap.
    """
    options = options or SegmentOptions()
    if overrides:
        options = options.replace(**overrides)
    options.check()
    began = time.perf_counter()
    stages = stages if stages is not None else Stages()
    if scorer is None:
        with stages.time("load model"):
            scorer = load_scorer(options.inference)

    pending: list[np.ndarray] = []
    embedder = _Embedder(scorer, stages, progress=progress, threaded=stage_threads())
    # A clip encoder (``models.clipshots``) embeds clips taken inside each shot, not keyframes.
    spec = getattr(scorer, "clip_spec", None)
    clips = None if spec is None else ClipCollector(spec)
    batch_shots = getattr(scorer, "batch_shots", EMBED_SHOTS)
    # A scorer that weighs transitions and sound asks for them (``scenecut.evidence``).
    evidence = Evidence() if getattr(scorer, "wants_evidence", False) else None

    def on_shot(item) -> None:
        pending.append(item.images if clips is None else item.clips)
        if len(pending) >= batch_shots:
            embedder.submit(pending[:])
            pending.clear()

    def on_frames(done: int, total: int) -> None:
        if progress:
            progress("decode", done, total)

    if clips is not None and options.decode_workers:
        log.info("%s: clips are taken in the single decode pass; --decode-workers ignored", path)
    detect = dict(
        detector=options.detector,
        threshold=options.detector_threshold,
        min_shot_seconds=options.min_shot_seconds,
        keyframe_height=scorer.keyframe_height,
        # A learned model prepares its own input from the full-size frame (its resize and
        # crop); the training-free encoders take small keyframes (a clip encoder: unused).
        prepare=getattr(scorer, "prepare", None) if clips is None else None,
        on_shot=on_shot,
        progress=on_frames,
        stages=stages,
        evidence=evidence,
        # The training-free scorers take keyframes outside fades and dissolves the detector
        # tells of; a learned model keeps the keyframes it was trained on.
        skip_transitions=getattr(scorer, "skips_transitions", False),
    )
    try:
        with using_hwaccel(options.hwaccel):
            if clips is None:
                workers = options.decode_workers
                detection = detect_shots_parallel(Path(path), workers=workers, **detect)
            else:  # the chunked decode keeps no clips: a clip encoder takes the single pass
                detection = detect_shots(Path(path), clips=clips, **detect)
        if pending:
            embedder.submit(pending)
        embeddings = embedder.finish()
    finally:
        embedder.close()
    video = with_start_timecode(detection.video, options.start_timecode)
    shots = detection.shots
    with stages.time("score"):
        if evidence is None:
            raw = scorer.score(embeddings)
        else:
            raw = scorer.score(embeddings, evidence.gaps(video, shots))
        scores = [float(s) for s in raw]
        if not all(math.isfinite(s) for s in scores):  # NaN would make the JSON invalid
            raise ScenecutError(
                f"{path}: the model {scorer.name} gave boundary scores that are not numbers "
                "(NaN or infinite); its weights or its precision are broken (try --precision fp32)"
            )
        settings = Settings(
            detector=options.detector,
            detector_threshold=options.detector_threshold,
            min_shot_frames=round(options.min_shot_seconds * video.fps),
            model=scorer.name,
            threshold=options.threshold_for(scorer),
            scenes=options.scenes,
            min_scene_frames=round(options.min_scene_seconds * video.fps),
            start_timecode=options.start_timecode,
        )
        scenes = group_shots(video, shots, scores, settings)
    result = SegmentResult(
        video=video,
        shots=shots,
        boundary_scores=scores,
        scenes=scenes,
        settings=settings,
        decoded_frames=detection.decoded_frames,
    )
    stages.wall += time.perf_counter() - began
    return result


def group_shots(
    video: VideoInfo, shots: list[Shot], scores: list[float], settings: Settings
) -> list[Scene]:
    """The scenes ``settings`` make of ``shots`` (threshold or scene count, minimum scene
    length): the one grouping ``segment`` and ``regroup`` share. A scene count the shots
    cannot give is a warning saying how many they gave."""
    boundaries = pick_boundaries(
        scores,
        [(s.start, s.end) for s in shots],
        threshold=settings.threshold,
        scenes=settings.scenes,
        min_scene_frames=settings.min_scene_frames,
    )
    made = len(boundaries) + 1
    if settings.scenes is not None and made < settings.scenes:
        why = "one per shot" if made == len(shots) else "each at least --min-scene-len long"
        log.warning(
            "%s: --scenes %d is more than there can be: %d scenes, %s",
            video.path,
            settings.scenes,
            made,
            why,
        )
    return scenes_from_boundaries(shots, boundaries, scores)


def regroup(
    result: SegmentResult,
    *,
    threshold: float | None = None,
    scenes: int | None = None,
    min_scene_seconds: float | None = None,
) -> SegmentResult:
    """``result`` with its shots grouped into scenes again from its boundary scores, as
    ``segment`` with these options would have grouped them; no decoding. Options left None keep
    the result's settings, except that a ``threshold`` without ``scenes`` drops a scene count."""
    check_grouping(threshold, scenes, min_scene_seconds)
    old = result.settings
    settings = dataclasses.replace(
        old,
        threshold=old.threshold if threshold is None else threshold,
        scenes=scenes if scenes is not None or threshold is not None else old.scenes,
        min_scene_frames=(
            old.min_scene_frames
            if min_scene_seconds is None
            else round(min_scene_seconds * result.video.fps)
        ),
    )
    grouped = group_shots(result.video, result.shots, result.boundary_scores, settings)
    return dataclasses.replace(result, scenes=grouped, settings=settings)


def kept_scenes(result: SegmentResult, source: Path) -> list[Scene]:
    """``result``'s own scenes (edited by hand or in the report, perhaps), checked to follow one
    another shot after shot from the first shot to the last; their scores are the boundary
    scores'. ``InputError`` naming ``source`` for a list that skips, repeats or reorders."""
    shots = result.shots
    first = 0
    for i, scene in enumerate(result.scenes):
        last = scene.last_shot
        if scene.first_shot != first or not first <= last < len(shots):
            problem = f"starts at shot {scene.first_shot + 1}, not {first + 1}"
        elif (scene.start, scene.end) != (shots[first].start, shots[last].end):
            problem = (
                f"has frames {scene.start}-{scene.end}, but its shots {first + 1}-{last + 1} "
                f"have {shots[first].start}-{shots[last].end}"
            )
        else:
            first = last + 1
            continue
        raise InputError(
            f"{source}: scene {i + 1} {problem}; scenes must follow one another, shot after "
            "shot, and cover every shot"
        )
    if first != len(shots):
        raise InputError(
            f"{source}: the scenes end at shot {first}, but there are {len(shots)} shots; "
            "scenes must cover every shot"
        )
    boundaries = [scene.first_shot - 1 for scene in result.scenes[1:]]
    return scenes_from_boundaries(shots, boundaries, result.boundary_scores)


def check_same_video(result: SegmentResult, source: Path) -> None:
    """``InputError`` unless the file at ``result.video.path`` looks like the video the result
    in ``source`` was made from: the same picture size, and the same frame count where the
    container states one and the result found no damage, else about the same length (the
    duration times the frame rate, within 1%)."""
    video = result.video
    path = video.path
    if not path.is_file():
        raise InputError(
            f"{path}: the video of {source} is not there; clips, images and the report need it "
            "(pass its new path with --video)"
        )
    found = probe(path)
    coded = (video.height, video.width) if video.rotation % 180 else (video.width, video.height)
    frames = found.frame_count_estimate
    if found.exact_count and result.decoded_frames == video.frame_count:
        close = frames == video.frame_count
    else:
        close = not frames or abs(frames - video.frame_count) <= max(2, video.frame_count // 100)
    if (found.width, found.height) != coded or not close:
        raise InputError(
            f"{path}: not the video {source} was made from ({found.width}x{found.height}, "
            f"{frames} frames; the result has {coded[0]}x{coded[1]}, {video.frame_count} frames)"
            "; pass the right one with --video"
        )


class _Embedder:
    """``scorer.embed`` on batches of shots in a background thread, results kept in order
    (with ``threaded=False``, in the caller's thread as each batch is submitted).

    At most ``depth`` batches wait in the queue, so memory stays bounded when the network is
    slower than decoding: the decoder then waits (``embed wait`` in the profile).
    """

    def __init__(
        self,
        scorer: Scorer,
        stages: Stages,
        depth: int = 2,
        progress: Progress | None = None,
        threaded: bool = True,
    ):
        self.scorer = scorer
        self.stages = stages
        self.progress = progress
        self.submitted = self.embedded = 0  # shots
        self.results: list[np.ndarray] = []
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.thread: threading.Thread | None = None
        if threaded:
            self.thread = threading.Thread(target=self._run, name="scenecut-embed", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.error is not None:
                continue  # keep draining so the producer never blocks
            try:
                self._embed(batch)
            except BaseException as exc:  # raised in the caller's thread
                self.error = exc

    def _embed(self, batch: list[np.ndarray]) -> None:
        import numpy as np

        with self.stages.time("embed", len(batch)):
            self.results.append(self.scorer.embed(np.stack(batch)))
        self.embedded += len(batch)
        if self.progress:
            self.progress("embed", self.embedded, self.submitted)

    def submit(self, batch: list[np.ndarray]) -> None:
        if self.error is not None:
            raise self.error
        self.submitted += len(batch)
        if self.thread is None:
            self._embed(batch)
            return
        start = time.perf_counter()
        self.queue.put(batch)
        self.stages.add("embed wait", time.perf_counter() - start, 0)

    def finish(self) -> np.ndarray:
        """Wait for every batch; ``[shots, D]`` embeddings in shot order."""
        import numpy as np

        if self.thread is not None:
            start = time.perf_counter()
            self.queue.put(None)
            self.thread.join()
            self.stages.add("embed wait", time.perf_counter() - start, 0)
        if self.error is not None:
            raise self.error
        return np.concatenate(self.results)

    def close(self) -> None:
        """Stop the thread (after an error in the caller); a no-op once finished."""
        if self.thread is not None and self.thread.is_alive():
            self.error = self.error or RuntimeError("segmentation stopped")
            while self.thread.is_alive():
                try:
                    self.queue.put(None, timeout=0.05)
                except queue.Full:
                    continue
                self.thread.join()


@dataclass(frozen=True)
class ExportOptions:
    formats: list[str]
    save_clips: bool = False
    copy: bool = False
    clip_template: str = DEFAULT_TEMPLATE
    overwrite: bool = False
    to_stdout: bool = False
    report: bool = False  # <stem>.report.html beside the scene lists
    save_images: int = 0  # JPEGs per scene (or per shot)
    images_per: str = "scene"

    def check(self) -> None:
        check_formats(self.formats)
        if not self.formats and not self.to_stdout:
            raise UsageError("--format needs at least one format")
        if self.copy and not self.save_clips:
            raise UsageError("--copy only applies with --save-clips")
        if self.images_per not in ("scene", "shot"):
            raise UsageError(f"--images-per must be 'scene' or 'shot', got {self.images_per!r}")
        if not 0 <= self.save_images <= MAX_IMAGES:
            raise UsageError(
                f"--save-images must be from 0 to {MAX_IMAGES}, got {self.save_images}"
            )
        if self.save_clips:
            check_template(self.clip_template)
        if self.to_stdout and (self.report or self.save_images):
            raise UsageError("--report and --save-images write files; drop --stdout or them")
        others = [name for name in self.formats if name != "json"]
        if self.to_stdout and others:
            raise UsageError(
                f"--stdout writes only the JSON result; drop --stdout to write {others[0]} files"
            )


@dataclass(frozen=True)
class FilesResult:
    result: SegmentResult
    files: list[Path]
    json: str = ""


def segment_to_files(
    path: str | Path,
    options: SegmentOptions,
    export: ExportOptions,
    out_dir: Path,
    *,
    progress: Progress | None = None,
    scorer: Scorer | None = None,
    stages: Stages | None = None,
) -> FilesResult:
    """``segment`` one video, then write its scene lists, clips, report and images to ``out_dir``.

    Existing outputs, names too long for the file system and an unwritable ``out_dir`` are
    reported before any decoding starts. The outputs are one unit (``files.OutputSet``): they
    all appear at the end, or none does. With ``overwrite``, clips and images an earlier run
    made of this video and this run does not make again are deleted. ``progress(stage, done,
    total)`` follows decoding and embedding (see ``segment``), then ``"clips"``, ``"report"``
    and ``"images"``.
    """
    _check_outputs(Path(path), export, out_dir)
    stages = stages if stages is not None else Stages()
    result = segment(path, options, progress=progress, scorer=scorer, stages=stages)
    return write_files(result, export, out_dir, progress=progress, stages=stages)


def export_result(
    json_path: str | Path,
    export: ExportOptions,
    out_dir: Path | None = None,
    *,
    threshold: float | None = None,
    scenes: int | None = None,
    min_scene_seconds: float | None = None,
    video: str | Path | None = None,
    progress: Progress | None = None,
    stages: Stages | None = None,
) -> FilesResult:
    """Write what ``segment_to_files`` writes, from a saved ``.scenes.json`` instead of a video.

    With ``threshold``, ``scenes`` or ``min_scene_seconds`` the shots are grouped again from the
    saved boundary scores (``regroup``), without decoding: the files are those ``segment`` makes
    with these options. Without them the saved scenes are kept as they are (``kept_scenes``).
    The video, at ``video`` or else where the result says, is read only for clips, images and
    the report; a ``video`` given also names the outputs and is the path the new JSON records.
    Either way ``check_same_video`` first makes sure it is the result's. ``out_dir`` defaults
    to the JSON's folder.
    """
    export.check()
    check_grouping(threshold, scenes, min_scene_seconds)
    json_path = Path(json_path)
    result = load_result(json_path)
    if video is not None:
        result = dataclasses.replace(
            result, video=dataclasses.replace(result.video, path=Path(video))
        )
    out_dir = json_path.parent if out_dir is None else out_dir
    if video is not None or export.save_clips or export.save_images or export.report:
        check_same_video(result, json_path)
    _check_outputs(result.video.path, export, out_dir)
    if threshold is None and scenes is None and min_scene_seconds is None:
        result = dataclasses.replace(result, scenes=kept_scenes(result, json_path))
    else:
        result = regroup(
            result, threshold=threshold, scenes=scenes, min_scene_seconds=min_scene_seconds
        )
    return write_files(result, export, out_dir, progress=progress, stages=stages)


def _check_outputs(path: Path, export: ExportOptions, out_dir: Path) -> None:
    """Before any work: existing outputs, names too long, an unwritable ``out_dir``."""
    writes_files = not export.to_stdout or export.save_clips
    known = [] if export.to_stdout else result_paths(path, out_dir, export.formats)
    if export.report:
        known.append(report_path(path, out_dir))
    if writes_files:
        check_writable(out_dir)
        samples = [out_dir / f"{path.stem}-Scene-0001-01.jpg"] if export.save_images else []
        if export.save_clips:
            samples.append(out_dir / (sample_name(export.clip_template, path.stem) + ".mp4"))
        check_names([*known, *samples])
    if not export.overwrite:
        refuse_existing(known)


def write_files(
    result: SegmentResult,
    export: ExportOptions,
    out_dir: Path,
    *,
    progress: Progress | None = None,
    stages: Stages | None = None,
) -> FilesResult:
    """Write ``result``'s scene lists, clips, report and images to ``out_dir`` as one unit
    (see ``segment_to_files``); with ``to_stdout`` its JSON is returned instead."""
    path = result.video.path
    stages = stages if stages is not None else Stages()
    start = time.perf_counter()
    if export.save_clips and not export.overwrite:  # known now; refused before any clip is cut
        extension = clip_extension(path, export.copy)
        refuse_existing([out_dir / n for n in clip_names(result, export.clip_template, extension)])
    text = to_json(result) if export.to_stdout else ""
    if export.to_stdout and not export.save_clips:
        return FilesResult(result, [], text)
    with OutputSet(out_dir, overwrite=export.overwrite) as unit:
        finals = _write_outputs(result, export, out_dir, unit, progress, stages)
        unit.commit(finals, _earlier_outputs(path, export, out_dir) if export.overwrite else [])
    stages.wall += time.perf_counter() - start
    return FilesResult(result, finals, text)


def _write_outputs(
    result: SegmentResult,
    export: ExportOptions,
    out_dir: Path,
    unit: OutputSet,
    progress: Progress | None,
    stages: Stages,
) -> list[Path]:
    """Write every output into ``unit``'s folder; returns their final paths."""
    path = result.video.path

    def stage(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else lambda done, total: progress(name, done, total)

    staged: list[Path] = []
    with stages.time("write"):
        if not export.to_stdout:
            staged += write_results(result, unit.dir, export.formats, overwrite=True)
    if export.save_clips:
        with stages.time("clips", len(result.scenes)):
            staged += export_clips(
                result,
                unit.dir,
                template=export.clip_template,
                copy=export.copy,
                overwrite=True,
                progress=stage("clips"),
            )
    with stages.time("write", 0):
        if export.report:
            final = report_path(path, out_dir)
            href = video_href(path, final)
            staged.append(
                write_report(
                    result,
                    unit.path(final),
                    overwrite=True,
                    video_href=href,
                    progress=stage("report"),
                )
            )
        if export.save_images:
            staged += save_images(
                result,
                unit.dir,
                per=export.images_per,
                count=export.save_images,
                overwrite=True,
                progress=stage("images"),
            )
    return [out_dir / p.name for p in staged]


def _earlier_outputs(path: Path, export: ExportOptions, out_dir: Path) -> list[Path]:
    """This video's numbered clips and images in ``out_dir`` (an earlier run's, of the kinds
    this run writes): the ones this run does not write again are stale."""
    earlier: list[Path] = []
    if export.save_clips:
        extensions = [".mp4", ".mkv", path.suffix or ".mkv", clip_extension(path, copy=True)]
        earlier += own_files(out_dir, clip_pattern(export.clip_template, path.stem, extensions))
    if export.save_images:
        earlier += own_files(out_dir, image_pattern(path.stem))
    return earlier
