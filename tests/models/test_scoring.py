import numpy as np
import pytest

from scenecut.errors import UsageError
from scenecut.models.classic import ClassicEncoder
from scenecut.models.links import link_scores
from scenecut.models.options import InferenceOptions
from scenecut.models.scorers import load_scorer
from scenecut.result import Shot, pick_boundaries, scenes_from_boundaries


def _places(pattern: str, dim: int = 64, noise: float = 0.15, seed: int = 0) -> np.ndarray:
    """One embedding per letter; equal letters are noisy copies of the same place vector."""
    rng = np.random.default_rng(seed)
    base = {c: rng.normal(size=dim) for c in sorted(set(pattern))}
    rows = [
        base[c] / np.linalg.norm(base[c]) + noise * rng.normal(size=dim) / dim**0.5 for c in pattern
    ]
    return np.array(rows, dtype=np.float32)


def _boundaries(pattern: str) -> set[int]:
    """Gaps between runs of letters that belong to different scenes: scenes are separated by
    '|' in the pattern."""
    gaps, shot = set(), -1
    for c in pattern:
        if c == "|":
            gaps.add(shot)
        else:
            shot += 1
    return gaps


@pytest.mark.parametrize(
    "pattern",
    [
        "ABAB|CDCD|EFEF",  # shot/reverse-shot dialogues in three places
        "AAAA|BBB|CCCCC|DD",  # plain runs
        "ABCABC|DEDE|FGF",  # three-angle rotation
        "ABAB|CC|ABAB",  # a place revisited later is still a new scene
    ],
)
def test_link_scores_find_scene_gaps_not_shot_gaps(pattern):
    shots = pattern.replace("|", "")
    scores = link_scores(_places(shots))
    assert scores.shape == (len(shots) - 1,)
    truth = _boundaries(pattern)
    found = {i for i, s in enumerate(scores) if s > 0.5}
    assert found == truth, (scores.round(2), truth)


def test_low_confidence_shots_do_not_bridge_scenes():
    # A B | title C D, where the title card's embedding has a tiny norm (the encoder saw
    # nothing): it must not link the two scenes even though it looks like both sides' cards.
    e = _places("AABTCC")
    e[3] *= 0.02
    scores = link_scores(e)
    assert scores[2] > 0.5 or scores[3] > 0.5


def test_link_scores_edge_cases():
    assert link_scores(np.ones((1, 8), np.float32)).shape == (0,)
    same = link_scores(np.ones((5, 8), np.float32))
    assert (same < 0.5).all()


def _shot_frames(lengths):
    frames, start = [], 0
    for n in lengths:
        frames.append((start, start + n))
        start += n
    return frames


def test_pick_boundaries_threshold_and_count():
    scores = [0.9, 0.1, 0.7, 0.2, 0.6]
    frames = _shot_frames([10] * 6)
    assert pick_boundaries(scores, frames, threshold=0.5) == [0, 2, 4]
    assert pick_boundaries(scores, frames, threshold=0.65) == [0, 2]
    assert pick_boundaries(scores, frames, threshold=0.99) == []
    assert pick_boundaries(scores, frames, threshold=0.5, scenes=2) == [0]
    assert pick_boundaries(scores, frames, threshold=0.5, scenes=3) == [0, 2]
    assert pick_boundaries(scores, frames, threshold=0.5, scenes=1) == []
    # asking for more scenes than gaps gives every gap
    assert pick_boundaries(scores, frames, threshold=0.5, scenes=50) == [0, 1, 2, 3, 4]


def test_pick_boundaries_respects_min_scene_length():
    scores = [0.9, 0.8, 0.7]
    frames = _shot_frames([20, 10, 10, 20])
    # gap 1 would leave a 10-frame scene next to gap 0's cut: rejected at min 15 frames.
    assert pick_boundaries(scores, frames, threshold=0.5, min_scene_frames=15) == [0, 2]
    assert pick_boundaries(scores, frames, threshold=0.5, min_scene_frames=25) == [1]


def test_scenes_from_boundaries_cover_all_shots():
    shots = [Shot(i, s, e) for i, (s, e) in enumerate(_shot_frames([5, 7, 3, 9]))]
    scenes = scenes_from_boundaries(shots, [1], [0.1, 0.8, 0.3])
    assert [(s.first_shot, s.last_shot, s.start, s.end) for s in scenes] == [
        (0, 1, 0, 12),
        (2, 3, 12, 24),
    ]
    assert scenes[0].score is None and scenes[1].score == pytest.approx(0.8)
    single = scenes_from_boundaries(shots[:1], [], [])
    assert len(single) == 1 and single[0].end == 5


def test_classic_encoder_separates_places_and_discounts_flat_frames():
    rng = np.random.default_rng(1)
    h, w = 48, 80
    warm = np.clip(rng.normal([200, 120, 60], 30, size=(h * 2, w * 2, 3)), 0, 255)
    cold = np.clip(rng.normal([40, 90, 190], 30, size=(h * 2, w * 2, 3)), 0, 255)

    def crops(img):
        return np.stack([img[i * 10 : i * 10 + h, i * 20 : i * 20 + w] for i in range(3)])

    black = np.zeros((3, h, w, 3))
    shots = np.stack([crops(warm), crops(warm[::-1]), crops(cold), black]).astype(np.uint8)
    e = ClassicEncoder().embed(shots)
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = unit @ unit.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    norms = np.linalg.norm(e, axis=1)
    assert norms[3] < 0.05 < 0.9 < norms[0]


def test_unknown_model_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown model"):
        load_scorer(InferenceOptions(model="nope"))
