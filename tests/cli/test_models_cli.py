"""--model on the command line: checkpoint paths, imported weights, auto, offline stacks."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess

import pytest

torch = pytest.importorskip("torch")

from scenecut.models import bassl, checkpoints  # noqa: E402
from scenecut.models.config import CRNConfig, ModelConfig  # noqa: E402

TINY = ModelConfig(
    encoder="tiny",
    crn=CRNConfig(
        input_dim=16,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=8,
        intermediate_size=64,
    ),
    resize=64,
    image_size=56,
)


def _run(exe, *args, home, preexec_fn=None, env=None):
    env = {**os.environ, "SCENECUT_HOME": str(home), **(env or {})}
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, env=env, timeout=300, preexec_fn=preexec_fn
    )


@pytest.fixture(scope="module")
def modelscope_file(tmp_path_factory):
    """A tiny model saved in ModelScope's layout: a flat state dict in a .pt file."""
    torch.manual_seed(5)
    model = bassl.build(TINY)
    path = tmp_path_factory.mktemp("ms") / "pytorch_model.pt"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_segment_with_a_checkpoint_path(scenecut_exe, film, tmp_path):
    path = tmp_path / "tiny.safetensors"
    torch.manual_seed(4)
    checkpoints.save(bassl.build(TINY), TINY, path)
    proc = _run(
        scenecut_exe, "segment", str(film.path), "--model", str(path), "--stdout", home=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["settings"]["model"] == str(path)
    n = len(result["shots"])
    assert n == len(film.shot_starts)
    scores = result["boundary_scores"]
    assert len(scores) == n - 1 and all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.skipif(
    not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler"
)
def test_compile_gives_the_same_scores(scenecut_exe, film, tmp_path):
    path = tmp_path / "tiny.safetensors"
    torch.manual_seed(4)
    checkpoints.save(bassl.build(TINY), TINY, path)
    common = ("segment", str(film.path), "--model", str(path), "--precision", "fp32", "--stdout")
    plain = _run(scenecut_exe, *common, home=tmp_path)
    compiled = _run(scenecut_exe, *common, "--compile", home=tmp_path)
    assert plain.returncode == 0 and compiled.returncode == 0, compiled.stderr
    assert "compile failed" not in compiled.stderr
    a = json.loads(plain.stdout)["boundary_scores"]
    b = json.loads(compiled.stdout)["boundary_scores"]
    assert len(a) == len(b) == len(film.shot_starts) - 1
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4


def test_import_then_use_by_name_and_auto_picks_it(scenecut_exe, film, modelscope_file, tmp_path):
    path, state = modelscope_file
    proc = _run(scenecut_exe, "weights", "import", str(path), "--as", "mine", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    saved = tmp_path / "weights" / "imported" / "mine.safetensors"
    assert proc.stdout.strip() == str(saved)
    assert "modelscope checkpoint" in proc.stderr and "scores boundaries" in proc.stderr
    model, config = checkpoints.load(saved)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert config.crn == TINY.crn and config.encoder == "tiny"

    listed = _run(scenecut_exe, "weights", "list", "-q", home=tmp_path)
    assert "mine" in listed.stdout.split()
    again = _run(scenecut_exe, "weights", "import", str(path), "--as", "mine", home=tmp_path)
    assert again.returncode == 1 and "--overwrite" in again.stderr

    by_name = _run(
        scenecut_exe, "segment", str(film.path), "--model", "mine", "--stdout", home=tmp_path
    )
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout)["settings"]["model"] == "mine"
    out = tmp_path / "auto"
    auto = _run(scenecut_exe, "segment", str(film.path), "-o", str(out), home=tmp_path)
    assert auto.returncode == 0, auto.stderr
    assert "model: mine" in auto.stderr
    written = json.loads(next(out.glob("*.json")).read_text())
    assert written["settings"]["model"] == "mine"


def test_import_refuses_what_does_not_match(scenecut_exe, modelscope_file, tmp_path):
    _, state = modelscope_file
    broken = dict(state)
    broken["crn.encoder.layer.0.output.dense.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pt"
    torch.save(broken, bad)
    proc = _run(scenecut_exe, "weights", "import", str(bad), "--as", "bad", home=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "wrong shape" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "weights" / "imported" / "bad.safetensors").exists()


def _full_disk():
    """In the child: no file may grow past 4 KB, as on a full disk (writes fail with EFBIG
    instead of the process being killed by SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_import_onto_a_full_disk_is_one_line(scenecut_exe, modelscope_file, tmp_path):
    path, _ = modelscope_file
    proc = _run(
        scenecut_exe,
        "weights",
        "import",
        str(path),
        "--as",
        "big",
        home=tmp_path,
        preexec_fn=_full_disk,
    )
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: cannot write") and "File too large" in proc.stderr
    assert "this is a bug" not in proc.stderr
    imported = tmp_path / "weights" / "imported"
    assert list(imported.iterdir()) == []  # no partial file, under any name


def test_auto_without_models_uses_fused_and_says_how_to_get_more(scenecut_exe, film, tmp_path):
    proc = _run(scenecut_exe, "segment", str(film.path), "-o", str(tmp_path / "o"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "model: fused" in proc.stderr and "weights pull" in proc.stderr


def test_auto_skips_a_broken_pulled_model_with_one_warning(scenecut_exe, film, tmp_path):
    """A login page saved under the ModelScope file's name (as older versions could install):
    auto says so in one line and goes on with the next choice."""
    broken = tmp_path / "weights" / "modelscope-bassl.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"<html><body>Please sign in</body></html>")
    proc = _run(scenecut_exe, "segment", str(film.path), "-o", str(tmp_path / "o"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert "skipping bassl" in warnings[0] and str(broken) in warnings[0]
    assert "model: fused" in proc.stderr


def test_effnet_stack_end_to_end(scenecut_exe, film, tmp_path):
    proc = _run(
        scenecut_exe,
        "segment",
        str(film.path),
        "--model",
        "effnet-lite0",
        "--batch-size",
        "8",
        "--stdout",
        home=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["settings"]["model"] == "effnet-lite0"
    assert len(result["scenes"]) >= 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown model"),
        # Never a download from a test: --offline makes a missing named model one line.
        (["--model", "bassl", "--offline"], "weights import FILE --as bassl-local"),
        (["--model", "modelscope-bassl"], "now called 'bassl'"),
        (["--model", "bassl-pretrained"], "no boundary head"),
        (["--device", "tpu"], "unknown device"),
        (["--batch-size", "-1"], "--batch-size"),
        (["--precision", "int4"], "--precision"),
    ],
)
def test_bad_model_options_are_one_line(scenecut_exe, film, tmp_path, args, message):
    proc = _run(
        scenecut_exe, "segment", str(film.path), *args, "--stdout", home=tmp_path,
        env={"SCENECUT_OFFLINE": "1"},  # a safety net: no test may download
    )  # fmt: skip
    assert proc.returncode in (1, 2)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr
