"""Settings set once (issue 17, point 9): the user's file, ./scenecut.toml and ``scenecut -c
FILE``, later ones winning and options over all; the data root of ``scenecut eval --split
test``; the run folder of ``scenecut train pretrain`` without ``--out``; ``scenecut config``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.cli.train import run_config
from scenecut.data import writer
from scenecut.errors import InputError, UsageError
from scenecut.settings import load_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _alone(tmp_path, monkeypatch):
    """Each test in its own working folder and home, with no settings file nor data root."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("SCENECUT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A labelled MovieNet-style tree: one test film, two scenes of two shots."""
    root = tmp_path_factory.mktemp("tree") / "movienet"
    rng = np.random.default_rng(0)
    keyframes = []
    for _ in range(2):
        place = rng.integers(0, 256, (4, 6, 3)).astype(np.uint8).repeat(12, 0).repeat(12, 1)
        keyframes += [np.stack([place, place, np.ascontiguousarray(place[:, ::-1])])] * 2
    shots = [(10 * i, 10 * i + 10) for i in range(4)]
    movie = writer.write_movie(root, "tt0000001", shots, iter(keyframes), [0, 1, 0])
    writer.write_annotations(root, [movie], {"train": [], "val": [], "test": ["tt0000001"]})
    return root


def _config(*top: str) -> tuple[dict, dict[str, str]]:
    """``scenecut [top] config``: the settings as TOML, and each set key's source comment."""
    res = runner.invoke(app, [*top, "config"])
    assert res.exit_code == 0, res.output
    sources = dict(re.findall(r"^(\w+) = .*  # (.*)$", res.stdout, re.M))
    return tomllib.loads(res.stdout), sources


