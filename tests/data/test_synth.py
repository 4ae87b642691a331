"""The synthetic film generator: determinism, exact truth, detectable cuts, bad inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from fractions import Fraction
from pathlib import Path

import pytest

from scenecut.data.synth import (
    FilmSpec,
    FilmTruth,
    long_film_spec,
    make_bad_inputs,
    make_film,
    make_long_film,
    plan_film,
)
from scenecut.errors import UsageError

SPEC = FilmSpec(seed=3, n_scenes=5, revisit=True)


def decoded(path: Path) -> tuple[int, str, list[float]]:
    """Frame count, a hash of every decoded RGB frame, and each frame's mean RGB value."""
    import av

    digest = hashlib.sha256()
    luma = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            digest.update(rgb.tobytes())
            luma.append(float(rgb.mean()))
    return len(luma), digest.hexdigest(), luma


def detected_cuts(path: Path) -> list[int]:
    from scenedetect import AdaptiveDetector, detect

    return [start.frame_num for start, _ in detect(str(path), AdaptiveDetector())[1:]]


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> FilmTruth:
    return make_film(tmp_path_factory.mktemp("film") / "film.mp4", SPEC)


def test_truth_structure(film: FilmTruth) -> None:
    assert film.shot_starts[0] == 0
    assert all(b - a >= SPEC.shot_frames[0] for a, b in film.shot_ranges())
    assert film.shot_ranges()[-1][1] == film.frame_count
    assert set(film.scene_starts) <= set(film.shot_starts)
    assert len(film.scene_starts) == len(film.place_of_scene) == SPEC.n_scenes
    assert [film.shot_starts[g + 1] for g in film.scene_gaps()] == film.scene_starts[1:]
    places = film.place_of_scene
    assert all(a != b for a, b in itertools.pairwise(places))
    assert len(set(places)) < len(places)  # revisit: some place comes back
    # Shot/reverse-shot: consecutive shots of a scene never share a camera angle.
    for i in range(1, len(film.shot_starts)):
        if film.shot_scene[i] == film.shot_scene[i - 1]:
            assert film.shot_angle[i] != film.shot_angle[i - 1]
    assert film.fps == Fraction(25)


def test_plan_is_deterministic(film: FilmTruth) -> None:
    assert plan_film(SPEC, film.path) == film
    other = plan_film(dataclasses.replace(SPEC, seed=4))
    assert other.shot_starts != film.shot_starts


def test_json_round_trip(film: FilmTruth) -> None:
    assert FilmTruth.from_json(film.to_json()) == film


def test_decoded_frames_match_truth_and_repeat(film: FilmTruth, tmp_path: Path) -> None:
    count, digest, _ = decoded(film.path)
    assert count == film.frame_count
    again = make_film(tmp_path / "again.mp4", SPEC)
    assert again.shot_starts == film.shot_starts
    assert decoded(again.path)[1] == digest
    other = make_film(tmp_path / "other.mp4", SPEC, seed=4)
    assert decoded(other.path)[1] != digest


def test_adaptive_detector_finds_exactly_the_truth_cuts(film: FilmTruth, tmp_path: Path) -> None:
    # Also without reverse shots and at another size: every cut found, nothing else.
    plain = make_film(tmp_path / "plain.mp4", seed=11, reverse_shot=False, width=256, height=144)
    for truth in (film, plain):
        found = detected_cuts(truth.path)
        assert len(found) == len(truth.shot_cuts)
        assert all(abs(a - b) <= 1 for a, b in zip(found, truth.shot_cuts, strict=True))


def test_fades_and_audio(tmp_path: Path) -> None:
    truth = make_film(tmp_path / "fades.mp4", seed=2, n_scenes=4, fades=True, audio=True)
    assert truth.fades
    _, _, luma = decoded(truth.path)
    for first, end in truth.fades:
        cut = next(s for s in truth.scene_starts if first < s < end)
        assert luma[cut - 1] < 2 and luma[cut] < 2  # the two black frames around the cut
        assert luma[first - 1] > 10 and luma[end] > 10
    import av

    with av.open(str(truth.path)) as container:
        audio = container.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
    assert seconds == pytest.approx(truth.frame_count / 25, abs=0.1)


def test_long_film_has_exact_length(tmp_path: Path) -> None:
    spec = long_film_spec(0.25, width=192, height=108, seed=5)
    assert spec.total_frames == 360
    truth = make_long_film(tmp_path / "long.mp4", 0.25, width=192, height=108, seed=5)
    assert truth == plan_film(spec, truth.path)
    assert truth.frame_count == 360 == decoded(truth.path)[0]
    assert all(b - a >= 48 for a, b in truth.shot_ranges())


def test_bad_spec_is_refused() -> None:
    with pytest.raises(UsageError, match="even"):
        FilmSpec(width=161)
    with pytest.raises(UsageError, match="shot_frames"):
        FilmSpec(shot_frames=(10, 5))
    # Library callers get the same refusals as the CLI: no gigabyte frames, no NaN weights.
    with pytest.raises(UsageError, match="film size"):
        FilmSpec(width=8192, height=16)
    for weights in [(float("nan"), 1, 1), (1, float("inf"), 1)]:
        with pytest.raises(UsageError, match="transitions"):
            FilmSpec(transitions=weights)


def test_bad_inputs(tmp_path: Path) -> None:
    import av

    bad = make_bad_inputs(tmp_path)
    assert set(bad) >= {"text", "truncated", "audio_only", "empty", "single_shot"}
    assert all(p.suffix == ".mp4" and p.parent == tmp_path for p in bad.values())
    assert bad["empty"].stat().st_size == 0
    assert bad["text"].read_text().startswith("This is not a video")
    for name in ("text", "empty", "truncated"):
        with pytest.raises(av.error.InvalidDataError):
            av.open(str(bad[name]))
    with av.open(str(bad["audio_only"])) as container:
        assert not container.streams.video and container.streams.audio
    with av.open(str(bad["truncated_faststart"])) as container:
        assert container.streams.video  # the index survived; most frames did not
    count, _, _ = decoded(bad["single_shot"])
    assert count == 50
    assert detected_cuts(bad["single_shot"]) == []
