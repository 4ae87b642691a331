"""The pipeline: video -> shots and keyframes -> shot embeddings -> boundary scores -> scenes."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import UsageError
from scenecut.profile import Stages
from scenecut.result import SegmentResult, Settings, scenes_from_boundaries

if TYPE_CHECKING:
    import numpy as np

    from scenecut.scoring import Scorer

EMBED_BATCH = 32  # shots per encoder call; bounds the keyframes held in memory


@dataclass(frozen=True)
class SegmentOptions:
    detector: str = "adaptive"
    detector_threshold: float | None = None
    min_shot_seconds: float = 0.6
    model: str = "auto"
    device: str = "auto"
    batch_size: int = 0  # keyframe images per network call; 0: 16 on CPUs, 64 on GPUs
    precision: str = "auto"
    compile: bool = False  # torch.compile the shot encoder (pays back on long films)
    threshold: float = 0.5
    scenes: int | None = None
    min_scene_seconds: float = 0.0

    def check(self) -> None:
        from scenecut.shots import DETECTORS

        if self.detector not in DETECTORS:
            raise UsageError(
                f"unknown detector {self.detector!r}; choose one of: {', '.join(DETECTORS)}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.scenes is not None and self.scenes < 1:
            raise UsageError(f"--scenes must be at least 1, got {self.scenes}")
        if self.min_shot_seconds < 0 or self.min_scene_seconds < 0:
            raise UsageError("minimum shot and scene lengths must not be negative")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise UsageError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")
        if self.batch_size < 0:
            raise UsageError(
                f"--batch-size must be positive (or 0 for auto), got {self.batch_size}"
            )
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise UsageError(f"--precision must be auto, fp32, bf16 or fp16, not {self.precision}")
        if (
            self.detector == "transnetv2"
            and self.detector_threshold is not None
            and not 0 < self.detector_threshold < 1
        ):
            raise UsageError(
                "--detector-threshold for transnetv2 is a probability between 0 and 1, "
                f"got {self.detector_threshold}"
            )
        if self.detector_threshold is not None and self.detector_threshold <= 0:
            raise UsageError(
                f"--detector-threshold must be positive, got {self.detector_threshold}"
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

    ``options`` (or keyword overrides of its fields, e.g. ``threshold=0.6``) choose the shot
    detector, the model and how scores become scenes. ``progress(stage, done, total)`` reports
    decoding progress. ``scorer`` (from ``scoring.load_scorer``) reuses a loaded model across
    videos instead of loading ``options.model``. ``stages`` collects busy seconds per stage
    (see ``scenecut.profile``).

    The file is decoded once. Shots are embedded in batches by a background thread while
    decoding and shot detection go on, so the network and the decoder overlap.
    """
    from scenecut.scoring import load_scorer, pick_boundaries
    from scenecut.shots import detect_shots

    options = options or SegmentOptions()
    if overrides:
        options = SegmentOptions(**{**options.__dict__, **overrides})
    options.check()
    began = time.perf_counter()
    stages = stages if stages is not None else Stages()
    if scorer is None:
        with stages.time("load model"):
            scorer = load_scorer(
                options.model,
                options.device,
                options.batch_size,
                options.precision,
                options.compile,
            )

    pending: list[np.ndarray] = []
    embedder = _Embedder(scorer, stages)

    def on_shot(item) -> None:
        pending.append(item.images)
        if len(pending) >= EMBED_BATCH:
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
    clip_template: str = "$VIDEO_NAME-Scene-$SCENE_NUMBER"
    overwrite: bool = False
    to_stdout: bool = False
    report: bool = False  # <stem>.report.html beside the scene lists
    save_images: int = 0  # JPEGs per scene (or per shot)
    images_per: str = "scene"

    def check(self) -> None:
        from scenecut.export import WRITERS

        unknown = [f for f in self.formats if f not in WRITERS]
        if unknown:
            raise UsageError(
                f"unknown format {', '.join(unknown)}; choose from: {', '.join(WRITERS)}"
            )
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
    from scenecut import export as ex
    from scenecut import report

    path = Path(path)
    report_path = report.report_path(path, out_dir)
    if not export.to_stdout or export.save_clips:
        ex.check_writable(out_dir)
    if not export.to_stdout and not export.overwrite:
        targets = ex.result_paths(path, out_dir, export.formats)
        ex.refuse_existing([*targets, report_path] if export.report else targets)
    stages = stages if stages is not None else Stages()
    result = segment(path, options, progress=progress, scorer=scorer, stages=stages)
    start = time.perf_counter()  # segment() counted its own wall time
    files: list[Path] = []
    text = ""
    with stages.time("write"):
        if export.to_stdout:
            text = ex.to_json(result)
        else:
            files += ex.write_results(result, out_dir, export.formats, overwrite=export.overwrite)
    if export.save_clips:

        def on_clip(done: int, total: int) -> None:
            if progress:
                progress("clips", done, total)

        with stages.time("clips", len(result.scenes)):
            files += ex.export_clips(
                result,
                out_dir,
                template=export.clip_template,
                copy=export.copy,
                overwrite=export.overwrite,
                progress=on_clip,
            )
    with stages.time("write", 0):
        if export.report:
            href = report.video_href(path, report_path)
            files.append(
                report.write_report(
                    result, report_path, overwrite=export.overwrite, video_href=href
                )
            )
        if export.save_images:
            files += report.save_images(
                result,
                out_dir,
                per=export.images_per,
                count=export.save_images,
                overwrite=export.overwrite,
            )
    stages.wall += time.perf_counter() - start
    return FilesResult(result, files, text)
