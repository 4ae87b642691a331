"""Foreign checkpoint formats: SCRL's BiLSTM, ModelScope's extra keys and configuration.json,
and the preprocessing and threshold a model's configuration carries."""

from __future__ import annotations

import json
import logging

import pytest

torch = pytest.importorskip("torch")

from tiny_models import TINY  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from scenecut.errors import InputError  # noqa: E402
from scenecut.models import bassl, checkpoints, inference  # noqa: E402
from scenecut.models.config import ModelConfig, check_config  # noqa: E402

# SCRL SceneSeg/BiLSTM_protocol.py ``BiLSTM(2048, fc_dim=1024, hidden_size=512, use_bn=True)``:
# every key of its state dict and its shape (REFERENCE.md 8.3), hand-copied.
SCRL_LSTM_KEYS = {
    "embed_fc.weight": (1024, 2048),
    "embed_fc.bias": (1024,),
    **{
        f"lstm.{kind}_l{layer}{direction}": shape
        for layer in (0, 1)
        for direction in ("", "_reverse")
        for kind, shape in (
            ("weight_ih", (2048, 1024)),  # layer 1 takes both directions: 2 x 512
            ("weight_hh", (2048, 512)),
            ("bias_ih", (2048,)),
            ("bias_hh", (2048,)),
        )
    },
    "fc1.weight": (512, 1024),
    "fc1.bias": (512,),
    "fc2.weight": (2, 512),
    "fc2.bias": (2,),
    **{
        f"{bn}.{name}": (() if name == "num_batches_tracked" else (size,))
        for bn, size in (("bn1", 1024), ("bn2", 512))
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    },
}


