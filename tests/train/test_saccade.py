"""Saccade-VSSL in the training loop: resume, processes, clustering, the CLI commands."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from scenecut.data.motion import make_actions  # noqa: E402
from scenecut.errors import UsageError  # noqa: E402
from scenecut.models import saccade  # noqa: E402
from scenecut.train import config as train_config  # noqa: E402
from scenecut.train import entry, loop, syncbn  # noqa: E402

# A tiny run: 4 clips of 8 frames at 48 px per fixation, 4 videos a step, clustering into
# 3 and 4 prototypes from epoch 1 on
SETS = [
    "image_size=48", "model.clip_len=8", "pretext.nce_k=8", "pretext.num_clusters=3,4",
    "pretext.cluster_from=1", "pretext.cluster_every=1", "workers=0", "log_every=1",
    "optimizer=sgd", "lr=0.05", "checkpoint_every=1000",
]  # fmt: skip


@pytest.fixture(scope="module")
def actions(tmp_path_factory) -> Path:
    """4 classes x 3 videos (8 to train on), 20-24 frames of 64x48, substitute scanpaths."""
    root = tmp_path_factory.mktemp("actions")
    make_actions(root, classes=4, videos_per_class=3, frames=(20, 24), width=64, height=48,
                 scanpaths=True)  # fmt: skip
    return root


def _config(data: Path, out: Path, *sets: str, epochs: int = 3) -> train_config.TrainConfig:
    return train_config.make_config(
        "pretrain", data=str(data), out=str(out), method="saccade", encoder="tiny",
        epochs=epochs, batch_size=4, sets=[*SETS, *sets],
    )  # fmt: skip


def _run(config: train_config.TrainConfig, procs: int = 1) -> str | None:
    args = (json.dumps(dataclasses.asdict(config)), None, "cpu")
    if procs == 1:
        return entry.train_entry(*args)
    return loop.launch(entry.train_entry, *args, procs=procs, master_port=_free_port())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _module(run: Path) -> dict:
    return torch.load(run / train_config.CHECKPOINT, weights_only=True)["module"]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / train_config.METRICS).read_text().splitlines()]


def test_defaults_are_the_readmes_and_the_schedule_clusters_late():
    r3d = train_config.make_config("pretrain", data="d", out="o", method="saccade")
    assert (r3d.encoder, r3d.epochs, r3d.batch_size, r3d.lr) == ("r3d10", 300, 16, 0.1)
    assert (r3d.schedule, r3d.lr_decay, r3d.weight_decay) == ("steps-90-180-240", 0.2, 1e-4)
    r21d = train_config.make_config(
        "pretrain", data="d", out="o", method="saccade", encoder="r21d10"
    )
    assert (r21d.epochs, r21d.batch_size) == (360, 8)
    pcfg = train_config.pretrain_config(r3d)
    assert [e for e in range(300) if pcfg.clusters_at(e, 300)] == list(range(245, 300, 5))
    assert pcfg.cluster_start(360) == 301 and pcfg.clusters_k == (1500, 1500, 1500)
    probe = train_config.make_config("probe", data="d", out="o")
    assert (probe.epochs, probe.batch_size, probe.weight_decay, probe.seed) == (199, 32, 5e-4, 42)
    full = train_config.make_config("probe", data="d", out="o", head="full")
    assert full.seed == 632 and full.schedule == "steps-60-120-160"
    for bad in (["pretext.num_clusters=9,x"], ["pretext.num_clusters=1"], ["pretext.nce_k=0"]):
        with pytest.raises(UsageError, match=bad[0].split("=")[0].split(".")[1]):
            train_config.make_config("pretrain", data="d", out="o", method="saccade", sets=bad)
    with pytest.raises(UsageError, match="--head"):
        train_config.make_config("probe", data="d", out="o", head="crn")


def test_pretraining_logs_every_loss_and_exports_a_clip_model(actions, tmp_path):
    done = _run(_config(actions, tmp_path / "run"))
    records = [r for r in _records(tmp_path / "run") if "loss" in r]
    assert len(records) == 3 * 2  # 8 videos, 4 a step
    assert "proto_loss" not in records[0] and "proto_loss" in records[-1]  # from epoch 1
    assert all(r["nce_loss"] > 0 and r["ppm_loss"] > 0 for r in records)
    net, config = saccade.load_model(done)
    assert config.backbone == "tiny" and config.clip_len == 8 and config.size == 48
    state = _module(tmp_path / "run")
    assert state["bank.memory"].shape == (3 * 8, net.feature_dim)
    assert int(state["cluster_epoch"]) == 2  # the last clustering epoch's features are kept
    assert state["cluster_features"].abs().sum() > 0


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(actions, tmp_path):
    whole = tmp_path / "whole"
    _run(_config(actions, whole))
    cut = tmp_path / "cut"
    _run(_config(actions, cut, "max_steps=3"))  # stops inside epoch 1, after its clustering
    assert torch.load(cut / train_config.CHECKPOINT, weights_only=True)["state"]["step"] == 3
    _run(_config(actions, cut))  # resumes: clusters the saved features again, goes on
    a, b = _module(whole), _module(cut)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    assert [r["loss"] for r in _records(whole) if "loss" in r] == pytest.approx(
        [r["loss"] for r in _records(cut) if "loss" in r], rel=1e-4
    )


def test_two_gloo_processes_take_the_same_steps_as_one(actions, tmp_path):
    """Two steps, half the batch in each process: the bank update gathered, BatchNorm over both
    halves (``syncbn``), DDP's averaged gradients. Measured: the weights differ by at most
    1.2e-5 after one step and 1.1e-4 after two (float32 sums in another order, through a
    0.07 temperature); with each process's own BatchNorm statistics, by 0.43 and 1.4."""
    sets = ("max_steps=2", "pretext.num_clusters=")  # no prototypes: the bank, BN, DDP
    _run(_config(actions, tmp_path / "one", *sets))
    _run(_config(actions, tmp_path / "two", *sets), procs=2)
    a, b = _module(tmp_path / "one"), _module(tmp_path / "two")
    start = saccade.build(saccade.ClipConfig.for_backbone("tiny", size=48, clip_len=8))
    moved = 0
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-4, atol=5e-4), key
        if key.startswith("net."):
            moved += not torch.equal(a[key], start.state_dict()[key[4:]])
    assert moved > 0


