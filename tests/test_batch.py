"""``scenecut batch`` and its core: planning, the manifest, workers killed once and always, a
killed driver, resume, shards, the lock, and ``segment --skip-existing``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scenecut.batch import (
    CRASH_HOOK,
    Job,
    Manifest,
    Record,
    Shard,
    decide,
    plan,
    read_list,
    read_records,
)
from scenecut.cli import app
from scenecut.data.synth import make_film
from scenecut.errors import UsageError

runner = CliRunner()
SMALL = dict(n_scenes=2, shots_per_scene=(2, 3), shot_frames=(12, 20))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """archive/a/s0.mp4, archive/b/s1.mp4, archive/b/s2.mp4 (tiny films), archive/b/bad.mp4
    (text), archive/b/notes.txt (not a video)."""
    root = tmp_path_factory.mktemp("archive")
    for i, sub in enumerate(["a", "b", "b"]):
        make_film(root / sub / f"s{i}.mp4", seed=40 + i, **SMALL)
    (root / "b" / "bad.mp4").write_text("not a video\n" * 20)
    (root / "b" / "notes.txt").write_text("hello")
    return root


def _lines(out: Path, name: str = "manifest.jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def _statuses(lines: list[dict]) -> list[tuple[str, str, int, str | None]]:
    """(stem, status, attempt, error type) of every completion line, sorted."""
    return sorted(
        (Path(d["path"]).stem, d["status"], d["attempt"], d["error_type"])
        for d in lines
        if d["status"] != "started"
    )


def _batch(exe: str, *args: str, env: dict | None = None):
    return subprocess.run(
        [exe, "batch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


# --- the core, no video decoded ---


def test_plan_mirrors_the_tree_dedupes_links_and_refuses_collisions(tmp_path):
    src = tmp_path / "src"
    for name in ["a/x.mp4", "b/x.mp4", "b/c/y.MKV", "b/notes.txt", "b/.hidden.mp4"]:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"0" * 10)
    (src / "link.mp4").symlink_to(src / "a" / "x.mp4")
    out = tmp_path / "out"
    jobs = plan([str(src), str(src / "a" / "x.mp4"), str(src / "link.mp4")], out)
    assert [(j.key, j.out_dir) for j in jobs] == [
        ("a/x.mp4", out / "a"),
        ("b/c/y.MKV", out / "b" / "c"),
        ("b/x.mp4", out / "b"),
    ]  # the folder's videos only, each real file once
    assert jobs[0].size == 10 and jobs[0].mtime_ns == (src / "a" / "x.mp4").stat().st_mtime_ns
    # a/x.mp4 and b/x.mp4 both write x.scenes.* in one flat folder: refused, both named
    with pytest.raises(UsageError, match=r"a/x\.mp4 and .*b/x\.mp4 would both write"):
        plan([str(src)], out, flat=True)
    (src / "a" / "x.mov").write_bytes(b"1")
    with pytest.raises(UsageError, match="rename one of them"):
        plan([str(src / "a")], out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no videos"):
        plan([str(tmp_path / "empty")], out)


def test_lists_shards_and_records_from_untrusted_lines(tmp_path):
    assert read_list("a.mp4\n\n b c.mp4 \n") == ["a.mp4", "b c.mp4"]
    assert read_list("new\nline.mp4\0x.mp4\0", null=True) == ["new\nline.mp4", "x.mp4"]
    for bad in ["1/1", "2/1", "x/2", "-1/3", "3"]:
        with pytest.raises(UsageError, match="--shard"):
            Shard.parse(bad)
    jobs = [Job(Path(f"/v/{i}.mp4"), f"d/{i}.mp4", Path("/o"), 1, 1) for i in range(60)]
    shards = [Shard.parse(f"{i}/3") for i in range(3)]
    held = [[j.key for j in jobs if s.holds(j)] for s in shards]
    assert sorted(k for h in held for k in h) == sorted(j.key for j in jobs)  # in one shard
    assert all(10 <= len(h) <= 30 for h in held)
    # the hash of the path under the root, so every machine and every rerun agree
    expected = int.from_bytes(hashlib.sha256(b"d/7.mp4").digest()[:8], "big") % 3
    assert [s.holds(jobs[7]) for s in shards] == [i == expected for i in range(3)]
    # a manifest edited by hand, cut short by a kill, or not ours: only good records are read
    good = Record("/v/0.mp4", "ok", "h", 1, 1, outputs=["/o/0.scenes.json"])
    (tmp_path / "manifest.jsonl").write_text(
        good.to_line()
        + '{"path": "/v/1.mp4", "status": "ok", "settings_hash": "h", "size": "1", "mtime_ns": 1}\n'
        + '{"path": "/v/2.mp4", "status": "done", "settings_hash": "h", "size": 1, "mtime_ns": 1}\n'
        + "[1, 2]\nnot json\n"
        + '{"path": "/v/3.mp4", "status": "ok", "settings_hash": "h", "size": true, '
        '"mtime_ns": 1}\n'
        + '{"path": "/v/4.mp4", "status": "ok", "sett'  # no newline: the line a kill cut
    )
    assert read_records(tmp_path) == [good]
    job = Job(Path("/v/0.mp4"), "0.mp4", Path("/o"), 1, 1)
    # ok, but its outputs are gone: run again, allowed to replace what it recorded
    task = decide(job, {"/v/0.mp4": [good]}, "h")
    assert not isinstance(task, Record) and task.overwrite


def test_second_driver_on_the_same_output_is_refused(archive, scenecut_exe, tmp_path):
    out = tmp_path / "out"
    with Manifest(out):
        proc = _batch(scenecut_exe, str(archive / "a"), "-o", str(out), "-q")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {out} is in use by another scenecut batch (pid {os.getpid()} on "
        f"{os.uname().nodename}); wait for it to finish, or choose another -o (each --shard "
        "has its own manifest)"
    ]
    assert not list(out.glob("a/*"))
    # a shard has its own manifest and lock
    res = runner.invoke(app, ["batch", str(archive / "a"), "-o", str(out), "-q", "--shard", "0/1"])
    assert res.exit_code == 0, res.output
    assert [d["status"] for d in _lines(out, "manifest.shard-0-of-1.jsonl")] == ["started", "ok"]


# --- workers killed once and always, resume ---


def test_workers_killed_once_and_always_then_rerun_skips(archive, scenecut_exe, tmp_path):
    out = tmp_path / "out"
    listing = tmp_path / "list"
    listing.write_bytes(b"\0".join(str(p).encode() for p in sorted(archive.rglob("*.mp4"))))
    crash = {CRASH_HOOK: "once:s1,always:s2"}
    args = ["--from-list", str(listing), "-0", "-o", str(out), "--workers", "2", "-q"]
    proc = _batch(scenecut_exe, *args, "--retries", "1", env=crash)
    assert proc.returncode == 1, proc.stderr
    lines = _lines(out)
    assert _statuses(lines) == [
        ("bad", "failed", 1, "InputError"),
        ("s0", "ok", 1, None),
        ("s1", "failed", 1, "WorkerDied"),  # killed once: a new worker tries again
        ("s1", "ok", 2, None),
        ("s2", "failed", 1, "WorkerDied"),
        ("s2", "failed", 2, "WorkerDied"),  # killed always: failed after --retries 1
    ]
    assert [d["will_retry"] for d in lines if d["error_type"] == "WorkerDied"] == [
        True,
        True,
        False,
    ]
    # every attempt was started once, by a worker of its own
    started = [(Path(d["path"]).stem, d["attempt"]) for d in lines if d["status"] == "started"]
    assert sorted(started) == [("bad", 1), ("s0", 1), ("s1", 1), ("s1", 2), ("s2", 1), ("s2", 2)]
    errors = sorted(proc.stderr.strip().splitlines())
    assert errors == [
        f"error: {archive / 'b' / 'bad.mp4'}: not a readable video file (Invalid data found "
        "when processing input)",
        f"error: {archive / 'b' / 's2.mp4'}: the worker died (killed by SIGKILL) while on this "
        "video",
    ]
    ok = {Path(d["path"]).stem: d for d in lines if d["status"] == "ok"}
    assert ok["s0"]["outputs"] == [str(out / "a" / "s0.scenes.json")]
    assert ok["s0"]["frames"] > 0 and ok["s0"]["scenes"] >= 1 and ok["s0"]["model"] == "fused"
    written = [str(out / "a" / "s0.scenes.json"), str(out / "b" / "s1.scenes.json")]
    assert sorted(proc.stdout.split()) == written

    # the outputs are segment's, byte for byte
    alone = tmp_path / "alone"
    res = runner.invoke(app, ["segment", str(archive / "b" / "s1.mp4"), "-o", str(alone), "-q"])
    assert res.exit_code == 0, res.output
    assert (out / "b" / "s1.scenes.json").read_bytes() == (alone / "s1.scenes.json").read_bytes()

    # a rerun does nothing again: done and failed videos are skipped, exit 0
    before = len(lines)
    proc = _batch(scenecut_exe, *args)
    assert proc.returncode == 0, proc.stderr
    again = _lines(out)[before:]
    assert sorted(d["status"] for d in again) == ["skipped"] * 4
    # --rerun-failed (the hook off) tries the two failures again, and only them
    proc = _batch(scenecut_exe, *args, "--rerun-failed")
    assert proc.returncode == 1
    last = _lines(out)[before + 4 :]
    assert _statuses(last) == [
        ("bad", "failed", 1, "InputError"),
        ("s0", "skipped", 1, None),
        ("s1", "skipped", 1, None),
        ("s2", "ok", 1, None),
    ]
    assert (out / "b" / "s2.scenes.json").exists()
    status = runner.invoke(app, ["batch", "status", str(out)])
    assert status.exit_code == 0
    assert status.stdout.splitlines()[:4] == ["videos 4", "ok 3", "failed 1", "unfinished 0"]
    assert "failed: " in status.stderr and "bad.mp4" in status.stderr


def test_a_killed_driver_loses_only_videos_in_flight(scenecut_exe, tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        make_film(src / f"v{i}.mp4", seed=60 + i, **SMALL)
    out = tmp_path / "out"
    args = ["batch", str(src), "-o", str(out), "--workers", "1", "-q"]
    driver = subprocess.Popen([scenecut_exe, *args], stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if manifest.exists() and '"status": "ok"' in manifest.read_text():
            break
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    first = _lines(manifest.parent)
    done_before = {d["path"] for d in first if d["status"] == "ok"}
    assert 1 <= len(done_before) < 5
    proc = subprocess.run([scenecut_exe, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rest = _lines(out)[len(first) :]
    # each run starts the largest files first (a long film started last would finish alone)
    runs = [[Path(d["path"]).stat().st_size for d in r if d["status"] == "started"]
            for r in (first, rest)]  # fmt: skip
    assert sum(map(len, runs)) >= 5 and all(s == sorted(s, reverse=True) for s in runs)
    assert len({s for r in runs for s in r}) >= 4  # the films' sizes differ
    done_now = [d["path"] for d in rest if d["status"] == "ok"]
    skipped = {d["path"] for d in rest if d["status"] == "skipped"}
    assert skipped == done_before
    assert sorted(done_now) == sorted(str(p) for p in src.glob("*.mp4") if str(p) not in skipped)
    assert len(list(out.glob("*.scenes.json"))) == 5
    assert not list(out.glob(".scenecut-*"))  # the killed run's staging folders are gone


def test_a_hardware_decoder_that_cannot_start_warns_once_for_the_batch(
    archive, scenecut_exe, tmp_path
):
    """``--hwaccel cuda`` without a CUDA device: the driver tries it on the first video and
    warns once; both workers decode in software, to the outputs software decoding gives."""
    from scenecut.video import hwaccel_names

    if pytest.importorskip("torch").cuda.is_available():
        pytest.skip("NVDEC starts here: tests/test_gpu.py")
    if "cuda" not in hwaccel_names():
        pytest.skip("this PyAV's ffmpeg has no cuda hwaccel")
    hw, sw = tmp_path / "hw", tmp_path / "sw"
    proc = _batch(scenecut_exe, str(archive), "-o", str(hw), "--workers", "2", "-q",
                  "--hwaccel", "cuda")  # fmt: skip
    assert proc.returncode == 1  # bad.mp4
    warnings = [line for line in proc.stderr.splitlines() if not line.startswith("error: ")]
    assert len(warnings) == 1, proc.stderr
    assert warnings[0].startswith("warning: the cuda hardware decoder cannot start here (")
    assert _batch(scenecut_exe, str(archive), "-o", str(sw), "--workers", "2", "-q").returncode
    made = sorted(p.relative_to(hw) for p in hw.rglob("*.scenes.json"))
    assert len(made) == 3
    assert made == sorted(p.relative_to(sw) for p in sw.rglob("*.scenes.json"))
    for rel in made:
        assert (hw / rel).read_bytes() == (sw / rel).read_bytes()


# --- segment --skip-existing ---


def test_segment_skip_existing(archive, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes((archive / "a" / "s0.mp4").read_bytes())
    out = tmp_path / "out"
    args = ["segment", str(video), "-o", str(out), "-q", "--skip-existing"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.split() == [str(out / "v.scenes.json")]
    made = (out / "v.scenes.json").stat().st_mtime_ns
    res = runner.invoke(app, [*args[:4], "--skip-existing"])  # not quiet: says why
    assert res.exit_code == 0 and res.stdout == ""
    assert "done before" in res.stderr
    assert (out / "v.scenes.json").stat().st_mtime_ns == made
    # other settings, or a changed input, are done again (replacing its own outputs)
    res = runner.invoke(app, [*args, "--threshold", "0.9"])
    assert res.exit_code == 0 and res.stdout.split() == [str(out / "v.scenes.json")]
    os.utime(video, ns=(made, made))
    res = runner.invoke(app, [*args, "--threshold", "0.9"])
    assert res.exit_code == 0 and res.stdout.split() == [str(out / "v.scenes.json")]
    statuses = [d["status"] for d in _lines(out)]
    assert statuses == ["ok", "skipped", "ok", "ok"]
    # outputs that no manifest records are not ours: refused as segment refuses them
    other = tmp_path / "other"
    runner.invoke(app, ["segment", str(video), "-o", str(other), "-q"])
    res = runner.invoke(app, ["segment", str(video), "-o", str(other), "-q", "--skip-existing"])
    assert res.exit_code == 1 and "--overwrite" in res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--shard", "2/2"], "--shard must be I/N"),
        (["--engine", "spark"], "--engine must be local or ray"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--flat", "{a}/x.mp4", "{b}/x.mp4"], "would both write"),
        (["--from-list", "{a}/missing.txt"], "cannot read --from-list"),
    ],
)
def test_bad_usage_is_one_line_before_any_work(scenecut_exe, tmp_path, args, needle):
    for sub in "ab":
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.mp4").write_bytes(b"0")
    args = [a.format(a=tmp_path / "a", b=tmp_path / "b") for a in args]
    out = tmp_path / "out"
    proc = _batch(scenecut_exe, str(tmp_path / "a"), "-o", str(out), *args)
    assert proc.returncode == (1 if "from-list" in needle else 2), proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not out.exists()
