"""The pipeline: video -> shots and keyframes -> shot embeddings -> boundary scores -> scenes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scenecut.errors import UsageError
from scenecut.result import SegmentResult, Settings, scenes_from_boundaries

if TYPE_CHECKING:
    from scenecut.scoring import Scorer

EMBED_BATCH = 32  # shots per encoder call; bounds the keyframes held in memory


@dataclass(frozen=True)
class SegmentOptions:
    detector: str = "adaptive"
    detector_threshold: float | None = None
    min_shot_seconds: float = 0.6
    model: str = "auto"
    device: str = "auto"
    batch_size: int = 64  # keyframe images per network call
    precision: str = "auto"
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
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
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
    **overrides,
) -> SegmentResult:
    """Cut the video at ``path`` into scenes.

    ``options`` (or keyword overrides of its fields, e.g. ``threshold=0.6``) choose the shot
    detector, the model and how scores become scenes. ``progress(stage, done, total)`` reports
    decoding progress. ``scorer`` (from ``scoring.load_scorer``) reuses a loaded model across
    videos instead of loading ``options.model``.
    """
    import numpy as np

    from scenecut.scoring import load_scorer, pick_boundaries
    from scenecut.shots import detect_shots

    options = options or SegmentOptions()
    if overrides:
        options = SegmentOptions(**{**options.__dict__, **overrides})
    options.check()
    if scorer is None:
        scorer = load_scorer(options.model, options.device, options.batch_size, options.precision)

    embeddings: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            embeddings.append(scorer.embed(np.stack(pending)))
            pending.clear()

    def on_shot(item) -> None:
        pending.append(item.images)
        if len(pending) >= EMBED_BATCH:
            flush()

    def on_frames(done: int, total: int) -> None:
        if progress:
            progress("decode", done, total)

    detection = detect_shots(
        Path(path),
        detector=options.detector,
        threshold=options.detector_threshold,
        min_shot_seconds=options.min_shot_seconds,
        keyframe_height=scorer.keyframe_height,
        on_shot=on_shot,
        progress=on_frames,
    )
    flush()
    video, shots = detection.video, detection.shots
    scores = [float(s) for s in scorer.score(np.concatenate(embeddings))]
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
    return SegmentResult(
        video=video,
        shots=shots,
        boundary_scores=scores,
        scenes=scenes_from_boundaries(shots, boundaries, scores),
        settings=settings,
        decoded_frames=detection.decoded_frames,
    )


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
    result = segment(path, options, progress=progress, scorer=scorer)
    files: list[Path] = []
    text = ""
    if export.to_stdout:
        text = ex.to_json(result)
    else:
        files += ex.write_results(result, out_dir, export.formats, overwrite=export.overwrite)
    if export.save_clips:

        def on_clip(done: int, total: int) -> None:
            if progress:
                progress("clips", done, total)

        files += ex.export_clips(
            result,
            out_dir,
            template=export.clip_template,
            copy=export.copy,
            overwrite=export.overwrite,
            progress=on_clip,
        )
    if export.report:
        href = report.video_href(path, report_path)
        files.append(
            report.write_report(result, report_path, overwrite=export.overwrite, video_href=href)
        )
    if export.save_images:
        files += report.save_images(
            result,
            out_dir,
            per=export.images_per,
            count=export.save_images,
            overwrite=export.overwrite,
        )
    return FilesResult(result, files, text)
