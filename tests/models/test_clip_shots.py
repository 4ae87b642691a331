"""A clip encoder (Saccade-VSSL) as a shot encoder: clips collected inside each shot in the one
decode pass with bounded memory, ``segment --model CLIP``, ``train extract`` on a tree's
keyframes, ``train finetune`` on those features, and hostile clip-model files."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
av = pytest.importorskip("av")

from scenecut.data import tree as data_tree  # noqa: E402
from scenecut.data import writer  # noqa: E402
from scenecut.errors import InputError  # noqa: E402
from scenecut.models import clipshots, saccade  # noqa: E402
from scenecut.models.options import InferenceOptions  # noqa: E402
from scenecut.models.scorers import load_scorer  # noqa: E402
from scenecut.segment import segment  # noqa: E402
from scenecut.shotclips import ClipCollector, ClipSpec, clip_starts, stretch  # noqa: E402
from scenecut.train import config as train_config  # noqa: E402
from scenecut.train import features  # noqa: E402
from scenecut.train.datasets import decode_rgb  # noqa: E402

CLIP = saccade.ClipConfig(backbone="tiny", embed_dim=16, clip_len=8, size=32)


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("clip") / "clip.safetensors"
    saccade.save_model(saccade.build(CLIP), CLIP, path)
    return path


def _frame(index: int, width: int = 64, height: int = 48) -> av.VideoFrame:
    """A flat frame whose red and green levels spell its index (scaling keeps flat colours)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 0], pixels[..., 1] = index % 256, index // 256
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


def _indices(clips: np.ndarray) -> np.ndarray:
    """``[K, T, S, S, 3]`` clips of ``_frame``s -> ``[K, T]`` frame indices."""
    return clips[..., 0, 0, 0].astype(int) + 256 * clips[..., 0, 0, 1].astype(int)


def _shot(collector: ClipCollector, start: int, length: int, **size) -> np.ndarray:
    for i in range(start, start + length):
        collector.push(i, _frame(i, **size))
    return _indices(collector.close(start + length)) - start


def test_clips_sit_inside_each_shot_and_memory_stays_bounded():
    spec = ClipSpec(clips=3, clip_len=4, size=8, capacity=4)
    collector = ClipCollector(spec)
    # A shot shorter than a clip: its frames stretched, each repeated in order.
    assert _shot(collector, 0, 2).tolist() == [[0, 0, 1, 1]] * 3
    assert stretch(2, 4) == [0, 0, 1, 1]
    # Up to capacity x clip_len frames every frame is kept: the clips are where the rule says.
    for start, length in ((2, 10), (12, 16)):
        starts = clip_starts(length, 4, 3)
        assert _shot(collector, start, length).tolist() == [list(range(a, a + 4)) for a in starts]
    assert clip_starts(16, 4, 3) == [1, 6, 11]  # centred on 1/6, 1/2 and 5/6 of the shot
    assert collector.peak_bytes == spec.max_bytes == 4 * 4 * 8 * 8 * 3
    # A long shot: consecutive frames near each clip's place, memory no larger.
    length = 1000
    got = _shot(collector, 28, length)
    stride_bound = 2 * length / spec.capacity
    for clip, target in zip(got, clip_starts(length, 4, 3), strict=True):
        assert clip.tolist() == list(range(clip[0], clip[0] + 4))
        assert 0 <= clip[0] <= length - 4 and abs(clip[0] - target) < stride_bound
    assert collector.peak_bytes == spec.max_bytes
    assert collector.frames_scaled < 30 + 100  # the long shot's frames were mostly never scaled
    # Whatever the resolution: the frames held are small squares, as accounted.
    big = ClipCollector(spec)
    for i in range(40):
        big.push(i, _frame(i, 1280, 720))
        held = sum(f.nbytes for f in big.held.values())
        assert held == big.held_bytes <= spec.max_bytes
    assert {f.shape for f in big.held.values()} == {(8, 8, 3)}


