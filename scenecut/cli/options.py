"""Options several commands share, with help texts built from the tables they name."""

from __future__ import annotations

from typing import Annotated

import typer

from scenecut.models.options import DEVICES, PRECISIONS, InferenceOptions
from scenecut.models.scorers import model_help
from scenecut.output.clips import TEMPLATE_MACROS
from scenecut.output.formats import FORMATS
from scenecut.shots import detector_help, detector_threshold_help

ModelOption = Annotated[str, typer.Option(help=model_help())]
# The commands that may download a model on first use (segment, eval, train extract).
OfflineOption = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Never download: a named model not in the cache is an error (also "
        "SCENECUT_OFFLINE=1).",
    ),
]
DeviceOption = Annotated[str, typer.Option(help=f"{DEVICES} (auto: CUDA when present).")]
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


# The outputs `segment` and `export` both write.
FormatOption = Annotated[
    list[str] | None,
    typer.Option(
        "--format",
        "-f",
        metavar="FORMATS",
        help=f"Scene-list formats: {', '.join(FORMATS)}; comma-separated or repeated, any case "
        "[default: json].",
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


def format_names(values: list[str] | None) -> list[str]:
    """``-f`` values as format names: ``-f JSON -f csv,edl`` is json, csv and edl."""
    if not values:
        return ["json"]
    return [name.strip().lower() for value in values for name in value.split(",") if name.strip()]


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
