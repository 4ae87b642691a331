"""The synthetic benchmark corpus: determinism, labels that match the videos, photos, resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.data import pictures, synth
from scenecut.data.corpus import CorpusSpec, make_corpus, photo_source, split_ids
from scenecut.data.synth import FilmSpec, FilmTruth, make_film, plan_film
from scenecut.data.tree import FRAMES_DIR, LABELS_DIR, SHOTS_DIR, keyframe_path
from scenecut.errors import OutputError, UsageError
from scenecut.keyframes import keyframe_indices

runner = CliRunner()

# Small and quick: 3 films of 18 shots of 16-24 frames (shots >= scenecut's 0.6 s minimum).
SMALL = dict(movies=3, shots_per_movie=18, shot_frames=(16, 24), width=160, height=96)
SIZE = "160x96"


def _cli_synth(out: Path, seed: int, *extra: str):
    args = ["data", "synth", "--out", str(out), "--movies", "3", "--shots-per-movie", "18"]
    args += ["--shot-frames", "16,24", "--size", SIZE, "--seed", str(seed), "--workers", "1"]
    return runner.invoke(app, [*args, *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "a"
    make_corpus(out, seed=5, workers=1, **SMALL)
    return out


@pytest.fixture(scope="module")
def corpus_cli(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("corpus") / "b"
    return out, _cli_synth(out, 5)


def _truths(root: Path) -> list[FilmTruth]:
    return [FilmTruth.from_json(p.read_text()) for p in sorted((root / "videos").glob("*.json"))]


def _text_files(root: Path) -> dict[str, bytes]:
    files = [*(root / "videos").glob("*.json"), *(root / "anno").iterdir()]
    files += [*(root / "scene318").rglob("*.txt"), *(root / "scene318").rglob("*.json")]
    files.append(root / "corpus.json")
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _keyframes(root: Path) -> dict[str, np.ndarray]:
    return {
        str(p.relative_to(root)): np.asarray(Image.open(p))
        for p in sorted((root / FRAMES_DIR).rglob("*.jpg"))
    }


def test_cli_prints_root_and_summary(corpus_cli) -> None:
    out, res = corpus_cli
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out)
    assert "3 films" in res.stderr and "shots" in res.stderr


def test_same_seed_same_corpus(corpus: Path, corpus_cli) -> None:
    other, _ = corpus_cli
    assert _text_files(corpus) == _text_files(other)
    a, b = _keyframes(corpus), _keyframes(other)
    assert a.keys() == b.keys() and len(a) == 3 * 18 * 3
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # One x264 thread per film: even the video files repeat.
    for video in (corpus / "videos").glob("*.mp4"):
        assert video.read_bytes() == (other / "videos" / video.name).read_bytes()


def test_other_seed_other_corpus(corpus: Path, tmp_path: Path) -> None:
    res = _cli_synth(tmp_path / "c", 6, "--quiet")
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    ours, theirs = _text_files(corpus), _text_files(tmp_path / "c")
    assert ours["videos/synth0000.json"] != theirs["videos/synth0000.json"]
    a, b = _keyframes(corpus), _keyframes(tmp_path / "c")
    assert not np.array_equal(a[next(iter(a))], b[next(iter(a))])


def test_tree_matches_truth(corpus: Path) -> None:
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["complete"] and meta["seed"] == 5
    assert meta["generator_version"] == synth.GENERATOR_VERSION
    assert {k: len(v) for k, v in meta["splits"].items()} == {"train": 1, "val": 1, "test": 1}
    for truth in _truths(corpus):
        video_id = truth.path.stem
        assert truth.path == Path("videos") / f"{video_id}.mp4"  # relative: the corpus moves
        assert (corpus / truth.path).is_file()
        assert len(truth.shot_starts) == 18
        rows = (corpus / SHOTS_DIR / f"{video_id}.txt").read_text().split("\n")[:-1]
        ranges = [(int(r.split()[0]), int(r.split()[1]) + 1) for r in rows]
        assert ranges == truth.shot_ranges()
        labels = [
            int(line.split()[1])
            for line in (corpus / LABELS_DIR / f"{video_id}.txt").read_text().splitlines()
        ]
        assert [i for i, v in enumerate(labels) if v] == truth.scene_gaps()
        assert len(labels) == 17
    anno = [json.loads(line) for line in (corpus / "anno/anno.pretrain.ndjson").open()]
    assert len(anno) == 3 * 18


def test_keyframes_are_the_video_frames(corpus: Path) -> None:
    import av

    truth = _truths(corpus)[0]
    wanted = {}
    for shot, (start, end) in enumerate(truth.shot_ranges()):
        for k, frame in enumerate(keyframe_indices(start, end)):
            wanted[frame] = (shot, k)
    with av.open(str(corpus / truth.path)) as container:
        decoded = {
            i: frame.to_ndarray(format="rgb24")
            for i, frame in enumerate(container.decode(video=0))
            if i in wanted
        }
    assert len(decoded) == len(wanted)
    errors = []
    for frame, (shot, k) in wanted.items():
        jpeg = np.asarray(Image.open(keyframe_path(corpus, truth.path.stem, shot, k)))
        errors.append(np.abs(jpeg.astype(int) - decoded[frame]).mean())
    # x264 at CRF 20 and JPEG at 90 on both sides of the comparison.
    assert max(errors) < 8, max(errors)


def test_detected_shots_match_hard_cuts(corpus: Path) -> None:
    from scenecut.shots import detect_shots

    truth = _truths(corpus)[1]
    detection = detect_shots(corpus / truth.path)
    found = [s.start for s in detection.shots[1:]]
    soft = set()
    for first, end in truth.fades + truth.dissolves:
        soft |= set(range(first, end + 1))
    hard = [c for c in truth.shot_cuts if c not in soft]
    assert len(hard) >= 12
    assert [c for c in found if c not in soft] == hard


def test_rerun_skips_and_other_knobs_refused(corpus: Path) -> None:
    video = corpus / "videos/synth0001.mp4"
    before = video.stat().st_mtime_ns
    seen = []
    summary = make_corpus(corpus, seed=5, workers=1, progress=lambda d, n: seen.append(d), **SMALL)
    assert summary.rendered == 0 and summary.movies == 3
    assert seen[-1] == 3 and video.stat().st_mtime_ns == before
    with pytest.raises(OutputError, match="other settings"):
        make_corpus(corpus, seed=6, workers=1, **SMALL)


def test_interrupted_film_is_rendered_again(tmp_path: Path) -> None:
    knobs = dict(SMALL, movies=2, shots_per_movie=4)
    make_corpus(tmp_path, workers=1, **knobs)
    (tmp_path / "videos/synth0001.json").unlink()  # the truth file is the completion mark
    assert make_corpus(tmp_path, workers=1, **knobs).rendered == 1
    assert (tmp_path / "videos/synth0001.json").is_file()


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        make_corpus(tmp_path, **SMALL)


def test_splits() -> None:
    ids = [f"v{i}" for i in range(20)]
    splits = split_ids(ids, 0)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [14, 3, 3]
    assert sorted(v for part in splits.values() for v in part) == sorted(ids)
    assert split_ids(ids, 0) == splits != split_ids(ids, 1)
    assert [len(v) for v in split_ids(ids[:3], 0).values()] == [1, 1, 1]
    assert [len(v) for v in split_ids(ids[:1], 0).values()] == [1, 0, 0]


def test_photo_places_and_fallback(monkeypatch) -> None:
    spec = FilmSpec(seed=2, n_scenes=5, places="photos")
    if not pictures.find_photos():
        pytest.skip("no photographs on this machine (scikit-image not installed)")
    sources = plan_film(spec).place_sources
    assert sources and all(s.startswith(("skimage:", "wallpaper:")) for s in sources)
    assert len(set(sources)) == len(sources)  # different places, different photos
    procedural = plan_film(dataclasses.replace(spec, places="procedural")).place_sources
    assert procedural == ["procedural"] * len(procedural)
    monkeypatch.setattr(synth, "find_photos", lambda: ())
    monkeypatch.setattr(pictures, "find_photos", lambda: ())
    assert set(plan_film(spec).place_sources) == {"procedural"}
    assert photo_source(CorpusSpec())["summary"] == "procedural only"


def test_corpus_records_photo_source(corpus: Path) -> None:
    meta = json.loads((corpus / "corpus.json").read_text())
    photos = [p.name for p in pictures.find_photos()]
    assert meta["settings"]["photos"]["photos"] == photos
    used = {s for t in _truths(corpus) for s in t.place_sources}
    if photos:
        assert "skimage" in meta["photo_source"] or "wallpaper" in meta["photo_source"]
        assert used & set(photos)
    else:
        assert used == {"procedural"}


def test_dissolves_and_grading_render(tmp_path: Path) -> None:
    spec = FilmSpec(seed=4, n_scenes=3, shot_frames=(16, 20), transitions=(0, 0, 1), grading=1.0)
    frames: dict[int, np.ndarray] = {}
    truth = make_film(
        tmp_path / "d.mp4",
        spec,
        frame_sink=lambda i, raw: frames.__setitem__(
            i, pictures.yuv420_to_rgb(raw, spec.width, spec.height).astype(float)
        ),
    )
    assert (tmp_path / "d.mp4").stat().st_size > 0
    assert len(truth.dissolves) == 2 and not truth.fades
    for first, end in truth.dissolves:
        cut = (first + end) // 2
        assert cut in truth.scene_starts and end - first == spec.transition_length
        before, after = frames[first - 1], frames[end]
        # Every frame of the dissolve lies between the pictures on either side of it; the
        # incoming one weighs more from the cut on.
        weights = []
        for i in range(first, end):
            d = after - before
            weights.append(float(((frames[i] - before) * d).sum() / (d * d).sum()))
        assert weights == sorted(weights)
        assert weights[cut - first - 1] < 0.5 < weights[cut - first]
    # Grading changes colours, not structure.
    flat = plan_film(dataclasses.replace(spec, grading=0.0))
    assert flat.shot_starts == truth.shot_starts and flat.dissolves == truth.dissolves
    gammas = {s.gamma for s in synth._plan(spec)}
    assert len(gammas) > 1 and 1.0 not in gammas


def test_new_knobs_leave_default_plans_alone() -> None:
    # The default spec plans what it always did (GENERATOR_VERSION 1).
    truth = plan_film(FilmSpec())
    assert truth.shot_starts == [0, 33, 63, 88, 114, 135, 155, 192, 225, 255, 287, 327]
    assert truth.place_sources == ["procedural"] * 4 and truth.dissolves == []
    assert plan_film(FilmSpec(seed=5, n_shots=7)).shot_starts[:1] == [0]
    assert len(plan_film(FilmSpec(seed=5, n_shots=7)).shot_starts) == 7
    with pytest.raises(UsageError):
        FilmSpec(fades=True, transitions=(1, 1, 1))
    with pytest.raises(UsageError):
        FilmSpec(places="paintings")
    with pytest.raises(UsageError):
        FilmSpec(n_shots=5, total_frames=100)


def test_truth_json_round_trip_with_new_fields() -> None:
    truth = plan_film(FilmSpec(seed=1, transitions=(0, 1, 1), places="photos"))
    assert FilmTruth.from_json(truth.to_json()) == truth
    old = json.loads(truth.to_json())
    del old["dissolves"], old["place_sources"]  # a truth file from before these fields
    assert FilmTruth.from_dict(old).dissolves == []


def test_parallel_workers_make_the_same_films(tmp_path: Path) -> None:
    knobs = dict(SMALL, movies=2, shots_per_movie=4)
    make_corpus(tmp_path / "serial", workers=1, **knobs)
    make_corpus(tmp_path / "parallel", workers=2, **knobs)
    assert _text_files(tmp_path / "serial") == _text_files(tmp_path / "parallel")


def test_cli_rejects_bad_numbers(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--size", "320"])
    assert isinstance(res.exception, UsageError) and "--size" in str(res.exception)
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--transitions", "1,1,-1"])
    assert isinstance(res.exception, UsageError)
    with pytest.raises(UsageError, match="seed"):  # not numpy's ValueError
        CorpusSpec(seed=-1)
