"""The Ray engine: Ray core actors, each holding one loaded model, fed one video at a time.

A video goes to whichever actor is free. An actor that dies (its process killed, out of memory,
its node lost) is replaced by a new one and its video tried again, ``retries`` times at most;
then the video is recorded failed and the rest go on. Ray itself never retries (``max_restarts``
and ``max_task_retries`` are 0), so every attempt is one manifest line. The outputs are written
by the actors, so ``-o`` must be a folder every node sees at the same path.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import deque
from collections.abc import Callable

from scenecut.batch.core import Record, Task, WorkSpec, died, run_one, started, worker_name
from scenecut.errors import ScenecutError, UsageError
from scenecut.models.scorers import load_scorer
from scenecut.video import set_cores


class VideoActor:
    """One Ray actor: the model loaded once, then ``run`` per video."""

    def __init__(self, spec: WorkSpec, cpus: float = 1.0):
        set_cores(max(1, int(cpus)))  # its share: under 2, segment's stages in turn
        self.spec = spec
        self.name = worker_name()
        self.error = None
        try:
            self.scorer = load_scorer(spec.options.inference, spec.choice)
        except Exception as exc:  # said by ready(), where the driver asks
            self.error = f"{type(exc).__name__}: {exc}"

    def ready(self) -> tuple[str, str | None]:
        return self.name, self.error

    def run(self, task: Task) -> Record:
        return run_one(task, self.spec, self.scorer, worker=self.name)


def run_ray(
    tasks: list[Task],
    spec: WorkSpec,
    emit: Callable[[Record], None],
    *,
    retries: int,
    address: str | None = None,
    actors: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 2.0,
    init_options: dict | None = None,
) -> None:
    """``tasks`` on Ray actors: the cluster this process is connected to, else the one at
    ``address`` (``auto``, ``HOST:PORT``, else ``$RAY_ADDRESS``), else a new one on this machine
    bound to 127.0.0.1 (``init_options`` for ``ray.init``).
    ``actors`` (default: as many as the cluster's CPUs and GPUs allow) each take
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (0.5: two actors share a GPU)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'scenecut[ray]'") from None
    if cpus_per_worker <= 0 or gpus_per_worker < 0:
        raise UsageError("--cpus-per-worker must be above 0 and --gpus-per-worker 0 or more")
    if not tasks:
        return
    ours = not ray.is_initialized()
    if ours:
        settings = dict(log_to_driver=False, logging_level=logging.WARNING)
        if address is None and not os.environ.get("RAY_ADDRESS"):
            # A new cluster on this machine: nothing of it listens beyond it.
            settings |= dict(include_dashboard=False, _node_ip_address="127.0.0.1")
        ray.init(address=address, **(settings | (init_options or {})))
    pool: list = []
    try:
        actor_class = ray.remote(
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=0, max_task_retries=0
        )(VideoActor)
        fits = _fits(ray.cluster_resources(), cpus_per_worker, gpus_per_worker)
        count = min(actors or fits, len(tasks))
        pool = [actor_class.remote(spec, cpus_per_worker) for _ in range(count)]
        names = [_ready(ray, actor) for actor in pool]
        queue = deque(tasks)
        idle = list(range(count))
        running: dict = {}  # object ref -> (actor index, task)
        while queue or running:
            while idle and queue:
                i, task = idle.pop(), queue.popleft()
                running[pool[i].run.remote(task)] = (i, task)
                emit(started(task, spec.settings_hash, names[i]))
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                i, task = running.pop(ref)
                try:
                    emit(ray.get(ref))
                except ray.exceptions.RayActorError as exc:
                    again = task.attempt <= retries
                    why = type(exc).__name__
                    emit(died(task, spec.settings_hash, names[i], why, will_retry=again))
                    if again:
                        queue.appendleft(dataclasses.replace(task, attempt=task.attempt + 1))
                    ray.kill(pool[i])
                    if not queue:  # no work left for a new one
                        continue
                    pool[i] = actor_class.remote(spec, cpus_per_worker)
                    names[i] = _ready(ray, pool[i])
                idle.append(i)
    finally:
        for actor in pool:
            ray.kill(actor)
        if ours:
            ray.shutdown()


def _fits(resources: dict, cpus: float, gpus: float) -> int:
    count = int(resources.get("CPU", 1) // cpus)
    if gpus:
        count = min(count, int(resources.get("GPU", 0) // gpus))
    if count < 1:
        raise UsageError(
            f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} "
            f"GPUs: not enough for one worker of {cpus:g} CPUs and {gpus:g} GPUs"
        )
    return count


def _ready(ray, actor) -> str:
    """The actor's name once its model is loaded; ``ScenecutError`` if it could not be."""
    try:
        name, problem = ray.get(actor.ready.remote())
    except ray.exceptions.RayActorError as exc:
        raise ScenecutError(f"a Ray worker died while loading the model ({exc})") from None
    if problem:
        raise ScenecutError(f"a Ray worker could not load the model: {problem}")
    return name
