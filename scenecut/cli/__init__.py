"""The ``scenecut`` command: parse options, call the library, render results.

One module per command group: ``segment`` (segment, report), ``export``, ``evaluate`` (eval),
``weights``, ``data``, ``train`` and ``config``; ``console`` holds the stderr helpers and
``options`` the shared options.

``-c FILE`` comes before the command (``scenecut -c FILE segment ...``), as in PySceneDetect:
the settings are the program's, read by every command that takes one of them, and the option
stays apart from ``scenecut train ... --config FILE``, which names a training configuration.

Machine-readable output goes to stdout (written file paths, or the JSON with ``--stdout``);
tables, progress and errors go to stderr. Exit codes: 0 success, 1 an input failed, 2 bad usage,
3 a bug, 130 interrupted (143 terminated by SIGTERM, 129 by SIGHUP).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from scenecut.cli import batch, config, data, evaluate, export, retrieval, train, weights
from scenecut.cli import segment as segment_cli
from scenecut.cli.console import bug_message, error, log_warnings_to_stderr, stderr
from scenecut.errors import ScenecutError
from scenecut.version import __version__

app = typer.Typer(
    name="scenecut",
    help="Cut long videos into scenes: shots, boundary scores, scene lists and clips.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("segment")(segment_cli.segment)
app.command("batch")(batch.batch)
app.command("export")(export.export)
app.command("report")(segment_cli.report)
app.command("eval")(evaluate.eval_video)
app.command("eval-retrieval", hidden=True)(retrieval.eval_retrieval)  # `eval retrieval`
app.command("config")(config.show_config)
app.add_typer(weights.app, name="weights")
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scenecut {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "-c",
            "--config",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="A settings file (TOML), read after the user's and ./scenecut.toml; "
            "`scenecut config` shows the settings in force.",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """Cut long videos into scenes."""
    ctx.obj = config_file  # options.current_settings reads it


class Terminated(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP, all raised as Ctrl-C is, so that the same clean-up runs
    (temporary files deleted, ffmpeg children ended, training checkpointed)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # click turns any KeyboardInterrupt into Abort: the signal is kept here


def _terminate(signum: int, frame) -> None:
    _received.append(signum)
    raise Terminated(signum)


def main() -> None:
    """Console-script entry: one red line and an exit code for expected errors."""
    debug = os.environ.get("SCENECUT_DEBUG") == "1"
    log_warnings_to_stderr(debug)
    for signum, default in (
        (signal.SIGINT, signal.default_int_handler),
        (signal.SIGTERM, signal.SIG_DFL),
        (signal.SIGHUP, signal.SIG_DFL),
    ):
        if signal.getsignal(signum) is default:  # not when started ignoring it (nohup)
            signal.signal(signum, _terminate)
    try:
        # Without standalone mode, click returns the exit code of typer.Exit instead of exiting.
        code = app(args=retrieval.rewrite(sys.argv[1:]), standalone_mode=False)
    except ScenecutError as exc:
        if debug:
            raise
        error(stderr(), str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # click's usage errors, as Typer re-exports them
        if debug:
            raise
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        error(stderr(), message)
        sys.exit(getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except Exception as exc:
        if debug:
            raise
        error(stderr(), bug_message(exc))
        sys.exit(3)
    if _received:  # typer turns KeyboardInterrupt into a silent exit code 130
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted() -> None:
    signum = _received[0] if _received else signal.SIGINT
    stderr().print(f"[red]interrupted ({signal.Signals(signum).name})[/red]")
    sys.exit(128 + signum)
