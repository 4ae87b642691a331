"""Action-recognition trees (UCF101 / HMDB51 frame folders): reading, scanpath files, checking,
ingesting our videos in that layout, and the synthetic motion corpus.

Trees are written by hand in the published formats (UCF101's CRLF lists with a label column on
train lines, HMDB51's lists with none), so the reader is tested against them, not against our
own writer.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenecut.data import actions, motion
from scenecut.data.actions import ActionTree, check_actions, is_action_tree, read_scanpath
from scenecut.errors import InputError

UCF_CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
# video -> (class, frames); the HandstandPushups list names the folder v_HandStandPushups_...
UCF_VIDEOS = {
    "v_ApplyEyeMakeup_g08_c01": ("ApplyEyeMakeup", 20),
    "v_ApplyEyeMakeup_g01_c01": ("ApplyEyeMakeup", 18),
    "v_HandstandPushups_g08_c01": ("HandstandPushups", 19),
    "v_YoYo_g08_c01": ("YoYo", 21),
    "v_YoYo_g01_c01": ("YoYo", 17),
}
TRAIN = ["v_ApplyEyeMakeup_g08_c01", "v_HandstandPushups_g08_c01", "v_YoYo_g08_c01"]
TEST = ["v_ApplyEyeMakeup_g01_c01", "v_YoYo_g01_c01"]


def _jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 16), (value % 256, 40, 90)).save(path, quality=80)


def _write_ucf(root: Path) -> Path:
    for name, (_, n) in UCF_VIDEOS.items():
        for t in range(n):
            _jpeg(root / "jpegs_256" / name / f"frame{t + 1:06d}.jpg", t)
    split = root / "split"
    split.mkdir(parents=True)
    crlf = "".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES))
    (split / "classInd.txt").write_bytes(crlf.encode())
    lines = []
    for name in TRAIN:
        c = UCF_VIDEOS[name][0]
        listed = name.replace("Handstand", "HandStand")  # UCF101's own spelling in file names
        lines.append(f"{c}/{listed}.avi {UCF_CLASSES.index(c) + 1}\r\n")
    (split / "trainlist01.txt").write_bytes("".join(lines).encode())
    test = "".join(f"{UCF_VIDEOS[n][0]}/{n}.avi\r\n" for n in TEST)
    (split / "testlist01.txt").write_bytes(test.encode())
    scans = root / "scan_idx_7"
    scans.mkdir()
    for name, (_, n) in UCF_VIDEOS.items():
        (scans / f"{name}.txt").write_text(f"10 0 5\n24 6 {n - 2}\n3 {n - 1} {n - 1}\n")
    return root


@pytest.fixture
def ucf(tmp_path) -> Path:
    return _write_ucf(tmp_path / "UCF101")


# --- reading -----------------------------------------------------------------------------------


def test_reads_ucf_lists_labels_frames_and_scanpaths(ucf):
    assert is_action_tree(ucf)
    tree = ActionTree.open(ucf)
    assert tree.classes == tuple(UCF_CLASSES)
    train = tree.split("train")
    assert [v.name for v in train] == TRAIN  # HandStandPushups found as HandstandPushups
    assert [v.label for v in train] == [0, 1, 2]
    assert [len(v.frames) for v in train] == [UCF_VIDEOS[n][1] for n in TRAIN]
    assert train[0].frames[0].name == "frame000001.jpg"
    assert list(train[0].frames) == sorted(train[0].frames)
    test = tree.split("test")
    assert [(v.name, v.label) for v in test] == [(TEST[0], 0), (TEST[1], 2)]
    rows = tree.scanpath(test[1])
    assert rows.dtype == np.int64 and rows.tolist() == [[10, 0, 5], [24, 6, 15], [3, 16, 16]]
    (ucf / "scan_idx_7" / f"{TEST[1]}.txt").unlink()
    assert tree.scanpath(test[1]) is None
    with pytest.raises(InputError, match=r"testlist02\.txt: no such file"):
        tree.split("test", fold=2)


def test_reads_hmdb_lists_without_labels(tmp_path):
    """HMDB51's lists as the reference ships them: no label column, odd names, no final
    newline; the label comes from the class folder's line in classInd.txt."""
    root = tmp_path / "HMDB51"
    names = {"#437_How_To_Ride_A_Bike_ride_bike_f_cm_np1_ba_med_0": "ride_bike"}
    names["2xFullautoGlocks_shoot_gun_u_cm_np1_le_med_0"] = "shoot_gun"
    for name in names:
        for t in range(3):
            _jpeg(root / "jpegs_256" / name / f"frame{t + 1:06d}.jpg", t)
    (root / "split").mkdir()
    (root / "split" / "classInd.txt").write_text("1 brush_hair\n2 ride_bike\n3 shoot_gun")
    lines = "\n".join(f"{c}/{n}.avi" for n, c in names.items())
    (root / "split" / "trainlist01.txt").write_text(lines)
    videos = ActionTree.open(root).split("train")
    assert [(v.name, v.label, len(v.frames)) for v in videos] == [
        (name, ["brush_hair", "ride_bike", "shoot_gun"].index(c), 3) for name, c in names.items()
    ]


