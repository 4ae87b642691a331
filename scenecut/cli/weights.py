"""``scenecut weights``: the registry of pretrained checkpoints, downloads and imports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut.cli.console import DownloadBar, stderr
from scenecut.models import hub

app = typer.Typer(
    help="Pretrained checkpoints: list, describe and download them into the cache.",
    no_args_is_help=True,
)


@app.command("list")
def weights_list(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
) -> None:
    """Registered weights: names on stdout, a table on stderr."""
    records = list(hub.REGISTRY.values())
    imported = hub.imported_names()
    for name in [r.name for r in records] + imported:
        typer.echo(name)
    if not quiet:
        console = stderr()
        _weights_table(console, records, [hub.is_installed(r) for r in records])
        if imported:
            console.print(f"imported (scenecut weights import): {', '.join(imported)}")


@app.command("import")
def weights_import(
    path: Annotated[
        Path,
        typer.Argument(
            help="An official checkpoint: BaSSL Lightning .ckpt (or its .tar.gz), ModelScope "
            ".pt, SCRL .pth.tar, torchvision .pth; or a scenecut .safetensors file."
        ),
    ],
    name: Annotated[str, typer.Option("--as", help="The name to use it by (--model NAME).")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace imported weights of that name.")
    ] = False,
) -> None:
    """Convert a checkpoint into scenecut's safetensors format; print its path on stdout."""
    done = hub.import_weights(path, name, overwrite=overwrite)
    typer.echo(str(done.path))
    usable = "scores boundaries" if "head_sbd" in done.parts else "initialises training"
    stderr().print(
        f"{name}: {done.source} checkpoint, {done.encoder} with {', '.join(done.parts)}; {usable}"
    )


@app.command("info")
def weights_info(name: Annotated[str, typer.Argument(help="A registered weights name.")]) -> None:
    """One record as JSON on stdout, with where it is (or would be) installed."""
    record = hub.get(name)
    data = record.to_dict()
    data["path"] = str(hub.installed_path(record))
    data["installed"] = hub.is_installed(record)
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command("pull")
def weights_pull(
    name: Annotated[str, typer.Argument(help="A registered weights name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if already installed.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download, verify and install weights; print the checkpoint's path on stdout."""
    record = hub.get(name)
    console = stderr()
    with DownloadBar(console, quiet, name) as progress:
        path = hub.download(record, force=force, progress=progress)
    typer.echo(str(path))


def _weights_table(console, records, installed) -> None:
    from rich.table import Table

    table = Table(title="registered weights", title_justify="left")
    table.add_column("name", no_wrap=True, min_width=max(len(r.name) for r in records))
    for column in ("kind", "architecture", "size", "reported AP", "installed"):
        table.add_column(column, justify="right")
    for record, here in zip(records, installed, strict=True):
        # SCRL reports per-movie means; BaSSL/ModelScope pooled AP: not the same quantity.
        ap = next(((k, v) for k, v in record.metrics.items() if "_ap" in k), None)
        table.add_row(
            record.name,
            record.kind,
            record.architecture,
            "?" if record.size is None else f"{record.size / 1e6:.0f} MB",
            "" if ap is None else f"{ap[1]:.2f}" + (" per movie" if "per_movie" in ap[0] else ""),
            "yes" if here else "no",
        )
    console.print(table)
