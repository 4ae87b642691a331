"""``scenecut train``: pre-train, extract shot features, fine-tune the boundary model.

Each command builds a ``TrainConfig`` (paper defaults < ``--config FILE`` < options <
``--set key=value``), starts 1..N processes through torchrun's launcher (or runs as one worker
when already under ``torchrun``) and prints rank 0's metrics as JSON lines on stderr. Importing
this module is cheap: torch loads only when a command runs.

``--config FILE`` here is a training configuration (any ``TrainConfig`` field); the settings of
``scenecut -c FILE train ...`` (``scenecut.settings``) give what none of those set: the data
root, and the folder under which ``pretrain`` and ``finetune`` make a new run folder,
``RUNS/<method>-<YYYYMMDD-HHMMSS>`` (``finetune-...``). ``extract`` keeps ``--out`` required:
running it again continues the same feature folder, which a dated default would not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut.cli.console import stderr
from scenecut.cli.options import (
    PRECISION_HELP,
    OfflineOption,
    PrecisionOption,
    current_settings,
)
from scenecut.cli.weights import fetched_weights
from scenecut.errors import InputError, UsageError
from scenecut.files import refuse_existing
from scenecut.models.config import ENCODERS
from scenecut.settings import Settings
from scenecut.train.config import (
    CHECKPOINT,
    CLIP_ENCODERS,
    METHODS,
    TrainConfig,
    check_run_folder,
    make_config,
)
from scenecut.train.fusion import train_fusion

app = typer.Typer(
    help="Train the models: pretrain (BaSSL, SimCLR, ShotCoL, SCRL, Saccade-VSSL), extract, "
    "finetune, probe.",
    no_args_is_help=True,
)

_ENCODERS = ", ".join(f"{name} ({note})" if note else name for name, note in ENCODERS.items())
_ENCODERS += f"; saccade: {', '.join(CLIP_ENCODERS)}"
Gpus = Annotated[
    int, typer.Option(help="GPUs on this node (one process each, NCCL).", min=0, max=1024)
]
Procs = Annotated[
    int, typer.Option(help="CPU processes (gloo) when there is no GPU.", min=1, max=1024)
]
Nodes = Annotated[int, typer.Option(help="Machines in the run.", min=1, max=100_000)]
NodeRank = Annotated[int, typer.Option(help="This machine's index, 0..nodes-1.", min=0)]
Addr = Annotated[str, typer.Option(help="Address of node 0.")]
Port = Annotated[int, typer.Option(help="Port on node 0.", min=1, max=65535)]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any setting: key=value (model.crn.hidden_size=64)."),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A training config, TOML/YAML/JSON (not the settings of `scenecut -c FILE`).",
    ),
]
Data = Annotated[
    Path | None,
    typer.Option(
        help="MovieNet-style tree [default: settings, else $SCENECUT_DATA, else ./data/movienet "
        "if it exists].",
        show_default=False,
    ),
]
RunFolder = Annotated[
    Path | None,
    typer.Option(
        help="Run folder: checkpoint, metrics, model [default: a new "
        "RUNS/<method>-<YYYYMMDD-HHMMSS>, RUNS from settings, else runs].",
        show_default=False,
    ),
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Delete --out and start over.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No metrics on stderr.")]


def _text(path: Path | None) -> str | None:
    """An option's path as a setting, None when it was left out (the settings then give it)."""
    return None if path is None else str(path)


def print_record(record: dict) -> None:
    """Rank 0's metrics, one JSON line on stderr (top-level so spawned workers can use it)."""
    brief = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in record.items()}
    sys.stderr.write(json.dumps(brief) + "\n")
    sys.stderr.flush()


def _check_processes(nodes: int, node_rank: int) -> None:
    if node_rank >= nodes:
        raise UsageError(f"--node-rank must be 0..{nodes - 1} (--nodes {nodes}), got {node_rank}")


def _device(gpus: int) -> str:
    if gpus:
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--gpus needs CUDA GPUs; none are visible (use --procs N on CPU)")
        return "cuda"
    return "cpu"


def run_config(settings: Settings, task: str, given: dict, config_file, sets, *, resume: bool,
               nodes: int) -> TrainConfig:  # fmt: skip
    """The run's ``TrainConfig``: what the options, ``--config FILE`` and ``--set`` leave out of
    the data root and run folder comes from ``settings``."""

    def fill(values: dict) -> dict:
        filled = {}
        if not values.get("data"):
            filled["data"] = str(settings.data_root())
        if not values.get("out"):
            name = values.get("method", "bassl") if task == "pretrain" else task
            filled["out"] = str(_new_run_folder(settings, name, resume, nodes))
        return filled

    return make_config(task, config_file, sets, fallback=fill, **given)


def _new_run_folder(settings: Settings, name: str, resume: bool, nodes: int) -> Path:
    """A new dated run folder for a run without ``--out``; a refusal where that would be wrong."""
    if resume:
        last = settings.last_run_folder(name)
        which = f"the newest {name} run is {last}" if last else f"no {name} run in {settings.runs}"
        raise UsageError(f"--resume continues a run: pass --out RUN ({which})")
    if nodes > 1 or "RANK" in os.environ:
        raise UsageError(
            "--out is required with --nodes above 1 or under torchrun: every process must "
            "write to the same run folder"
        )
    return settings.new_run_folder(name)


