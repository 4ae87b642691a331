"""Options several commands share, with help texts built from the tables they name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from scenecut.models.options import DEVICES, PRECISIONS, InferenceOptions
from scenecut.models.scorers import model_help
from scenecut.output.clips import TEMPLATE_MACROS
from scenecut.output.formats import FORMATS
from scenecut.result import DEFAULT_THRESHOLD
from scenecut.segment import ExportOptions, SegmentOptions
from scenecut.settings import Settings, load_settings
from scenecut.shots import detector_help, detector_threshold_help

# Options a settings file may set (scenecut config) default to None: "not on the command line".
ModelOption = Annotated[
    str | None, typer.Option(help=f"{model_help()} [default: settings, else auto]")
]
# The commands that may download a model on first use (segment, eval, train extract).
OfflineOption = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Never download: a named model not in the cache is an error (also "
        "SCENECUT_OFFLINE=1).",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(help=f"{DEVICES} (auto: CUDA when present) [default: settings, else auto]."),
]
BatchOption = Annotated[
    int,
    typer.Option(
        help="Keyframe images per network call; 0 = auto (16 on CPUs, 64 on GPUs).", min=0
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the shot encoder: 10-25 s once, then faster (worth it on long films).",
    ),
]
PRECISION_HELP = f"{', '.join(PRECISIONS)} (auto: bf16/fp16 where fast)."
PrecisionOption = Annotated[str, typer.Option(help=PRECISION_HELP)]
DetectorOption = Annotated[str, typer.Option(help=detector_help())]
DetectorThresholdOption = Annotated[float | None, typer.Option(help=detector_threshold_help())]
DecodeWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--decode-workers",
        metavar="N",
        help="Processes that decode and detect shots in time chunks (adaptive and content "
        "detectors; the result is the same) [default: one per core for films of 2 minutes "
        "or more, else 1, a single pass].",
        show_default=False,
    ),
]

HwaccelOption = Annotated[
    str | None,
    typer.Option(
        "--hwaccel",
        metavar="NAME",
        help="Decode on a hardware decoder ffmpeg offers (cuda: NVDEC on an NVIDIA GPU); "
        "where it cannot start, a warning and software decoding. Frames may differ from "
        "software decoding in the last bit of colour, and cuts with them "
        "[default: software].",
        show_default=False,
    ),
]


# The outputs `segment` and `export` both write.
FormatOption = Annotated[
    list[str] | None,
    typer.Option(
        "--format",
        "-f",
        metavar="FORMATS",
        help=f"Scene-list formats: {', '.join(FORMATS)}; comma-separated or repeated, any case "
        "[default: settings, else json].",
        show_default=False,
    ),
]
StdoutOption = Annotated[
    bool, typer.Option("--stdout", help="Write the JSON result to stdout instead of files.")
]
SaveClipsOption = Annotated[
    bool, typer.Option("--save-clips", help="Export one clip per scene with ffmpeg.")
]
CopyOption = Annotated[
    bool, typer.Option("--copy", help="Stream-copy clips: fast, but cuts snap to keyframes.")
]
ClipTemplateOption = Annotated[
    str,
    typer.Option(
        "--clip-template",
        help=f"Clip file name; macros {' '.join('$' + m for m in TEMPLATE_MACROS)}.",
    ),
]
ReportOption = Annotated[
    bool,
    typer.Option("--report", help="Write <stem>.report.html: timeline, score curve, thumbnails."),
]
SaveImagesOption = Annotated[
    int,
    typer.Option(
        "--save-images",
        metavar="N",
        help="Save N JPEGs per scene ($VIDEO_NAME-Scene-$SCENE_NUMBER-$IMAGE_NUMBER.jpg).",
    ),
]
ImagesPerOption = Annotated[
    str, typer.Option("--images-per", help="--save-images per 'scene' or per 'shot'.")
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing output files.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
# How segment and batch cut shots and group them into scenes.
MinShotLenOption = Annotated[float, typer.Option(help="Minimum shot length in seconds.")]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        help="Boundary score above which a shot gap starts a new scene [default: settings, "
        f"else the model's own (ModelScope BaSSL: 0.8), else {DEFAULT_THRESHOLD:g}].",
        show_default=False,
    ),
]
ScenesOption = Annotated[
    int | None, typer.Option(help="Ask for this many scenes instead of using --threshold.")
]
MinSceneLenOption = Annotated[float, typer.Option(help="Minimum scene length in seconds.")]
StartTimecodeOption = Annotated[
    str | None,
    typer.Option(
        metavar="HH:MM:SS:FF",
        help="Timecode of the first frame in editor files (HH:MM:SS;FF: drop-frame) "
        "[default: the file's own, else 00:00:00:00].",
        show_default=False,
    ),
]


def format_names(values: list[str] | None, default: Sequence[str]) -> list[str]:
    """``-f`` values as format names (``-f JSON -f csv,edl`` is json, csv and edl), else
    ``default`` (the settings' formats)."""
    given = values or default
    return [name.strip().lower() for value in given for name in value.split(",") if name.strip()]


def current_settings(ctx: typer.Context) -> Settings:
    """The settings for the command running: the files, then the ``-c FILE`` given before it
    (``scenecut -c FILE segment ...``), which the top-level callback keeps as ``ctx.obj``."""
    return load_settings(ctx.obj)


def inference_options(
    model: str, device: str, batch_size: int, precision: str, compile_net: bool
) -> InferenceOptions:
    """The five inference options of a command as one object (``--batch-size`` counts images)."""
    return InferenceOptions(
        model=model,
        device=device,
        batch_images=batch_size,
        precision=precision,
        compile=compile_net,
    )


def run_options(
    settings: Settings,
    *,
    model: str | None,
    device: str | None,
    batch_size: int,
    precision: str,
    compile_net: bool,
    detector: str,
    detector_threshold: float | None,
    min_shot_len: float,
    threshold: float | None,
    scenes: int | None,
    min_scene_len: float,
    start_timecode: str | None,
    formats: list[str] | None,
    decode_workers: int | None = None,
    hwaccel: str | None = None,
    **export: object,
) -> tuple[SegmentOptions, ExportOptions]:
    """``segment``'s and ``batch``'s options, the settings filling what the command line left
    out (model, device, threshold, formats), both checked; ``export`` are ``ExportOptions``
    fields as given."""
    inference = inference_options(
        model or settings.model, device or settings.device, batch_size, precision, compile_net
    )
    options = SegmentOptions(
        detector=detector,
        detector_threshold=detector_threshold,
        min_shot_seconds=min_shot_len,
        inference=inference,
        threshold=settings.threshold if threshold is None else threshold,
        scenes=scenes,
        min_scene_seconds=min_scene_len,
        start_timecode=start_timecode,
        decode_workers=decode_workers,
        hwaccel=hwaccel,
    )
    outputs = ExportOptions(formats=format_names(formats, settings.formats), **export)
    options.check()
    outputs.check()
    return options, outputs
