"""The pipeline: video -> shots and keyframes -> shot embeddings -> boundary scores -> scenes."""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import ScenecutError, UsageError
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
from scenecut.output.formats import check_formats, result_paths, to_json, write_results
from scenecut.output.images import image_pattern, save_images
from scenecut.output.report import report_path, video_href, write_report
from scenecut.profile import Stages
from scenecut.result import (
    DEFAULT_THRESHOLD,
    SegmentResult,
    Settings,
    pick_boundaries,
    scenes_from_boundaries,
)
from scenecut.shots import check_detector, detect_shots

if TYPE_CHECKING:
    import numpy as np

    from scenecut.models.scorers import Scorer

MAX_SECONDS = 24 * 3600  # no length option means anything longer than a day
MAX_IMAGES = 100  # --save-images per scene or shot
EMBED_SHOTS = 32  # shots handed to the encoder at a time; bounds the keyframes held in memory


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

    def check(self) -> None:
        check_detector(self.detector, self.detector_threshold)
        self.inference.check()
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.scenes is not None and self.scenes < 1:
            raise UsageError(f"--scenes must be at least 1, got {self.scenes}")
        for option, seconds in (
            ("--min-shot-len", self.min_shot_seconds),
            ("--min-scene-len", self.min_scene_seconds),
        ):
            if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
                raise UsageError(
                    f"{option} must be a number of seconds from 0 to {MAX_SECONDS}, got {seconds}"
                )

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
    become scenes. ``progress(stage, done, total)`` reports decoding progress. ``scorer`` (from
    ``models.scorers.load_scorer``) reuses a loaded model across videos instead of loading
    ``options.inference.model``. ``stages`` collects busy seconds per stage
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
    embedder = _Embedder(scorer, stages)

    def on_shot(item) -> None:
        pending.append(item.images)
        if len(pending) >= EMBED_SHOTS:
            embedder.submit(pending[:])
            pending.clear()

    def on_frames(done: int, total: int) -> None:
        if progress:
            progress("decode", done, total)

    try:
        detection = detect_shots(
            Path(path),
            detector=options.detector,
            threshold=options.detector_threshold,
            min_shot_seconds=options.min_shot_seconds,
            keyframe_height=scorer.keyframe_height,
            # A learned model prepares its own input from the full-size frame (its resize and
            # crop); the training-free encoders take small keyframes.
            prepare=getattr(scorer, "prepare", None),
            on_shot=on_shot,
            progress=on_frames,
            stages=stages,
        )
        if pending:
            embedder.submit(pending)
        embeddings = embedder.finish()
    finally:
        embedder.close()
    video, shots = detection.video, detection.shots
    with stages.time("score"):
        scores = [float(s) for s in scorer.score(embeddings)]
        if not all(math.isfinite(s) for s in scores):  # NaN would make the JSON invalid
            raise ScenecutError(
                f"{path}: the model {scorer.name} gave boundary scores that are not numbers "
                "(NaN or infinite); its weights or its precision are broken (try --precision fp32)"
            )
        min_scene_frames = round(options.min_scene_seconds * video.fps)
        threshold = options.threshold_for(scorer)
        boundaries = pick_boundaries(
            scores,
            [(s.start, s.end) for s in shots],
            threshold=threshold,
            scenes=options.scenes,
            min_scene_frames=min_scene_frames,
        )
    settings = Settings(
        detector=options.detector,
        detector_threshold=options.detector_threshold,
        min_shot_frames=round(options.min_shot_seconds * video.fps),
        model=scorer.name,
        threshold=threshold,
        scenes=options.scenes,
        min_scene_frames=min_scene_frames,
    )
    result = SegmentResult(
        video=video,
        shots=shots,
        boundary_scores=scores,
        scenes=scenes_from_boundaries(shots, boundaries, scores),
        settings=settings,
        decoded_frames=detection.decoded_frames,
    )
    stages.wall += time.perf_counter() - began
    return result


class _Embedder:
    """``scorer.embed`` on batches of shots in a background thread, results kept in order.

    At most ``depth`` batches wait in the queue, so memory stays bounded when the network is
    slower than decoding: the decoder then waits (``embed wait`` in the profile).
    """

    def __init__(self, scorer: Scorer, stages: Stages, depth: int = 2):
        self.scorer = scorer
        self.stages = stages
        self.results: list[np.ndarray] = []
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name="scenecut-embed", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import numpy as np

        while (batch := self.queue.get()) is not None:
            if self.error is not None:
                continue  # keep draining so the producer never blocks
            try:
                with self.stages.time("embed", len(batch)):
                    self.results.append(self.scorer.embed(np.stack(batch)))
            except BaseException as exc:  # raised in the caller's thread
                self.error = exc

    def submit(self, batch: list[np.ndarray]) -> None:
        if self.error is not None:
            raise self.error
        start = time.perf_counter()
        self.queue.put(batch)
        self.stages.add("embed wait", time.perf_counter() - start, 0)

    def finish(self) -> np.ndarray:
        """Wait for every batch; ``[shots, D]`` embeddings in shot order."""
        import numpy as np

        start = time.perf_counter()
        self.queue.put(None)
        self.thread.join()
        self.stages.add("embed wait", time.perf_counter() - start, 0)
        if self.error is not None:
            raise self.error
        return np.concatenate(self.results)

    def close(self) -> None:
        """Stop the thread (after an error in the caller); a no-op once finished."""
        if self.thread.is_alive():
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
    made of this video and this run does not make again are deleted.
    """
    path = Path(path)
    report_file = report_path(path, out_dir)
    writes_files = not export.to_stdout or export.save_clips
    known = [] if export.to_stdout else result_paths(path, out_dir, export.formats)
    if export.report:
        known.append(report_file)
    if writes_files:
        check_writable(out_dir)
        samples = [out_dir / f"{path.stem}-Scene-0001-01.jpg"] if export.save_images else []
        if export.save_clips:
            samples.append(out_dir / (sample_name(export.clip_template, path.stem) + ".mp4"))
        check_names([*known, *samples])
    if not export.overwrite:
        refuse_existing(known)
    stages = stages if stages is not None else Stages()
    result = segment(path, options, progress=progress, scorer=scorer, stages=stages)
    start = time.perf_counter()  # segment() counted its own wall time
    if export.save_clips and not export.overwrite:  # known now; refused before any clip is cut
        extension = clip_extension(path, export.copy)
        refuse_existing([out_dir / n for n in clip_names(result, export.clip_template, extension)])
    text = to_json(result) if export.to_stdout else ""
    if not writes_files:
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
    staged: list[Path] = []
    with stages.time("write"):
        if not export.to_stdout:
            staged += write_results(result, unit.dir, export.formats, overwrite=True)
    if export.save_clips:

        def on_clip(done: int, total: int) -> None:
            if progress:
                progress("clips", done, total)

        with stages.time("clips", len(result.scenes)):
            staged += export_clips(
                result,
                unit.dir,
                template=export.clip_template,
                copy=export.copy,
                overwrite=True,
                progress=on_clip,
            )
    with stages.time("write", 0):
        if export.report:
            final = report_path(path, out_dir)
            href = video_href(path, final)
            staged.append(write_report(result, unit.path(final), overwrite=True, video_href=href))
        if export.save_images:
            staged += save_images(
                result, unit.dir, per=export.images_per, count=export.save_images, overwrite=True
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
