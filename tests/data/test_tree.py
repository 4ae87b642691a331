"""MovieNet-style trees: reading, checking, ingesting our videos, and the torch datasets.

Trees are written by hand here (not with scenecut.data's writer) so the reader is tested against
the published layout, and generated films give ingest known shots and scenes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.data import check, ingest, writer
from scenecut.data import tree as data_tree

runner = CliRunner()

# video id -> (raw label318 values incl. MovieNet's -1, or None when unlabelled)
FILMS = {
    "tt0000001": [0, 1, -1, 0],  # 5 shots
    "tt0000002": [1, 0, 0],  # 4 shots
    "tt0000003": None,  # 6 shots, pre-training only
}
SHOTS = {"tt0000001": 5, "tt0000002": 4, "tt0000003": 6}
SPLIT = {"train": ["tt0000001"], "val": [], "test": ["tt0000002"]}
SIZE = (40, 24)  # keyframe width, height: small, so decoding is quick


def _jpeg(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(SIZE, Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90)


def _write_tree(root: Path, *, anno: bool = True, scene318: bool = True) -> Path:
    """A MovieNet-SSeg tree in the published layout (BaSSL anno + LGSS scene318)."""
    for v, (video_id, n) in enumerate(SHOTS.items()):
        for shot in range(n):
            for k in range(3):
                _jpeg(
                    root / "240P_frames" / video_id / f"shot_{shot:04d}_img_{k}.jpg", v * 99 + shot
                )
    if scene318:
        for video_id, n in SHOTS.items():
            lines = []
            for shot in range(n):
                start, end = 100 * shot, 100 * shot + 99
                lines.append(f"{start} {end} {start} {start + 49} {end}\n")
            path = root / "scene318" / "shot_movie318" / f"{video_id}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(lines))
            labels = FILMS[video_id]
            if labels is not None:
                path = root / "scene318" / "label318" / f"{video_id}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(f"{i:04d} {v}\n" for i, v in enumerate(labels)))
        meta = root / "scene318" / "meta" / "split318.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({**SPLIT, "all": SPLIT["train"] + SPLIT["test"]}))
    if anno:
        folder = root / "anno"
        folder.mkdir(parents=True, exist_ok=True)
        rows: dict[str, list[str]] = {n: [] for n in ("pretrain", "trainvaltest", *SPLIT)}
        for video_id, n in SHOTS.items():
            labels = FILMS[video_id]
            for shot in range(n):
                row = {"video_id": video_id, "shot_id": f"{shot:04d}", "num_shot": n}
                if labels is not None and shot < n - 1:
                    row["boundary_label"] = labels[shot]
                rows["pretrain"].append(json.dumps(row))
            for name, ids in SPLIT.items():
                if video_id in ids:
                    for shot, label in enumerate(labels):
                        row = {"video_id": video_id, "shot_id": f"{shot:04d}", "num_shot": n}
                        rows[name].append(json.dumps({**row, "boundary_label": label}))
                        rows["trainvaltest"].append(rows[name][-1])
        for name, lines in rows.items():
            (folder / f"anno.{name}.ndjson").write_text("".join(f"{r}\n" for r in lines))
        (folder / "vid2idx.json").write_text(json.dumps({v: i for i, v in enumerate(SHOTS)}))
    return root


@pytest.fixture
def tree_root(tmp_path) -> Path:
    return _write_tree(tmp_path / "movienet")


# --- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["full", "bassl", "lgss"])
def test_read_tree_counts_labels_splits(tmp_path, layout):
    root = _write_tree(tmp_path, anno=layout != "lgss", scene318=layout != "bassl")
    tree = data_tree.read_tree(root)
    assert list(tree.movies) == list(SHOTS)
    assert {v: m.num_shots for v, m in tree.movies.items()} == SHOTS
    movie = tree.movies["tt0000001"]
    assert movie.labels == (0, 1, 1, 0)  # -1 ("uncertain") reads as 1, as BaSSL/LGSS do
    assert tree.movies["tt0000002"].labels == (1, 0, 0)
    assert tree.movies["tt0000003"].labels is None
    if layout == "bassl":
        assert movie.shots is None  # BaSSL trees have no frame ranges
    else:
        assert movie.shots[1] == (100, 200)  # inclusive end 199 -> half-open
    assert tree.splits["pretrain"] == tuple(SHOTS)
    if layout == "lgss" or layout == "full":
        assert tree.splits["train"] == ("tt0000001",)
        assert tree.splits["val"] == ()
    assert tree.splits["test"] == ("tt0000002",)
    images = tree.load_keyframes("tt0000002", 3)
    assert images.shape == (3, SIZE[1], SIZE[0], 3) and images.dtype == np.uint8


def test_read_tree_rejects_non_tree(tmp_path):
    from scenecut.errors import InputError

    with pytest.raises(InputError, match="no films"):
        data_tree.read_tree(tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        data_tree.read_tree(tmp_path / "missing")


# --- checking ----------------------------------------------------------------------------------


def test_check_clean_tree_exits_0(tree_root):
    res = runner.invoke(app, ["data", "check", str(tree_root), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["movies"] == 3 and report["shots"] == sum(SHOTS.values())
    assert report["keyframes"] == 3 * sum(SHOTS.values()) and report["decoded"]
    assert report["splits"] == {"pretrain": 3, "train": 1, "val": 0, "test": 1}
    assert "no problems" in res.stderr


def test_check_reports_every_planted_fault(tree_root):
    frames = tree_root / "240P_frames"
    (frames / "tt0000001" / "shot_0002_img_1.jpg").unlink()  # deleted keyframe
    jpeg = frames / "tt0000003" / "shot_0004_img_0.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # truncated
    labels = tree_root / "scene318" / "label318" / "tt0000002.txt"
    labels.write_text(labels.read_text() + "0003 0\n")  # 4 labels for 4 shots
    pretrain = tree_root / "anno" / "anno.pretrain.ndjson"
    row = {"video_id": "tt9999999", "shot_id": "0000", "num_shot": 1}
    pretrain.write_text(pretrain.read_text() + json.dumps(row) + "\n")  # no frames
    res = runner.invoke(app, ["data", "check", str(tree_root), "--json"])
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    found = {(p["kind"], p["video_id"]) for p in report["problems"]}
    assert ("missing_keyframe", "tt0000001") in found
    assert ("bad_jpeg", "tt0000003") in found
    assert ("count_mismatch", "tt0000002") in found
    assert ("no_frames", "tt9999999") in found
    assert not report["ok"] and len(report["problems"]) == 4, report["problems"]
    # the table on stderr names every kind
    for kind in ("missing_keyframe", "bad_jpeg", "count_mismatch", "no_frames"):
        assert kind in res.stderr
    # the fast mode still sees the truncated file (no end-of-image marker) without decoding
    fast = check.check_tree(tree_root, decode=False)
    assert not fast.decoded and fast.counts() == report["problem_counts"]


def test_check_reports_malformed_lines_duplicates_and_order(tree_root):
    shots = tree_root / "scene318" / "shot_movie318" / "tt0000001.txt"
    lines = shots.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    shots.write_text("\n".join(lines) + "\n")
    labels = tree_root / "scene318" / "label318" / "tt0000002.txt"
    labels.write_text("0000 1\n0000 1\n0002 x\n")
    (tree_root / "anno" / "anno.val.ndjson").write_text("{not json\n")
    report = check.check_tree(tree_root, decode=False)
    counts = report.counts()
    assert counts["shot_order"] == 1
    assert counts["duplicate_shot"] == 1
    assert counts["malformed_line"] == 2
    problem = next(p for p in report.problems if p.kind == "shot_order")
    assert problem.path == "scene318/shot_movie318/tt0000001.txt" and problem.line == 3


def test_check_reports_split_problems(tree_root):
    split = tree_root / "scene318" / "meta" / "split318.json"
    split.write_text(
        json.dumps({"train": ["tt0000001", "tt0000003"], "val": [], "test": ["tt0000001"]})
    )
    report = check.check_tree(tree_root, decode=False)
    assert report.counts() == {"unlabelled_in_split": 1, "split_overlap": 1}


def test_check_bad_usage_exits_2(scenecut_exe, tmp_path):
    import subprocess

    proc = subprocess.run(
        [scenecut_exe, "data", "check", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "not a directory" in proc.stderr
    empty = subprocess.run(
        [scenecut_exe, "data", "check", str(tmp_path)], capture_output=True, text=True
    )
    assert empty.returncode == 1 and "empty_tree" in empty.stderr


# --- writing -----------------------------------------------------------------------------------


def test_write_movie_interrupted_leaves_nothing(tmp_path):
    def keyframes():
        yield np.zeros((3, 24, 40, 3), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        writer.write_movie(tmp_path, "m", [(0, 5), (5, 9)], keyframes())
    assert list((tmp_path / "240P_frames").iterdir()) == []
    assert not (tmp_path / "scene318").exists()


# --- ingesting ---------------------------------------------------------------------------------


def _scene_text(film) -> str:
    return "".join(f"{float(start / film.fps):.3f}\n" for start in film.scene_starts[1:])


def test_ingest_reproduces_known_shots_and_scene_labels(films, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for film in films[:2]:
        (scenes / f"{film.path.stem}.txt").write_text(_scene_text(film))
    out = tmp_path / "tree"
    args = ["data", "ingest", *(str(f.path) for f in films[:2]), "--out", str(out)]
    res = runner.invoke(app, [*args, "--scenes", str(scenes), "--split", "val"])
    assert res.exit_code == 0, res.output
    assert [line.split("\t")[:2] for line in res.stdout.splitlines()] == [
        ["written", "film10"],
        ["written", "film11"],
    ]
    tree = data_tree.read_tree(out)
    for film in films[:2]:
        movie = tree.movies[film.path.stem]
        assert list(movie.shots) == film.shot_ranges()
        expected = [int(i in film.scene_gaps()) for i in range(len(film.shot_ranges()) - 1)]
        assert list(movie.labels) == expected
        image = tree.load_keyframes(movie.video_id, 0)
        assert image.shape == (3, film.height, film.width, 3)  # never upscaled to 240
    assert tree.splits["val"] == ("film10", "film11")
    assert tree.splits["pretrain"] == ("film10", "film11")
    assert check.check_tree(out).ok


def test_ingest_labels_from_scenes_json(film, tmp_path):
    seg = runner.invoke(app, ["segment", str(film.path), "-o", str(tmp_path), "-q"])
    assert seg.exit_code == 0, seg.output
    result = json.loads((tmp_path / "film.scenes.json").read_text())
    out = tmp_path / "tree"
    ingested = ingest.ingest([film.path], out, scenes=tmp_path / "film.scenes.json")
    assert ingested.videos[0].status == "written" and ingested.splits["test"] == 1
    movie = data_tree.read_tree(out).movies["film"]
    gaps = {scene["first_shot"] - 1 for scene in result["scenes"][1:]}
    assert [i for i, v in enumerate(movie.labels) if v] == sorted(gaps)
    # relabelling an ingested film needs no decoding; a plain-text list works as well
    text = tmp_path / "truth.txt"
    text.write_text(_scene_text(film))
    again = ingest.ingest([film.path], out, scenes=text, split="train")
    assert again.videos[0].status == "relabelled"
    tree = data_tree.read_tree(out)
    assert [i for i, v in enumerate(tree.movies["film"].labels) if v] == film.scene_gaps()
    assert tree.splits["train"] == ("film",) and tree.splits["test"] == ()


def test_ingest_bad_usage(films, tmp_path):
    from scenecut.errors import UsageError

    text = tmp_path / "scenes.txt"
    text.write_text("1.0\n")
    videos = [f.path for f in films[:2]]
    with pytest.raises(UsageError, match="several videos"):
        ingest.ingest(videos, tmp_path / "t", scenes=text)
    with pytest.raises(UsageError, match="needs --scenes"):
        ingest.ingest(videos, tmp_path / "t", split="train")
    with pytest.raises(UsageError, match="film11"):
        folder = tmp_path / "scenes"
        folder.mkdir()
        (folder / "film10.txt").write_text("1.0\n")
        ingest.ingest(videos, tmp_path / "t", scenes=folder)
    assert not (tmp_path / "t").exists()  # refused before writing anything


def test_labels_map_to_nearest_shot_boundary():
    shots = [(0, 10), (10, 30), (30, 32), (32, 60)]
    assert ingest.labels_from_scene_starts(shots, [11, 31, 2]) == [1, 1, 0]
    assert ingest.labels_from_scene_starts(shots, [59]) == [0, 0, 1]
    assert ingest.sanitize_id("my film (1).mp4") == "my_film_1_.mp4"


def test_interrupted_ingest_leaves_no_half_movie_and_resumes(films, bad_inputs, tmp_path):
    out = tmp_path / "tree"
    videos = [f.path for f in films[:3]]
    seen: list[str] = []

    def progress(video_id: str, done: int, total: int) -> None:
        seen.append(video_id)
        if video_id == "film11" and done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest.ingest(videos, out, progress=progress)
    assert "film11" in seen and "film12" not in seen
    assert sorted(p.name for p in (out / "240P_frames").iterdir()) == ["film10"]
    assert not (out / "scene318" / "shot_movie318" / "film11.txt").exists()
    assert data_tree.read_tree(out).splits["pretrain"] == ("film10",)  # annotations were rewritten
    assert check.check_tree(out).ok

    res = runner.invoke(
        app, ["data", "ingest", *map(str, videos), str(bad_inputs["text"]), "--out", str(out)]
    )
    assert res.exit_code == 1, res.output  # the bad input failed, the others went in
    status = {line.split("\t")[1]: line.split("\t")[0] for line in res.stdout.splitlines()}
    assert status == {
        "film10": "skipped",
        "film11": "written",
        "film12": "written",
        "text": "failed",
    }
    assert "error:" in res.stderr
    tree = data_tree.read_tree(out)
    assert list(tree.movies) == ["film10", "film11", "film12"]
    assert [m.num_shots for m in tree.movies.values()] == [len(f.shot_ranges()) for f in films[:3]]
    assert check.check_tree(out).ok


def test_same_stem_gets_unique_ids(film, tmp_path):
    other = tmp_path / "other" / "film.mp4"
    other.parent.mkdir()
    shutil.copy(film.path, other)
    out = tmp_path / "tree"
    first = ingest.ingest([film.path, other], out)
    assert [v.video_id for v in first.videos] == ["film", "film_2"]
    again = ingest.ingest([other, film.path], out)  # ids follow the files, not the order
    assert [(v.video_id, v.status) for v in again.videos] == [
        ("film_2", "skipped"),
        ("film", "skipped"),
    ]


# --- datasets ----------------------------------------------------------------------------------


@pytest.fixture
def small():
    from scenecut.train.datasets import test_transform, train_transform

    return train_transform(16), test_transform(16, 16)


def test_labelled_windows_shapes_labels_and_edges(tree_root, small):
    from scenecut.train.datasets import LabelledWindows

    ds = LabelledWindows(tree_root, "train", neighbor_size=2, transform=small[1])
    assert len(ds) == SHOTS["tt0000001"] - 1
    assert ds.labels() == [0, 1, 1, 0]
    first = ds[0]
    assert first["images"].shape == (5, 3, 3, 16, 16)
    assert first["images"].dtype.is_floating_point
    assert first["shots"].tolist() == [0, 0, 0, 1, 2]  # edge shots repeat
    assert [ds[i]["label"] for i in range(len(ds))] == [0, 1, 1, 0]
    assert ds[3]["shots"].tolist() == [1, 2, 3, 4, 4]
    one = LabelledWindows(
        tree_root, "test", neighbor_size=1, transform=small[1], keyframes="middle"
    )
    assert one[0]["images"].shape == (3, 3, 16, 16) and one[0]["label"] == 1


def test_pretrain_windows_shift_inside_the_film(tree_root, small):
    from scenecut.train.datasets import PretrainWindows

    ds = PretrainWindows(tree_root, neighbor_size=2, transform=small[0], sparse=(0, -1))
    assert len(ds) == sum(SHOTS.values())
    item = ds[0]
    assert item["shots"].tolist() == [0, 1, 2, 3, 4]  # shifted right, not clipped
    assert item["images"].shape == (5, 3, 16, 16)
    assert item["sparse_images"].shape == (2, 3, 16, 16)
    assert ds[4]["shots"].tolist() == [0, 1, 2, 3, 4]  # the last shot: shifted left
    short = PretrainWindows(tree_root, neighbor_size=3, transform=small[0])
    assert short[0]["shots"].tolist() == [0, 1, 2, 3, 4, 4, 4]  # film shorter than the window


def test_film_shots_in_order(tree_root, small):
    from scenecut.train.datasets import FilmShots

    ds = FilmShots(tree_root, "tt0000003", transform=small[1])
    assert len(ds) == SHOTS["tt0000003"]
    assert [ds[i]["shot"] for i in range(len(ds))] == list(range(6))
    assert ds[0]["images"].shape == (3, 3, 16, 16)
    raw = FilmShots(tree_root, "tt0000003", transform=lambda x: x)  # identity: decoded pixels
    expected = data_tree.load_keyframes(tree_root, "tt0000003", 2)
    got = raw[2]["images"].permute(0, 2, 3, 1).numpy()
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 2  # two JPEG decoders


def test_train_transform_is_consistent_across_a_window():
    import torch

    from scenecut.train.datasets import ColorJitter, GaussianBlur, train_transform

    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
    batch = image.expand(6, -1, -1, -1).contiguous()
    jittered = ColorJitter(p=1.0)(batch)
    assert not torch.equal(jittered[0], image)
    assert all(torch.equal(jittered[0], j) for j in jittered)  # one draw for the whole call
    transform = train_transform(32)
    blur = next(t for t in transform.transforms if isinstance(t, GaussianBlur))
    blur.p = 0.0  # the blur draws sigma per image (as BaSSL); everything else once per call
    for _ in range(5):
        out = transform(batch)
        assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
        assert all(torch.equal(out[0], o) for o in out)
    blurred = GaussianBlur(p=1.0)(batch)
    assert not torch.equal(blurred[0], blurred[1])


def test_distributed_sampler_shards_are_disjoint_and_cover(tree_root, small):
    from torch.utils.data import DataLoader, DistributedSampler

    from scenecut.train.datasets import PretrainWindows

    ds = PretrainWindows(tree_root, neighbor_size=1, transform=small[0])
    assert len(ds) % 3 == 0
    shards = []
    for rank in range(3):
        sampler = DistributedSampler(ds, num_replicas=3, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    flat = [i for shard in shards for i in shard]
    assert sorted(flat) == list(range(len(ds)))  # disjoint and covering
    loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=2)
    seen = [(v, int(c)) for b in loader for v, c in zip(b["video_id"], b["center"], strict=True)]
    assert seen == [(ds.movies[ds.items[i][0]].video_id, ds.items[i][1]) for i in shards[2]]