class ScrlBiLSTM(nn.Module):
    """SCRL's downstream BiLSTM written out from its source, with its attribute names, in
    evaluation mode (dropouts and the disabled ShotMask are identities): input -> embed_fc ->
    bn1 over the flattened (batch x time) rows -> 2-layer BiLSTM -> fc1 -> bn2 -> ReLU -> fc2
    -> softmax over the last dimension."""

    def __init__(self):
        super().__init__()
        self.embed_fc = nn.Linear(2048, 1024)
        self.lstm = nn.LSTM(1024, 512, num_layers=2, batch_first=True, bidirectional=True)
        self.fc1 = nn.Linear(1024, 512)
        self.fc2 = nn.Linear(512, 2)
        self.bn1 = nn.BatchNorm1d(1024)
        self.bn2 = nn.BatchNorm1d(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_fc(x)
        t, c = x.shape[1:3]
        x = self.bn1(x.reshape(-1, c)).reshape(-1, t, c)
        out, _ = self.lstm(x, None)
        out = self.fc1(out)
        t, c = out.shape[1:3]
        out = self.bn2(out.reshape(-1, c)).reshape(-1, t, c)
        return torch.softmax(self.fc2(F.relu(out)), 2)


@pytest.fixture(scope="module")
def scrl_lstm() -> ScrlBiLSTM:
    torch.manual_seed(0)
    model = ScrlBiLSTM()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                value.fill_(1234)
            elif name.endswith(("running_var", "bn1.weight", "bn2.weight")):
                value.copy_(0.5 + torch.rand_like(value))
            else:
                value.copy_(0.05 * torch.randn_like(value))
    return model.eval()


def test_scrl_reference_key_layout(scrl_lstm):
    assert {k: tuple(v.shape) for k, v in scrl_lstm.state_dict().items()} == SCRL_LSTM_KEYS


def scrl_probs(model: ScrlBiLSTM, feats: torch.Tensor, seq_len: int = 40) -> torch.Tensor:
    """SCRL's SceneSeg inference (REFERENCE.md 4.5): pad seq_len/4 copies of the first shot in
    front, seq_len/4 plus up to a stride of the last behind, windows of seq_len every stride,
    the middle stride of each window kept."""
    n, quarter, stride = feats.shape[0], seq_len // 4, seq_len // 2
    back = quarter + (stride - n % stride if n % stride else 0)
    padded = torch.cat([feats[:1].repeat(quarter, 1), feats, feats[-1:].repeat(back, 1)])
    kept = []
    for w in range(padded.shape[0] // stride):
        window = padded[w * stride : w * stride + seq_len][None]
        kept.append(model(window).view(-1, 2)[:, 1][quarter : quarter + stride])
    return torch.cat(kept)[:n]


def test_scrl_bilstm_imports_and_runs(scrl_lstm, tmp_path):
    path = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": scrl_lstm.state_dict(), "epoch": 151}, path)
    state, config = checkpoints.import_checkpoint(path)
    assert set(state) == {
        "lstm_head." + {"embed_fc": "fc1", "fc1": "fc2", "fc2": "fc3"}.get(m, m) + "." + rest
        for m, _, rest in (k.partition(".") for k in SCRL_LSTM_KEYS)
    }
    assert config.head == "lstm" and config.seq_len == 40
    # the features it scores are SCRL's encoder's, prepared as SCRL extracted them
    assert (config.encoder, config.resize, config.image_size) == ("resnet50-9ch", 224, 224)
    assert config.interpolation == "bilinear" and config.threshold is None

    model = bassl.build(config).eval()
    model.lstm_head.load_state_dict({k[len("lstm_head.") :]: v for k, v in state.items()})
    torch.manual_seed(1)
    clips = torch.randn(3, 40, 2048)
    with torch.no_grad():
        ours = model.lstm_head(clips).softmax(-1)
        theirs = scrl_lstm(clips)
    assert (ours - theirs).abs().max() < 1e-6
    feats = torch.randn(57, 2048)
    with torch.no_grad():
        expected = scrl_probs(scrl_lstm, feats)[:56]
    probs = inference.boundary_probs(model, feats)
    assert probs.shape == (56,) and (probs - expected).abs().max() < 1e-6

    # alone, the head cannot score a video: it needs SCRL's encoder
    with pytest.raises(InputError, match="holds no shot_encoder"):
        checkpoints.load(path)


def test_scrl_bilstm_missing_or_misshaped_tensor_refused(scrl_lstm, tmp_path):
    sd = dict(scrl_lstm.state_dict())
    del sd["fc2.bias"]
    torch.save({"state_dict": sd, "epoch": 1}, tmp_path / "missing.pth.tar")
    with pytest.raises(InputError, match=r"missing \(1\): lstm_head\.fc3\.bias"):
        checkpoints.import_checkpoint(tmp_path / "missing.pth.tar")
    sd = {**scrl_lstm.state_dict(), "fc1.weight": torch.zeros(512, 1000)}
    torch.save({"state_dict": sd, "epoch": 1}, tmp_path / "shape.pth.tar")
    with pytest.raises(InputError, match=r"wrong shape.*lstm_head\.fc2\.weight \[512, 1000\]"):
        checkpoints.import_checkpoint(tmp_path / "shape.pth.tar")


# --------------------------------------------------------------------------------------------
# ModelScope: unexpected keys, configuration.json


@pytest.fixture(scope="module")
def tiny_state() -> dict:
    torch.manual_seed(2)
    return dict(bassl.build(TINY).state_dict())


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_modelscope_keys_outside_the_model_are_dropped_with_one_warning(
    tiny_state, tmp_path, caplog
):
    sd = {**tiny_state, "head_pp.weight": torch.randn(2, 32), "epoch": 3}
    path = tmp_path / "pytorch_model.pt"
    torch.save(sd, path)
    with caplog.at_level(logging.WARNING):
        state, _ = checkpoints.import_checkpoint(path, config=TINY)
    assert set(state) == set(tiny_state)
    for key, value in tiny_state.items():
        assert torch.equal(state[key], value), key
    (message,) = _warnings(caplog)
    assert "ignoring 2 entries" in message and "head_pp.weight, epoch" in message
    assert str(path) in message

    caplog.clear()
    many = {**tiny_state, **{f"ema.{i}": torch.zeros(1) for i in range(25)}}
    torch.save(many, path)
    with caplog.at_level(logging.WARNING):
        checkpoints.import_checkpoint(path, config=TINY)
    (message,) = _warnings(caplog)
    assert "ema.8, ema.9 ... and 15 more" in message and "ema.10" not in message


@pytest.mark.parametrize(
    "change, match",
    [
        ({"drop": "head_sbd.bias"}, r"missing \(1\): head_sbd\.bias"),
        ({"head_sbd.weight": torch.zeros(3, 32)}, r"wrong shape.*head_sbd\.weight \[3, 32\]"),
        # inside a part, an unknown tensor means another architecture: still refused
        ({"shot_encoder.fc.weight": torch.zeros(2, 16)}, r"unexpected \(1\): shot_encoder\.fc"),
    ],
)
def test_modelscope_missing_misshaped_or_foreign_part_tensor_refused(
    tiny_state, tmp_path, change, match
):
    sd = {**tiny_state, "head_pp.weight": torch.zeros(2)}
    sd.pop(change.get("drop"), None)
    sd.update({k: v for k, v in change.items() if k != "drop"})
    torch.save(sd, tmp_path / "pytorch_model.pt")
    with pytest.raises(InputError, match=match):
        checkpoints.import_checkpoint(tmp_path / "pytorch_model.pt", config=TINY)


def _configuration(**changes) -> dict:
    """The parts of a ModelScope configuration.json that scenecut reads (values as published)."""
    data = {
        "model": {
            "contextual_relation_network": {
                "name": "trn",
                "params": {"trn": {"num_attention_heads": 2, "hidden_size": 32}},
            },
        },
        "dataset": {"sampling_method": {"name": "sbd", "params": {"sbd": {"neighbor_size": 8}}}},
        "pipeline": {"batch_size_per_gpu": 32, "save_threshold": 0.8, "save_split_scene": False},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return data


def test_modelscope_threshold_default_and_configuration_json(tiny_state, tmp_path):
    path = tmp_path / "pytorch_model.pt"
    torch.save(tiny_state, path)
    _, config = checkpoints.import_checkpoint(path)
    assert config.threshold == 0.8  # ModelScope's save_threshold, without its configuration
    assert config.crn.num_attention_heads == 8  # not in the weights: BaSSL's

    (tmp_path / "configuration.json").write_text(
        json.dumps(_configuration(pipeline__save_threshold=0.65))
    )
    _, config = checkpoints.import_checkpoint(path)
    assert config.threshold == 0.65
    assert config.crn == TINY.crn  # the heads come from the configuration
    model, loaded = checkpoints.load(path)
    assert loaded == config and model.config.threshold == 0.65


@pytest.mark.parametrize(
    "text, match",
    [
        (_configuration(pipeline__save_threshold="0.8"), "save_threshold must be a number"),
        (_configuration(pipeline__save_threshold=1.5), "save_threshold must be a number"),
        (_configuration(pipeline__save_threshold=True), "save_threshold must be a number"),
        (_configuration(pipeline__save_threshold=float("nan")), "save_threshold must be"),
        (
            _configuration(dataset__sampling_method__params__sbd__neighbor_size=4),
            "samples 4 shots on each side",
        ),
        (
            _configuration(dataset__sampling_method__params__sbd__neighbor_size=8.0),
            "neighbor_size must be a whole number",
        ),
        (
            _configuration(dataset__sampling_method__params__sbd__neighbor_size=10**9),
            "neighbor_size must be a whole number",
        ),
        (_configuration(dataset__sampling_method__name=7), "sampling_method.name must be text"),
        (_configuration(pipeline=[0.8]), "pipeline is not a JSON object"),
        (
            _configuration(model__contextual_relation_network__params__trn__num_attention_heads=3),
            "not a multiple of num_attention_heads 3",
        ),
        ([1, 2], "not a JSON object"),
        ("{not json", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        (" " * (1 << 20) + "{}", "over 1 MiB"),
    ],
)
def test_bad_configuration_json_is_one_input_error(tiny_state, tmp_path, text, match):
    path = tmp_path / "pytorch_model.pt"
    torch.save(tiny_state, path)
    config_json = tmp_path / "configuration.json"
    config_json.write_text(text if isinstance(text, str) else json.dumps(text))
    with pytest.raises(InputError, match=match) as caught:
        checkpoints.import_checkpoint(path)
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------------------------
# The configuration's preprocessing and threshold


def test_old_configuration_without_the_new_fields_loads_with_defaults():
    old = json.loads(TINY.to_json())
    del old["interpolation"], old["threshold"]
    config = ModelConfig.from_json(json.dumps(old))
    assert config == TINY
    assert config.interpolation == "bicubic" and config.threshold is None


def test_interpolation_and_threshold_are_checked_and_saved(tmp_path):
    for bad in ({"interpolation": "nearest"}, {"interpolation": 3}):
        with pytest.raises(InputError, match="interpolation"):
            check_config(ModelConfig(**bad))
    for bad in (1.5, -0.1, "0.5", True, float("nan")):
        with pytest.raises(InputError, match="threshold must be a number"):
            check_config(ModelConfig(threshold=bad))
    config = ModelConfig(
        encoder="tiny",
        crn=TINY.crn,
        resize=64,
        image_size=56,
        interpolation="bilinear",
        threshold=0.7,
    )
    path = tmp_path / "own.safetensors"
    checkpoints.save(bassl.build(config), config, path)
    _, loaded = checkpoints.load(path)
    assert loaded == config and loaded.interpolation == "bilinear" and loaded.threshold == 0.7
    scorer = inference.BaSSLScorer.from_file(path)
    assert scorer.default_threshold == 0.7


def test_scrl_encoder_and_bilstm_import_as_one_model_that_segments(scrl_lstm, tmp_path):
    """SCRL publishes its encoder and its BiLSTM head as two files: imported together they
    are one model that `segment` runs (9-channel encoder, bilinear 224, SCRL's windows)."""
    import subprocess
    import sys
    from pathlib import Path

    encoder = bassl.build(ModelConfig(encoder="resnet50-9ch")).shot_encoder.state_dict()
    moco = {f"module.encoder_q.{k}": v for k, v in encoder.items()}
    moco["module.queue"] = torch.randn(2048, 4)  # MoCo's extras, left out on import
    torch.save({"epoch": 100, "state_dict": moco}, tmp_path / "SCRL_encoder.pth.tar")
    torch.save({"epoch": 151, "state_dict": scrl_lstm.state_dict()}, tmp_path / "lstm.pth.tar")

    def scenecut(*args: str) -> subprocess.CompletedProcess:
        code = "from scenecut.cli import main; main()"
        command = [sys.executable, "-c", code, *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)

    both = ["SCRL_encoder.pth.tar", "lstm.pth.tar"]
    done = scenecut("weights", "import", *both, "--as", "scrl-local")
    assert done.returncode == 0, done.stderr
    assert "resnet50-9ch with shot_encoder, lstm_head; scores boundaries" in done.stderr
    saved, config = checkpoints.load_state(done.stdout.strip())
    assert (config.head, config.encoder, config.interpolation) == (
        "lstm",
        "resnet50-9ch",
        "bilinear",
    )
    assert torch.equal(saved["shot_encoder.conv1.weight"], encoder["conv1.weight"])

    demo = Path(__file__).resolve().parents[2] / "assets" / "sintel_trailer_480x204.mp4"
    run = scenecut("segment", str(demo), "--model", "scrl-local", "--stdout", "-q")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["settings"]["model"] == "scrl-local"
    scores = result["boundary_scores"]
    assert len(scores) == len(result["shots"]) - 1 and all(0 <= s <= 1 for s in scores)

    twice = scenecut("weights", "import", both[0], both[0], "--as", "scrl-twice")
    assert twice.returncode == 1
    assert "hold shot_encoder weights; give one" in twice.stderr
