"""Corrupt input through `segment --save-clips` (issue 14): a small seeded fuzz.

Each case is a corrupted copy of one generated clip (a truncation, bit flips, zeroed 4 KB
blocks or a damaged header/index; ``bench/fuzzcases.py``, shared with the larger campaign in
``bench/fuzz.py``) run through the installed command with a time limit. Whatever the damage, the
run must end with exit 0 or 1 (never 3, never a traceback), leave the complete output set (JSON,
CSV, one clip per scene the JSON lists) or none of it, leave no temporary files, and, when it
succeeds on a file that PyAV decodes to fewer frames than the clean clip had, say so in a
``warning:`` line that mentions frames.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scenecut.data.synth import make_film
from scenecut.video import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]
# bench/ is not a package: the shared module is loaded from its path (registered first, as
# dataclasses look their module up in sys.modules).
_spec = importlib.util.spec_from_file_location("bench_fuzzcases", ROOT / "bench" / "fuzzcases.py")
fuzzcases = sys.modules.setdefault("bench_fuzzcases", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(fuzzcases)

SEED = 14
# 8 truncations, 8 bit-flip counts (1 to 1024 bits), 8 zeroed-block counts, 4 header variants.
CASES = fuzzcases.corruptions(SEED, truncations=8, bitflips=8, zeroed=8, headers=4)
TIMEOUT_S = 60  # each run takes about a second; a hang is what this limit catches


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, int]:
    """A 2 s, 128x72 clip with audio and three scenes, and the frames PyAV decodes from it.

    Its index (moov) comes first, as in files made for streaming, so that a truncated copy still
    opens and loses its last frames instead of being unreadable.
    """
    folder = tmp_path_factory.mktemp("fuzz")
    plain, path = folder / "plain.mp4", folder / "clip.mp4"
    make_film(
        plain,
        seed=SEED,
        n_scenes=3,
        shots_per_scene=(1, 1),
        shot_frames=(16, 18),
        width=128,
        height=72,
        audio=True,
        threads=1,
    )
    command = [ffmpeg_exe(), "-v", "error", "-i", str(plain), "-c", "copy"]
    subprocess.run([*command, "-movflags", "+faststart", str(path)], check=True)
    return path, fuzzcases.decodable_frames(path)


def _run(command: list[str]) -> tuple[int | None, str]:
    """Run ``command`` in its own session; on timeout kill the session (ffmpeg children too)."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return None, err.decode("utf-8", "replace")
    return proc.returncode, err.decode("utf-8", "replace")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_corrupt_copy_fails_cleanly_or_succeeds_completely(case, clip, scenecut_exe, tmp_path):
    source, source_frames = clip
    assert source_frames > 40  # the clean clip decodes: the comparison below means something
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(case.apply(source.read_bytes()))
    out = tmp_path / "out"
    command = [scenecut_exe, "segment", str(bad), "--save-clips", "--format", "json,csv"]
    code, text = _run([*command, "--model", "classic", "-o", str(out)])
    err = fuzzcases.Stderr(text)
    tail = text[-600:]

    assert code is not None, f"no exit within {TIMEOUT_S} s: {tail}"
    assert not err.traceback, tail
    assert code in (0, 1), f"exit {code}: {tail}"
    found = fuzzcases.output_set(out, "clip", ".mp4")
    if code == 0:
        assert found.state == "complete", f"exit 0 but missing {found.missing}: {tail}"
    else:
        assert err.errors, f"exit {code} without an error: line: {tail}"
        assert found.state == "none", f"exit {code} but left {found.present}: {tail}"
    assert not fuzzcases.temp_files(out)
    decoded = fuzzcases.decodable_frames(bad)
    if code == 0 and decoded < source_frames:
        assert err.frames_warning, (
            f"PyAV decodes {decoded} of {source_frames} frames, and no warning: line said "
            f"frames were lost: {tail}"
        )
