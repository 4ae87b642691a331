"""Training loop: fine-tuning quality, exact resume, 2-process = 1-process, extraction."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scenecut.data import tree as data_tree  # noqa: E402
from scenecut.data import writer  # noqa: E402
from scenecut.errors import InputError  # noqa: E402
from scenecut.models import bassl, checkpoints, inference  # noqa: E402
from scenecut.models.config import CRNConfig, ModelConfig  # noqa: E402
from scenecut.train import config as train_config  # noqa: E402
from scenecut.train import entry, features, finetune, loop  # noqa: E402

DIM = 16
TINY = ModelConfig(
    encoder="tiny",
    crn=CRNConfig(
        input_dim=DIM,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=128,
        neighbor_size=4,
    ),
    resize=40,
    image_size=32,
)
FILMS = 64
SMALL_FILMS = 8
NO_DROPOUT = ["model.crn.hidden_dropout_prob=0", "model.crn.attention_probs_dropout_prob=0"]


def _write_features(folder: Path, config: ModelConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = bassl.build(config)
    state = {f"shot_encoder.{k}": v for k, v in net.shot_encoder.state_dict().items()}
    checkpoints.save_state(state, config, folder / features.ENCODER)
    meta = {"encoder": "test", "config": json.loads(config.to_json()), "tree": ""}
    (folder / features.META).write_text(json.dumps(meta))


def _make_corpus(root: Path, films: int) -> Path:
    """``films`` films of 4-6 scenes, each scene one of 4 places (never the previous one) seen
    through noisy shot features; the last 8 (or quarter) are split into validation and test."""
    rng = np.random.default_rng(0)
    places = rng.normal(size=(4, DIM))
    movies = []
    (root / "features").mkdir()
    for f in range(films):
        rows, labels, place = [], [], -1
        for _ in range(int(rng.integers(4, 7))):
            place = int(rng.choice([p for p in range(len(places)) if p != place]))
            n = int(rng.integers(2, 6))
            rows += [places[place] + 0.5 * rng.normal(size=DIM) for _ in range(n)]
            labels += [0] * (n - 1) + [1]
        vid = f"tt{f:07d}"
        shots = [(8 * i, 8 * i + 8) for i in range(len(rows))]
        images = (rng.integers(0, 256, (3, 12, 16, 3), dtype=np.uint8) for _ in shots)
        movies.append(writer.write_movie(root, vid, shots, images, labels[:-1]))
        np.save(root / "features" / f"{vid}.npy", np.asarray(rows, dtype=np.float32))
    ids = [m.video_id for m in movies]
    held = min(4, films // 4)
    splits = {"train": ids[: -2 * held], "val": ids[-2 * held : -held], "test": ids[-held:]}
    writer.write_annotations(root, movies, splits)
    _write_features(root / "features", TINY)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """64 films: 56 to train on, 4 to validate, 4 held out for testing."""
    return _make_corpus(tmp_path_factory.mktemp("corpus"), FILMS)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    """8 films (4 / 2 / 2): enough for a pre-training epoch to run, resume and export."""
    return _make_corpus(tmp_path_factory.mktemp("small"), SMALL_FILMS)


def _config(corpus: Path, out: Path, *sets: str) -> train_config.TrainConfig:
    return train_config.make_config(
        "finetune",
        data=str(corpus),
        out=str(out),
        features=str(corpus / "features"),
        sets=["batch_size=32", "lr=1e-3", "warmup=0.1", "workers=0", "log_every=1", *sets],
    )


def _run(config: train_config.TrainConfig, on_log=None) -> str | None:
    return entry.train_entry(json.dumps(dataclasses.asdict(config)), on_log, device="cpu")


def _test_ap(corpus: Path, model_file: str) -> float:
    model, _ = checkpoints.load(model_file)
    tree = data_tree.read_tree(corpus)
    scores = finetune.score_features(
        model, features.FeatureSet.open(corpus / "features"), tree.split("test")
    )
    return scores["ap"]


def test_finetune_reaches_high_ap_on_held_out_film(corpus, tmp_path):
    config = _config(corpus, tmp_path / "run", "epochs=10")
    done = _run(config)
    assert done == str(tmp_path / "run" / train_config.MODEL_FILE)
    records = [json.loads(line) for line in (tmp_path / "run" / train_config.METRICS).open()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert any(r.get("best") for r in records)
    assert _test_ap(corpus, done) >= 0.9
    saved = json.loads((tmp_path / "run" / train_config.CONFIG).read_text())
    assert saved["lr"] == 1e-3 and saved["optimizer"] == "adam" and saved["warmup"] == 0.1


def _weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(corpus, tmp_path):
    whole = _config(corpus, tmp_path / "whole", "epochs=2")
    _run(whole)
    cut = _config(corpus, tmp_path / "cut", "epochs=2", "max_steps=5")
    assert _run(cut) is None
    state = torch.load(tmp_path / "cut" / train_config.CHECKPOINT, weights_only=True)
    assert state["state"]["step"] == 5
    resumed = _config(corpus, tmp_path / "cut", "epochs=2")
    _run(resumed)
    a, b = (
        _weights(tmp_path / "whole" / train_config.MODEL_FILE),
        _weights(tmp_path / "cut" / train_config.MODEL_FILE),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ctrl_c_saves_a_checkpoint_that_resumes(corpus, tmp_path):
    config = _config(corpus, tmp_path / "run", "epochs=2")

    def interrupt(record):  # Ctrl-C while step 3 is logged: the run stops after step 3
        if record.get("step") == 3:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        _run(config, interrupt)
    saved = torch.load(tmp_path / "run" / train_config.CHECKPOINT, weights_only=True)
    assert saved["state"]["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler given back
    assert _run(config) is not None
    final = torch.load(tmp_path / "run" / train_config.CHECKPOINT, weights_only=True)
    assert final["state"]["epoch"] == 2 and final["state"]["step"] > 3


def test_a_second_ctrl_c_stops_at_once_and_saves_nothing(corpus, tmp_path):
    config = _config(corpus, tmp_path / "run", "epochs=2")

    def interrupt(record):
        if record.get("step") == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # raises here, inside step 3's logging
            raise AssertionError("the second Ctrl-C did not stop the run")

    with pytest.raises(KeyboardInterrupt):
        _run(config, interrupt)
    assert not (tmp_path / "run" / train_config.CHECKPOINT).exists()


class _Drifting(torch.nn.Module):
    """A finite loss, and a buffer that ``after_step`` turns into inf."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.register_buffer("drift", torch.zeros(3))

    def forward(self, batch):
        return self.linear(batch).pow(2).mean(), {}


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    from scenecut.errors import ScenecutError

    module = _Drifting()
    items = [torch.randn(2) for _ in range(16)]
    task = loop.Task(module, items, after_step=lambda: module.drift.fill_(float("inf")))
    sets = ["batch_size=4", "epochs=1", "lr=0.1", "workers=0", "checkpoint_every=1"]
    config = train_config.make_config("finetune", data="-", out=str(tmp_path / "run"), sets=sets)
    with pytest.raises(ScenecutError, match="diverged at step 1: weight drift holds inf"):
        loop.fit(task, config, loop.Dist())
    assert not (tmp_path / "run" / train_config.CHECKPOINT).exists()


