"""BaSSL model: reference key layout, checkpoint import, CRN behaviour, inference, save/load."""

from __future__ import annotations

import io
import logging
import sys
import tarfile
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tiny_models import TINY  # noqa: E402

from scenecut.errors import InputError  # noqa: E402
from scenecut.models import bassl, checkpoints, inference  # noqa: E402
from scenecut.models.config import CRNConfig, ModelConfig  # noqa: E402

# Hand-copied from REFERENCE.md section 8.1 (ModelScope pytorch_model.pt), not from our modules.
REFERENCE_KEYS = {
    "shot_encoder.conv1.weight": [64, 3, 7, 7],
    "shot_encoder.bn1.weight": [64],
    "shot_encoder.bn1.num_batches_tracked": [],
    "shot_encoder.layer1.0.downsample.0.weight": [256, 64, 1, 1],
    "shot_encoder.layer1.0.downsample.1.running_mean": [256],
    "shot_encoder.layer2.3.conv2.weight": [128, 128, 3, 3],
    "shot_encoder.layer3.5.bn3.weight": [1024],
    "shot_encoder.layer4.0.downsample.0.weight": [2048, 1024, 1, 1],
    "shot_encoder.layer4.2.bn3.running_var": [2048],
    "crn.attention_mask": [1, 1, 1, 18],
    "crn.shot_embedding.pos_ids": [18],
    "crn.shot_embedding.shot_embedding.weight": [768, 2048],
    "crn.shot_embedding.shot_embedding.bias": [768],
    "crn.shot_embedding.position_embedding.weight": [18, 768],
    "crn.shot_embedding.mask_embedding.weight": [2, 2048],
    "crn.shot_embedding.LayerNorm.weight": [768],
    "crn.shot_embedding.LayerNorm.bias": [768],
    "crn.encoder.layer.0.attention.self.query.weight": [768, 768],
    "crn.encoder.layer.0.attention.self.key.bias": [768],
    "crn.encoder.layer.1.attention.self.value.weight": [768, 768],
    "crn.encoder.layer.0.attention.output.dense.weight": [768, 768],
    "crn.encoder.layer.1.attention.output.LayerNorm.bias": [768],
    "crn.encoder.layer.1.intermediate.dense.weight": [3072, 768],
    "crn.encoder.layer.0.output.dense.weight": [768, 3072],
    "crn.encoder.layer.1.output.LayerNorm.weight": [768],
    "head_sbd.weight": [2, 768],
    "head_sbd.bias": [2],
}


@pytest.fixture(scope="module")
def full_state() -> dict:
    """A random full-size BaSSL state dict with every tensor distinct from a fresh model's."""
    torch.manual_seed(0)
    model = bassl.build(ModelConfig())
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point() and key != "crn.attention_mask":
            value = torch.randn_like(value)
        state[key] = value.clone()
    state["shot_encoder.bn1.num_batches_tracked"] = torch.tensor(7)
    return state


def _assert_same(imported: dict, source: dict, prefix: str = "") -> None:
    assert set(imported) == {prefix + k for k in source}
    for key, value in source.items():
        assert torch.equal(imported[prefix + key], value), key


def test_reference_layout(full_state):
    shapes = {k: list(v.shape) for k, v in full_state.items()}
    for key, shape in REFERENCE_KEYS.items():
        assert shapes.get(key) == shape, key
    assert not any(k.startswith("shot_encoder.fc") for k in shapes)
    assert {k.split(".")[0] for k in shapes} == {"shot_encoder", "crn", "head_sbd"}
    layers = {k.split(".")[3] for k in shapes if k.startswith("crn.encoder.layer.")}
    assert layers == {"0", "1"}
    assert torch.equal(full_state["crn.shot_embedding.pos_ids"], torch.arange(18))


def test_import_modelscope_and_load(full_state, tmp_path):
    path = tmp_path / "pytorch_model.pt"
    torch.save(full_state, path)
    state, config = checkpoints.import_checkpoint(path)
    # ModelScope's own threshold (pipeline.save_threshold) travels with its weights
    assert config == ModelConfig(threshold=0.8)
    _assert_same(state, full_state)
    model = bassl.build(config)
    model.load_state_dict(state, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, full_state[key]), key


def test_import_lightning_without_buffers(full_state, tmp_path, caplog):
    sd = {k: v for k, v in full_state.items() if k != "crn.attention_mask"}
    del sd["crn.shot_embedding.pos_ids"]
    sd["loss.head_pp.weight"] = torch.randn(2, 768)
    sd["loss.head_nce.model.0.weight"] = torch.randn(4, 4)
    path = tmp_path / "model-v1.ckpt"
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 10}, path)
    with caplog.at_level(logging.WARNING):
        state, config = checkpoints.import_checkpoint(path)
    assert config == ModelConfig()  # BaSSL's own threshold: argmax (None: segment's 0.5)
    _assert_same(state, full_state)  # buffers filled back in, loss.* dropped
    assert not caplog.records  # the pretext heads are known: dropped without a word


