"""The library pipeline on generated films with known shots and scenes."""

from __future__ import annotations

import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import scenecut
from scenecut import video
from scenecut.errors import InputError, UsageError
from scenecut.shots import detect_shots


def _f1(predicted: set[int], truth: set[int], tolerance: int = 1) -> tuple[int, int, int]:
    tp = sum(1 for p in predicted if any(abs(p - t) <= tolerance for t in truth))
    return tp, len(predicted) - tp, len(truth) - tp


def test_shots_match_truth_and_file_is_decoded_once(film):
    result = scenecut.segment(film.path)
    cuts = [shot.start for shot in result.shots[1:]]
    assert len(cuts) == len(film.shot_cuts)
    assert all(abs(a - b) <= 1 for a, b in zip(cuts, film.shot_cuts, strict=True))
    assert result.video.frame_count == film.frame_count
    assert result.decoded_frames == film.frame_count  # one pass over the file
    assert result.video.fps == Fraction(25)
    # shots tile the film as half-open ranges
    assert result.shots[0].start == 0 and result.shots[-1].end == film.frame_count
    assert all(a.end == b.start for a, b in zip(result.shots, result.shots[1:], strict=False))
    assert len(result.boundary_scores) == len(result.shots) - 1


def test_stages_in_turn_give_what_stages_in_threads_give(film):
    """A batch worker with one core of its own runs segment's stages in turn (no decode or
    embed thread); the result is the same, the threads are not started."""
    seen: dict[bool, set[str]] = {True: set(), False: set()}
    results = {}
    for threaded in (True, False):
        video.set_cores(2 if threaded else 1)
        try:

            def progress(stage, done, total, threaded=threaded):
                seen[threaded].update(t.name for t in threading.enumerate())

            results[threaded] = scenecut.segment(film.path, progress=progress)
        finally:
            video.set_cores(None)
    ours = {"scenecut-decode", "scenecut-embed"}
    assert ours <= seen[True] and not ours & seen[False]
    a, b = results[True], results[False]
    assert a.shots == b.shots and a.scenes == b.scenes
    assert np.array_equal(a.boundary_scores, b.boundary_scores)


def test_keyframes_are_first_middle_last(film):
    kept = []
    detection = detect_shots(film.path, keyframe_height=64, on_shot=kept.append)
    assert [k.shot for k in kept] == detection.shots
    for item in kept:
        shot = item.shot
        assert item.images.shape[0] == 3 and item.images.shape[1] == 64
        assert item.images.dtype == np.uint8
        first, middle, last = shot.keyframes
        assert first == shot.start and last == shot.end - 1
        # MovieNet's middle frame, exact for shots that fit the 16-frame candidate buffer and
        # otherwise the nearest buffered candidate (spaced at most length / 16 apart)
        exact = shot.start + (shot.end - 1 - shot.start) // 2
        assert abs(middle - exact) <= (0 if shot.length <= 16 else shot.length / 16)


def test_classic_finds_scenes_not_shots(films):
    tp = fp = fn = 0
    for film in films:
        result = scenecut.segment(film.path)
        predicted = {scene.start for scene in result.scenes[1:]}
        a, b, c = _f1(predicted, set(film.scene_starts[1:]))
        tp, fp, fn = tp + a, fp + b, fn + c
        # every scene holds at least one shot and scenes tile the film
        assert result.scenes[0].start == 0 and result.scenes[-1].end == film.frame_count
        assert sum(len(s.shots) for s in result.scenes) == len(result.shots)
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert f1 >= 0.9, (tp, fp, fn)
    # there are many more shot cuts than scene cuts: a shot detector alone would fail
    assert sum(len(f.shot_cuts) for f in films) > 1.5 * sum(len(f.scene_starts) - 1 for f in films)


def test_scene_count_request_and_threshold(film):
    three = scenecut.segment(film.path, scenes=3)
    assert len(three.scenes) == 3
    # the scenes asked for are the highest-scoring gaps
    chosen = sorted(s.score for s in three.scenes[1:])
    others = [
        score
        for gap, score in enumerate(three.boundary_scores)
        if gap + 1 not in {s.first_shot for s in three.scenes}
    ]
    assert min(chosen) >= max(others)
    every_gap = scenecut.segment(film.path, threshold=0.0)
    assert len(every_gap.scenes) == 1 + sum(s > 0 for s in every_gap.boundary_scores)
    none = scenecut.segment(film.path, threshold=1.0)
    assert len(none.scenes) == 1