def test_a_diverging_run_stops_with_a_clear_error_and_saves_nothing(corpus, tmp_path):
    from scenecut.errors import ScenecutError

    config = _config(corpus, tmp_path / "run", "epochs=1", "lr=1e38", "optimizer=sgd")
    with pytest.raises(ScenecutError, match="diverged at step") as raised:
        _run(config)
    assert raised.value.exit_code == 1
    assert not (tmp_path / "run" / train_config.CHECKPOINT).exists()
    assert not (tmp_path / "run" / train_config.MODEL_FILE).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_take_the_same_step_as_one(corpus, tmp_path):
    # SGD: Adam's first step is lr * sign(gradient), which float summation order can flip
    sets = ["epochs=1", "max_steps=1", "optimizer=sgd", "lr=0.5", *NO_DROPOUT]
    one = _config(corpus, tmp_path / "one", *sets)
    two = _config(corpus, tmp_path / "two", *sets)
    loop.launch(entry.train_entry, json.dumps(dataclasses.asdict(one)), None, "cpu")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    loop.launch(
        entry.train_entry,
        json.dumps(dataclasses.asdict(two)),
        None,
        "cpu",
        procs=2,
        master_port=_free_port(),
    )
    # torchrun's launcher installs its handlers in this process; launch gives ours back
    assert {s: signal.getsignal(s) for s in before} == before
    a = torch.load(tmp_path / "one" / train_config.CHECKPOINT, weights_only=True)["module"]
    b = torch.load(tmp_path / "two" / train_config.CHECKPOINT, weights_only=True)["module"]
    start = finetune.BoundaryHead(train_config.with_overrides(TINY, {})).state_dict()
    moved = 0
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
        moved += not torch.equal(a[key], start[key]) if key in start else 0
    assert moved > 0


