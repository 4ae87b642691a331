"""`scenecut eval --data ROOT --split S`: a model scored on a labelled split of a tree."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from scenecut import evaluate
from scenecut.data import writer
from scenecut.models.options import InferenceOptions
from scenecut.models.scorers import load_scorer


def _film(rng: np.random.Generator, scenes: int, shots_per_scene: int):
    """Keyframes of a film whose scenes are different pictures, its shots crops of them."""
    keyframes, labels = [], []
    for _ in range(scenes):
        place = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8).repeat(40, 0).repeat(40, 1)
        for i in range(shots_per_scene):
            dy, dx = rng.integers(0, 40, 2)
            crop = place[dy : dy + 180, dx : dx + 280]
            keyframes.append(np.stack([crop, crop, np.ascontiguousarray(crop[:, ::-1])]))
            labels.append(int(i == shots_per_scene - 1))
    return keyframes, labels[:-1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    movies = []
    for k in range(3):
        keyframes, labels = _film(rng, scenes=3 + k, shots_per_scene=3)
        shots = [(10 * i, 10 * i + 10) for i in range(len(keyframes))]
        movies.append(writer.write_movie(root, f"tt{k:07d}", shots, iter(keyframes), labels))
    writer.write_annotations(
        root, movies, {"train": ["tt0000000"], "val": [], "test": ["tt0000001", "tt0000002"]}
    )
    return root


def test_evaluate_split_scores_every_labelled_gap(tree):
    result = evaluate.evaluate_split(tree, "test", load_scorer(InferenceOptions(model="classic")))
    assert result.scores.films == 2
    assert result.scores.gaps == (12 - 1) + (15 - 1)
    assert [f.boundaries for f in result.films] == [3, 4]
    assert result.frame_spans
    assert result.scores.ap > 0.9 and result.scores.f1 > 0.8
    assert result.model == "classic"


class _FixedScorer:
    """Every film gets the same pattern: 0.9 after shots 3, 7, 11 ..., an exact 0.5 tie after
    shots 1, 5, 9 ..., 0.1 elsewhere."""

    name = "fixed"
    keyframe_height = 240

    def embed(self, keyframes):
        return np.zeros((len(keyframes), 1), dtype=np.float32)

    def score(self, embeddings):
        pattern = {3: 0.9, 1: 0.5}
        return np.array([pattern.get(i % 4, 0.1) for i in range(len(embeddings) - 1)])


def test_evaluate_split_reads_the_files_inclusive_end_frames(tree):
    result = evaluate.evaluate_split(tree, "test", _FixedScorer())
    film = result.films[0]  # tt0000001: 4 scenes of 3 shots of 10 frames, [10 i, 10 i + 10)
    assert (film.name, film.shots, film.boundaries) == ("tt0000001", 12, 3)
    # shot_movie318 holds (10 i, 10 i + 9). True scenes (0, 29), (30, 59), (60, 89); predicted
    # (argmax: 0.9 only) after shots 3 and 7: (0, 39), (40, 79).
    # true -> predicted: 29/39, 19/49 (not 9/59), 19/49; predicted -> true: 29/39, 19/49
    truth_side = (29 / 39 + 19 / 49 + 19 / 49) / 3
    pred_side = (29 / 39 + 19 / 49) / 2
    assert film.miou == pytest.approx((truth_side + pred_side) / 2)
    # SCRL F1 (> 0.5): predicted after shots 3, 7, none true -> 0
    assert film.scrl_f1 == 0.0
    assert result.scores.miou == pytest.approx(np.mean([f.miou for f in result.films]))


def test_eval_data_cli_json_and_table(scenecut_exe, tree, tmp_path):
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [
            scenecut_exe,
            "eval",
            "--data",
            str(tree),
            "--split",
            "test",
            "--model",
            "classic",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    report = json.loads(out.read_text())
    assert report["split"] == "test" and report["scores"]["films"] == 2
    scores = report["scores"]
    assert set(scores) == {"bassl", "lgss", "scrl", "films", "gaps"}
    assert set(scores["bassl"]) == {"ap", "f1", "miou", "recall", "recall_3s"}
    assert set(scores["lgss"]) == {"map"} and set(scores["scrl"]) == {"ap", "f1"}
    assert set(report["films"][0]) == {"name", "shots", "boundaries", "ap", "scrl_f1", "miou"}
    for name in ("BaSSL AP", "BaSSL mIoU", "LGSS mAP", "SCRL AP", "SCRL F1"):
        assert name in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "nope"], "no 'nope' split"),
        (["--split", "val"], "no labelled films"),
    ],
)
def test_eval_data_bad_split(scenecut_exe, tree, args, message):
    proc = subprocess.run(
        [scenecut_exe, "eval", "--data", str(tree), "--model", "classic", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_eval_needs_video_or_data(scenecut_exe, tree, film):
    both = subprocess.run(
        [scenecut_exe, "eval", str(film.path), "--data", str(tree)], capture_output=True, text=True
    )
    assert both.returncode == 2 and "not both" in both.stderr
    no_truth = subprocess.run(
        [scenecut_exe, "eval", str(film.path)], capture_output=True, text=True
    )
    assert no_truth.returncode == 2 and "--truth" in no_truth.stderr


def test_eval_scores_a_saved_result_as_it_is(scenecut_exe, film, tmp_path):
    saved = tmp_path / "film.json"
    seg = subprocess.run(
        [scenecut_exe, "segment", str(film.path), "--model", "classic", "--stdout", "-q"],
        capture_output=True,
        text=True,
    )
    saved.write_text(seg.stdout)
    truth = tmp_path / "truth.txt"
    starts = [
        film.shot_starts[i]
        for i in range(1, len(film.shot_starts))
        if film.shot_scene[i] != film.shot_scene[i - 1]
    ]
    truth.write_text("".join(f"{float(s / film.fps):.3f}\n" for s in starts))
    live = subprocess.run(
        [scenecut_exe, "eval", str(film.path), "--truth", str(truth), "--model", "classic", "-q"],
        capture_output=True,
        text=True,
    )
    from_json = subprocess.run(
        [scenecut_exe, "eval", str(saved), "--truth", str(truth), "-q"],
        capture_output=True,
        text=True,
    )
    assert live.returncode == 0 and from_json.returncode == 0, from_json.stderr
    a, b = json.loads(live.stdout), json.loads(from_json.stdout)
    assert a["boundary"] == b["boundary"]
    assert a["gaps"]["bassl"]["f1"] == pytest.approx(b["gaps"]["bassl"]["f1"])
