"""Saccade-VSSL's clip encoder: the 3D backbones, focus, PPM, head, its files, the reference's
checkpoints and the downstream heads (scenecut.models.video3d, scenecut.models.saccade)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from scenecut.errors import InputError  # noqa: E402
from scenecut.models import hub, saccade, video3d  # noqa: E402
from scenecut.models.saccade import (  # noqa: E402
    METADATA_KEY,
    ActionClassifier,
    ClipConfig,
    build,
    fixation_maps,
    import_reference,
    is_clip_model,
    load_classifier,
    load_model,
    save_classifier,
    save_model,
)
from scenecut.train.actions import load_clip_encoder  # noqa: E402

TINY = ClipConfig(backbone="tiny", embed_dim=8, clip_len=8, size=32)


def _tiny(seed: int = 0, **changes) -> saccade.SaccadeNet:
    torch.manual_seed(seed)
    return build(ClipConfig(**{**TINY.__dict__, **changes})).eval()


# --------------------------------------------------------------------------------------------
# Backbones


def test_backbone_parameter_counts_are_the_specs():
    """Spec 3.1: 14.36 M (R3D-10) and 14.37 M (R(2+1)D-10) = conv weights + BatchNorm weights
    and biases (running statistics not counted); P and g add 525,312 and h 262,656."""
    with torch.device("meta"):
        r3d = build(ClipConfig.for_backbone("r3d10"))
        r21d = build(ClipConfig.for_backbone("r21d10"))
    counts = {n: video3d.count_parameters(m.backbone) for n, m in (("r3d", r3d), ("r21d", r21d))}
    assert counts == {"r3d": 14_361_792, "r21d": 14_365_303}  # the reference's own modules
    assert round(counts["r3d"] / 1e6, 2) == 14.36
    assert round(counts["r21d"] / 1e6, 2) == 14.37
    assert video3d.count_parameters(r3d.proj) + video3d.count_parameters(r3d.value) == 525_312
    assert video3d.count_parameters(r3d.head) == 512 * 512 + 512
    # the stem's intermediate width of spec 3.1 (M = 83)
    assert tuple(r21d.backbone.stem[0].spatial.weight.shape) == (83, 3, 1, 7, 7)
    tiny = video3d.count_parameters(build(TINY).backbone)
    assert 1_000 < tiny < 10_000


@pytest.mark.parametrize("name", video3d.BACKBONES)
def test_backbone_conv5_shape_at_the_spec_input(name):
    """3 x 16 x 112 x 112 -> conv5 D x 2 x 7 x 7 (on the meta device: shapes, no compute)."""
    with torch.device("meta"):
        net = build(ClipConfig.for_backbone(name))
        out = net(torch.empty(2, 3, 16, 112, 112))
    d = video3d.feature_dim(name)
    assert net.feature_dim == d == {"tiny": 8, "small": 128}.get(name, 512)
    assert out["conv5"].shape == (2, d, 2, 7, 7)
    assert out["proj"].shape == (2, d, 2, 7, 7)
    assert out["feat"].shape == (2, d)
    if name in ("r3d18", "r2plus1d18"):  # torchvision's names, without its classifier
        keys = net.backbone.state_dict()
        assert "layer4.1.conv2.1.running_var" in keys and not any(k.startswith("fc.") for k in keys)


# --------------------------------------------------------------------------------------------
# Focus, PPM, head


def test_focus_multiplies_the_normalised_clip_by_one_plus_the_mask():
    net = _tiny()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        plain = net.conv5(x)
        assert torch.allclose(net.conv5(x, torch.zeros(2, 1, 32, 32)), plain)
        assert torch.allclose(net.conv5(x, torch.ones(2, 1, 32, 32)), net.backbone(2 * x))
        mask = torch.rand(2, 1, 32, 32)
        by_hand = x * (1 + mask[:, :, None])  # one weight per pixel, over colour and time
        assert torch.allclose(net.conv5(x, mask), net.backbone(by_hand))
        small = torch.rand(2, 1, 16, 16)  # resized as the reference's f_upsample
        up = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=True)
        assert torch.allclose(net.conv5(x, small), net.conv5(x, up))
        assert not torch.allclose(net.conv5(x, mask), plain)
        out = net(x, mask, ppm=False)
        assert "proj" not in out
        assert torch.allclose(out["feat"], out["conv5"].mean(dim=(2, 3, 4)))
        z = net.encode(x)
    assert z.shape == (2, 8)
    assert torch.allclose(z.norm(dim=1), torch.ones(2))
    assert torch.allclose(z, F.normalize(net.head(plain.mean(dim=(2, 3, 4))), dim=1))
    assert not net.head.bias.any()


def test_normalise_uses_the_configs_statistics():
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    clips = torch.rand(2, 3, 4, 8, 8)
    assert torch.allclose(saccade.normalise(clips, "imagenet"), (clips - mean) / std)
    assert torch.equal(saccade.normalise(clips, "none"), clips)


@pytest.mark.parametrize("p", [1.0, 4.0])
def test_ppm_matches_a_direct_computation(p):
    """out_i = sum_j max(cos(f_i, f_j), 0)^p * normalise(g(f_j)), position by position."""
    net = _tiny(seed=1, ppm_p=p).double()
    torch.nn.init.normal_(net.value.bias)
    f = torch.randn(2, 8, 3, 2, 2, dtype=torch.float64)  # 3 fixations x 1 step x 2 x 2
    with torch.no_grad():
        got = net.ppm(f).flatten(2)
    weight, bias = net.value.weight[:, :, 0, 0, 0].detach(), net.value.bias.detach()
    cols = f.flatten(2)
    negative = 0
    for n in range(2):
        for i in range(cols.shape[2]):
            want = torch.zeros(8, dtype=torch.float64)
            for j in range(cols.shape[2]):
                fi, fj = cols[n, :, i], cols[n, :, j]
                cos = float(fi @ fj / (fi.norm() * fj.norm()))
                negative += cos < 0
                v = weight @ fj + bias
                want += max(cos, 0.0) ** p * v / v.norm()
            assert torch.allclose(got[n, :, i], want, atol=1e-12)
    assert negative > 0  # the clamp at 0 was exercised


def test_fixation_maps_concatenate_a_and_b_clips_on_time():
    b, c, t = 2, 3, 2
    proj = torch.arange(b * 6, dtype=torch.float32).view(-1, 1, 1, 1, 1).expand(-1, c, t, 2, 2)
    t1, t2 = fixation_maps(proj)
    assert t1.shape == t2.shape == (b, c, 3 * t, 2, 2)
    for video in range(b):
        for fix in range(3):
            for step in range(t):
                assert t1[video, 0, fix * t + step, 0, 0] == 6 * video + fix  # A_fix
                assert t2[video, 0, fix * t + step, 0, 0] == 6 * video + 3 + fix  # B_fix


def test_config_is_checked_and_round_trips():
    config = ClipConfig.for_backbone("r21d10", embed_dim=128)
    assert config.ppm_p == 4.0 and ClipConfig.for_backbone("r3d10").ppm_p == 1.0
    assert ClipConfig.from_json(config.to_json()) == config
    base = json.loads(config.to_json())
    for change, message in (
        ({"backbone": "r50"}, "unknown backbone"),
        ({"embed_dim": 0}, "embed_dim"),
        ({"ppm_p": 0}, "ppm_p"),
        ({"ppm_clamp": -0.5, "ppm_p": 1.5}, "whole ppm_p"),
        ({"input_norm": "kinetics"}, "input_norm"),
        ({"extra": 1}, "unknown fields"),
    ):
        with pytest.raises(InputError, match=message):
            ClipConfig.from_json(json.dumps({**base, **change}))


def test_action_classifier_heads():
    """Spec 7: probe = L2 norm -> BatchNorm1d(1, 0) -> Linear on a frozen backbone (whose BN
    statistics still move in train mode, as the reference's); finetune = Dropout(0.7) -> Linear."""
    net = _tiny()
    x = torch.randn(4, 3, 8, 32, 32)
    backbone = video3d.build_backbone("tiny")
    backbone.load_state_dict(net.backbone_state())
    probe = ActionClassifier(backbone, 5, mode="probe")
    assert not any(p.requires_grad for p in probe.backbone.parameters())
    assert all(p.requires_grad for p in (*probe.linear.parameters(), *probe.final_bn.parameters()))
    assert probe.final_bn.weight.eq(1).all() and probe.final_bn.bias.eq(0).all()
    before = probe.backbone.stem[1].running_mean.clone()
    probe.train()(x)
    assert not torch.equal(before, probe.backbone.stem[1].running_mean)
    probe.eval()
    with torch.no_grad():
        feat = F.normalize(probe.backbone(x).mean(dim=(2, 3, 4)), dim=1)
        assert torch.allclose(probe(x), probe.linear(probe.final_bn(feat)))
    tune = ActionClassifier(video3d.build_backbone("tiny"), 5, mode="finetune")
    assert tune.dropout.p == 0.7 and all(p.requires_grad for p in tune.parameters())
    tune.eval()
    with torch.no_grad():
        assert torch.allclose(tune(x), tune.linear(tune.backbone(x).mean(dim=(2, 3, 4))))
    assert tune(x).shape == (4, 5)


# --------------------------------------------------------------------------------------------
# Our files


def test_save_and_load_round_trip(tmp_path):
    net = _tiny(seed=3)
    path = tmp_path / "clip.safetensors"
    save_model(net, net.config, path)
    assert is_clip_model(path)
    loaded, config = load_model(path)
    assert config == net.config and not loaded.training
    mine, theirs = net.state_dict(), loaded.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.encode(x), loaded.encode(x))


