"""``scenecut weights``: the registry of pretrained checkpoints, downloads and imports."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut.cli.console import DownloadBar, say, stderr
from scenecut.models import hub
from scenecut.models.scorers import ModelChoice, choose_model

app = typer.Typer(
    help="Pretrained checkpoints: list, describe and download them into the cache.",
    no_args_is_help=True,
)


def chosen_model(console, quiet: bool, model: str, offline: bool) -> ModelChoice:
    """``choose_model`` for a command: a named model not in the cache is downloaded now, said
    in one line (what, how big, from where) with a byte bar under it."""
    with DownloadBar(console, quiet, model) as progress:
        return choose_model(model, offline=offline or None, progress=progress, notice=say(console))


def fetched_weights(console, quiet: bool, spec: str, offline: bool) -> None:
    """Download the registered weights ``spec`` names if not in the cache (``train extract``
    does it once, before its processes start); anything else is left to the command."""
    if spec in hub.REGISTRY:
        with DownloadBar(console, quiet, spec) as progress:
            hub.resolve(
                spec, fetch=True, offline=offline or None, progress=progress, notice=say(console)
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
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="An official checkpoint: BaSSL Lightning .ckpt (or its .tar.gz), ModelScope "
            ".pt, SCRL .pth.tar, torchvision .pth, Saccade-VSSL .pth; or a scenecut .safetensors "
            "file. Several "
            "files holding different parts make one model (SCRL: encoder and BiLSTM head)."
        ),
    ],
    name: Annotated[str, typer.Option("--as", help="The name to use it by (--model NAME).")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace imported weights of that name.")
    ] = False,
) -> None:
    """Convert checkpoints into scenecut's safetensors format; print its path on stdout."""
    done = hub.import_weights(paths, name, overwrite=overwrite)
    typer.echo(str(done.path))
    head = "head_sbd" in done.parts or "lstm_head" in done.parts
    usable = "scores boundaries" if head and "shot_encoder" in done.parts else "for training"
    if "clip_encoder" in done.parts:
        usable = "a shot encoder for segment, and for eval retrieval and train probe"
    stderr().print(
        f"{name}: {done.source} checkpoint, {done.encoder} with {', '.join(done.parts)}; {usable}"
    )


@app.command("info")
def weights_info(name: Annotated[str, typer.Argument(help="A registered weights name.")]) -> None:
    """One record as JSON on stdout, with where it is (or would be) installed and how each of
    its files is verified: by a published hash, by the hash recorded at first use, or not."""
    record = hub.get(name)
    checks = hub.verification(record)
    data = record.to_dict()
    data["path"] = str(hub.installed_path(record))
    data["installed"] = hub.is_installed(record)
    data["files"] = [dataclasses.asdict(c) for c in checks]
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    console = stderr()
    for check in checks:
        console.print(
            f"{check.file} ({check.role}): {check.verified}; {check.note}",
            markup=False,
            soft_wrap=True,
        )


@app.command("pull")
def weights_pull(
    name: Annotated[str, typer.Argument(help="A registered weights name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if already installed.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download, verify and install weights; print the checkpoint's path on stdout.

    Already installed: checked again in full (hash and load). SCENECUT_OFFLINE=1 refuses."""
    record = hub.get(name)
    console = stderr()
    with DownloadBar(console, quiet, name) as progress:
        path = hub.download(record, force=force, progress=progress, notice=say(console))
    typer.echo(str(path))
    stamp = hub.read_stamp(record)
    if stamp is not None:
        checked = (
            "matched the published hash"
            if stamp.published
            else "no published hash: this first download is the reference"
        )
        console.print(
            f"{name}: sha256 {stamp.sha256} recorded {stamp.recorded} ({checked}); "
            "checked on every load",
            markup=False,
            soft_wrap=True,
        )


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
