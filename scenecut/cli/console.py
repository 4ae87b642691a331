"""The console side of every command: stderr, one-line errors, progress bars, warnings, the
scene table; and ``emit``, the one way machine-readable output goes to stdout.

stdout carries only machine-readable output; everything meant for a person goes to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from scenecut.errors import OutputError
from scenecut.output.timecode import timecode
from scenecut.result import SegmentResult

# How every scene list numbers things, said once: the table's caption (the README says the same).
NUMBERING = (
    "Scenes, shots and frames count from 1 and ranges include both ends, as in the CSV; "
    "the JSON counts from 0 and its ranges exclude the end."
)


def stderr():
    """A Rich console on stderr, with no automatic highlighting."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def error(console, message: str) -> None:
    """One line on stderr; the message is printed as is (paths may contain [brackets])."""
    from rich.text import Text

    console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def bug_message(exc: BaseException) -> str:
    """What an unexpected exception says to the user: it is ours to fix, and how to report it."""
    return (
        f"{type(exc).__name__}: {exc} "
        "(this is a bug; set SCENECUT_DEBUG=1 for the traceback and please report it)"
    )


def log_warnings_to_stderr(debug: bool) -> None:
    """Library warnings (e.g. an undecodable packet skipped) as ``warning: ...`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("scenecut")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.addLevelName(logging.WARNING, "warning")


class ProgressBars:
    """Rich progress bars on stderr, one per stage, or a no-op when quiet or stderr is not a
    terminal. ``update(stage, done, total)`` may be called from any thread."""

    def __init__(self, console, quiet: bool, label: str):
        self.enabled = not quiet and console.is_terminal
        self.console = console
        self.label = label
        self.tasks: dict[str, int] = {}
        self.lock = threading.Lock()  # the embedding thread reports too

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.__enter__()
        return self.update

    def update(self, stage: str, done: int, total: int) -> None:
        with self.lock:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(f"{self.label}: {stage}", total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False


class DownloadBar:
    """A Rich byte-count bar on stderr, or nothing when quiet or stderr is not a terminal.

    The bar appears with the first byte count, so a block that downloads nothing (the file
    is already in the cache) draws nothing."""

    def __init__(self, console, quiet: bool, label: str):
        self.enabled = not quiet and console.is_terminal
        self.console = console
        self.label = label
        self.bar = None

    def __enter__(self):
        return self.update if self.enabled else None

    def update(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=None)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def say(console):
    """A callback printing one line on stderr as is (URLs and paths may hold [brackets])."""
    return lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)


def scene_table(console, result: SegmentResult) -> None:
    """The scenes as a table on ``console``, numbered as ``NUMBERING`` says. Fits 80 columns
    up to a ten-hour film (7-digit frame numbers)."""
    from rich import box
    from rich.table import Table

    video = result.video
    table = Table(
        title=f"{video.path.name}: {len(result.shots)} shots, {len(result.scenes)} scenes "
        f"({result.settings.model})",
        title_justify="left",
        caption=NUMBERING,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("scene", "start", "end", "length", "frames", "shots", "score"):
        table.add_column(column, justify="right", no_wrap=True)
    for scene in result.scenes:
        start, end = video.time_of(scene.start), video.time_of(scene.end)
        table.add_row(
            str(scene.index + 1),
            timecode(start),
            timecode(end),
            f"{float(end - start):.1f}s",
            f"{scene.start + 1}-{scene.end}",
            f"{scene.first_shot + 1}-{scene.last_shot + 1}",
            "" if scene.score is None else f"{scene.score:.2f}",
        )
    console.print(table)


def emit(text: str) -> None:
    """Machine-readable output to stdout, now; a full disk or a closed pipe is an OutputError."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        # Nothing more can go out: later writes at exit must not fail again.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        reason = "the reader closed the pipe" if isinstance(exc, BrokenPipeError) else exc.strerror
        raise StdoutClosed(f"cannot write to standard output ({reason or exc})") from exc


class StdoutClosed(OutputError):
    """stdout can take no more: the inputs left are not run, since nobody gets their paths."""