def _train(ctx: typer.Context, task: str, given: dict, config_file, sets, gpus, procs, nodes,
           node_rank, addr, port, resume, overwrite, quiet) -> None:  # fmt: skip
    config = run_config(
        current_settings(ctx), task, given, config_file, sets, resume=resume, nodes=nodes
    )
    if not Path(config.data).is_dir():
        raise InputError(f"the data root {config.data} is not a folder")
    _check_processes(nodes, node_rank)
    device = _device(gpus)
    check_run_folder(config.run, resume, overwrite)  # --overwrite deletes: refusals come first
    if given["out"] is None and not quiet:
        stderr().print(f"run folder: {config.run}", markup=False, soft_wrap=True)
    from scenecut.train.entry import train_entry  # torch: only once the settings are good
    from scenecut.train.loop import Interrupted, launch

    try:
        done = launch(
            train_entry,
            json.dumps(dataclasses.asdict(config)),
            None if quiet else print_record,
            device,
            procs=gpus or procs,
            nodes=nodes,
            node_rank=node_rank,
            master_addr=addr,
            master_port=port,
        )
    except Interrupted as stop:
        _interrupted(stop.signum, config.run / CHECKPOINT)
    if done:
        typer.echo(done)


def _interrupted(signum: int, checkpoint: Path) -> None:
    """Training stopped by Ctrl-C (or SIGTERM): one line saying what was kept, exit 128 + N."""
    import signal

    from rich.text import Text

    kept = ""
    if checkpoint.is_file():
        kept = f": {checkpoint} holds the last finished step; continue with --resume"
    name = signal.Signals(signum).name
    stderr().print(Text.assemble((f"interrupted ({name})", "red"), kept), soft_wrap=True)
    raise typer.Exit(128 + signum)