def test_split_leaves_out_unusable_videos_with_one_warning(ucf, caplog):
    lines = (ucf / "split" / "testlist01.txt").read_text()
    (ucf / "split" / "testlist01.txt").write_text(
        lines + "Nope/v_Nope_g01_c01.avi\nYoYo/v_YoYo_g99_c01.avi\nnot a line at all\n"
    )
    videos = ActionTree.open(ucf).split("test", min_frames=18)
    assert [v.name for v in videos] == [TEST[0]]  # v_YoYo_g01_c01 has 17 frames
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "left out 4 of its lines" in warnings[0]


def test_open_refuses_what_is_not_an_action_tree(tmp_path, ucf):
    assert not is_action_tree(tmp_path)
    with pytest.raises(InputError, match="no jpegs_256/ folder"):
        ActionTree.open(tmp_path)
    (ucf / "split" / "classInd.txt").write_text("1 A\n3 B\n")
    with pytest.raises(InputError, match="class index 3 where 2 was expected"):
        ActionTree.open(ucf)


# --- scanpath files ----------------------------------------------------------------------------


def _scan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "v.txt"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("", []),  # empty: valid, the loader falls back to random fixations
        ("\n  \n", []),
        ("12 3 20\n", [[12, 3, 20]]),  # one row: (1, 3), not the 1-D array loadtxt gives
        ("1 0 9\n2 10 30\n", [[1, 0, 9], [2, 10, 30]]),  # fewer fixations than focus_num 3
        ("# cell start end\n48 0 0  # last cell\n", [[48, 0, 0]]),
        # np.savetxt's default format, as the reference could have written them
        (
            "7.000000000000000000e+00 1.000000000000000000e+00 4.000000000000000000e+00\n",
            [[7, 1, 4]],
        ),
    ],
)
def test_read_scanpath_shapes(tmp_path, text, rows):
    got = read_scanpath(_scan(tmp_path, text))
    assert got.dtype == np.int64 and got.shape == (len(rows), 3)
    assert got.tolist() == rows
    if len(rows) >= 2:  # what the reference reads from the same file
        assert np.array_equal(got, np.loadtxt(tmp_path / "v.txt", ndmin=2).astype(int))


def test_read_scanpath_clamps_to_the_video(tmp_path):
    path = _scan(tmp_path, "5 0 500\n6 10 12\n7 40 45\n")  # a fixation longer than the video
    assert read_scanpath(path).tolist() == [[5, 0, 500], [6, 10, 12], [7, 40, 45]]
    assert read_scanpath(path, frames=40).tolist() == [[5, 0, 39], [6, 10, 12]]
    assert read_scanpath(path, frames=41).tolist() == [[5, 0, 40], [6, 10, 12], [7, 40, 40]]