def test_import_lightning_tar_gz(tmp_path):
    sd = bassl.build(TINY).state_dict()
    buffer = io.BytesIO()
    torch.save({"state_dict": sd, "epoch": 3}, buffer)
    path = tmp_path / "bassl.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("bassl/model-v1.ckpt")
        info.size = len(buffer.getvalue())
        archive.addfile(info, io.BytesIO(buffer.getvalue()))
    state, config = checkpoints.import_checkpoint(path, config=TINY)
    assert config == TINY
    _assert_same(state, sd)
    # Heads cannot be read from weights: everything else is inferred.
    assert checkpoints.infer_config(state, heads=2).crn == TINY.crn
    assert checkpoints.infer_config(state).encoder == "tiny"


def test_import_torchvision_encoder_only(full_state, tmp_path):
    sd = {k[len("shot_encoder.") :]: v for k, v in full_state.items() if k.startswith("shot_")}
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # old files
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    path = tmp_path / "resnet50.pth"
    torch.save(sd, path)
    state, config = checkpoints.import_checkpoint(path)
    assert config.encoder == "resnet50"
    assert set(state) == {k for k in full_state if k.startswith("shot_encoder.")}
    for key, value in sd.items():
        if not key.startswith("fc."):
            assert torch.equal(state["shot_encoder." + key], value), key
    with pytest.raises(InputError, match="crn, head_sbd"):
        checkpoints.load(path)


def test_scrl_nine_channel_encoder(full_state, tmp_path, caplog):
    sd = {
        "module.encoder_q." + k[len("shot_encoder.") :]: v
        for k, v in full_state.items()
        if k.startswith("shot_encoder.")
    }
    sd["module.encoder_q.conv1.weight"] = torch.randn(64, 9, 7, 7)
    sd["module.encoder_q.fc.0.weight"] = torch.randn(2048, 2048)
    sd["module.queue"] = torch.randn(2048, 4)
    sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    sd["module.encoder_k.conv1.weight"] = torch.randn(64, 9, 7, 7)
    path = tmp_path / "checkpoint_0001.pth.tar"
    torch.save({"epoch": 1, "arch": "resnet50", "state_dict": sd}, path)
    with caplog.at_level(logging.WARNING):
        state, config = checkpoints.import_checkpoint(path)
    assert not caplog.records  # SCRL's projection, key encoder and queue are known extras
    assert config.encoder == "resnet50-9ch"
    # SCRL's extract_embeddings.py: Resize(224) (torchvision's bilinear) + CenterCrop(224)
    assert (config.resize, config.image_size, config.interpolation) == (224, 224, "bilinear")
    assert state["shot_encoder.conv1.weight"].shape == (64, 9, 7, 7)
    with pytest.raises(InputError, match=r"conv1\.weight"):
        checkpoints.import_checkpoint(path, config=ModelConfig())  # 9 channels into BaSSL's encoder


def test_refuses_wrong_shape_missing_key_and_pickles(full_state, tmp_path):
    bad = dict(full_state)
    bad["crn.encoder.layer.1.intermediate.dense.weight"] = torch.zeros(3072, 700)
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(InputError, match=r"layer\.1\.intermediate\.dense\.weight \[3072, 700\]"):
        checkpoints.import_checkpoint(tmp_path / "shape.pt")
    bad = {k: v for k, v in full_state.items() if k != "crn.encoder.layer.0.output.dense.bias"}
    torch.save(bad, tmp_path / "missing.pt")
    with pytest.raises(InputError, match=r"missing \(1\): crn\.encoder\.layer\.0\.output\.dense"):
        checkpoints.import_checkpoint(tmp_path / "missing.pt")
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"Payload.*weights_only"):
        checkpoints.import_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable"):
        checkpoints.import_checkpoint(tmp_path / "junk.pt")


class Payload:
    """An arbitrary Python object: weights_only loading must not rebuild it."""


def test_lightning_bookkeeping_objects_become_inert(tmp_path, monkeypatch):
    fake = types.ModuleType("pytorch_lightning")
    callback = type("ModelCheckpoint", (), {"__module__": "pytorch_lightning"})
    fake.ModelCheckpoint = callback
    monkeypatch.setitem(sys.modules, "pytorch_lightning", fake)
    sd = bassl.build(TINY).state_dict()
    path = tmp_path / "model-v1.ckpt"
    torch.save({"state_dict": sd, "epoch": 3, "callbacks": {callback: {"best": 1.0}}}, path)
    monkeypatch.delitem(sys.modules, "pytorch_lightning")
    state, config = checkpoints.import_checkpoint(path, config=TINY)
    assert config == TINY
    _assert_same(state, sd)


