"""The boundary threshold: strict and in float32 like ModelScope, the model's own when the user
gives none, and the one in force recorded in the result."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

import scenecut
from scenecut.errors import UsageError
from scenecut.output.formats import to_json
from scenecut.result import DEFAULT_THRESHOLD, pick_boundaries
from scenecut.segment import SegmentOptions

SHOTS = [(0, 10), (10, 20), (20, 30), (30, 40)]
F32_08 = float(np.float32(0.8))  # 0.800000011920929: a network's 0.8, widened


def test_a_score_at_the_threshold_is_no_boundary():
    # ModelScope: np.float32 probabilities > 0.8 -> a model's 0.8 is not above 0.8
    assert not (np.array([F32_08], dtype=np.float32) > 0.8).any()
    assert pick_boundaries([F32_08, 0.2, 0.2], SHOTS, threshold=0.8) == []
    assert pick_boundaries([0.5, 0.2, 0.2], SHOTS, threshold=0.5) == []  # the papers' > 0.5
    above = float(np.nextafter(np.float32(0.8), np.float32(1)))  # the next float32 up
    assert pick_boundaries([above, 0.2, F32_08], SHOTS, threshold=0.8) == [0]
    assert pick_boundaries([0.0, 0.0, 1e-9], SHOTS, threshold=0.0) == [2]
    assert pick_boundaries([1.0, 1.0, 1.0], SHOTS, threshold=1.0) == []
    # with a scene count the threshold is not used
    assert pick_boundaries([F32_08, 0.2, 0.1], SHOTS, threshold=0.8, scenes=3) == [0, 1]


@dataclass
class FixedScorer:
    """A scorer whose gaps score ``pattern`` in turn, with the model's own threshold."""

    default_threshold: float | None = None
    name: str = "fixed"
    keyframe_height: int = 64
    pattern: tuple[float, ...] = (F32_08, 0.9)

    def embed(self, keyframes: np.ndarray) -> np.ndarray:
        return np.zeros((len(keyframes), 2), dtype=np.float32)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        gaps = len(embeddings) - 1
        return np.resize(np.array(self.pattern, dtype=np.float32), gaps)


def test_options_default_to_the_model_threshold():
    options = SegmentOptions()
    assert options.threshold is None
    options.check()
    assert options.threshold_for(FixedScorer()) == DEFAULT_THRESHOLD == 0.5
    assert options.threshold_for(FixedScorer(default_threshold=0.8)) == 0.8
    assert options.threshold_for(object()) == 0.5  # a scorer that has no threshold of its own
    mine = SegmentOptions(threshold=0.3)
    assert mine.threshold_for(FixedScorer(default_threshold=0.8)) == 0.3
    assert SegmentOptions(threshold=0.0).threshold_for(FixedScorer(default_threshold=0.8)) == 0
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(UsageError, match="--threshold"):
            SegmentOptions(threshold=bad).check()


def test_segment_uses_and_records_the_threshold_in_force(film):
    own = scenecut.segment(film.path, scorer=FixedScorer(default_threshold=0.8))
    gaps = len(own.shots) - 1
    assert gaps >= 4 and own.settings.threshold == 0.8
    cuts = [s.first_shot - 1 for s in own.scenes[1:]]
    assert cuts == [g for g in range(gaps) if g % 2 == 1]  # the 0.9s; the 0.8s are not above
    assert json.loads(to_json(own))["settings"]["threshold"] == 0.8

    given = scenecut.segment(film.path, threshold=0.5, scorer=FixedScorer(default_threshold=0.8))
    assert given.settings.threshold == 0.5 and len(given.scenes) == gaps + 1
    plain = scenecut.segment(film.path, scorer=FixedScorer(pattern=(0.5, 0.6)))
    assert plain.settings.threshold == 0.5 and len(plain.scenes) == gaps // 2 + 1


def test_cli_threshold_defaults_to_the_model(film, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from scenecut.cli import app
    from scenecut.cli import segment as segment_cli

    monkeypatch.setattr(
        segment_cli, "load_scorer", lambda *args, **kwargs: FixedScorer(default_threshold=0.8)
    )
    for argv, used in (([], 0.8), (["--threshold", "0.5"], 0.5)):
        out = tmp_path / str(used)
        args = ["segment", str(film.path), "--model", "classic", "-o", str(out), "-q", *argv]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        saved = json.loads((out / f"{film.path.stem}.scenes.json").read_text())
        assert saved["settings"]["threshold"] == used