def test_extract_writes_one_file_per_film_and_resumes(corpus, tmp_path):
    encoder = tmp_path / "tiny.safetensors"
    torch.manual_seed(1)
    checkpoints.save(bassl.build(TINY), TINY, encoder)
    out = tmp_path / "feats"
    first = features.extract(corpus, str(encoder), out, workers=0, precision="fp32")
    assert len(first.written) == FILMS and not first.skipped
    tree = data_tree.read_tree(corpus)
    films = features.FeatureSet.open(out)
    for movie in tree.movies.values():
        assert films.film(movie.video_id).shape == (movie.num_shots, DIM)
    # the features are the mean over the 3 keyframes of the encoder's output
    model, _ = checkpoints.load(encoder)
    keyframes = tree.load_keyframes("tt0000000", 0)[None]
    direct = inference.shot_features(model, keyframes, precision="fp32")[0].numpy()
    assert np.allclose(films.film("tt0000000")[0], direct, atol=1e-4)
    again = features.extract(corpus, str(encoder), out, workers=0, precision="fp32")
    assert not again.written and len(again.skipped) == FILMS
    parts = checkpoints.checkpoint_parts(out / features.ENCODER)
    assert parts == ("shot_encoder", "crn")


def test_bad_settings_are_usage_errors(corpus, tmp_path):
    from scenecut.errors import OutputError, UsageError

    with pytest.raises(UsageError, match="unknown training settings"):
        _config(corpus, tmp_path, "nonsense=1")
    with pytest.raises(UsageError, match="--set takes key=value"):
        _config(corpus, tmp_path, "epochs")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(OutputError, match="--resume"):
        train_config.check_run_folder(tmp_path / "busy", resume=False, overwrite=False)
    train_config.check_run_folder(tmp_path / "busy", resume=True, overwrite=False)


TINY_SETS = [
    "--set", "workers=0", "--set", "log_every=1", "--set", "model.crn.hidden_size=64",
    "--set", "model.crn.num_attention_heads=4", "--set", "model.crn.intermediate_size=128",
    "--set", "model.crn.num_hidden_layers=1", "--set", "model.crn.neighbor_size=4",
]  # fmt: skip


def _cli(exe, *args, **kwargs):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=600, **kwargs)


