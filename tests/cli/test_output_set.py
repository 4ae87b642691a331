"""A video's outputs are one unit: after any failure or interruption a run leaves its complete
set or nothing of its own (no temporary file, no ffmpeg still running), and a plain rerun
works."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from scenecut.data.synth import make_film
from scenecut.files import OutputSet, recover


@pytest.fixture(scope="module")
def slow_film(tmp_path_factory):
    """Large enough frames that cutting its clips takes a while (to interrupt)."""
    path = tmp_path_factory.mktemp("slow") / "slow.mp4"
    return make_film(path, seed=4, n_scenes=6, shots_per_scene=(1, 1), shot_frames=(60, 60),
                     width=640, height=360, audio=True)  # fmt: skip


def _segment(exe: str, film: Path, out: Path, *extra: str, limit=None) -> subprocess.Popen:
    cmd = [exe, "segment", str(film), "-o", str(out), "--save-clips", "-f", "json,csv", "-q"]

    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as from a terminal, even under xdist
        if limit:  # a disk that is full past ``limit`` bytes per file
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen(
        [*cmd, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=child
    )


def _complete(out: Path, stem: str) -> bool:
    """The JSON, the CSV and one clip per scene the JSON lists, and nothing else."""
    data = json.loads((out / f"{stem}.scenes.json").read_text())
    clips = {f"{stem}-Scene-{i + 1:03d}.mp4" for i in range(len(data["scenes"]))}
    names = {p.name for p in out.iterdir()}
    return names == {f"{stem}.scenes.json", f"{stem}.scenes.csv", *clips}


def _ffmpegs_writing_to(out: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ffmpeg" in cmdline and str(out).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def _wait_for_clips_under_way(out: Path, proc: subprocess.Popen, limit: float = 120) -> None:
    """Until ffmpeg is writing a clip into the run's hidden folder."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if _ffmpegs_writing_to(out):
            return
        time.sleep(0.02)
    pytest.fail("the clips never started")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_during_the_clips_leaves_nothing_and_ends_ffmpeg(
    scenecut_exe, slow_film, tmp_path, signum
):
    out = tmp_path / "out"
    proc = _segment(scenecut_exe, slow_film.path, out)
    _wait_for_clips_under_way(out, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert err.strip() == f"interrupted ({signal.Signals(signum).name})"
    assert list(out.iterdir()) == []  # not even a hidden temporary file
    assert _ffmpegs_writing_to(out) == []
    # The plain rerun just works.
    rerun = _segment(scenecut_exe, slow_film.path, out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert _complete(out, "slow")


def test_kill_9_then_a_plain_rerun_works(scenecut_exe, slow_film, tmp_path):
    out = tmp_path / "out"
    proc = _segment(scenecut_exe, slow_film.path, out)
    _wait_for_clips_under_way(out, proc)
    proc.kill()
    proc.wait()
    assert not [p for p in out.iterdir() if not p.name.startswith(".")]  # nothing visible
    rerun = _segment(scenecut_exe, slow_film.path, out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    for _ in range(100):  # the killed run's ffmpegs may still be ending
        if not _ffmpegs_writing_to(out):
            break
        time.sleep(0.1)
    assert _complete(out, "slow"), sorted(p.name for p in out.iterdir())


def test_a_full_disk_leaves_nothing(scenecut_exe, film, tmp_path):
    """The scene lists fit under the limit, the clips do not: nothing may stay."""
    out = tmp_path / "out"
    proc = _segment(scenecut_exe, film.path, out, limit=20_000)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert len(err.strip().splitlines()) == 1 and "error:" in err
    assert list(out.iterdir()) == []


def test_overwrite_removes_clips_an_earlier_run_made_and_this_one_does_not(
    scenecut_exe, film, tmp_path
):
    out = tmp_path / "out"
    (tmp_path / "out").mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "film-Scene-notes.mp4").write_text("not a numbered clip: mine too")
    first = _segment(scenecut_exe, film.path, out, "--scenes", "3")
    assert first.wait(timeout=300) == 0
    assert len(list(out.glob("film-Scene-???.mp4"))) == 3
    second = _segment(scenecut_exe, film.path, out, "--scenes", "2", "--overwrite")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert sorted(p.name for p in out.glob("film-Scene-???.mp4")) == [
        "film-Scene-001.mp4",
        "film-Scene-002.mp4",
    ]
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "film-Scene-notes.mp4").exists()


def test_two_runs_into_one_folder_at_once(scenecut_exe, film, tmp_path):
    """One makes the set, the other refuses in one line; nothing half-made, no temporary left."""
    out = tmp_path / "out"
    runs = [_segment(scenecut_exe, film.path, out) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 1]), results
    for code, err in results:
        if code == 1:
            assert "already exist" in err and len(err.strip().splitlines()) == 1
    assert _complete(out, "film")


def test_a_run_killed_while_committing_is_finished_by_the_next(tmp_path):
    """kill -9 between the moves into place: the next run in the folder finishes the moves (its
    lock is free), so the set is whole; a live run's folder is left alone."""
    out = tmp_path / "out"
    with OutputSet(out, overwrite=False) as live:
        for name in ("a.json", "a-Scene-001.mp4"):
            live.path(out / name).write_text(name)
        # What a killed run leaves: its folder, a commit plan, one file moved and one not.
        dead = out / ".scenecut-dead0000.partial"
        dead.mkdir()
        (dead / "b.json").write_text("b")
        os.link(dead / "b.json", out / "b.json")
        (dead / "b-Scene-001.mp4").write_text("clip")
        (dead / "commit.json").write_text(
            json.dumps({"files": ["b.json", "b-Scene-001.mp4"], "stale": [], "overwrite": False})
        )
        # And one killed before committing: its files are simply dropped.
        early = out / ".scenecut-early000.partial"
        early.mkdir()
        (early / "c.json").write_text("c")
        recover(out)
        assert sorted(p.name for p in out.iterdir()) == [
            live.dir.name,
            "b-Scene-001.mp4",
            "b.json",
        ]
        live.commit([out / "a.json", out / "a-Scene-001.mp4"])
    assert sorted(p.name for p in out.iterdir()) == [
        "a-Scene-001.mp4",
        "a.json",
        "b-Scene-001.mp4",
        "b.json",
    ]