def test_a_cut_found_late_keeps_the_next_shots_frames():
    collector = ClipCollector(ClipSpec(clips=3, clip_len=4, size=8, capacity=8))
    for i in range(30):
        collector.push(i, _frame(i))
    first = _indices(collector.close(20))  # frames 20-29 were already received
    assert first.min() >= 0 and first.max() < 20
    second = _shot(collector, 30, 10) + 30 - 20  # the shot [20, 40)
    assert second.tolist() == [list(range(a, a + 4)) for a in clip_starts(20, 4, 3)]


def test_segment_with_a_clip_model(film, clip_model):
    scorer = load_scorer(InferenceOptions(model=str(clip_model), device="cpu", precision="fp32"))
    assert isinstance(scorer, clipshots.ClipScorer)
    seen = []
    embed = scorer.embed

    def recording(shots):
        seen.append(shots.copy())
        return embed(shots)

    scorer.embed = recording
    # --decode-workers: clip models keep the single pass (the chunked one keeps no clips)
    result = segment(film.path, scorer=scorer, decode_workers=2)
    default = segment(film.path)
    shots = [(s.start, s.end) for s in result.shots]
    assert shots == [(s.start, s.end) for s in default.shots]
    assert len(result.boundary_scores) == len(shots) - 1
    assert all(0.0 <= s <= 1.0 for s in result.boundary_scores)
    clips = np.concatenate(seen)
    assert clips.shape == (len(shots), 3, CLIP.clip_len, CLIP.size, CLIP.size, 3)
    assert max(len(batch) for batch in seen) <= scorer.batch_shots
    # Each clip is consecutive frames of its own shot, where the rule puts it: the same pixels
    # as the film's frames decoded apart from segment and scaled by the same transform.
    scale = ClipCollector(scorer.clip_spec).scale
    with av.open(str(film.path)) as container:
        frames = [scale(frame) for frame in container.decode(video=0)]
    for (start, end), got in zip(shots, clips, strict=True):
        for clip, first in zip(got, clip_starts(end - start, CLIP.clip_len, 3), strict=True):
            offsets = [first + i for i in stretch(end - start, CLIP.clip_len)]
            assert np.array_equal(clip, np.stack([frames[start + o] for o in offsets]))
    # The embedding: per shot the mean of its clips' z, L2-normalised.
    z = scorer.encoder.clip_embeddings(clips[0])
    mean = torch.nn.functional.normalize(z.mean(0), dim=0).numpy()
    assert np.allclose(scorer.embed(clips[:1])[0], mean, atol=1e-5)


def _tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    movies = []
    for f in range(4):
        shots = [(8 * i, 8 * i + 8) for i in range(10)]
        images = (rng.integers(0, 256, (3, 24, 32, 3), dtype=np.uint8) for _ in shots)
        labels = [int(i % 3 == 2) for i in range(len(shots) - 1)]
        movies.append(writer.write_movie(root, f"tt{f:07d}", shots, images, labels))
    ids = [m.video_id for m in movies]
    writer.write_annotations(root, movies, {"train": ids[:2], "val": ids[2:3], "test": ids[3:]})
    return root


def _cli(*args: str) -> str:
    """``scenecut ARGS`` in this process (the real commands); its stdout."""
    from typer.testing import CliRunner

    from scenecut.cli import app

    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, (res.output, res.exception)
    return res.stdout


