"""The fused offline default: its logistic regression, its weights file, and its training."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from safetensors.numpy import save_file

import scenecut
from scenecut.data.synth import make_film
from scenecut.errors import InputError
from scenecut.models.fusion import (
    INPUTS,
    MAX_BYTES,
    METADATA_KEY,
    VARIANTS,
    WEIGHTS,
    blank_shots_join,
    fit_logistic,
    is_fusion_file,
    load_fusion,
    save_fusion,
)
from scenecut.models.scorers import choose_model, load_scorer
from scenecut.train.fusion import Truth, label_gaps, read_truth
from scenecut.video import ffmpeg_exe


def _models(seed=0):
    rng = np.random.default_rng(seed)
    models = {}
    for variant, names in VARIANTS.items():
        x = rng.normal(size=(200, len(names)))
        y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(float)
        models[variant] = fit_logistic(x, y, names)
    return models


def test_logistic_regression_learns_which_input_matters():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    y = (2 * x[:, 0] - x[:, 2] > 0).astype(float)
    model = fit_logistic(x, y, ("a", "b", "c"), l2=0.1)
    assert model.weight[0] > 2 * abs(model.weight[1]) and model.weight[2] < 0
    p = model(x)
    assert ((p > 0.5) == y.astype(bool)).mean() > 0.97
    with pytest.raises(InputError, match="both kinds"):
        fit_logistic(x, np.zeros(400), ("a", "b", "c"))


def test_weights_round_trip(tmp_path):
    models = _models()
    path = tmp_path / "f.safetensors"
    save_fusion(models, path, {"films": ["x"]})
    assert is_fusion_file(path) and path.stat().st_size < 2048
    loaded, about = load_fusion(path)
    assert about == {"films": ["x"]}
    x = np.random.default_rng(2).normal(size=(10, len(INPUTS)))
    for variant, names in VARIANTS.items():
        cols = [INPUTS.index(n) for n in names]
        assert np.allclose(loaded[variant](x[:, cols]), models[variant](x[:, cols]), atol=1e-5)


def _write(path, tensors, meta):
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)} if meta else None)


@pytest.mark.parametrize(
    "case", ["too large", "not safetensors", "no metadata", "wrong shape", "nan", "missing set"]
)
def test_hostile_fusion_files_are_refused(tmp_path, case):
    path = tmp_path / "bad.safetensors"
    good = tmp_path / "good.safetensors"
    save_fusion(_models(), good, {})
    from safetensors.numpy import load_file

    tensors = load_file(str(good))
    meta = {"version": 1, "inputs": {v: list(n) for v, n in VARIANTS.items()}}
    if case == "too large":
        path.write_bytes(b"\0" * (MAX_BYTES + 1))
    elif case == "not safetensors":
        path.write_bytes(b"<html>sign in</html>")
    elif case == "no metadata":
        _write(path, tensors, None)
    elif case == "wrong shape":
        tensors["av.weight"] = np.zeros(2, dtype=np.float32)
        _write(path, tensors, meta)
    elif case == "nan":
        tensors["picture.std"] = np.full(len(VARIANTS["picture"]), np.nan, dtype=np.float32)
        _write(path, tensors, meta)
    else:
        tensors = {k: v for k, v in tensors.items() if not k.startswith("av.")}
        _write(path, tensors, meta)
    with pytest.raises(InputError):
        load_fusion(path)


def test_shipped_weights_are_the_offline_default():
    assert WEIGHTS.stat().st_size < 2 * 2**20
    models, about = load_fusion(WEIGHTS)
    assert about["films"] and about["boundaries"] > 50
    # A high links score (a likely change of place) must raise the probability.
    for model in models.values():
        assert model.weight[model.names.index("links")] > 0
    assert choose_model("auto").name == "fused"
    assert load_scorer().name == "fused"


def test_truth_files_are_checked(tmp_path):
    path = tmp_path / "t.truth.json"
    path.write_text(
        '{"boundaries": [1.5, {"time_s": 3.0, "kind": "unsure"}], "unjudged": [[5, 9]]}'
    )
    truth = read_truth(path)
    assert truth.boundaries == [(1.5, "judged"), (3.0, "unsure")]
    assert truth.unjudged == [(5.0, 9.0)]
    for bad in ('{"boundaries": [-1]}', '{"boundaries": [{"time_s": 1, "kind": "maybe"}]}',
                "[1, 2]", "not json", '{"boundaries": [true]}'):  # fmt: skip
        path.write_text(bad)
        with pytest.raises(InputError):
            read_truth(path)


def test_unsure_and_unjudged_gaps_are_left_out():
    cuts = [1.0, 2.0, 6.0, 7.0, 9.0]
    truth = Truth([(1.1, "judged"), (2.0, "unsure"), (9.0, "join")], [(5.0, 9.0)])
    labels, keep = label_gaps(cuts, truth)
    assert labels.tolist() == [1, 0, 0, 0, 1]
    # 2.0 is unsure; 6.0 and 7.0 lie inside the unjudged span; 9.0 is its join and counts.
    assert keep.tolist() == [True, False, False, False, True]


def test_train_fusion_command_then_segment_with_it(tmp_path, scenecut_exe):
    films = []
    for seed in (11, 12):
        path = tmp_path / f"f{seed}.mp4"
        truth = make_film(path, seed=seed, n_scenes=4, fades=True, audio=True, objects=False)
        fps = float(truth.fps)
        doc = {"boundaries": [s / fps for s in truth.scene_starts[1:]]}
        (tmp_path / f"f{seed}.truth.json").write_text(json.dumps(doc))
        films.append(path)
    out = tmp_path / "mine.safetensors"
    cmd = [scenecut_exe, "train", "fusion", *map(str, films), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["boundaries"] == 6 and summary["films"] == ["f11.mp4", "f12.mp4"]
    assert "av: links" in proc.stderr
    models, about = load_fusion(out)
    assert about["l2"] == 1.0 and set(models) == set(VARIANTS)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "--overwrite" in again.stderr
    seg = [scenecut_exe, "segment", str(films[0]), "--model", str(out), "-o", str(tmp_path / "s")]
    proc = subprocess.run([*seg, "-q"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = scenecut.load_result(tmp_path / "s" / "f11.scenes.json")
    assert result.settings.model == str(out)
    assert len(result.scenes) >= 2


@pytest.mark.parametrize(
    ("scores", "blank", "expected"),
    [
        # a black leader joins the scene after it
        ([0.9, 0.2, 0.8], [1, 0, 0, 0], [0.0, 0.2, 0.8]),
        # a blank run between scenes opens the next one: the strongest score moves before it
        ([0.3, 0.9, 0.7, 0.1], [0, 1, 1, 0, 0], [0.9, 0.0, 0.0, 0.1]),
        # trailing black closes the scene before it
        ([0.4, 0.9, 0.95], [0, 0, 1, 1], [0.4, 0.0, 0.0]),
        # no blank shot: unchanged
        ([0.4, 0.6], [0, 0, 0], [0.4, 0.6]),
    ],
)
def test_blank_shots_never_make_a_scene_alone(scores, blank, expected):
    out = blank_shots_join(np.array(scores), np.array(blank, dtype=bool))
    assert out.tolist() == expected


def test_a_black_leader_is_not_a_scene(tmp_path, film):
    """One second of black before the film: the default puts it into the first scene."""
    path = tmp_path / "leader.mp4"
    size, rate = f"{film.width}x{film.height}", film.fps
    black = ["-f", "lavfi", "-i", f"color=black:s={size}:r={rate}:d=1"]
    quiet = ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono:d=1"]
    fmt = "aformat=sample_rates=48000:channel_layouts=mono"
    graph = f"[1:a]{fmt}[q];[2:a]{fmt}[s];[0:v][q][2:v][s]concat=n=2:v=1:a=1[v][a]"
    cmd = [ffmpeg_exe(), "-v", "error", *black, *quiet, "-i", str(film.path)]
    cmd += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264", str(path)]
    subprocess.run(cmd, check=True, timeout=120)
    result = scenecut.segment(path)
    assert result.shots[0].end == round(film.fps)  # the leader is a shot of its own
    assert result.boundary_scores[0] == 0.0
    assert result.scenes[0].first_shot == 0 and result.scenes[0].last_shot >= 1
    plain = scenecut.segment(path, model="classic")  # the classic links alone cut it off
    assert plain.boundary_scores[0] > 0.5
