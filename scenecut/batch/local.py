"""The local engine: spawned worker processes, one loaded model each, one video at a time."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from collections import deque
from collections.abc import Callable

from scenecut.batch.core import Record, Task, WorkSpec, died, run_one, started, worker_name
from scenecut.errors import ScenecutError
from scenecut.models.scorers import load_scorer
from scenecut.spawning import without_main
from scenecut.video import available_cores, set_cores


def run_local(
    tasks: list[Task],
    spec: WorkSpec,
    emit: Callable[[Record], None],
    *,
    workers: int,
    retries: int,
) -> None:
    """``tasks`` on ``workers`` spawned processes, each loading the model once; a video goes
    to whichever worker is free. Every result, and a ``started`` line before each attempt,
    goes to ``emit`` (the driver's manifest). Each worker gets its share of the cores
    (``video.set_cores``): with fewer than 2, ``segment`` runs its stages in turn rather than
    in threads."""
    import multiprocessing
    from multiprocessing.connection import wait

    if not tasks:
        return
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    queue = deque(tasks)
    share = max(1, available_cores() // workers)  # each worker's cores
    pool: list[_Worker] = []
    try:
        for _ in range(min(workers, len(tasks))):
            pool.append(_Worker.start(context, spec, share))
        while queue or any(w.task for w in pool):
            for w in pool:
                if w.task is None and queue:
                    w.give(queue.popleft())
                    emit(started(w.task, spec.settings_hash, w.name))
            busy = [w for w in pool if w.task is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            gone = []
            for w in pool:
                if w.task is None or not (w.conn in ready or w.process.sentinel in ready):
                    continue
                message = w.receive()
                if message is not None:
                    emit(message)
                    w.task = None
                    continue
                task, why = w.task, w.exit_reason()
                again = task.attempt <= retries
                emit(died(task, spec.settings_hash, w.name, why, will_retry=again))
                if again:
                    queue.appendleft(dataclasses.replace(task, attempt=task.attempt + 1))
                w.task = None
                w.stop()
                gone.append(w)
            # A new worker for each that died, while there is work for it.
            pool = [w for w in pool if w not in gone]
            busy_count = sum(w.task is not None for w in pool)
            while len(pool) < min(workers, busy_count + len(queue)):
                pool.append(_Worker.start(context, spec, share))
    finally:
        for w in pool:  # all told first, so that they exit together
            w.release()
        for w in pool:
            w.stop()


class _Worker:
    """A spawned process with one loaded model, taking one task at a time over a pipe."""

    def __init__(self, process, conn):
        self.process = process
        self.conn = conn
        self.task: Task | None = None
        self.name = ""
        self.released = False

    @classmethod
    def start(cls, context, spec: WorkSpec, share: int) -> _Worker:
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(theirs, spec, os.getpid(), share), name="scenecut-batch"
        )
        with without_main():  # it skips the caller's script (``spawning``)
            process.start()
        theirs.close()
        return cls(process, ours)

    def _ready(self) -> None:
        """Wait for the model to be loaded (the workers start together, load in parallel)."""
        try:
            kind, value = self.conn.recv()
        except EOFError:
            self.stop()
            raise ScenecutError(
                f"a batch worker died while loading the model ({self.exit_reason()})"
            ) from None
        if kind == "error":
            self.stop()
            raise ScenecutError(f"a batch worker could not load the model: {value}")
        self.name = value

    def give(self, task: Task) -> None:
        if not self.name:
            self._ready()
        self.task = task
        self.conn.send(task)

    def receive(self) -> Record | None:
        """The worker's record, or None if it died first."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        self.process.join(timeout=5)
        return None

    def exit_reason(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def release(self) -> None:
        """Tell an idle worker to exit (``stop`` waits for it)."""
        if self.task is None and not self.released:
            self.released = True
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)

    def stop(self) -> None:
        """Let an idle worker exit; kill a busy one (Ctrl-C, an error): its video is in flight,
        its staged outputs are cleaned up by the next run."""
        if self.task is None:
            self.release()
            self.process.join(timeout=10)
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join()


def _worker_main(conn, spec: WorkSpec, parent: int, share: int) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, which stops us
    set_cores(share)
    try:
        scorer = load_scorer(spec.options.inference, spec.choice)
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    name = worker_name()
    # A closed pipe is the driver gone or done with us: just stop.
    with contextlib.suppress(EOFError, OSError):
        conn.send(("ready", name))
        while (task := conn.recv()) is not None:
            conn.send(run_one(task, spec, scorer, worker=name))


def _die_with_parent(parent: int) -> None:
    """On Linux, be killed with the driver (a kill -9 of it leaves no worker writing on)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the driver died before the call
        os._exit(1)