# torch's elastic error handler wants a real stderr; the in-process runner's has none.
@pytest.mark.filterwarnings("ignore:Unable to enable fault handler")
def test_extract_then_finetune_on_clip_features(tmp_path, clip_model, film):
    tree = _tree(tmp_path / "tree")
    out = tmp_path / "feats"
    _cli("train", "extract", "--data", str(tree), "--encoder", str(clip_model), "--out", str(out),
         "--workers", "0", "--precision", "fp32")  # fmt: skip
    meta = json.loads((out / features.META).read_text())
    assert meta["encoder"] == str(clip_model) and meta["clip"] == json.loads(CLIP.to_json())
    assert meta["config"]["encoder"] == "clip" and "approximation" in meta["frames"]
    feats = features.FeatureSet.open(out)
    assert feats.clip == CLIP and feats.config.crn.input_dim == CLIP.embed_dim
    assert len(list(out.glob("*.npy"))) == 4
    film0 = feats.film("tt0000000")
    assert film0.shape == (10, CLIP.embed_dim)
    # A shot's feature: its 3 keyframes, each the centre square, as one clip of 8 frames.
    parsed = data_tree.read_tree(tree)
    images = torch.stack([decode_rgb(parsed.keyframe_path("tt0000000", 4, k)) for k in range(3)])
    scorer = clipshots.ClipShotEncoder(saccade.load_model(clip_model)[0], precision="fp32")
    keyframes = np.stack([scorer.prepare(im) for im in images.permute(0, 2, 3, 1).numpy()])
    assert np.allclose(film0[4], scorer.embed(keyframes[None])[0], atol=1e-5)
    # train finetune runs on them and writes a model that segment runs.
    run = tmp_path / "run"
    small = ["hidden_size=16", "num_attention_heads=2", "intermediate_size=32",
             "num_hidden_layers=1", "neighbor_size=2"]  # fmt: skip
    sets = [arg for value in small for arg in ("--set", f"model.crn.{value}")]
    model = _cli("train", "finetune", "--data", str(tree), "--features", str(out), "--out",
                 str(run), "--epochs", "1", "--batch-size", "8", "--workers", "0",
                 *sets).strip()  # fmt: skip
    assert model == str(run / train_config.MODEL_FILE)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert steps and steps[-1]["step"] >= 1 and np.isfinite(steps[-1]["loss"])
    assert clipshots.is_clip_boundary_file(model) and not saccade.is_clip_model(model)
    for used in (model, str(clip_model)):
        result = json.loads(_cli("segment", str(film.path), "--model", used, "--stdout", "-q"))
        assert result["settings"]["model"] == used
        assert len(result["boundary_scores"]) == len(result["shots"]) - 1


def _with_metadata(path: Path, key: str, value: str) -> None:
    """Rewrite one metadata entry of the safetensors file at ``path`` in place."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"][key] = value
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length :])


def _bad_files(folder: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    net = saccade.build(CLIP)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    files = {name: folder / f"{name}.safetensors" for name in ("shape", "nan", "config")}
    wrong = {**state, "head.weight": torch.zeros(3, 3)}
    nan = {**state, "head.weight": torch.full_like(state["head.weight"], float("nan"))}
    odd = CLIP.to_json().replace('"tiny"', '"r999"')
    for name, tensors, text in (("shape", wrong, CLIP.to_json()), ("nan", nan, CLIP.to_json())):
        save_file(tensors, str(files[name]), metadata={saccade.METADATA_KEY: text})
    save_file(state, str(files["config"]), metadata={saccade.METADATA_KEY: odd})
    files["truncated"] = folder / "truncated.safetensors"
    saccade.save_model(net, CLIP, files["truncated"])
    whole = files["truncated"].read_bytes()
    files["truncated"].write_bytes(whole[:-100])
    # A clip boundary model whose head does not take its clip model's embeddings.
    head = clipshots.BoundaryHead(features.clip_feature_config(CLIP))
    files["boundary"] = clipshots.save_clip_boundary(net, head, folder / "boundary.safetensors")
    meta = {"clip": json.loads(CLIP.to_json()), "model": json.loads(head.config.to_json())}
    meta["model"]["crn"]["input_dim"] = 8
    _with_metadata(files["boundary"], clipshots.BOUNDARY_KEY, json.dumps(meta))
    return files


def test_hostile_clip_models_are_one_clear_line(tmp_path, film, scenecut_exe):
    files = _bad_files(tmp_path)
    expected = {
        "shape": "wrong shape (1): head.weight [3, 3]",
        "nan": "NaN",
        "config": "unknown backbone",
        "truncated": "safetensors",
        "boundary": "16-d embeddings",
    }
    for name, path in files.items():
        with pytest.raises(InputError, match=re.escape(expected[name])) as caught:
            load_scorer(InferenceOptions(model=str(path), device="cpu"))
        assert "\n" not in str(caught.value)
    proc = subprocess.run(
        [scenecut_exe, "segment", str(film.path), "--model", str(files["shape"]), "--stdout"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "wrong shape" in proc.stderr and "Traceback" not in proc.stderr
