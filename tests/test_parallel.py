"""Shot detection in time chunks (``scenecut.parallel``) gives exactly the single pass's result:
the same cuts, the same keyframe pixels, the same evidence, with chunk edges placed on cuts, just
after them and just before them (inside the adaptive detector's window and the minimum shot
length), for both detectors with history, on a generated film and on real clips."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scenecut import parallel, video
from scenecut.data.synth import make_film
from scenecut.evidence import Evidence
from scenecut.parallel import detect_shots_parallel, index_frames, plan_chunks
from scenecut.shots import detect_shots
from scenecut.video import probe

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
EXE = str(Path(sys.executable).parent / "scenecut")


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    """18 s of shots of 10-40 frames with sound, a keyframe every 25 frames."""
    path = tmp_path_factory.mktemp("parallel") / "film.mp4"
    make_film(
        path, seed=3, audio=True, n_scenes=6, shot_frames=(10, 40), width=160, height=96, gop=25
    )
    return path


def _run(function, path: Path, **kwargs):
    """The detection, every shot handed on with its keyframes, and the evidence."""
    handed: list = []
    evidence = Evidence()
    found = function(path, on_shot=handed.append, evidence=evidence, keyframe_height=64, **kwargs)
    return found, handed, evidence


def _assert_same(single, chunked) -> None:
    (a, a_shots, a_evidence), (b, b_shots, b_evidence) = single, chunked
    assert b.shots == a.shots
    assert b.video == a.video  # frame count, times, keyframe times, rotation...
    assert b.decoded_frames == a.decoded_frames
    assert [s.shot for s in b_shots] == [s.shot for s in a_shots] == a.shots
    for x, y in zip(a_shots, b_shots, strict=True):
        assert np.array_equal(x.images, y.images), x.shot
    assert b_evidence.picture.luma == a_evidence.picture.luma
    assert b_evidence.picture.contrast == a_evidence.picture.contrast
    assert b_evidence.video_start == a_evidence.video_start
    assert (b_evidence.sound is None) == (a_evidence.sound is None)
    if a_evidence.sound is not None:
        assert a_evidence.sound.hops > 0
        for x, y in zip(a_evidence.sound.arrays(), b_evidence.sound.arrays(), strict=True):
            assert np.array_equal(x, y)


@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_chunk_edges_on_near_and_inside_shots_change_nothing(film, detector, caplog):
    single = _run(detect_shots, film, detector=detector)
    cuts = [shot.start for shot in single[0].shots[1:]]
    assert len(cuts) >= 10
    # Chunks starting on a cut, one frame after one, two before one (the adaptive detector
    # reports a cut two frames late: it is found by the chunk before), and in mid-shot: at 280,
    # both detectors give other cuts when a chunk is taken without its state checked.
    starts = [0, cuts[1], cuts[3] + 1, cuts[5] - 2, (cuts[7] + cuts[8]) // 2, 280]
    with caplog.at_level(logging.DEBUG, logger="scenecut.parallel"):
        chunked = _run(
            detect_shots_parallel,
            film,
            detector=detector,
            workers=2,
            chunk_starts=starts,
            # Replays shorter than the default: more chunks start with a detector whose state
            # is not the single pass's yet (and must be read again).
            replay={"adaptive": 21, "content": 34}[detector],
        )
    assert chunked[0].chunks == len(starts)  # not the single pass standing in
    assert "one pass" not in caplog.text
    _assert_same(single, chunked)


def test_a_chunk_whose_detector_has_not_caught_up_is_read_again_from_further_back(film, caplog):
    """The content detector merges cuts closer than the minimum shot length only once it has
    made a cut: a chunk whose replay holds no cut starts without that history; its state does
    not match the chunk before's, so it is read again from an earlier keyframe."""
    single = _run(detect_shots, film, detector="content")
    shots = single[0].shots
    longest = max(shots[1:], key=lambda s: s.length)
    start = longest.end - 2  # a replay of 34 frames stays inside the long shot
    assert longest.length >= 36
    with caplog.at_level(logging.DEBUG, logger="scenecut.parallel"):
        chunked = _run(
            detect_shots_parallel,
            film,
            detector="content",
            workers=2,
            chunk_starts=[0, start],
            replay=34,
        )
    assert chunked[0].chunks == 2
    _assert_same(single, chunked)  # without the second reading, the cut at 285 is lost
    assert "chunk 1: replaying from frame" in caplog.text


