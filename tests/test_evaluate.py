"""Each paper's metrics against hand-computed cases and the rules of the papers' own code.

BaSSL ``finetune/utils/metric.py``, LGSS ``lgss/utilis/{dataset_utilis,iou,recall_time}.py``,
SCRL ``SceneSeg/main.py`` (``inference``): the rules transcribed here are theirs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.metrics import f1_score as sk_f1
from sklearn.metrics import recall_score as sk_recall

from scenecut.evaluate import (
    Film,
    average_precision,
    f1_score,
    inclusive_spans,
    lgss_ap,
    miou,
    recall,
    recall_at_seconds,
    scene_spans,
    score_films,
    scrl_f1,
)

SHOTS = [(i * 10, i * 10 + 9) for i in range(6)]  # six 10-frame shots, inclusive ends


def _sk_ap(labels, probs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No positive class found in y_true"
        return average_precision_score(labels, probs)


def test_average_precision_by_hand():
    # ranks: 1 (P 1, R .5), 0, 1 (P 2/3, R 1), 0  ->  .5 * 1 + .5 * 2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)
    # ties enter together: both at 0.5 -> one operating point with P 1/2, R 1
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_is_sklearns_to_the_last_bit(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.1
    probs = np.round(rng.random(300) * 0.5 + 0.4 * labels, 1)  # coarse: many ties
    assert average_precision(labels, probs) == _sk_ap(labels, probs)


def test_average_precision_edge_cases():
    # no true boundary: scikit-learn (>= 1.1) gives 0.0, and SCRL averages that 0.0
    assert (
        average_precision([0, 0, 0], [0.1, 0.2, 0.3]) == 0.0 == _sk_ap([0, 0, 0], [0.1, 0.2, 0.3])
    )
    assert average_precision([1, 1, 1], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    assert average_precision([1], [np.nan]) == pytest.approx(1.0)  # NaN scores count as 0
    assert math.isnan(average_precision([], []))  # no gaps: no number (scikit-learn refuses)


def test_bassl_f1_counts_a_tie_at_the_threshold():
    # torchmetrics' F1 binarises with prob >= 0.5: the two 0.5s are boundaries
    assert f1_score([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert f1_score([0, 0], [0.1, 0.2]) == 0.0  # nothing to find, nothing found
    assert f1_score([1, 1], [0.9, 0.9]) == 1.0


def test_scrl_f1_by_hand():
    # prob > 0.5: the tie at 0.5 is not a boundary -> TP 1 (0.7), FP 1 (0.9), FN 1 (0.5)
    r = p = 1 / (2 + 1e-5)
    assert scrl_f1([1, 0, 1, 0], [0.5, 0.9, 0.7, 0.1]) == pytest.approx(2 * r * p / (r + p + 1e-5))
    # the epsilons keep even a perfect film below 1
    perfect = scrl_f1([1, 0, 1], [0.9, 0.1, 0.8])
    r = p = 2 / (2 + 1e-5)
    assert perfect == pytest.approx(2 * r * p / (r + p + 1e-5)) and perfect < 1
    assert scrl_f1([0, 0, 0], [0.9, 0.1, 0.2]) == 0.0  # no true boundary: F1 0, still averaged
    assert scrl_f1([1, 0], [0.5, 0.5]) == 0.0


def test_lgss_ap_rounds_like_numpy():
    # one boundary ranked last of 40 distinct scores: AP = 1/40 = 0.025; LGSS rounds the
    # np.float64 scikit-learn returned with round(ap, 2) -> np.round -> 0.02 (Python: 0.03)
    labels = [0] * 39 + [1]
    probs = list(np.linspace(0.99, 0.01, 40))
    assert average_precision(labels, probs) == pytest.approx(0.025)
    assert lgss_ap(labels, probs) == 0.02
    assert lgss_ap([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == 0.83  # 5/6


@pytest.mark.parametrize("seed", range(3))
def test_recall_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(200) < 0.2).astype(int)
    probs = np.round(rng.random(200), 1)  # ties at exactly 0.5
    argmax = np.argmax(np.stack([1 - probs, probs], 1), 1)  # BaSSL's prediction
    assert recall(labels, probs) == pytest.approx(sk_recall(labels, argmax))
    assert f1_score(labels, probs) == pytest.approx(sk_f1(labels, probs >= 0.5))
    assert recall([0, 0], [0.9, 0.9]) == 0.0


def test_scene_spans_drop_or_keep_the_trailing_shots():
    labels = [0, 1, 0, 0, 1]
    assert scene_spans(labels, SHOTS) == [(0, 19), (20, 49)]
    assert scene_spans(labels, SHOTS, keep_trailing=True) == [(0, 19), (20, 49), (50, 59)]
    assert scene_spans([0] * 5, SHOTS) == []


def test_miou_by_hand():
    truth = [0, 1, 0, 0, 1]  # scenes (0, 19), (20, 49); the last shot is dropped
    probs = [0.1, 0.9, 0.2, 0.9, 0.1]  # scenes (0, 19), (20, 39)
    # each side: (1 + 19 / 29) / 2
    assert miou(truth, probs, SHOTS) == pytest.approx((1 + 19 / 29) / 2)
    assert miou(truth, [0.9 if t else 0.1 for t in truth], SHOTS) == pytest.approx(1.0)
    assert miou(truth, [0.1] * 5, SHOTS) == 0.0  # no predicted boundary scores 0
    assert miou(truth, [0.5] * 5, SHOTS) == 0.0  # argmax: a tie at 0.5 is no boundary


def test_miou_reads_the_inclusive_last_frame():
    # half-open [0, 10), [10, 20), [20, 30) are (0, 9), (10, 19), (20, 29) in shot_movie318
    shots = inclusive_spans([(0, 10), (10, 20), (20, 30)])
    assert shots == [(0, 9), (10, 19), (20, 29)]
    # truth: one scene of shots 0-1 = (0, 19); predicted: shot 0 = (0, 9) -> 9 / 19 both ways
    assert miou([0, 1], [0.9, 0.1], shots) == pytest.approx(9 / 19)


def test_miou_of_a_film_without_true_boundary_is_none():
    assert miou([0, 0, 0], [0.9, 0.1, 0.1], SHOTS[:4]) is None  # as BaSSL's and LGSS's
    assert miou([0, 0, 0], [0.1, 0.1, 0.1], SHOTS[:4]) == 0.0  # nothing predicted comes first


def test_recall_at_3s_window_and_time():
    ends = [i * 30 for i in range(1, 21)]  # shots of 30 frames
    labels = [0] * 19
    labels[3] = 1
    near = [0.0] * 19
    near[5] = 0.9  # two shots later, 60 frames = 2.5 s at 24 fps: a hit
    assert recall_at_seconds(labels, near, ends) == pytest.approx(1 / (1 + 1e-5))
    late = [0.0] * 19
    late[6] = 0.9  # 90 frames = 3.75 s: too far in time
    assert recall_at_seconds(labels, late, ends) == 0.0
    far = [0.0] * 19
    far[9] = 0.9  # six shots away: outside the window
    assert recall_at_seconds(labels, far, ends) == 0.0
    tie = [0.0] * 19
    tie[3] = 0.5  # argmax: not a boundary
    assert recall_at_seconds(labels, tie, ends) == 0.0


def test_score_films_by_hand():
    a = Film("a", [1, 0, 0, 1, 0], [0.9, 0.2, 0.6, 0.8, 0.1], SHOTS)
    b = Film("b", [0, 0, 1, 0, 0], [0.3, 0.2, 0.4, 0.1, 0.7], SHOTS)
    empty = Film("c", [0, 0, 0, 0, 0], [0.5, 0.1, 0.2, 0.1, 0.1], SHOTS)  # no boundary at all
    scores = score_films([a, b, empty])
    # per-film AP: a = 1 (both boundaries ranked first); b: 0.7 (no), 0.4 (yes) -> 1/2;
    # c: 0.0 (scikit-learn without a positive)
    assert scores.mean_ap == pytest.approx((1 + 0.5 + 0) / 3)  # SCRL counts c as 0
    assert scores.lgss_map == pytest.approx((1 + 0.5 + 0) / 3)
    # SCRL F1 (> 0.5): a TP 2 FP 1 FN 0; b TP 0 FP 1; c TP 0 (the 0.5 is not predicted)
    r, p = 2 / (2 + 1e-5), 2 / (3 + 1e-5)
    assert scores.mean_f1 == pytest.approx((2 * r * p / (r + p + 1e-5) + 0 + 0) / 3)
    # BaSSL F1 (>= 0.5, pooled): predicted 0.9, 0.6, 0.8, 0.7, 0.5 -> TP 2 of 3 true, 5 predicted
    assert scores.f1 == pytest.approx(2 * 2 / (3 + 5))
    # BaSSL Recall per film, argmax: a 1, b 0, c 0 (no boundary: scikit-learn's 0)
    assert scores.recall == pytest.approx(1 / 3)
    # mIoU: a true (0, 9), (10, 39); predicted (0, 9), (10, 29), (30, 39)
    miou_a = ((1 + 19 / 29) / 2 + (1 + 19 / 29 + 9 / 29) / 3) / 2
    # b true (0, 29), predicted (0, 49): 29/49 both ways; c predicts nothing: 0 (defined)
    assert scores.miou == pytest.approx((miou_a + 29 / 49 + 0.0) / 3)
    assert scores.films == 3 and scores.gaps == 15
    with pytest.raises(ValueError):
        score_films([])


def test_score_films_miou_none_and_lgss_rounding():
    a = Film("a", [1, 0, 0, 1, 0], [0.9, 0.2, 0.6, 0.8, 0.1], SHOTS)
    c = Film("c", [0, 0, 0, 0, 0], [0.9, 0.1, 0.2, 0.1, 0.1], SHOTS)  # predicted, none true
    scores = score_films([a, c])
    assert scores.miou is None  # the references return None for the whole mIoU
    assert scores.by_paper()["bassl"]["miou"] is None
    d = Film("d", [0] * 39 + [1], list(np.linspace(0.99, 0.01, 40)), [(i, i) for i in range(41)])
    assert score_films([a, d]).lgss_map == pytest.approx((1.0 + 0.02) / 2)
    assert score_films([a, d]).mean_ap == pytest.approx((1.0 + 0.025) / 2)


def _reference_scores(films):
    """The three papers' rules, written as their code writes them (scikit-learn for AP and
    recall, loops for the rest), to compare with ``score_films`` on random films."""
    labels = np.concatenate([f.labels for f in films])
    probs = np.concatenate([f.probs for f in films])
    scrl_f1s = []
    for f in films:
        gt, pre = np.asarray(f.labels), (np.asarray(f.probs) > 0.5).astype(int)
        tp = int(((gt == 1) & (pre == 1)).sum())
        r = tp / (tp + int(((gt == 1) & (pre == 0)).sum()) + 1e-5)
        p = tp / (tp + int(((gt == 0) & (pre == 1)).sum()) + 1e-5)
        scrl_f1s.append(2 * r * p / (r + p + 1e-5))
    return {
        "ap": _sk_ap(labels, probs),
        "f1": sk_f1(labels, (probs >= 0.5).astype(int), zero_division=0),
        "recall": np.mean([sk_recall(f.labels, np.asarray(f.probs) > 0.5) for f in films]),
        "lgss_map": np.mean([round(np.float64(_sk_ap(f.labels, f.probs)), 2) for f in films]),
        "mean_ap": np.mean([_sk_ap(f.labels, f.probs) for f in films]),
        "mean_f1": np.mean(scrl_f1s),
    }


@pytest.mark.parametrize("seed", range(4))
def test_score_films_follow_each_papers_rule(seed):
    rng = np.random.default_rng(seed)
    films = []
    for k in range(5):
        n = int(rng.integers(15, 60))
        labels = (rng.random(n - 1) < 0.2).astype(int)
        if k == 0:
            labels[:] = 0  # a film without boundary
        probs = np.round(np.clip(0.4 * labels + rng.random(n - 1) * 0.7, 0, 1), 1)  # 0.5 ties
        films.append(Film(str(k), labels, probs, [(10 * i, 10 * i + 9) for i in range(n)]))
    scores = score_films(films)
    for name, value in _reference_scores(films).items():
        assert getattr(scores, name) == pytest.approx(value, abs=1e-12), name


# --- one video against a truth list --------------------------------------------------------


def test_read_truth_formats_agree(film, tmp_path):
    import scenecut
    from scenecut.output.formats import write_results
    from scenecut.output.readers import read_truth

    starts = [s / 25 for s in film.scene_starts[1:]]
    text = tmp_path / "truth.txt"
    lines = ["# scene starts", *(f"00:00:{s:06.3f}" for s in starts[:1]), *map(str, starts[1:])]
    text.write_text("\n".join(lines) + "\n")
    assert read_truth(text, 25) == pytest.approx(starts)
    # our own outputs are truth files too (e.g. a corrected scenecut result)
    result = scenecut.segment(film.path)
    json_path, csv_path = write_results(result, tmp_path, ["json", "csv"], overwrite=False)
    predicted = [float(result.video.time_of(s.start)) for s in result.scenes[1:]]
    assert read_truth(json_path, 25) == pytest.approx(predicted, abs=1e-3)
    assert read_truth(csv_path, 25) == pytest.approx(predicted, abs=1e-3)


def test_read_truth_rejects_garbage(tmp_path):
    from scenecut.errors import InputError
    from scenecut.output.readers import read_truth

    bad = tmp_path / "bad.txt"
    bad.write_text("scene one starts at noon\n")
    with pytest.raises(InputError, match="not a scene list"):
        read_truth(bad, 25)
    with pytest.raises(InputError, match="no such file"):
        read_truth(tmp_path / "missing.txt", 25)


def test_read_truth_takes_pyscenedetect_csv_and_a_byte_order_mark(tmp_path):
    from scenecut.output.readers import read_truth

    # PySceneDetect's list-scenes CSV opens with its cut list; Windows editors add a BOM.
    csv_file = tmp_path / "film-Scenes.csv"
    csv_file.write_text(
        "Timecode List:,00:00:02.000\n"
        "Scene Number,Start Frame,Start Timecode,Start Time (seconds)\n"
        "1,1,00:00:00.000,0.000\n2,51,00:00:02.000,2.000\n"
    )
    assert read_truth(csv_file, 25) == [2.0]
    text = tmp_path / "truth.txt"
    text.write_bytes("\ufeff1.5\n00:00:03.250 # a cut\n".encode())
    assert read_truth(text, 25) == [1.5, 3.25]


def test_evaluate_video_hits_misses_and_false_alarms(film):
    import scenecut
    from scenecut.evaluate import evaluate_video

    result = scenecut.segment(film.path)
    truth = [s / 25 for s in film.scene_starts[1:]]
    good = evaluate_video(result, truth, tolerance_s=0.5)
    assert good.f1 >= 0.9 and good.unreachable == 0
    hits = [m for m in good.boundaries if m.kind == "hit"]
    assert all(abs(m.offset_s) <= 0.5 for m in hits)
    # a truth 0.9 s late is outside the 0.5 s tolerance (scenes here are >= 1.2 s apart): every
    # true boundary is a miss and every prediction a false alarm
    assert min(b - a for a, b in zip([0, *truth], truth, strict=False)) >= 1.2
    shifted = evaluate_video(result, [t + 0.9 for t in truth], tolerance_s=0.5)
    kinds = [m.kind for m in shifted.boundaries]
    assert kinds.count("miss") == len(truth) and "hit" not in kinds
    assert kinds.count("false alarm") == len(result.scenes) - 1
    assert shifted.recall == 0.0


def test_eval_cli_json_and_errors(film, tmp_path, scenecut_exe):
    import json
    import subprocess

    truth = tmp_path / "truth.txt"
    truth.write_text("\n".join(str(s / 25) for s in film.scene_starts[1:]) + "\n")
    proc = subprocess.run(
        [scenecut_exe, "eval", str(film.path), "--truth", str(truth), "-q"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["boundary"]["f1"] >= 0.9
    assert set(report["gaps"]["bassl"]) == {"ap", "f1", "miou", "recall", "recall_3s"}
    assert set(report["gaps"]["lgss"]) == {"map"} and set(report["gaps"]["scrl"]) == {"ap", "f1"}
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [scenecut_exe, "eval", str(film.path), "--truth", str(truth), "--output", str(out), "-q"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout == "" and json.loads(out.read_text())
    bad = subprocess.run(
        [scenecut_exe, "eval", str(film.path), "--truth", str(tmp_path / "nope.txt")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1


def test_demo_clip_against_the_scene_list_written_by_watching_it():
    """The README's eval example: the demo trailer against assets/...truth.txt."""
    from pathlib import Path

    import scenecut
    from scenecut.evaluate import evaluate_video
    from scenecut.output.readers import read_truth

    assets = Path(__file__).resolve().parents[1] / "assets"
    result = scenecut.segment(assets / "sintel_trailer_480x204.mp4")
    truth = read_truth(assets / "sintel_trailer_480x204.truth.txt", result.video.fps)
    assert len(truth) == 5
    evaluation = evaluate_video(result, truth)
    # Every true boundary is a hit or a miss, every predicted one a hit or a false alarm, and
    # the counts make the precision and recall reported.
    kinds = [m.kind for m in evaluation.boundaries]
    hits, misses = kinds.count("hit"), kinds.count("miss")
    assert hits + misses == 5
    assert hits + kinds.count("false alarm") == len(result.scenes) - 1
    assert evaluation.recall == hits / 5
    for match in evaluation.boundaries:
        if match.kind == "hit":
            assert abs(match.offset_s) <= evaluation.tolerance_s
    # The trailer's cut from the title card to the old man's hut, and its end title, are the
    # clearest changes of place: the default model finds both.
    found = [m.truth_s for m in evaluation.boundaries if m.kind == "hit"]
    assert any(abs(t - 9.417) < 0.1 for t in found) and any(abs(t - 42.333) < 0.1 for t in found)