def test_gathered_batch_norm_equals_one_process_batch_norm(tmp_path):
    """Both halves of a batch in two gloo processes: the output, the input gradient and the
    running statistics equal BatchNorm's on the whole batch."""
    torch.manual_seed(0)
    x = torch.randn(6, 3, 2, 4, 4)
    bn = torch.nn.BatchNorm3d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    y = bn(x.requires_grad_())
    (y * torch.arange(y.numel()).view_as(y).float().sin()).sum().backward()
    torch.save({"x": x.detach(), "bn": torch.nn.BatchNorm3d(3).state_dict()}, tmp_path / "in.pt")
    bn_start = {"weight": bn.weight.detach(), "bias": bn.bias.detach()}
    torch.save(bn_start, tmp_path / "affine.pt")
    torch.multiprocessing.spawn(
        _gathered_worker, args=(tmp_path, _free_port()), nprocs=2, join=True
    )
    for rank in range(2):
        got = torch.load(tmp_path / f"out{rank}.pt", weights_only=True)
        part = slice(3 * rank, 3 * rank + 3)
        assert torch.allclose(got["y"], y[part].detach(), atol=1e-5)
        assert torch.allclose(got["grad"], x.grad[part], atol=1e-5)
        assert torch.allclose(got["running_var"], bn.running_var, atol=1e-5)
        assert torch.allclose(got["running_mean"], bn.running_mean, atol=1e-6)


def _gathered_worker(rank: int, folder: Path, port: int) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=2, rank=rank
    )
    data = torch.load(folder / "in.pt", weights_only=True)
    affine = torch.load(folder / "affine.pt", weights_only=True)
    bn = torch.nn.BatchNorm3d(3)
    bn.load_state_dict({**data["bn"], **affine})
    bn = syncbn.convert(bn)
    x = data["x"][3 * rank : 3 * rank + 3].clone().requires_grad_()
    y = bn(x)
    weights = torch.arange(y.numel() * 2).view(6, *y.shape[1:]).float().sin()
    (y * weights[3 * rank : 3 * rank + 3]).sum().backward()
    # the one-process run's loss weights every element of the whole batch once; DDP would
    # average the parameters' gradients, the input's are each process's own
    torch.save(
        {"y": y.detach(), "grad": x.grad, "running_var": bn.running_var,
         "running_mean": bn.running_mean},
        folder / f"out{rank}.pt",
    )  # fmt: skip
    torch.distributed.destroy_process_group()


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("scenecut")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def test_cli_synth_writes_the_corpus_with_scanpaths(tmp_path):
    """The README's `data synth --actions ... --scanpaths` (smaller)."""
    out = tmp_path / "motion"
    made = _cli("data", "synth", "-o", str(out), "--actions", "--classes", "2",
                "--videos-per-class", "2", "--size", "64x48", "--scanpaths", "-q")  # fmt: skip
    assert made.returncode == 0, made.stderr
    videos = [v.name for v in (out / "jpegs_256").iterdir()]
    assert len(videos) == 4
    assert sorted(p.stem for p in (out / "scan_idx_7").glob("*.txt")) == sorted(videos)