def test_the_plan_replays_from_a_keyframe_and_the_index_matches_the_decoder(film):
    info = probe(film)
    index = index_frames(film, info)
    assert index is not None
    assert index.keys[:3] == [0, 25, 50]  # the film's keyframe every 25 frames
    assert len(index.pts) == detect_shots(film).video.frame_count
    frames = len(index.pts)
    chunks = plan_chunks(frames, index.keys, [0, 60, 200], replay=21)
    assert [(c.replay, c.start, c.end) for c in chunks] == [
        (0, 0, 60),
        (25, 60, 200),  # 25: the last keyframe at least 21 frames before 60
        (175, 200, frames),
    ]


def test_what_cannot_be_compared_takes_the_single_pass(film):
    """The hash detector's state is not one ``detector_state`` knows, and one worker is one:
    both are the single pass itself."""
    for kwargs in ({"detector": "hash", "workers": 2}, {"workers": 1}):
        found = detect_shots_parallel(film, **kwargs)
        assert found.chunks == 1
        assert found.shots == detect_shots(film, detector=kwargs.get("detector", "adaptive")).shots


def test_by_default_a_long_film_goes_to_this_process_share_of_the_cores(film, monkeypatch):
    """Without ``workers``: the single pass for a short film, or with one core of one's own (a
    batch worker); chunks over the cores for a long one. 18 s counts as long here."""
    default = detect_shots_parallel(film)
    assert default.chunks == 1  # shorter than PARALLEL_MIN_SECONDS
    monkeypatch.setattr(parallel, "PARALLEL_MIN_SECONDS", 10.0)
    try:
        video.set_cores(1)
        assert detect_shots_parallel(film).chunks == 1
        video.set_cores(2)
        single = _run(detect_shots, film)
        chunked = _run(detect_shots_parallel, film)
    finally:
        video.set_cores(None)
    assert chunked[0].chunks >= 2
    _assert_same(single, chunked)


def test_a_learned_models_own_input_is_made_in_the_chunks(film):
    """BaSSL prepares its keyframes from the full-size frame (resize, centre crop); its
    ``prepare`` is a plain function of the sizes, so the chunks make the same pixels."""
    import torch
    from tiny_models import TINY

    from scenecut.models.bassl import build
    from scenecut.models.inference import BaSSLScorer, prepare_image

    torch.manual_seed(0)
    scorer = BaSSLScorer(build(TINY))
    image = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    assert np.array_equal(scorer.prepare(image), prepare_image(TINY, image))
    single = _run(detect_shots, film, prepare=scorer.prepare)
    chunked = _run(detect_shots_parallel, film, workers=2, prepare=scorer.prepare)
    assert chunked[0].chunks == 2
    assert single[1][0].images.shape[1:] == (TINY.image_size, TINY.image_size, 3)
    _assert_same(single, chunked)


def test_a_chunk_that_cannot_be_proven_sends_the_film_to_the_single_pass(film, tmp_path, caplog):
    """A damaged stretch in the second chunk: its worker meets an undecodable packet, the
    single pass (which fills the lost frames) takes over and hands on only the shots the first
    chunk had not handed on already."""
    data = bytearray(film.read_bytes())
    at = len(data) // 2
    data[at : at + 3000] = bytes(3000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data)
    single = _run(detect_shots, damaged)
    with caplog.at_level(logging.INFO, logger="scenecut.parallel"):
        chunked = _run(detect_shots_parallel, damaged, workers=2, chunk_starts=[0, 200])
    assert "a packet could not be decoded" in caplog.text
    assert chunked[0].chunks == 1
    _assert_same(single, chunked)  # each shot handed on once, in order