def test_classifier_files_round_trip_and_are_checked(tmp_path):
    net = _tiny(seed=4)
    probe = ActionClassifier(net.backbone, 3, mode="probe").eval()
    path = tmp_path / "probe.safetensors"
    save_classifier(probe, net.config, ["jump", "run", "swim"], path)
    loaded, config, classes = load_classifier(path)
    assert (config, classes, loaded.mode) == (net.config, ("jump", "run", "swim"), "probe")
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), probe(x))
    with pytest.raises(ValueError, match="class names"):
        save_classifier(probe, net.config, ["jump"], path)
    about = {"clip": json.loads(net.config.to_json()), "mode": "finetune", "classes": list(classes)}
    state = {k: v.contiguous() for k, v in probe.state_dict().items()}
    save_file(state, str(path), metadata={saccade.CLASSIFIER_KEY: json.dumps(about)})
    with pytest.raises(InputError) as error:
        load_classifier(path)
    assert "finetune classifier layout: unexpected (5): final_bn.bias" in _one_line(error)
    about.update(mode="probe", classes=[1, 2, 3])
    save_file(state, str(path), metadata={saccade.CLASSIFIER_KEY: json.dumps(about)})
    with pytest.raises(InputError, match="classes must be 1 to"):
        load_classifier(path)


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < 1000
    return text


