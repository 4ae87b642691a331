"""``scenecut eval retrieval``: a clip encoder's video retrieval on an action tree (spec 6).

Registered as the hidden command ``eval-retrieval``; ``scenecut eval retrieval ...`` reaches it
(``scenecut.cli.main`` turns the two words into one, as ``eval``'s VIDEO argument would
otherwise take ``retrieval`` for a file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut.cli.console import stderr
from scenecut.cli.options import DeviceOption, current_settings
from scenecut.errors import UsageError
from scenecut.models.options import check_device, resolve_device


def eval_retrieval(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Option(
            help="The clip encoder: a `train pretrain --method saccade` model, the "
            "reference's .pth checkpoint, or random:BACKBONE (random:r3d10, the baseline)."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            help="A UCF101/HMDB51-style tree (jpegs_256/, split/) [default: settings].",
            show_default=False,
        ),
    ] = None,
    fold: Annotated[int, typer.Option(help="The split lists' number.", min=1)] = 1,
    protocol: Annotated[
        str,
        typer.Option(
            help="reference (colour jitter p 0.3 on the clips, as the reference) or "
            "clean (no jitter: deterministic)."
        ),
    ] = "reference",
    batch_size: Annotated[int, typer.Option(help="Videos per network call.", min=1)] = 8,
    workers: Annotated[int, typer.Option(help="Loader processes.", min=0, max=256)] = 0,
    device: DeviceOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
) -> None:
    """Video retrieval (SACCADE.md section 6): test videos query train videos by the cosine of
    their 10 clips' mean embedding; top-k accuracy, k = 1, 5, 10, 20, 50. JSON on stdout."""
    if protocol not in ("reference", "clean"):
        raise UsageError(f"--protocol must be reference or clean, not {protocol!r}")
    settings = current_settings(ctx)
    data = data or settings.data_root()
    device = device or settings.device or "auto"
    check_device(device)
    from scenecut.train.actions import retrieval  # torch: only once the options are good

    result = retrieval(
        data, model, fold=fold, protocol=protocol, batch_size=batch_size, workers=workers,
        device=resolve_device(device),
    )  # fmt: skip
    sys.stdout.write(json.dumps(result) + "\n")
    if not quiet:
        console = stderr()
        heads = "  ".join(f"top-{k:<3}" for k in result["top_k"])
        values = "  ".join(f"{v:6.2f}%" for v in result["top_k"].values())
        console.print(f"{result['queries']} queries, {result['gallery']} gallery videos",
                      markup=False)  # fmt: skip
        console.print(heads, markup=False)
        console.print(values, markup=False)


def rewrite(args: list[str]) -> list[str]:
    """``... eval retrieval ...`` -> ``... eval-retrieval ...`` (options before the command:
    ``-c FILE``), unless a file named ``retrieval`` is what ``eval`` is asked to score."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("-c", "--config") else 1
    if args[i : i + 2] == ["eval", "retrieval"] and not Path("retrieval").exists():
        return [*args[:i], "eval-retrieval", *args[i + 2 :]]
    return args
