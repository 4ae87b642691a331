"""Optional checks on real film clips from ../shared/media (skipped when it is absent).

Shot cuts are PySceneDetect's own (`scenedetect -i CLIP detect-adaptive list-scenes`, 0-based).
Scene boundaries were judged by watching contact sheets of every shot: a boundary after shot i is
a change of place; `unsure` gaps could go either way and are not scored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import scenecut

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"

CLIPS = {
    # black intro | fog | title + hut interior | snow fight | city | sky with the dragon | title
    "sintel_trailer_480x204.mp4": {
        "cuts": [15, 226, 336, 398, 422, 528, 573, 623, 660, 674, 1016],
        "scene_gaps": {1, 3, 4, 7, 10},
        "unsure": {0, 6},
    },
    # titles | meadow dialogue (rabbit / rodents, title cards between) | dark forest | card |
    # squirrel and rabbit | end titles
    "bbb_trailer_640x360.webm": {
        "cuts": [88, 178, 227, 280, 330, 347, 375, 400, 415, 546, 573, 623, 650, 749, 768],
        "scene_gaps": {2, 8, 10, 11, 13},
        "unsure": {0, 1},
    },
    # one rooftop scene at sunset
    "sintel_excerpt_848x480.mp4": {
        "cuts": [76, 121, 319, 457, 545, 611],
        "scene_gaps": set(),
        "unsure": set(),
    },
    # the meadow and the rabbit's burrow, one continuous morning
    "bbb_first60s_640x360.mp4": {
        "cuts": [285, 378, 553, 1145, 1346],
        "scene_gaps": set(),
        "unsure": {2},
    },
}

pytestmark = [
    pytest.mark.media,
    pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media is not present"),
]


@pytest.fixture(scope="module")
def results():
    path = {name: MEDIA / name for name in CLIPS}
    path["sintel_trailer_480x204.mp4"] = ROOT / "assets" / "sintel_trailer_480x204.mp4"
    return {name: scenecut.segment(p) for name, p in path.items()}


@pytest.mark.parametrize("name", list(CLIPS))
def test_shot_cuts_equal_pyscenedetect(results, name):
    result = results[name]
    assert [shot.start for shot in result.shots[1:]] == CLIPS[name]["cuts"]
    assert result.decoded_frames == result.video.frame_count


# Known shortfall (issue 16): the default (the fused scorer) finds 7 of these 10 judged
# boundaries with no false alarm (F1 0.82; classic 0.63), short of 0.85: it misses gap 7 of
# the Sintel trailer and gaps 11 and 13 of the BBB trailer (scores 0.34, 0.39, 0.43). Strict:
# a fix makes this fail until the mark is removed.
SHORTFALL = pytest.mark.xfail(
    strict=True, reason="the fused default finds 7 of 10 judged boundaries (F1 0.82)"
)


@SHORTFALL
def test_scene_boundaries_match_judged_scenes(results):
    tp = fp = fn = 0
    for name, clip in CLIPS.items():
        predicted = {scene.last_shot for scene in results[name].scenes[:-1]} - clip["unsure"]
        truth = clip["scene_gaps"]
        tp += len(predicted & truth)
        fp += len(predicted - truth)
        fn += len(truth - predicted)
    assert 2 * tp / (2 * tp + fp + fn) >= 0.85, (tp, fp, fn)


@pytest.mark.parametrize(
    "name",
    [
        "sintel_excerpt_848x480.mp4",
        "bbb_first60s_640x360.mp4",
    ],
)
def test_one_place_stays_one_scene(results, name):
    assert len(results[name].scenes) == 1