@app.command()
def pretrain(
    ctx: typer.Context,
    data: Data = None,
    out: RunFolder = None,
    method: Annotated[
        str, typer.Option(help=f"{', '.join(METHODS[:-1])} or {METHODS[-1]}.")
    ] = "bassl",
    encoder: Annotated[str | None, typer.Option(help=f"{_ENCODERS}.")] = None,
    init: Annotated[
        str | None, typer.Option(help="Start from these encoder weights (name or path).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="[default: the paper's]")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch per step.")] = None,
    micro_batch: Annotated[
        int | None, typer.Option(help="Per process per pass; the rest is accumulated.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="[default: the paper's]")] = None,
    workers: Annotated[int | None, typer.Option(help="Loader processes per trainer.")] = None,
    precision: Annotated[str | None, typer.Option(help=PRECISION_HELP)] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
    gpus: Gpus = 0,
    procs: Procs = 1,
    nodes: Nodes = 1,
    node_rank: NodeRank = 0,
    master_addr: Addr = "127.0.0.1",
    master_port: Port = 29500,
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Self-supervised pre-training; writes OUT/model.safetensors (encoder and CRN; the clip
    encoder for saccade). --data may also be an SCRL puzzles folder, and is a UCF101/HMDB51-style
    tree for saccade."""
    given = dict(
        data=_text(data), out=_text(out), method=method, encoder=encoder, init=init, epochs=epochs,
        batch_size=batch_size, micro_batch=micro_batch, lr=lr, workers=workers,
        precision=precision, max_steps=max_steps,
    )  # fmt: skip
    _train(ctx, "pretrain", given, config_file, sets, gpus, procs, nodes, node_rank, master_addr,
           master_port, resume, overwrite, quiet)  # fmt: skip


@app.command()
def extract(
    ctx: typer.Context,
    encoder: Annotated[
        str,
        typer.Option(
            help="Checkpoint path, imported name, effnet-lite0, or a weights name "
            "(downloaded on first use)."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Feature folder: one .npy per film; running again continues it.")
    ],
    data: Data = None,
    split: Annotated[str, typer.Option(help="Which films.")] = "pretrain",
    batch_size: Annotated[
        int, typer.Option(help="Shots per network call.", min=1, max=100_000)
    ] = 32,
    workers: Annotated[int, typer.Option(help="Loader processes.", min=0)] = 2,
    precision: PrecisionOption = "auto",
    gpus: Gpus = 0,
    procs: Procs = 1,
    nodes: Nodes = 1,
    node_rank: NodeRank = 0,
    master_addr: Addr = "127.0.0.1",
    master_port: Port = 29500,
    offline: OfflineOption = False,
) -> None:
    """Shot features of every film (mean over its 3 keyframes), films sharded over processes.
    Re-running skips films already done."""
    data = data or current_settings(ctx).data_root()
    args = dict(
        tree_root=str(data), encoder=encoder, out=str(out), split=split,
        batch_shots=batch_size, workers=workers, precision=precision,
    )  # fmt: skip
    _check_processes(nodes, node_rank)
    fetched_weights(stderr(), False, encoder, offline)  # once, before the processes start
    from scenecut.train.entry import extract_entry
    from scenecut.train.loop import launch

    done = launch(
        extract_entry,
        json.dumps(args),
        _device(gpus),
        procs=gpus or procs,
        nodes=nodes,
        node_rank=node_rank,
        master_addr=master_addr,
        master_port=master_port,
    )
    if done:
        print_record({"extract": str(out), **done})
    typer.echo(str(out))


@app.command()
def finetune(
    ctx: typer.Context,
    features: Annotated[Path, typer.Option(help="Feature folder from `train extract`.")],
    data: Data = None,
    out: RunFolder = None,
    head: Annotated[
        str, typer.Option(help="crn (BaSSL) or lstm (SCRL's BiLSTM protocol).")
    ] = "crn",
    epochs: Annotated[int | None, typer.Option(help="[default: 20]")] = None,
    batch_size: Annotated[int | None, typer.Option(help="[default: 1024]")] = None,
    lr: Annotated[float | None, typer.Option(help="[default: 1e-5]")] = None,
    workers: Annotated[int | None, typer.Option(help="Loader processes per trainer.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
    gpus: Gpus = 0,
    procs: Procs = 1,
    nodes: Nodes = 1,
    node_rank: NodeRank = 0,
    master_addr: Addr = "127.0.0.1",
    master_port: Port = 29500,
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train the CRN boundary head on labelled windows (best epoch on --set val_split=...);
    writes OUT/model.safetensors for `scenecut segment --model`."""
    given = dict(
        data=_text(data), features=str(features), out=_text(out), head=head, epochs=epochs,
        batch_size=batch_size, lr=lr, workers=workers, max_steps=max_steps,
    )  # fmt: skip
    _train(ctx, "finetune", given, config_file, sets, gpus, procs, nodes, node_rank, master_addr,
           master_port, resume, overwrite, quiet)  # fmt: skip


@app.command()
def probe(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            help="The pre-trained clip encoder (a saccade model or the reference's .pth); "
            "leave out, or random:BACKBONE, for a randomly initialised one (the baseline)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="A UCF101/HMDB51-style tree: jpegs_256/, split/ [default: settings].",
            show_default=False,
        ),
    ] = None,
    out: RunFolder = None,
    head: Annotated[
        str, typer.Option(help="linear (a linear probe) or full (fine-tune the whole network).")
    ] = "linear",
    protocol: Annotated[
        str,
        typer.Option(
            help="reference (downstream.py: raw inputs, BN adapting, test jitter, "
            "best epoch by test accuracy) or clean (normalised inputs, BN frozen under the "
            "linear probe, best epoch by a validation split carved from train)."
        ),
    ] = "reference",
    fold: Annotated[int, typer.Option(help="The split lists' number (trainlist0N).", min=1)] = 1,
    epochs: Annotated[int | None, typer.Option(help="[default: 199]")] = None,
    batch_size: Annotated[int | None, typer.Option(help="[default: 32]")] = None,
    lr: Annotated[float | None, typer.Option(help="[default: 0.1]")] = None,
    workers: Annotated[int | None, typer.Option(help="Loader processes per trainer.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
    gpus: Gpus = 0,
    procs: Procs = 1,
    nodes: Nodes = 1,
    node_rank: NodeRank = 0,
    master_addr: Addr = "127.0.0.1",
    master_port: Port = 29500,
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Action recognition on a clip encoder (SACCADE.md section 7): a linear probe or full
    fine-tuning on the train split; prints the test split's top-1 (OUT/test.json)."""
    given = dict(
        data=_text(data), init=model, out=_text(out), head=head, protocol=protocol, fold=fold,
        epochs=epochs, batch_size=batch_size, lr=lr, workers=workers, max_steps=max_steps,
    )  # fmt: skip
    _train(ctx, "probe", given, config_file, sets, gpus, procs, nodes, node_rank, master_addr,
           master_port, resume, overwrite, quiet)  # fmt: skip


@app.command()
def fusion(
    films: Annotated[
        list[Path], typer.Argument(help="Videos, each with a <stem>.truth.json scene list.")
    ],
    out: Annotated[Path, typer.Option(help="The fusion weights file to write (.safetensors).")],
    truth_dir: Annotated[
        Path | None, typer.Option(help="Where the .truth.json files are [default: beside each].")
    ] = None,
    l2: Annotated[float, typer.Option(help="L2 penalty of the logistic regression.", min=0)] = 1.0,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train the offline default's fusion of picture links, transitions and sound (a logistic
    regression, seconds on a CPU); use it with `scenecut segment --model OUT`."""
    if not overwrite:
        refuse_existing([out])
    console = stderr()

    def log(message: str) -> None:
        if not quiet:
            console.print(message, markup=False)

    summary = train_fusion(films, out, truth_dir=truth_dir, l2=l2, log=log)
    sys.stdout.write(json.dumps(summary) + "\n")