def test_cli_finetune_then_segment_with_the_model(scenecut_exe, corpus, film, tmp_path):
    run = tmp_path / "run"
    args = ["train", "finetune", "--data", str(corpus), "--features", str(corpus / "features"),
            "--out", str(run), "--epochs", "2", "--batch-size", "32", "--lr", "1e-3",
            *TINY_SETS]  # fmt: skip
    proc = _cli(scenecut_exe, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(run / train_config.MODEL_FILE)
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert records and "loss" in records[0] and any("val" in r for r in records)
    again = _cli(scenecut_exe, *args)
    assert again.returncode == 1 and "--resume" in again.stderr
    model = str(run / train_config.MODEL_FILE)
    seg = _cli(scenecut_exe, "segment", str(film.path), "--model", model, "--stdout", "-q")
    assert seg.returncode == 0, seg.stderr
    assert len(json.loads(seg.stdout)["boundary_scores"]) == len(film.shot_starts) - 1


def test_cli_pretrain_extract_resume(scenecut_exe, small_corpus, tmp_path):
    corpus = small_corpus
    run = tmp_path / "pre"
    base = ["train", "pretrain", "--data", str(corpus), "--out", str(run), "--method", "bassl",
            "--encoder", "tiny", "--batch-size", "4", "--epochs", "1", "--lr", "0.05",
            *TINY_SETS, "--set", "image_size=32", "--set", "model.crn.input_dim=16",
            "--set", "pretext.head_hidden=32", "--set", "pretext.head_dim=16"]  # fmt: skip
    first = _cli(scenecut_exe, *base, "--max-steps", "2")
    assert first.returncode == 0, first.stderr
    saved = torch.load(run / train_config.CHECKPOINT, weights_only=True)
    assert saved["state"]["step"] == 2
    records = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    assert {"ssm_loss", "cgm_loss", "pp_loss", "msm_loss"} <= set(records[-1])
    more = _cli(scenecut_exe, *base, "--max-steps", "4", "--resume")
    assert more.returncode == 0, more.stderr
    assert torch.load(run / train_config.CHECKPOINT, weights_only=True)["state"]["step"] == 4
    done = _cli(scenecut_exe, *base, "--resume")
    assert done.returncode == 0, done.stderr
    model_file = run / train_config.MODEL_FILE
    assert done.stdout.strip() == str(model_file)
    assert checkpoints.checkpoint_parts(model_file) == ("shot_encoder", "crn")
    feats = tmp_path / "feats"
    ext = _cli(scenecut_exe, "train", "extract", "--data", str(corpus), "--encoder",
               str(model_file), "--out", str(feats), "--workers", "0")  # fmt: skip
    assert ext.returncode == 0, ext.stderr
    assert len(list(feats.glob("*.npy"))) == SMALL_FILMS
    assert features.FeatureSet.open(feats).config.crn.input_dim == 16


def test_config_file_then_set_overrides(corpus, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 3\nlr = 0.002\n[model]\n"crn.hidden_size" = 96\n')
    config = train_config.make_config(
        "finetune",
        toml,
        ["lr=0.003", "model.crn.num_attention_heads=4"],
        data=str(corpus),
        out=str(tmp_path / "o"),
    )
    assert config.epochs == 3 and config.lr == 0.003 and config.batch_size == 1024
    assert config.model == {"crn.hidden_size": 96, "crn.num_attention_heads": 4}
    pre = train_config.make_config("pretrain", data="d", out="o")
    assert (pre.optimizer, pre.peak_lr, pre.batch_size, pre.warmup) == ("lars", 0.3, 256, 0.1)
    scrl = train_config.make_config("pretrain", data="d", out="o", method="scrl")
    assert (scrl.optimizer, scrl.schedule, scrl.encoder) == (
        "sgd",
        "quarter-cosine",
        "resnet50-9ch",
    )


def test_gradient_accumulation_counts_optimizer_steps(corpus, tmp_path):
    config = _config(corpus, tmp_path / "acc", "epochs=1", "micro_batch=8")
    _run(config)
    state = torch.load(tmp_path / "acc" / train_config.CHECKPOINT, weights_only=True)["state"]
    items = sum(
        m.num_shots - 1 for m in data_tree.read_tree(corpus).split("train")
    )  # one window per labelled shot
    assert state["step"] == items // 32


def test_the_same_command_runs_under_torchrun(corpus, tmp_path):
    run = tmp_path / "tr"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), "-m", "scenecut", "train", "finetune",
         "--data", str(corpus), "--features", str(corpus / "features"), "--out", str(run),
         "--epochs", "1", "--batch-size", "32", "--max-steps", "2", *TINY_SETS],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert torch.load(run / train_config.CHECKPOINT, weights_only=True)["state"]["step"] == 2
    lines = (run / train_config.METRICS).read_text().splitlines()
    assert len(lines) == 2  # rank 0 alone writes the metrics


@pytest.mark.parametrize("n", [1, 5, 19, 20, 21, 57])
def test_lstm_windows_give_every_shot_its_own_probability(n):
    """With a head whose logit is the input, the stitched windows must return each shot's own
    value in order: padding, stride and the kept middle halves line up (SCRL's inference)."""

    def head(windows):
        return torch.stack([torch.zeros_like(windows[..., 0]), windows[..., 0]], dim=-1)

    x = torch.linspace(-3, 3, n)[:, None]
    probs = inference.lstm_probs(head, x, seq_len=8)
    assert probs.shape == (n,)
    assert torch.allclose(probs, torch.sigmoid(x[:, 0]))