def test_threshold_sweep_and_pr_curve_files(film, tmp_path, scenecut_exe):
    import csv
    import subprocess

    from PIL import Image

    import scenecut
    from scenecut.evaluate import evaluate_video, threshold_sweep

    result = scenecut.segment(film.path)
    truth = [s / 25 for s in film.scene_starts[1:]]
    points = threshold_sweep(result, truth)
    scenes = [p.scenes for p in points]
    assert scenes == sorted(scenes, reverse=True) and scenes[0] == len(result.shots)
    assert scenes[-1] == 1
    # the first sweep point at or above the run's threshold (0.5) cuts exactly the same gaps, so
    # it reproduces evaluate_video's numbers
    at = min((p for p in points if p.threshold >= 0.5), key=lambda p: p.threshold)
    direct = evaluate_video(result, truth)
    assert (at.precision, at.recall) == pytest.approx((direct.precision, direct.recall))

    truth_file = tmp_path / "truth.txt"
    truth_file.write_text("\n".join(map(str, truth)) + "\n")
    prefix = tmp_path / "pr"
    args = [scenecut_exe, "eval", str(film.path), "--truth", str(truth_file), "-q"]
    proc = subprocess.run([*args, "--pr-curve", str(prefix)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with (tmp_path / "pr.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(points)
    image = Image.open(tmp_path / "pr.png")
    assert image.size == (520, 420)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 10  # axes, grid, curve: not blank
    again = subprocess.run([*args, "--pr-curve", str(prefix)], capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