def _cli(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_eval_split_test_uses_the_data_root_and_auto(tree, tmp_path):
    """`scenecut eval --split test`, as the mission writes it: ./data/movienet, model auto."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "movienet").symlink_to(tree)
    res = runner.invoke(app, ["eval", "--split", "test", "-q"])
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)
    assert (scores["root"], scores["split"]) == ("data/movienet", "test")
    assert scores["model"] == "fused"  # auto, with nothing installed
    assert scores["scores"]["films"] == 1
    settings, sources = _config()
    assert settings["data"] == "data/movienet" and sources["data"] == "./data/movienet exists"


def test_data_root_option_beats_files_beat_the_variable(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("SCENECUT_DATA", str(tree))
    res = runner.invoke(app, ["eval", "--split", "test", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["root"] == str(tree)
    assert _config()[1]["data"] == "SCENECUT_DATA"

    (tmp_path / "scenecut.toml").write_text('data = "elsewhere"\n')
    res = runner.invoke(app, ["eval", "--split", "test", "-q"])
    assert isinstance(res.exception, InputError) and "elsewhere" in str(res.exception)

    res = runner.invoke(app, ["eval", "--split", "test", "-q", "--data", str(tree)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["root"] == str(tree)


def test_later_files_win_and_config_says_where_each_came_from(tree, tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    (xdg / "scenecut").mkdir(parents=True)
    user = xdg / "scenecut" / "config.toml"
    user.write_text('model = "classic"\nformats = "JSON, csv"\ndevice = "cpu"\nthreshold = 0.3\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    here = tmp_path / "scenecut.toml"
    here.write_text(f'model = "fused"\nthreshold = 0.6\ndata = "{tree}"\n')
    extra = tmp_path / "extra.toml"
    extra.write_text('threshold = 0.9\nruns = "~/r"\n')

    settings, sources = _config("-c", str(extra))
    assert settings == {
        "data": str(tree),
        "model": "fused",
        "device": "cpu",
        "threshold": 0.9,
        "formats": ["json", "csv"],
        "runs": str(tmp_path / "home" / "r"),
    }  # output is not set: a comment only
    assert sources == {
        "data": f"{here} (working folder)",
        "model": f"{here} (working folder)",
        "device": f"{user} (user file)",
        "threshold": f"{extra} (-c)",
        "formats": f"{user} (user file)",
        "runs": f"{extra} (-c)",
    }
    # the commands use them, and an option on the command line wins
    res = runner.invoke(app, ["-c", str(extra), "eval", "--split", "test", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["threshold"] == 0.9
    res = runner.invoke(app, ["eval", "--split", "test", "-q", "--model", "classic"])
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)
    assert (scores["model"], scores["threshold"]) == ("classic", 0.6)

    # without $XDG_CONFIG_HOME, the user's file is ~/.config/scenecut/config.toml
    monkeypatch.delenv("XDG_CONFIG_HOME")
    home_file = tmp_path / "home" / ".config" / "scenecut" / "config.toml"
    home_file.parent.mkdir(parents=True)
    home_file.write_text('output = "scenes"\n')
    settings, sources = _config()
    assert settings["output"] == "scenes" and sources["output"] == f"{home_file} (user file)"
    assert sources["model"] == f"{here} (working folder)" and sources["device"] == "default"


def test_segment_and_export_take_their_defaults_from_the_settings(film, tmp_path):
    (tmp_path / "scenecut.toml").write_text(
        'output = "scenes"\nformats = ["json", "csv"]\nmodel = "classic"\nthreshold = 1.0\n'
    )
    res = runner.invoke(app, ["segment", str(film.path), "-q"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == ["scenes/film.scenes.json", "scenes/film.scenes.csv"]
    saved = tmp_path / "scenes" / "film.scenes.json"
    data = json.loads(saved.read_text())
    assert (data["settings"]["model"], data["settings"]["threshold"]) == ("classic", 1.0)
    assert len(data["scenes"]) == 1  # no gap scores above 1.0

    res = runner.invoke(app, ["export", str(saved), "-o", "again", "-q"])
    assert res.exit_code == 0, res.output
    assert [Path(p).name for p in res.stdout.split()] == ["film.scenes.json", "film.scenes.csv"]
    res = runner.invoke(app, ["export", str(saved), "-o", "edl", "-f", "edl", "-q"])
    assert res.exit_code == 0, res.output
    assert [Path(p).name for p in res.stdout.split()] == ["film.scenes.edl"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("epochs = 3\n", "unknown setting 'epochs'; the settings are data, output, model"),
        ("[scenecut]\nmodel = 'classic'\n", "unknown setting 'scenecut'"),
        ('threshold = "high"\n', "threshold: must be a number from 0 to 1, got 'high'"),
        ("threshold = 1.5\n", "threshold: must be a number from 0 to 1, got 1.5"),
        ("model = 3\n", "model: must be non-empty text, got 3"),
        ('formats = ["json", "avi"]\n', "formats: unknown format avi"),
        ('device = "gpu"\n', "device: unknown device 'gpu'"),
        ("model = classic\n", "invalid TOML"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "invalid TOML (nested too deeply)"),
        ("# " + "x" * 70_000 + "\n", "over 64 KiB"),
        (b"model = '\xff'\n", "not UTF-8"),
    ],
)
def test_a_bad_settings_file_is_one_error_naming_it(tmp_path, content, needle):
    path = tmp_path / "scenecut.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UsageError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and needle in message and "\n" not in message


def test_bad_settings_exit_2_with_one_line(scenecut_exe, film, tmp_path):
    (tmp_path / "scenecut.toml").write_text("epochs = 3\n")
    proc = _cli(scenecut_exe, "segment", str(film.path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {tmp_path / 'scenecut.toml'}: unknown setting 'epochs'")
    assert len(proc.stderr.strip().splitlines()) == 1  # no traceback
    assert "scenecut train ... --config FILE" in proc.stderr  # where training settings go
    proc = _cli(scenecut_exe, "-c", "missing.toml", "config")
    assert proc.returncode == 2 and "missing.toml" in proc.stderr


def test_without_a_data_root_eval_and_train_say_what_to_set(scenecut_exe):
    for args in (["eval", "--split", "test"], ["train", "pretrain", "--gpus", "8"]):
        proc = _cli(scenecut_exe, *args)
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert line.startswith("error: no data root: pass --data ROOT, set SCENECUT_DATA=ROOT")
        assert 'data = "ROOT"' in line and "./data/movienet does not exist" in line
    res = runner.invoke(app, ["train", "extract", "--encoder", "x", "--out", "feats"])
    assert isinstance(res.exception, UsageError) and "no data root" in str(res.exception)


def test_train_run_folder_defaults_to_a_new_dated_folder(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("SCENECUT_DATA", str(tree))
    (tmp_path / "scenecut.toml").write_text('runs = "myruns"\n')
    settings = load_settings()
    given = dict(data=None, out=None, method="scrl")
    config = run_config(settings, "pretrain", given, None, None, resume=False, nodes=1)
    assert config.data == str(tree)
    assert re.fullmatch(r"myruns/scrl-\d{8}-\d{6}", config.out), config.out
    tuned = run_config(
        settings, "finetune", dict(data=None, features="f", out=None), None, None,
        resume=False, nodes=1,
    )  # fmt: skip
    assert re.fullmatch(r"myruns/finetune-\d{8}-\d{6}", tuned.out), tuned.out
    # two runs started in the same second get two folders
    now = datetime(2025, 1, 2, 3, 4, 5)
    first = settings.new_run_folder("bassl", now)
    first.mkdir(parents=True)
    assert (first.name, settings.new_run_folder("bassl", now).name) == (
        "bassl-20250102-030405",
        "bassl-20250102-030405-2",
    )
    # the training config file and --set come before the settings
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('data = "from-recipe"\n')
    config = run_config(settings, "pretrain", given, recipe, ["out=mine"], resume=False, nodes=1)
    assert (config.data, config.out) == ("from-recipe", "mine")
    # --resume without --out names the run to pass; several machines must name one folder
    with pytest.raises(UsageError, match=f"pass --out RUN \\(the newest bassl run is {first}\\)"):
        run_config(settings, "pretrain", dict(given, method="bassl"), None, None, resume=True,
                   nodes=1)  # fmt: skip
    with pytest.raises(UsageError, match="--out is required with --nodes above 1"):
        run_config(settings, "pretrain", given, None, None, resume=False, nodes=2)


def test_train_command_reads_the_settings(tmp_path, monkeypatch):
    """Through the command: the settings' data root, checked before any process starts."""
    monkeypatch.setenv("SCENECUT_DATA", str(tmp_path / "gone"))
    res = runner.invoke(app, ["train", "pretrain"])
    assert isinstance(res.exception, InputError)
    assert str(res.exception) == f"the data root {tmp_path / 'gone'} is not a folder"
    extra = tmp_path / "extra.toml"
    extra.write_text(f'data = "{tmp_path}"\nruns = "elsewhere"\n')
    res = runner.invoke(app, ["-c", str(extra), "train", "finetune", "--features", "f", "--resume"])
    assert isinstance(res.exception, UsageError)
    message = "--resume continues a run: pass --out RUN (no finetune run in elsewhere)"
    assert str(res.exception) == message
    assert not os.path.exists("elsewhere")