def test_feature_clips_follow_scrl(corpus):
    fs = features.FeatureSet.open(corpus / "features")
    movies = data_tree.read_tree(corpus).split("train")
    clips = features.FeatureClips(fs, movies, seq_len=8, shuffle_scenes=1.0)
    assert len(clips) == sum(max(1, len(m.labels) // 8 - 1) for m in movies if len(m.labels) >= 8)
    item = clips[0]
    assert item["clip"].shape == (8, DIM) and item["labels"].shape == (8,)
    assert item["labels"][-1] == 0
    plain = features.FeatureClips(fs, movies, seq_len=8, shuffle_scenes=0.0)
    rows = {tuple(r.tolist()) for r in plain[0]["clip"]}
    assert {tuple(r.tolist()) for r in clips[0]["clip"]} == rows  # same shots, new order
    offsets = set()
    for epoch in range(6):
        plain.epoch = epoch
        offsets.add(tuple(plain[0]["clip"][0].tolist()))
    assert len(offsets) > 1  # the clip start is drawn again each epoch


def test_finetune_lstm_head_end_to_end(corpus, film, tmp_path):
    config = train_config.make_config(
        "finetune",
        data=str(corpus),
        out=str(tmp_path / "lstm"),
        features=str(corpus / "features"),
        head="lstm",
        sets=["epochs=3", "batch_size=8", "seq_len=8", "lr=0.05", "workers=0"],
    )
    assert (config.optimizer, config.schedule) == ("sgd", "steps-160-180")
    done = _run(config)
    model, model_config = checkpoints.load(done)
    assert model_config.head == "lstm" and model_config.seq_len == 8
    assert checkpoints.checkpoint_parts(done) == ("shot_encoder", "lstm_head")
    scores = finetune.score_features(model, features.FeatureSet.open(corpus / "features"),
                                  data_tree.read_tree(corpus).split("test"))  # fmt: skip
    assert 0.0 <= scores["ap"] <= 1.0
    from scenecut import segment

    result = segment(film.path, model=done)
    assert len(result.boundary_scores) == len(result.shots) - 1


def test_film_feature_norm_ignores_what_all_shots_share(tmp_path):
    """feature_norm="film": a film's scores do not change when every shot gains the same
    vector (the common component of pooled ImageNet features), in numpy and torch alike."""
    config = train_config.with_overrides(TINY, {"feature_norm": "film"})
    torch.manual_seed(3)
    model = bassl.build(config).eval()
    feats = torch.randn(15, DIM)
    shifted = feats + 5.0 * torch.randn(1, DIM)
    assert torch.allclose(
        inference.boundary_probs(model, feats), inference.boundary_probs(model, shifted), atol=1e-5
    )
    plain = bassl.build(TINY).eval()
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(
        inference.boundary_probs(plain, feats), inference.boundary_probs(plain, shifted)
    )
    as_numpy = inference.normalize_film(feats.numpy())
    assert np.allclose(as_numpy, inference.normalize_film(feats).numpy(), atol=1e-6)
    assert np.allclose(np.linalg.norm(as_numpy, axis=1), 1.0, atol=1e-4)
    path = tmp_path / "m.safetensors"
    checkpoints.save(model, config, path)
    assert checkpoints.load(path)[1].feature_norm == "film"


# --------------------------------------------------------------------------------------------
# The CLI stopped and resumed: Ctrl-C, kill -9, a full disk, bad option values


def _finetune_cli(corpus: Path, run: Path) -> list[str]:
    # dropout on, a metrics record every 2 steps, checkpoints only at epoch ends (and Ctrl-C);
    # a CRN large enough that most of a step is spent in the network, where a Ctrl-C that
    # stopped at once would leave the weights and the RNG at different points of the step
    return ["train", "finetune", "--data", str(corpus), "--features", str(corpus / "features"),
            "--out", str(run), "--epochs", "2", "--batch-size", "16", "--lr", "1e-3", "-q",
            *TINY_SETS, "--set", "model.crn.hidden_size=128",
            "--set", "model.crn.intermediate_size=256", "--set", "model.crn.num_hidden_layers=2",
            "--set", "log_every=2", "--set", "checkpoint_every=1000"]  # fmt: skip


def _pretrain_cli(corpus: Path, run: Path) -> list[str]:
    return ["train", "pretrain", "--data", str(corpus), "--out", str(run), "--method", "bassl",
            "--encoder", "tiny", "--batch-size", "4", "--epochs", "1", "--lr", "0.05", "-q",
            *TINY_SETS, "--set", "image_size=32", "--set", "model.crn.input_dim=16",
            "--set", "pretext.head_hidden=32", "--set", "pretext.head_dim=16",
            "--set", "checkpoint_every=1000"]  # fmt: skip


def _records(run: Path) -> list[dict]:
    """The metrics of a run, less the throughput (the one value that depends on the clock)."""
    lines = (run / train_config.METRICS).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "items_per_s"} for line in lines]