@pytest.mark.parametrize(
    ("text", "grid", "message"),
    [
        ("1 2\n", 7, "line 1: 2 values, expected 3"),
        ("1 2 3\n1 2 3 4\n", 7, "line 2: 4 values"),
        ("1 2.5 3\n", 7, "'2.5' is not a whole number"),
        ("1 a 3\n", 7, "'a' is not a number"),
        ("1 nan 3\n", 7, "not a whole number"),
        ("49 0 3\n", 7, "cell 49 outside 0..48 of a 7x7 grid"),
        ("9 0 3\n", 3, "cell 9 outside 0..8"),
        ("1 9 3\n", 7, "ends at frame 3, before its start 9"),
        ("1 -2 3\n", 7, "outside 0.."),
    ],
)
def test_read_scanpath_refuses_bad_rows(tmp_path, text, grid, message):
    with pytest.raises(InputError, match=message) as info:
        read_scanpath(_scan(tmp_path, text), grid=grid)
    assert str(info.value).startswith(str(tmp_path / "v.txt"))


def test_read_scanpath_limits_size(tmp_path, monkeypatch):
    monkeypatch.setattr(actions, "MAX_SCANPATH_BYTES", 64)
    with pytest.raises(InputError, match="too large for a scanpath file"):
        read_scanpath(_scan(tmp_path, "1 0 5\n" * 20))


# --- checking ----------------------------------------------------------------------------------


