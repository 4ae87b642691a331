"""The pipeline: video -> shots and keyframes -> shot embeddings -> boundary scores -> scenes."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import UsageError
from scenecut.files import check_writable, refuse_existing
from scenecut.models.options import InferenceOptions
from scenecut.models.scorers import load_scorer
from scenecut.output.clips import DEFAULT_TEMPLATE, export_clips
from scenecut.output.formats import check_formats, result_paths, to_json, write_results
from scenecut.output.images import save_images
from scenecut.output.report import report_path, video_href, write_report
from scenecut.profile import Stages
from scenecut.result import SegmentResult, Settings, pick_boundaries, scenes_from_boundaries
from scenecut.shots import check_detector, detect_shots

if TYPE_CHECKING:
    import numpy as np

    from scenecut.models.scorers import Scorer

EMBED_SHOTS = 32  # shots handed to the encoder at a time; bounds the keyframes held in memory


@dataclass(frozen=True)
class SegmentOptions:
    """How shots are found and how boundary scores become scenes; ``inference`` says which
    model scores the boundaries and how its network runs."""

    detector: str = "adaptive"
    detector_threshold: float | None = None
    min_shot_seconds: float = 0.6
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    threshold: float = 0.5
    scenes: int | None = None
    min_scene_seconds: float = 0.0

    def check(self) -> None:
        check_detector(self.detector, self.detector_threshold)
        self.inference.check()
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.scenes is not None and self.scenes < 1:
            raise UsageError(f"--scenes must be at least 1, got {self.scenes}")
        if self.min_shot_seconds < 0 or self.min_scene_seconds < 0:
            raise UsageError("minimum shot and scene lengths must not be negative")

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
        min_scene_frames = round(options.min_scene_seconds * video.fps)
        boundaries = pick_boundaries(
            scores,
            [(s.start, s.end) for s in shots],
            threshold=options.threshold,
            scenes=options.scenes,
            min_scene_frames=min_scene_frames,
        )
    settings = Settings(
        detector=options.detector,
        detector_threshold=options.detector_threshold,
        min_shot_frames=round(options.min_shot_seconds * video.fps),
        model=scorer.name,
        threshold=options.threshold,
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
        if self.save_images < 0:
            raise UsageError(f"--save-images must not be negative, got {self.save_images}")
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

    Existing outputs and an unwritable ``out_dir`` are reported before any decoding starts.
    """
    path = Path(path)
    report_file = report_path(path, out_dir)
    if not export.to_stdout or export.save_clips:
        check_writable(out_dir)
    if not export.to_stdout and not export.overwrite:
        targets = result_paths(path, out_dir, export.formats)
        refuse_existing([*targets, report_file] if export.report else targets)
    stages = stages if stages is not None else Stages()
    result = segment(path, options, progress=progress, scorer=scorer, stages=stages)
    start = time.perf_counter()  # segment() counted its own wall time
    files: list[Path] = []
    text = ""
    with stages.time("write"):
        if export.to_stdout:
            text = to_json(result)
        else:
            files += write_results(result, out_dir, export.formats, overwrite=export.overwrite)
    if export.save_clips:

        def on_clip(done: int, total: int) -> None:
            if progress:
                progress("clips", done, total)

        with stages.time("clips", len(result.scenes)):
            files += export_clips(
                result,
                out_dir,
                template=export.clip_template,
                copy=export.copy,
                overwrite=export.overwrite,
                progress=on_clip,
            )
    with stages.time("write", 0):
        if export.report:
            href = video_href(path, report_file)
            files.append(
                write_report(result, report_file, overwrite=export.overwrite, video_href=href)
            )
        if export.save_images:
            files += save_images(
                result,
                out_dir,
                per=export.images_per,
                count=export.save_images,
                overwrite=export.overwrite,
            )
    stages.wall += time.perf_counter() - start
    return FilesResult(result, files, text)