def _logged(run: Path, step: int) -> bool:
    try:
        lines = (run / train_config.METRICS).read_text().splitlines()
    except FileNotFoundError:
        return False
    with_step = [line for line in lines if line.endswith("}")]  # the last may be half-written
    return any(json.loads(line).get("step", 0) >= step for line in with_step)


def _stop(exe: str, args: list[str], run: Path, step: int, sig: int) -> tuple[int, str]:
    """Start the command, send ``sig`` once its metrics reach ``step``: exit status, stderr."""
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not _logged(run, step):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached the step"
            time.sleep(0.005)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def _command_cli(command: str, corpus: Path, small_corpus: Path, run: Path) -> list[str]:
    return _finetune_cli(corpus, run) if command == "finetune" else _pretrain_cli(small_corpus, run)


@pytest.fixture(scope="module")
def uninterrupted(scenecut_exe, corpus, small_corpus, tmp_path_factory):
    """The run folder of a command run once from start to end (run when first asked for)."""
    runs: dict[str, Path] = {}

    def run_of(command: str) -> Path:
        if command not in runs:
            run = tmp_path_factory.mktemp("whole") / command
            proc = _cli(scenecut_exe, *_command_cli(command, corpus, small_corpus, run))
            assert proc.returncode == 0, proc.stderr
            runs[command] = run
        return runs[command]

    return run_of


@pytest.mark.parametrize(
    "command, sig, step",
    [("finetune", signal.SIGINT, 20), ("finetune", signal.SIGKILL, 70),
     ("pretrain", signal.SIGINT, 10)],
    ids=["finetune-ctrl-c", "finetune-kill-9", "pretrain-ctrl-c"],
)  # fmt: skip
def test_cli_stop_and_resume_equals_the_uninterrupted_run(
    scenecut_exe, corpus, small_corpus, uninterrupted, tmp_path, command, sig, step
):
    """Stopped mid-epoch (Ctrl-C: at the end of the step under way; kill -9: back to the last
    checkpoint) and resumed, a run ends with the uninterrupted run's weights, bit for bit, and
    its metrics: each step logged once, in order, with the same values."""
    run = tmp_path / "run"
    args = _command_cli(command, corpus, small_corpus, run)
    code, err = _stop(scenecut_exe, args, run, step, sig)
    stopped = torch.load(run / train_config.CHECKPOINT, weights_only=True)["state"]["step"]
    logged = [r["step"] for r in _records(run)]
    if sig == signal.SIGINT:
        assert code == 130, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("interrupted"), err
        assert str(run / train_config.CHECKPOINT) in lines[0] and "--resume" in lines[0]
        assert stopped >= step and stopped >= logged[-1]  # the step under way was finished
    else:
        assert code == -signal.SIGKILL
        assert stopped < logged[-1]  # steps logged after the checkpoint: resume logs them again
        # what a kill -9 during a checkpoint write leaves; the resumed run removes it
        (run / ".checkpoint.k1ll3d.tmp.pt").write_bytes(b"half a checkpoint")
    assert not (run / train_config.MODEL_FILE).exists()
    resumed = _cli(scenecut_exe, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    whole = uninterrupted(command)
    a, b = _weights(whole / train_config.MODEL_FILE), _weights(run / train_config.MODEL_FILE)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _records(run) == _records(whole)
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


def _file_size_limit(limit: int):
    """For ``preexec_fn``: files above ``limit`` bytes cannot be written (EFBIG), as on a disk
    that is full; SIGXFSZ ignored so that the write fails instead of killing the process."""

    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    "limit, every, file",
    [(64_000, "2", train_config.CHECKPOINT), (2_000, "1000", train_config.METRICS)],
    ids=["checkpoint", "metrics"],
)
def test_cli_full_disk_is_one_line_exit_1_and_leaves_no_temporary(
    scenecut_exe, corpus, tmp_path, limit, every, file
):
    run = tmp_path / "run"
    args = [*_finetune_cli(corpus, run), "--max-steps", "40", "--set", f"checkpoint_every={every}"]
    proc = _cli(scenecut_exe, *args, preexec_fn=_file_size_limit(limit))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write"), proc.stderr
    assert str(run / file) in lines[0] and "File too large" in lines[0]
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []
    assert not (run / train_config.CHECKPOINT).exists()