def test_cli_decode_workers(film, tmp_path):
    single = subprocess.run(
        [EXE, "segment", str(film), "--model", "classic", "--stdout", "-q"],
        capture_output=True,
        text=True,
    )
    chunked = subprocess.run(
        [
            EXE,
            "segment",
            str(film),
            "--model",
            "classic",
            "--stdout",
            "-q",
            "--decode-workers",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert single.returncode == chunked.returncode == 0, chunked.stderr
    assert json.loads(chunked.stdout) == json.loads(single.stdout)
    bad = subprocess.run(
        [EXE, "segment", str(film), "--decode-workers", "0"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --decode-workers must be from 1 to 256, got 0"
    ]


def test_a_script_without_the_main_guard_runs_once(film, tmp_path):
    """Decode workers are spawned: without care, each would import the caller's script first
    (``spawning``) and run its top-level ``segment`` call again."""
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "import scenecut\n"
        "from scenecut.parallel import detect_shots_parallel\n"
        "print('RUN', flush=True)\n"
        "found = detect_shots_parallel(sys.argv[1], workers=2)\n"
        "result = scenecut.segment(sys.argv[1], model='classic', decode_workers=2)\n"
        "print('CHUNKS', found.chunks, 'SHOTS', len(found.shots), len(result.shots))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(film)], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    shots = len(detect_shots(film).shots)
    assert proc.stdout.splitlines() == ["RUN", f"CHUNKS 2 SHOTS {shots} {shots}"]
    assert "Traceback" not in proc.stderr


def test_a_hardware_decoder_that_cannot_start_is_one_warning_then_software(film, tmp_path):
    """``--hwaccel cuda`` where there is no CUDA device: one warning (not one per decode
    worker), then the software result; a name ffmpeg does not offer is one error line."""
    if "cuda" not in video.hwaccel_names():
        pytest.skip("this PyAV's ffmpeg has no cuda hwaccel")
    import torch

    if torch.cuda.is_available():
        pytest.skip("NVDEC starts here: tests/test_gpu.py")
    base = [EXE, "segment", str(film), "--model", "classic", "--stdout", "-q"]
    single = subprocess.run(base, capture_output=True, text=True)
    for extra in ([], ["--decode-workers", "2"]):
        hw = subprocess.run([*base, "--hwaccel", "cuda", *extra], capture_output=True, text=True)
        assert hw.returncode == 0, hw.stderr
        assert json.loads(hw.stdout) == json.loads(single.stdout)
        lines = hw.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "warning: the cuda hardware decoder cannot start here ("
        ), hw.stderr
        assert lines[0].endswith("); decoding in software")
    # a file that is not a video is its own error, not the decoder's: the next one warns
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video\n")
    both = [EXE, "segment", str(junk), str(film), "--hwaccel", "cuda", "-q", "-o"]
    mixed = subprocess.run([*both, str(tmp_path / "out")], capture_output=True, text=True)
    assert mixed.returncode == 1
    lines = mixed.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"error: {junk}: not a readable video file")
    assert lines[1].startswith("warning: the cuda hardware decoder cannot start here (")
    bad = subprocess.run([*base, "--hwaccel", "nvdec"], capture_output=True, text=True)
    assert bad.returncode == 2 and not bad.stdout
    names = ", ".join(video.hwaccel_names())
    assert bad.stderr.strip().splitlines() == [
        f"error: --hwaccel must be one of {names}, got 'nvdec'"
    ]


CLIPS = {  # real cuts (tests/test_media.py) to put chunk edges on, near and between
    ROOT / "assets" / "sintel_trailer_480x204.mp4": [0, 226, 399, 621, 850],
    MEDIA / "bbb_first60s_640x360.mp4": [0, 285, 555, 1145],
}


@pytest.mark.media
@pytest.mark.parametrize("path", list(CLIPS), ids=lambda p: p.name)
def test_real_clips_come_out_the_same(path):
    if not path.exists():
        pytest.skip(f"{path} is not present")
    single = _run(detect_shots, path)
    chunked = _run(detect_shots_parallel, path, workers=2, chunk_starts=CLIPS[path])
    assert chunked[0].chunks == len(CLIPS[path])
    _assert_same(single, chunked)
