"""Options several commands share, with help texts built from the tables they name."""

from __future__ import annotations

from typing import Annotated

import typer

from scenecut.models.options import DEVICES, PRECISIONS, InferenceOptions
from scenecut.models.scorers import model_help
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