@pytest.mark.parametrize(
    "args, option",
    [
        (["--set", "epochs=abc"], "epochs"),
        (["--set", "lr=fast"], "lr"),
        (["--procs", "0"], "--procs"),
        (["--procs", "99999"], "--procs"),
        (["extract", "--nodes", "99999999999999999999"], "--nodes"),
        (["--gpus", "-1"], "--gpus"),
        (["--nodes", "2", "--node-rank", "2"], "--node-rank"),
        (["--master-port", "70000"], "--master-port"),
        (["--workers", "-1"], "--workers"),
        (["--max-steps", "-1"], "--max-steps"),
        (["--epochs", "0"], "--epochs"),
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--set", "base_lr=inf"], "base_lr"),
        (["--set", "warmup=1.5"], "warmup"),
        (["--set", "checkpoint_every=0"], "checkpoint_every"),
        (["--set", "micro_batch=-4"], "--micro-batch"),
        (["extract", "--batch-size", "0"], "--batch-size"),
        (["extract", "--batch-size", "99999999999999999999"], "--batch-size"),
        (["extract", "--workers", "-1"], "--workers"),
        (["pretrain", "--set", "pretext.mask_prob=abc"], "pretext.mask_prob"),
    ],
)
def test_cli_bad_training_values_exit_2_with_one_line(scenecut_exe, corpus, tmp_path, args, option):
    run = tmp_path / "run"
    if args[0] == "extract":
        encoder = corpus / "features" / features.ENCODER
        base = ["train", "extract", "--data", str(corpus), "--encoder", str(encoder),
                "--out", str(run)]  # fmt: skip
        args = args[1:]
    elif args[0] == "pretrain":
        base = ["train", "pretrain", "--data", str(corpus), "--out", str(run), "--encoder", "tiny"]
        args = args[1:]
    else:
        base = ["train", "finetune", "--data", str(corpus), "--features", str(corpus / "features"),
                "--out", str(run)]  # fmt: skip
    proc = _cli(scenecut_exe, *base, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert option in lines[0]
    assert "Traceback" not in proc.stderr
    assert not run.exists()  # refused before any work


def test_damaged_run_and_feature_files_are_one_line_not_a_bug(corpus, tmp_path):
    """A checkpoint that is not one of this program's, and a feature folder whose encoder file
    is cut short: a clear InputError each (exit 1), where they raised KeyError / a safetensors
    error (exit 3)."""
    cut = _config(corpus, tmp_path / "cut", "max_steps=2")
    assert _run(cut) is None
    torch.save({"step": 2, "weights": torch.zeros(3)}, tmp_path / "cut" / train_config.CHECKPOINT)
    with pytest.raises(InputError, match="not a checkpoint of this run"):
        _run(_config(corpus, tmp_path / "cut"))

    folder = tmp_path / "features"
    shutil.copytree(corpus / "features", folder)
    encoder = folder / features.ENCODER
    encoder.write_bytes(encoder.read_bytes()[:-100])
    damaged = train_config.make_config(
        "finetune", data=str(corpus), out=str(tmp_path / "run"), features=str(folder),
        sets=["batch_size=32", "workers=0", "max_steps=1"],
    )  # fmt: skip
    with pytest.raises(InputError, match=features.ENCODER):
        _run(damaged)