def _hostile_files(folder: Path) -> dict[str, tuple[Path, str]]:
    state = {k: v.contiguous() for k, v in _tiny().state_dict().items()}
    meta = {METADATA_KEY: TINY.to_json()}
    files = {}

    def write(name, tensors, metadata, message):
        path = folder / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        files[name] = (path, message)

    r3d = {METADATA_KEY: ClipConfig(backbone="r3d10").to_json()}
    write("other_config", state, r3d, "does not match the r3d10 clip-model layout: wrong shape")
    wider = {METADATA_KEY: json.dumps({**json.loads(TINY.to_json()), "embed_dim": 16})}
    shape = r"wrong shape \(2\): head.weight \[8, 8\] \(expected \[16, 8\]\)"
    write("wider_head", state, wider, shape)
    nan = dict(state, **{"proj.bias": torch.full_like(state["proj.bias"], float("nan"))})
    write("nan", nan, meta, "proj.bias holds NaN")
    write("bad_config", state, {METADATA_KEY: '{"backbone": "tiny", "ppm_p": "x"}'}, "ppm_p")
    write("scene_model", state, {"scenecut_config": "{}"}, "it is a scene model")
    as_int = dict(state, **{"head.weight": state["head.weight"].long()})
    write("int_weight", as_int, meta, "wrong dtype")
    whole = (folder / "nan.safetensors").read_bytes()
    (folder / "cut.safetensors").write_bytes(whole[: len(whole) // 2])
    files["cut"] = (folder / "cut.safetensors", "not a readable safetensors file")
    (folder / "junk.safetensors").write_bytes(b"\xff" * 64)
    files["junk"] = (folder / "junk.safetensors", "bad header size")
    return files


def test_load_refuses_bad_files_in_one_line(tmp_path):
    files = _hostile_files(tmp_path)
    for name, (path, message) in files.items():
        with pytest.raises(InputError) as error:
            load_model(path)
        assert re.search(message, _one_line(error)), (name, str(error.value))
    assert not is_clip_model(files["junk"][0]) and not is_clip_model(files["scene_model"][0])


# --------------------------------------------------------------------------------------------
# The reference's train_ssl_full.py checkpoints

# Keys and shapes read off the reference's own modules (models/r3d.py, models/r21d.py with
# layer_sizes (1, 1, 1, 1)), as DataParallel saves them.
REFERENCE_KEYS = {
    "r3d10": {
        "module.conv1.temporal_spatial_conv.weight": (64, 3, 3, 7, 7),
        "module.bn1.running_var": (64,),
        "module.conv3.block1.downsampleconv.temporal_spatial_conv.weight": (128, 64, 1, 1, 1),
        "module.conv3.block1.downsamplebn.num_batches_tracked": (),
        "module.conv5.block1.conv2.temporal_spatial_conv.weight": (512, 512, 3, 3, 3),
        "module.conv5.block1.bn2.bias": (512,),
        "module.value_transform.0.weight": (512, 512, 1, 1, 1),
        "module.projector.bias": (512,),
    },
    "r21d10": {
        "module.conv1.spatial_conv.weight": (83, 3, 1, 7, 7),
        "module.conv1.bn.running_mean": (83,),
        "module.conv1.temporal_conv.weight": (64, 83, 3, 1, 1),
        "module.conv2.block1.conv1.spatial_conv.weight": (144, 64, 1, 3, 3),
        "module.conv4.block1.downsampleconv.bn.weight": (85,),
        "module.conv4.block1.downsampleconv.temporal_conv.weight": (256, 85, 1, 1, 1),
        "module.conv5.block1.conv2.spatial_conv.weight": (1152, 512, 1, 3, 3),
        "module.projector.weight": (512, 512, 1, 1, 1),
    },
}
REFERENCE_SIZES = {"r3d10": 76, "r21d10": 148}  # entries of the reference's model state dict


def _reference_key(ours: str, backbone: str) -> str:
    """Our key -> the reference's, written independently of the importer's mapping."""
    key = ours.replace("backbone.stem.0.", "conv1.").replace("backbone.stem.1.", "bn1.")
    for layer in range(1, 5):
        key = key.replace(f"backbone.layer{layer}.0.", f"conv{layer + 1}.block1.")
    key = key.replace("downsample.0.", "downsampleconv.").replace("downsample.1.", "downsamplebn.")
    key = key.replace("proj.", "projector.").replace("value.", "value_transform.0.")
    conv = key.endswith("weight") and "bn" not in key.split(".")[-2]
    if backbone == "r3d10" and conv and not key.startswith(("projector.", "value_transform.")):
        key = key[: -len("weight")] + "temporal_spatial_conv.weight"
    key = key.replace(".spatial.", ".spatial_conv.").replace(".temporal.", ".temporal_conv.")
    return "module." + key


def _reference_checkpoint(net, **opt) -> dict:
    """What train_ssl_full.py saves, with ``net``'s weights under the reference's names."""
    backbone = net.config.backbone
    model = {
        _reference_key(k, backbone): v for k, v in net.state_dict().items() if "head." not in k
    }
    stdv = 1 / (512 / 3) ** 0.5
    contrast = {
        "module.params": torch.tensor([1024, 0.07, -1, 0.5]),
        "module.memory": torch.rand(30, 512) * 2 * stdv - stdv,  # 3 x videos slots in reality
        "module.memory_curr": torch.rand(30, 512) * 2 * stdv - stdv,
        "module.feature_proj.0.weight": net.head.weight.detach(),
        "module.feature_proj.0.bias": net.head.bias.detach(),
    }
    return {
        "opt": argparse.Namespace(model=backbone[:-2], focus_level=0, **opt),
        "model": model,
        "contrast": contrast,
        "optimizer": {"state": {}, "param_groups": [{"lr": 8e-4, "params": [0, 1]}]},
        "epoch": 300,
        "fs_warmup_epoch": 241,
        "f_level": 0,
        "f_num": 3,
    }


@pytest.fixture(scope="module")
def reference_r3d(tmp_path_factory):
    torch.manual_seed(5)
    net = build(ClipConfig.for_backbone("r3d10", embed_dim=128)).eval()
    for module in net.modules():  # statistics of a trained network, not the initial 0 / 1
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.nn.init.uniform_(net.head.bias, -0.1, 0.1)
    ckpt = _reference_checkpoint(net, pro_p=2.0, pro_clamp_value=0.0, clip_len=8, crop_size=32)
    path = tmp_path_factory.mktemp("reference") / "ckpt_epoch_300.pth"
    torch.save(ckpt, path)
    return net, ckpt, path


def test_reference_r3d_checkpoint_imports_and_encodes_alike(reference_r3d):
    net, ckpt, path = reference_r3d
    for key, shape in REFERENCE_KEYS["r3d10"].items():
        assert tuple(ckpt["model"][key].shape) == shape, key
    assert len(ckpt["model"]) == REFERENCE_SIZES["r3d10"]
    state, config = import_reference(path)
    assert config == ClipConfig("r3d10", embed_dim=128, clip_len=8, size=32, ppm_p=2.0)
    mine = net.state_dict()
    assert state.keys() == mine.keys()  # memory, memory_curr and params skipped
    assert all(torch.equal(state[k], mine[k]) for k in mine)
    loaded, loaded_config = load_model(path)
    assert loaded_config == config
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), net.encode(x))