def test_check_reports_every_planted_fault(ucf, scenecut_exe):
    clean = check_actions(ucf)
    assert clean.ok, clean.problems
    assert (clean.classes, clean.videos, clean.sampled) == (3, 5, 15)
    assert clean.frames == sum(n for _, n in UCF_VIDEOS.values())
    frames, scans, split = ucf / "jpegs_256", ucf / "scan_idx_7", ucf / "split"
    (frames / TRAIN[0] / "frame000007.jpg").unlink()  # a gap: missing frame, and 19 frames left
    for t in range(3, 17):  # v_YoYo_g01_c01 down to 3 frames: too short for a 16-frame clip
        (frames / TEST[1] / f"frame{t + 1:06d}.jpg").unlink()
    first = frames / TRAIN[2] / "frame000001.jpg"
    first.write_bytes(first.read_bytes()[:100])  # truncated
    (frames / ".v_new.partial").mkdir()  # an interrupted writer's folder
    (scans / f"{TRAIN[0]}.txt").write_text("")
    (scans / f"{TRAIN[1]}.txt").write_text("3 0 10\n")
    (scans / f"{TRAIN[2]}.txt").write_text("3 0 10\n60 0 1\n")
    (scans / f"{TEST[0]}.txt").write_text("3 0 10\n4 11 18\n")  # 18 frames: 0..17
    (scans / f"{TEST[1]}.txt").unlink()
    train = (split / "trainlist01.txt").read_text()
    train += "YoYo/v_YoYo_g08_c01.avi 2\r\n"  # listed twice, with the wrong label
    train += "Juggling/v_Juggling_g01_c01.avi 4\r\n"  # unknown class, and no frames
    train += "YoYo/v_YoYo_g01_c01.avi\r\n"  # also in the test list
    (split / "trainlist01.txt").write_text(train)
    proc = subprocess.run(
        [scenecut_exe, "data", "check", str(ucf), "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["layout"] == "actions" and not report["ok"]
    assert report["problem_counts"] == {
        "duplicate": 1,
        "unknown_class": 1,
        "label_mismatch": 1,
        "split_overlap": 1,
        "no_frames": 1,
        "missing_frame": 1,
        "too_short": 1,
        "bad_jpeg": 1,
        "no_scanpath": 1,
        "empty_scanpath": 1,
        "one_row_scanpath": 1,
        "bad_scanpath": 1,
        "scanpath_beyond_video": 1,
        "partial_write": 1,
    }, report["problems"]
    by_kind = {p["kind"]: p for p in report["problems"]}
    assert by_kind["missing_frame"]["message"] == "1 missing, numbers 7"
    assert by_kind["too_short"]["message"] == "3 frames; a 16-frame clip needs 17"
    assert "line 2: cell 60 outside 0..48" in by_kind["bad_scanpath"]["message"]
    assert by_kind["scanpath_beyond_video"]["path"] == f"scan_idx_7/{TEST[0]}.txt"
    assert by_kind["label_mismatch"]["line"] == 4
    for kind in report["problem_counts"]:
        assert kind in proc.stderr  # the table names every kind
    fast = check_actions(ucf, decode=False, clip_len=2)
    assert not fast.decoded and "too_short" not in fast.counts()
    assert fast.counts()["bad_jpeg"] == 1  # the truncated file has no end-of-image marker


def test_check_reports_missing_parts(tmp_path):
    (tmp_path / "jpegs_256").mkdir()
    report = check_actions(tmp_path)
    assert report.counts() == {"missing_file": 2}  # no classInd.txt, no lists
    assert {p.path for p in report.problems} == {"split/classInd.txt", "split"}


# --- ingesting our videos ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A tiny video in one class folder, and the same turned a quarter by its display matrix
    (as phones record) in another."""
    from scenecut.data.synth import make_film
    from scenecut.video import ffmpeg_exe

    folder = tmp_path_factory.mktemp("archive")
    (folder / "cooking").mkdir()
    (folder / "sports").mkdir()
    spec = dict(n_scenes=1, shots_per_scene=(1, 1), shot_frames=(18, 18), width=64, height=36)
    plain = make_film(folder / "cooking" / "a.mp4", seed=1, **spec).path
    turned = folder / "sports" / "b b.mp4"
    rotate = ["-display_rotation", "90", "-i", str(plain), "-c", "copy", str(turned)]
    subprocess.run([ffmpeg_exe(), "-v", "error", *rotate], check=True)
    return {"a": plain, "b b": turned}


def test_ingest_writes_the_action_layout(clips, tmp_path, scenecut_exe):
    out = tmp_path / "mine"
    command = [scenecut_exe, "data", "ingest", *map(str, clips.values()), "-o", str(out)]
    proc = subprocess.run([*command, "--layout", "actions", "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [line[:3] for line in lines] == [["written", "a", "18"], ["written", "b_b", "18"]]
    tree = ActionTree.open(out)
    assert tree.classes == ("cooking", "sports")  # the folder each video is in
    videos = tree.split("train")
    assert [(v.name, v.label, len(v.frames)) for v in videos] == [("a", 0, 18), ("b_b", 1, 18)]
    with Image.open(videos[0].frames[0]) as image:
        assert image.size == (455, 256)  # 64x36 scaled to a shorter side of 256
        plain = np.asarray(image, dtype=int)
    with Image.open(videos[1].frames[0]) as image:
        assert image.size == (256, 455)  # shown upright, as its display matrix says
        turned = np.asarray(image, dtype=int)
    assert np.abs(np.rot90(plain) - turned).mean() < 2  # a quarter turn anticlockwise
    assert np.abs(np.rot90(plain, -1) - turned).mean() > 10
    assert (out / "split" / "trainlist01.txt").read_text() == (
        "cooking/a.avi 1\nsports/b_b.avi 2\n"
    )
    assert check_actions(out, clip_len=16).ok
    # a re-run skips both; --split test moves one into the test list
    again = subprocess.run(
        [*command[:4], "-o", str(out), "--layout", "actions", "--split", "test", "-q"],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and again.stdout.startswith("skipped\ta\t18\t")
    assert [v.name for v in tree.split("train")] == ["b_b"]
    assert [(v.name, v.label) for v in tree.split("test")] == [("a", 0)]
    refused = subprocess.run(
        [*command, "--layout", "actions", "--scenes", str(clips["a"])],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("error: --scenes")


# --- the synthetic motion corpus -----------------------------------------------------------------


def test_motion_corpus_is_a_checked_tree_and_deterministic(tmp_path, scenecut_exe):
    out = tmp_path / "motion"
    args = ["--actions", "--classes", "8", "--videos-per-class", "2", "--frames", "17,20"]
    proc = subprocess.run(
        [scenecut_exe, "data", "synth", "-o", str(out), *args, "--seed", "5", "-q"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    report = check_actions(out)
    assert report.ok and report.videos == 16, report.problems
    tree = ActionTree.open(out)
    assert tree.classes == tuple(motion.ActionSpec().class_name(c) for c in range(8))
    assert [v.label for v in tree.split("train")] == list(range(8))
    assert [v.label for v in tree.split("test")] == list(range(8))
    video = tree.split("test")[3]
    assert 17 <= len(video.frames) <= 20
    with Image.open(video.frames[0]) as image:
        assert image.size == (171, 128)
    spec = motion.ActionSpec(classes=8, videos_per_class=2, frames=(17, 20), seed=5)
    again, _ = motion.render_video(spec, 3, 1)  # the same video, rendered anew: the same bytes
    assert len(again) == len(video.frames)
    encoded = io.BytesIO()
    Image.fromarray(again[-1]).save(encoded, format="JPEG", quality=spec.quality)
    assert encoded.getvalue() == video.frames[-1].read_bytes()
    resumed = motion.make_actions(out, spec)
    assert resumed.written == 0 and resumed.videos == 16
    other = subprocess.run(
        [scenecut_exe, "data", "synth", "-o", str(out), *args, "--seed", "6"],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 1 and "other settings" in other.stderr


def test_motion_classes_move_as_named_and_nothing_else_tells_them_apart():
    spec = motion.ActionSpec(classes=8, frames=(20, 40))
    for c, (name, moves, sign) in enumerate(motion.MOTIONS):
        track, _ = motion.plan_video(spec, c, 0)
        values = {"x": track.x, "y": track.y, "angle": track.angle, "size": track.size}
        for what, series in values.items():
            steps = np.diff(series)
            if what == moves:
                assert np.all(np.sign(steps) == sign), (name, what)
            else:
                assert np.all(steps == 0), (name, what)
    # One frame says nothing of the class: where the object is and how big, at a random frame
    # of many videos, are distributed alike in every class.
    rng = np.random.default_rng(0)
    stats = []
    for c in range(8):
        tracks = [motion.plan_video(spec, c, i)[0] for i in range(1000)]
        at = [int(rng.integers(len(track.x))) for track in tracks]
        x = np.array([track.x[t] / 171 for track, t in zip(tracks, at, strict=True)])
        y = np.array([track.y[t] / 128 for track, t in zip(tracks, at, strict=True)])
        size = np.log([track.size[t] for track, t in zip(tracks, at, strict=True)])
        stats.append([x.mean(), y.mean(), size.mean(), x.std(), y.std(), size.std()])
    stats = np.array(stats)
    assert np.ptp(stats, axis=0).max() < 0.07, stats


def test_rendered_object_is_where_the_track_says():
    spec = motion.ActionSpec(classes=8, frames=(20, 20))
    frames, track = motion.render_video(spec, 1, 2)  # MoveRight
    assert frames.shape == (20, 128, 171, 3) and frames.dtype == np.uint8
    for t in (0, 19):
        changed = np.abs(frames[t].astype(int) - frames[10 if t == 0 else 0]).sum(axis=2) > 60
        ys, xs = np.nonzero(changed)
        near = np.hypot(xs - track.x[t], ys - track.y[t]) < track.size[t]
        assert near.mean() > 0.5  # what differs from another frame is mostly the object