def test_min_scene_length(film):
    long = scenecut.segment(film.path, threshold=0.0, min_scene_seconds=2.0)
    assert all(scene.length >= 50 for scene in long.scenes)


def test_single_shot_video_is_one_scene(bad_inputs):
    result = scenecut.segment(bad_inputs["single_shot"])
    assert len(result.shots) == 1 and len(result.scenes) == 1
    assert result.boundary_scores == []
    assert result.scenes[0].end == result.video.frame_count == 50


@pytest.mark.parametrize("detector", ["content", "threshold", "histogram", "hash"])
def test_other_detectors_run(film, detector):
    result = scenecut.segment(film.path, detector=detector)
    assert result.settings.detector == detector
    assert result.shots[-1].end == film.frame_count


def test_content_detector_finds_the_cuts(film):
    result = scenecut.segment(film.path, detector="content")
    cuts = [shot.start for shot in result.shots[1:]]
    _, fp, fn = _f1(set(cuts), set(film.shot_cuts))
    assert fp == 0 and fn <= 1


@pytest.mark.parametrize(
    "name", ["text", "empty", "audio_only", "truncated", "truncated_faststart"]
)
def test_bad_inputs_raise_input_error(bad_inputs, name):
    with pytest.raises(InputError):
        scenecut.segment(bad_inputs[name])


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        scenecut.segment(tmp_path / "nope.mp4")


@pytest.mark.parametrize(
    "override",
    [{"threshold": 1.5}, {"scenes": 0}, {"detector": "magic"}, {"min_shot_seconds": -1.0}],
)
def test_bad_options_raise_usage_error(film, override):
    with pytest.raises(UsageError):
        scenecut.segment(film.path, **override)


def test_readme_python_example_runs(film, tmp_path, monkeypatch):
    """The README's "From Python" block, run as written on a generated film."""
    import re
    import shutil

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"### From Python\n\n```python\n(.*?)```", readme, re.S).group(1)
    shutil.copy(film.path, tmp_path / "film.mp4")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    result, again = namespace["result"], namespace["again"]
    assert len(result.scenes) >= 2
    assert [(s.start, s.end) for s in again.scenes] == [(s.start, s.end) for s in result.scenes]
    assert (tmp_path / "out" / "film.scenes.edl").read_text().startswith("TITLE: film")


@pytest.mark.parametrize("size", [(640, 266), (482, 202)])
def test_sizes_2_mod_4_are_segmented(tmp_path, size):
    """2.39:1 sizes (640x266, 1280x534, 1920x818) have chroma planes of an odd number of rows:
    the keyframes must still come out, for the small classic keyframes and the 224 px ones."""
    from scenecut.data.synth import make_film

    width, height = size
    path = tmp_path / f"film_{width}x{height}.mp4"
    truth = make_film(path, seed=2, n_scenes=3, shots_per_scene=(2, 3), shot_frames=(15, 25),
                      width=width, height=height)  # fmt: skip
    for model in ("classic", "effnet-lite0"):
        result = scenecut.segment(path, model=model)
        assert [s.start for s in result.shots] == truth.shot_starts, model
        assert (result.video.width, result.video.height) == size


@pytest.mark.parametrize("suffix", [".gif", ".apng"])
def test_animated_images_of_odd_size_are_segmented(film, tmp_path, suffix):
    """GIF and APNG decode to palette or RGB frames, converted to 4:2:0 at the even size below
    the odd one (481x203 -> 480x202, chroma of 101 rows)."""
    from scenecut.video import ffmpeg_exe

    path = tmp_path / f"odd{suffix}"
    encode = ["-i", str(film.path), "-vf", "scale=481:203", "-frames:v", "60"]
    if suffix == ".apng":
        encode += ["-f", "apng", "-plays", "0"]
    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *encode, str(path)])
    assert proc.returncode == 0
    result = scenecut.segment(path, model="classic")
    assert result.decoded_frames == result.video.frame_count >= 50
    assert result.shots and result.shots[-1].end == result.video.frame_count
