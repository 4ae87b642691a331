"""``batch --engine ray`` on a local Ray cluster pinned to 127.0.0.1 (2 CPUs, a small object
store): a corrupt file, a video that kills its actor once, one that kills it always, good
files; the manifest, outputs equal to ``segment``'s, a rerun that skips, and no Ray process
left running afterwards. Needs the ``ray`` extra (in the test extra)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scenecut.batch import CRASH_HOOK, WorkSpec, run_batch, settings_hash
from scenecut.cli import app
from scenecut.data.synth import make_film
from scenecut.models.scorers import choose_model
from scenecut.segment import ExportOptions, SegmentOptions

ray = pytest.importorskip("ray")

SMALL = dict(n_scenes=2, shots_per_scene=(2, 3), shot_frames=(12, 20))


def _pids_under(folder: str) -> list[int]:
    """Processes whose command line names ``folder`` (the cluster's session files)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if folder.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def cluster(monkeypatch):
    # The actors inherit the environment of the raylet this process starts: the crash hook.
    monkeypatch.setenv(CRASH_HOOK, "once:once,always:always")
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited
    ray.init(
        num_cpus=2,
        object_store_memory=80 * 1024 * 1024,
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        _temp_dir=temp,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
        left = _pids_under(temp)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


def test_ray_engine(cluster, tmp_path):
    src = tmp_path / "src"
    for i, stem in enumerate(["good", "once", "always"]):
        make_film(src / f"{stem}.mp4", seed=80 + i, **SMALL)
    (src / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    options = SegmentOptions()
    export = ExportOptions(formats=["json", "csv"])
    choice = choose_model("auto")
    spec = WorkSpec(options, export, choice, settings_hash(options, export, choice))
    out = tmp_path / "out"
    ray_options = dict(actors=2, cpus_per_worker=1.0)
    counts = run_batch([str(src)], out, spec, engine="ray", retries=1, ray_options=ray_options)
    assert (counts.ok, counts.failed, counts.retried) == (2, 2, 2)
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    done = sorted(
        (Path(d["path"]).stem, d["status"], d["attempt"], d["error_type"])
        for d in lines
        if d["status"] != "started"
    )
    assert done == [
        ("always", "failed", 1, "WorkerDied"),
        ("always", "failed", 2, "WorkerDied"),  # bounded: failed, and the rest finished
        ("corrupt", "failed", 1, "InputError"),
        ("good", "ok", 1, None),
        ("once", "failed", 1, "WorkerDied"),
        ("once", "ok", 2, None),  # a new actor tried it again
    ]
    # the same bytes as `scenecut segment` writes
    alone = tmp_path / "alone"
    res = CliRunner().invoke(
        app, ["segment", str(src / "once.mp4"), "-o", str(alone), "-q", "-f", "json,csv"]
    )
    assert res.exit_code == 0, res.output
    for name in ["once.scenes.json", "once.scenes.csv"]:
        assert (out / name).read_bytes() == (alone / name).read_bytes()
    # a rerun skips everything: no actor is even started
    counts = run_batch([str(src)], out, spec, engine="ray", ray_options=ray_options)
    assert (counts.skipped, counts.ok, counts.failed) == (4, 0, 0)