def test_cli_pretrain_retrieval_probe(actions, tmp_path):
    run = tmp_path / "pre"
    sets = [x for s in SETS for x in ("--set", s)]
    pre = _cli("train", "pretrain", "--method", "saccade", "--encoder", "tiny", "--data",
               str(actions), "--out", str(run), "--epochs", "1", "--batch-size", "4", "-q",
               *sets)  # fmt: skip
    assert pre.returncode == 0, pre.stderr
    model = pre.stdout.strip()
    assert model == str(run / train_config.MODEL_FILE)
    found = _cli("eval", "retrieval", "--data", str(actions), "--model", model,
                 "--protocol", "clean")  # fmt: skip
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert (result["gallery"], result["queries"]) == (8, 4)
    assert set(result["top_k"]) == {"1", "5"}  # k up to the gallery's size
    assert result["top_k"]["5"] >= result["top_k"]["1"]
    assert "top-1" in found.stderr
    again = _cli("eval", "retrieval", "--data", str(actions), "--model", model,
                 "--protocol", "clean")  # fmt: skip
    assert json.loads(again.stdout)["top_k"] == result["top_k"]  # clean: deterministic
    probe = _cli("train", "probe", "--data", str(actions), "--model", model, "--out",
                 str(tmp_path / "probe"), "--epochs", "1", "--batch-size", "4", "--workers",
                 "0", "-q")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    test = json.loads((tmp_path / "probe" / "test.json").read_text())
    assert test["videos"] == 4 and 0 <= test["top1"] <= 100 and test["selected_by"] == "test"


@pytest.mark.parametrize(("head", "adapts"), [("linear", False), ("full", True)])
def test_clean_probe_freezes_bn_and_fine_tuning_trains_it(actions, tmp_path, head, adapts):
    """The clean protocol's linear probe reads frozen features; fine-tuning (--head full)
    trains the whole backbone, its BatchNorm statistics included."""
    from scenecut.train.actions import probe_task

    config = train_config.make_config(
        "probe", data=str(actions), out=str(tmp_path), init="random:tiny", head=head,
        protocol="clean", batch_size=4, sets=["workers=0"],
    )  # fmt: skip
    task = probe_task(config)
    module = task.module.train()
    bns = [m for m in module.classifier.backbone.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    before = [bn.running_mean.clone() for bn in bns]
    items = [task.dataset[i] for i in range(4)]
    batch = {k: torch.stack([torch.as_tensor(x[k]) for x in items]) for k in items[0]}
    loss, _ = module(batch)
    assert torch.isfinite(loss)
    moved = [not torch.equal(a, bn.running_mean) for a, bn in zip(before, bns, strict=True)]
    assert bns and all(moved) if adapts else not any(moved)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["train", "pretrain", "--method", "saccade", "--set", "pretext.ppm_loss=l3"], 2,
         "ppm_loss"),
        (["train", "pretrain", "--method", "saccade", "--encoder", "resnet50"], 2, "--encoder"),
        (["train", "probe", "--protocol", "dirty"], 2, "protocol"),
        (["eval", "retrieval", "--model", "{missing}"], 1, "missing"),
        (["eval", "retrieval", "--model", "random:tiny", "--data", "{tmp}"], 1, str),
    ],
)  # fmt: skip
def test_cli_bad_settings_are_one_line(actions, tmp_path, args, code, words):
    args = [a.replace("{missing}", str(tmp_path / "missing.safetensors"))
            .replace("{tmp}", str(tmp_path)) for a in args]  # fmt: skip
    if args[:2] != ["eval", "retrieval"] and "--data" not in args:
        args += ["--data", str(actions), "--out", str(tmp_path / "run")]
    elif "--data" not in args:
        args += ["--data", str(actions)]
    proc = _cli(*args)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    if isinstance(words, str):
        assert words in lines[0]