def test_reference_r21d_checkpoint_imports(tmp_path):
    torch.manual_seed(6)
    with torch.device("meta"):
        shapes = build(ClipConfig.for_backbone("r21d10")).state_dict()
    net_state = {
        k: torch.randn(v.shape) if v.is_floating_point() else torch.tensor(3)
        for k, v in shapes.items()
    }
    net = build(ClipConfig.for_backbone("r21d10"))
    net.load_state_dict(net_state)
    ckpt = _reference_checkpoint(net)  # opt without pro_p: the spec's p = 4 for R(2+1)D
    for key, shape in REFERENCE_KEYS["r21d10"].items():
        assert tuple(ckpt["model"][key].shape) == shape, key
    assert len(ckpt["model"]) == REFERENCE_SIZES["r21d10"]
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    state, config = import_reference(path)
    assert config.backbone == "r21d10" and config.ppm_p == 4.0
    assert all(torch.equal(state[k], net_state[k]) for k in net_state)


class Evil:
    """Pickles as a call to os.mkdir: loading it must never run it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_reference_import_runs_no_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"opt": Evil(marker), "model": {}, "contrast": {}}, path)
    with pytest.raises(InputError) as error:
        import_reference(path)
    assert "pickled Python objects" in _one_line(error)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shape", r"wrong shape \(1\): model\[module.projector.weight\] \[256, 512, 1, 1, 1\]"),
        ("nan", "holds NaN"),
        ("extra", r"entries of no .* network: model\[module.linear.weight\]"),
        ("block", r"unexpected \(1\): model\[module.conv5.blocks.0.bn1.weight\]"),
        ("text", "is a str, not a tensor"),
        ("no_head", "no 'contrast' state dict"),
    ],
)
def test_reference_import_refuses_bad_weights_in_one_line(reference_r3d, tmp_path, change, message):
    _, ckpt, _ = reference_r3d
    model, contrast = dict(ckpt["model"]), ckpt["contrast"]
    if change == "shape":
        model["module.projector.weight"] = torch.zeros(256, 512, 1, 1, 1)
    elif change == "nan":
        bad = model["module.bn1.weight"].clone()
        bad[3] = float("nan")
        model["module.bn1.weight"] = bad
    elif change == "extra":  # the classifier of a downstream.py network
        model["module.linear.weight"] = torch.ones(101, 512)
    elif change == "block":  # a second block in conv5: layer_sizes other than (1, 1, 1, 1)
        model["module.conv5.blocks.0.bn1.weight"] = torch.ones(512)
    elif change == "text":
        model["module.bn1.bias"] = "weights"
    else:
        contrast = None
    path = tmp_path / f"{change}.pth"
    torch.save({**ckpt, "model": model, "contrast": contrast}, path)
    with pytest.raises(InputError) as error:
        import_reference(path)
    assert re.search(message, _one_line(error)), str(error.value)


def test_weights_import_converts_a_reference_checkpoint(reference_r3d, tmp_path, monkeypatch):
    """`scenecut weights import ckpt.pth --as NAME`: our file under NAME, which the clip
    commands then take by name; a BaSSL-style checkpoint is not mistaken for one."""
    net, _, path = reference_r3d
    monkeypatch.setenv("SCENECUT_HOME", str(tmp_path / "home"))
    exe = Path(sys.executable).with_name("scenecut")
    env = {**os.environ, "SCENECUT_HOME": str(tmp_path / "home")}
    cli = [str(exe), "weights", "import", str(path), "--as", "saccade-r3d"]
    proc = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "saccade-vssl checkpoint, r3d10 with clip_encoder" in proc.stderr
    assert saccade.is_clip_model(proc.stdout.strip())
    loaded, config = load_clip_encoder("saccade-r3d")
    assert config.clip_len == 8 and config.ppm_p == 2.0
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(hub.WeightsError, match="exist"):
        hub.import_weights([path], "saccade-r3d")
    plain = tmp_path / "plain.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, plain)  # no 'contrast'
    with pytest.raises(InputError):
        hub.import_weights([plain], "other")