def test_crn_shapes_cls_and_mask():
    cfg = CRNConfig()
    crn = bassl.CRN(cfg).eval()
    x = torch.randn(2, 17, 2048)
    seen = {}
    crn.shot_embedding.shot_embedding.register_forward_hook(
        lambda module, args, out: seen.update(input=args[0])
    )
    tokens, pooled = crn(x)
    assert tokens.shape == (2, 18, 768) and pooled.shape == (2, 768)
    assert torch.equal(pooled, tokens[:, 9])
    assert torch.allclose(seen["input"][:, 0], x.mean(dim=1), atol=1e-6)
    assert torch.equal(seen["input"][:, 1:], x)

    seen.clear()
    mask = torch.zeros(2, 17, dtype=torch.bool)
    mask[0, 3] = mask[1, 8] = True
    crn(x, mask)
    masked = seen["input"][:, 1:]
    vector = crn.shot_embedding.mask_embedding.weight[1]
    assert torch.equal(masked[0, 3], vector) and torch.equal(masked[1, 8], vector)
    assert torch.equal(masked[0, 4:], x[0, 4:])
    assert torch.allclose(seen["input"][:, 0], masked.mean(dim=1), atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_boundary_probs_clipped_windows(n):
    torch.manual_seed(n)
    model = bassl.build(TINY).eval()
    feats = torch.randn(n, 16)
    probs = inference.boundary_probs(model, feats, batch_windows=7)
    assert probs.shape == (max(n - 1, 0),)
    assert ((probs >= 0) & (probs <= 1)).all()
    for i in range(n - 1):
        index = [min(max(j, 0), n - 1) for j in range(i - 8, i + 9)]
        with torch.no_grad():
            expected = model(feats[index][None]).softmax(-1)[0, 1]
        assert torch.allclose(probs[i], expected, atol=1e-5), i


def test_tiny_crn_learns_boundaries():
    """Windows whose features switch between two distributions right after the centre shot
    are boundaries; windows that switch elsewhere, or not at all, are not."""
    torch.manual_seed(0)
    model = bassl.build(TINY)
    a, b = torch.randn(2, 16)

    def batch(size):
        labels = torch.randint(0, 2, (size,))
        change = torch.randint(1, 17, (size,))  # first shot of the second distribution
        change[labels == 1] = 9  # centre is shot 8: the scene ends after it
        change[(labels == 0) & (change == 9)] = 17  # no change inside the window
        after = torch.arange(17)[None] >= change[:, None]
        flip = (torch.rand(size) < 0.5)[:, None]
        first, second = torch.where(flip, b, a), torch.where(flip, a, b)
        x = torch.where(after[..., None], second[:, None], first[:, None])
        return x + 0.5 * torch.randn(size, 17, 16), labels

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(150):
        x, y = batch(64)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, y = batch(1024)
    with torch.no_grad():
        accuracy = (model(x).argmax(-1) == y).float().mean().item()
    assert accuracy > 0.9


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(1)
    model = bassl.build(TINY).eval()
    path = tmp_path / "tiny.safetensors"
    checkpoints.save(model, TINY, path)
    loaded, config = checkpoints.load(path)
    assert config == TINY
    assert ModelConfig.from_json(TINY.to_json()) == TINY
    feats = torch.randn(12, 16)
    assert torch.equal(
        inference.boundary_probs(model, feats), inference.boundary_probs(loaded, feats)
    )
    frames = np.random.default_rng(0).integers(0, 256, (3, 3, 64, 80, 3), dtype=np.uint8)
    assert torch.equal(
        inference.shot_features(model, frames, precision="fp32"),
        inference.shot_features(loaded, frames, precision="fp32"),
    )
    (tmp_path / "plain.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(InputError):
        checkpoints.load(tmp_path / "plain.safetensors")


def test_scorer_tiny(tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "tiny.safetensors"
    checkpoints.save(bassl.build(TINY), TINY, path)
    scorer = inference.BaSSLScorer.from_file(path)
    assert scorer.keyframe_height == 64
    frames = np.random.default_rng(0).integers(0, 256, (6, 3, 64, 96, 3), dtype=np.uint8)
    emb = scorer.embed(frames)
    assert emb.shape == (6, 16) and emb.dtype == np.float32
    scores = scorer.score(emb)
    assert scores.shape == (5,) and ((scores >= 0) & (scores <= 1)).all()


def test_resnet50_shot_features_mean_over_keyframes():
    torch.manual_seed(3)
    model = bassl.build(ModelConfig()).eval()
    frames = np.random.default_rng(1).integers(0, 256, (1, 2, 256, 320, 3), dtype=np.uint8)
    feats = inference.shot_features(model, frames, precision="fp32")
    assert feats.shape == (1, 2048)
    single = inference.shot_features(model, frames.reshape(2, 1, 256, 320, 3), precision="fp32")
    assert torch.allclose(feats[0], single.mean(dim=0), atol=1e-4)
