"""Asking for a model gets it (issue 15, points 7 and 8): candidate URLs tried in order, the
first download's hash recorded then enforced, `--model NAME` downloading on first use, `auto`
and `--offline` never downloading. Every download runs against a server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from loopback import Server, modelscope_file
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.errors import UsageError
from scenecut.models import hub, scorers

torch = pytest.importorskip("torch")

# Every download here goes to a server the test starts on 127.0.0.1.
pytestmark = pytest.mark.loopback
runner = CliRunner()
PAYLOAD = modelscope_file(seed=3)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    s = Server()
    s.files["/ms/pytorch_model.pt"] = PAYLOAD
    yield s
    s.close()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SCENECUT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SCENECUT_OFFLINE", raising=False)
    return tmp_path / "home"


def refused_url() -> str:
    """A loopback URL where nothing listens: the connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/pytorch_model.pt"


def point_bassl_at(monkeypatch, *urls: str) -> hub.WeightRecord:
    """The registry's `bassl` record, served from the loopback server (tiny architecture)."""
    rec = replace(hub.REGISTRY["bassl"], urls=urls, architecture="tiny")
    monkeypatch.setitem(hub.REGISTRY, "bassl", rec)
    return rec


def weights_files(home: Path) -> list[str]:
    folder = home / "weights"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


# --------------------------------------------------------------------------------------------
# Candidate URLs


def test_candidate_urls_are_tried_in_order(server, monkeypatch, caplog):
    refused, missing, good = (
        refused_url(),
        server.url + "/iic/missing",
        server.url + "/ms/pytorch_model.pt",
    )
    rec = point_bassl_at(monkeypatch, refused, missing, good)
    lines: list[str] = []
    with caplog.at_level(logging.WARNING, logger="scenecut"):
        path = hub.download(rec, notice=lines.append)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/iic/missing", "/ms/pytorch_model.pt"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert refused in warnings[0] and "cannot reach" in warnings[0] and missing in warnings[0]
    assert missing in warnings[1] and "HTTP 404" in warnings[1]
    assert lines == [
        f"downloading bassl (BaSSL fine-tuned on MovieNet-SSeg, from ModelScope; "
        f"{len(PAYLOAD):,} bytes) from {good}"
    ]
    assert hub.read_stamp(rec).source == good


def test_every_url_failing_is_one_error_naming_each_and_installs_nothing(server, home, monkeypatch):
    """Refused, 404, stalled, wrong size: four URLs, one line naming each with its reason."""
    monkeypatch.setenv("SCENECUT_DOWNLOAD_TIMEOUT", "0.3")
    server.files["/stall.pt"] = PAYLOAD
    server.stall.add("/stall.pt")
    server.files["/short.pt"] = PAYLOAD[:5000]
    urls = (
        refused_url(),
        server.url + "/gone.pt",
        server.url + "/stall.pt",
        server.url + "/short.pt",
    )
    rec = point_bassl_at(monkeypatch, *urls)
    rec = replace(rec, size=len(PAYLOAD))  # as if the publisher gave the size
    with pytest.raises(hub.DownloadError) as err:
        hub.download(rec)
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot download bassl from tried 4 URLs")
    for url, reason in zip(
        urls,
        ("cannot reach", "HTTP 404", "kept failing (stalled", "announces 5000 bytes, expected"),
        strict=True,
    ):
        assert f"{url}: {reason}" in message, message
    assert "weights import FILE --as bassl-local" in message
    # Never the final name; the stalled URL's bytes are kept for the next try.
    assert weights_files(home) == ["modelscope-bassl.pt.part", "modelscope-bassl.pt.part.url"]
    assert "3000 bytes are kept" in message and "pull bassl` resumes" in message


def test_a_part_is_resumed_only_from_the_url_that_started_it(server, monkeypatch):
    """The first URL sends 1000 bytes of something else and stalls; the second must start from
    zero (no Range), not append its file to the first one's bytes."""
    monkeypatch.setenv("SCENECUT_DOWNLOAD_TIMEOUT", "0.3")
    other = bytes(range(256)) * 2000
    server.files["/mirror-a.pt"] = other
    server.stall.add("/mirror-a.pt")
    good = server.url + "/ms/pytorch_model.pt"
    rec = point_bassl_at(monkeypatch, server.url + "/mirror-a.pt", good)
    assert hub.download(rec).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/ms/pytorch_model.pt", None)


def test_a_wrong_size_from_one_url_gives_way_to_the_next(server, home, monkeypatch):
    server.files["/short.pt"] = PAYLOAD[:-10]
    good = server.url + "/ms/pytorch_model.pt"
    rec = point_bassl_at(monkeypatch, server.url + "/short.pt", good)
    rec = replace(rec, size=len(PAYLOAD))
    assert hub.download(rec).read_bytes() == PAYLOAD
    assert weights_files(home) == ["modelscope-bassl.pt", "modelscope-bassl.pt.json"]


# --------------------------------------------------------------------------------------------
# First-use hashes


def test_first_use_hash_is_recorded_then_enforced(server, home, monkeypatch, caplog):
    url = server.url + "/ms/pytorch_model.pt"
    rec = point_bassl_at(monkeypatch, url)
    path = hub.download(rec)
    stamp = json.loads((home / "weights" / "modelscope-bassl.pt.json").read_text())
    assert stamp["sha256"] == SHA and stamp["size"] == len(PAYLOAD)
    assert stamp["source"] == url and stamp["published"] is None
    [check] = hub.verification(rec)
    assert check.verified == "first use" and check.recorded == SHA and check.published is None
    assert hub.resolve("bassl") == path

    # Touched but not changed: accepted, and the new time remembered (no hashing next time).
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert hub.resolve("bassl") == path
    assert hub.read_stamp(rec).mtime_ns == 1_000_000_000

    # Same size, one byte changed: refused on load, by name, saying how to get it again.
    data = bytearray(PAYLOAD)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(hub.WeightsChanged, match="weights pull bassl --force") as err:
        hub.resolve("bassl")
    assert f"recorded {SHA}" in str(err.value)
    with pytest.raises(hub.WeightsChanged, match=r"\d+ bytes, recorded"):
        path.write_bytes(PAYLOAD[:-1])
        hub.resolve("bassl")
    # auto skips it with one warning and never downloads it again by itself.
    requests = len(server.requests)
    with caplog.at_level(logging.WARNING, logger="scenecut"):
        assert scorers.choose_model("auto").name == "fused"
    assert "changed since it was installed" in caplog.records[0].getMessage()
    assert len(server.requests) == requests
    # pull replaces the changed file.
    assert hub.download(rec).read_bytes() == PAYLOAD
    hub.resolve("bassl")


def test_a_file_installed_before_hashes_were_recorded_is_adopted_by_pull(server, home, monkeypatch):
    rec = point_bassl_at(monkeypatch, server.url + "/ms/pytorch_model.pt")
    path = hub.installed_path(rec)
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD)
    [check] = hub.verification(rec)
    assert check.verified == "not verified"
    assert hub.download(rec) == path
    assert server.requests == []  # checked and recorded, not downloaded
    assert hub.read_stamp(rec).source == "already installed"


def test_weights_info_says_how_each_file_is_verified(server, home, monkeypatch):
    res = runner.invoke(app, ["weights", "info", "resnet50-imagenet-v2"])
    assert res.exit_code == 0, res.output
    [file] = json.loads(res.stdout)["files"]
    assert file["published"] == "prefix 11ad3fa6" and file["verified"] == "not installed"
    point_bassl_at(monkeypatch, server.url + "/ms/pytorch_model.pt")
    res = runner.invoke(app, ["weights", "pull", "bassl"])
    assert res.exit_code == 0, res.output
    assert f"sha256 {SHA} recorded " in res.stderr
    assert "(no published hash: this first download is the reference)" in res.stderr
    res = runner.invoke(app, ["weights", "info", "bassl"])
    [file] = json.loads(res.stdout)["files"]
    assert file["verified"] == "first use" and file["recorded"] == SHA
    assert res.stderr.startswith("modelscope-bassl.pt (download and checkpoint): first use;")


# --------------------------------------------------------------------------------------------
# Tarballs: the member found by name


def _tarball(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _kakao(server, monkeypatch, members) -> hub.WeightRecord:
    server.files["/bassl.tar.gz"] = _tarball(members)
    rec = replace(
        hub.REGISTRY["bassl-pretrained"],
        urls=(server.url + "/bassl.tar.gz",),
        architecture="tiny",
        kind="finetuned",  # the tiny payload has a head; the member search is what is tested
    )
    monkeypatch.setitem(hub.REGISTRY, rec.name, rec)
    return rec


def test_a_tarball_checkpoint_is_found_by_pattern_and_named(server, home, monkeypatch):
    rec = _kakao(server, monkeypatch, [("bassl/model.ckpt", PAYLOAD), ("bassl/config.json", b"{}")])
    lines: list[str] = []
    path = hub.download(rec, notice=lines.append)
    assert path == home / "weights" / "bassl-pretrained" / "model-v1.ckpt"
    assert path.read_bytes() == PAYLOAD
    assert lines[-1] == "bassl-pretrained: took bassl/model.ckpt from bassl.tar.gz"
    stamp = hub.read_stamp(rec)
    assert stamp.archive["member"] == "bassl/model.ckpt" and stamp.sha256 == SHA
    archive, checkpoint = hub.verification(rec)
    assert archive.role == "download" and "took bassl/model.ckpt" in archive.note
    assert checkpoint.verified == "first use"


def test_an_ambiguous_tarball_is_refused(server, home, monkeypatch):
    rec = _kakao(server, monkeypatch, [("a/one.ckpt", PAYLOAD), ("a/two.ckpt", PAYLOAD)])
    with pytest.raises(hub.DownloadError, match=r"several model-v1.ckpt or \.ckpt files"):
        hub.download(rec)
    assert weights_files(home) == []


# --------------------------------------------------------------------------------------------
# --model NAME, auto, --offline, renamed names


def test_auto_never_downloads_and_a_named_model_does_once(server, monkeypatch):
    point_bassl_at(monkeypatch, server.url + "/ms/pytorch_model.pt")
    assert scorers.choose_model("auto").name == "fused"
    assert server.requests == []
    sizes: list[int] = []
    choice = scorers.choose_model("bassl", progress=lambda done, total: sizes.append(done))
    assert choice.name == "bassl" and choice.path.read_bytes() == PAYLOAD
    assert sizes[-1] == len(PAYLOAD) and len(server.requests) == 1
    assert scorers.choose_model("auto").name == "bassl"  # after one download, auto is BaSSL
    assert scorers.choose_model("bassl").path == choice.path
    assert len(server.requests) == 1


def test_offline_refuses_in_one_line(server, monkeypatch):
    url = server.url + "/ms/pytorch_model.pt"
    point_bassl_at(monkeypatch, url)
    with pytest.raises(hub.OfflineError) as err:
        scorers.choose_model("bassl", offline=True)
    message = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in message
    assert message.startswith("bassl is not in the cache and --offline forbids downloading it")
    assert url in message and "scenecut weights import FILE --as bassl-local" in message
    monkeypatch.setenv("SCENECUT_OFFLINE", "1")
    with pytest.raises(hub.OfflineError, match="SCENECUT_OFFLINE=1 forbids"):
        scorers.choose_model("bassl")
    res = runner.invoke(app, ["weights", "pull", "bassl"])
    assert isinstance(res.exception, hub.OfflineError)
    assert server.requests == []
    monkeypatch.setenv("SCENECUT_OFFLINE", "maybe")
    with pytest.raises(UsageError, match="SCENECUT_OFFLINE"):
        scorers.choose_model("bassl")


def test_names_say_what_they_are():
    assert hub.get("bassl").kind == "finetuned"
    assert {hub.get("bassl-pretrained").kind, hub.get("bassl-pretrained-40epoch").kind} == {
        "pretrained"
    }
    with pytest.raises(hub.WeightsError, match="'modelscope-bassl' are now called 'bassl'"):
        hub.get("modelscope-bassl")
    with pytest.raises(scorers.UsageError, match="now called 'bassl-pretrained-40epoch'"):
        scorers.choose_model("bassl-40epoch")
    with pytest.raises(scorers.UsageError, match=r"no boundary head.*fine-tuned model: bassl"):
        scorers.choose_model("bassl-pretrained")  # refused before a useless download


def test_modelscope_urls_use_the_client_form():
    """www.modelscope.cn (the hub client's DEFAULT_MODELSCOPE_DOMAIN) and iic/ first."""
    urls = hub.get("bassl").urls
    model = "cv_resnet50-bert_video-scene-segmentation_movienet"
    tail = f"{model}/repo?Revision=master&FilePath=pytorch_model.pt"
    assert urls == (
        f"https://www.modelscope.cn/api/v1/models/iic/{tail}",
        f"https://www.modelscope.cn/api/v1/models/damo/{tail}",
        f"https://modelscope.cn/api/v1/models/damo/{tail}",
    )


# --------------------------------------------------------------------------------------------
# The commands a user runs, end to end against the loopback server

LAUNCH = """
import dataclasses, json, os, sys
from scenecut.models import hub
urls = tuple(json.loads(os.environ["TEST_BASSL_URLS"]))
hub.REGISTRY["bassl"] = dataclasses.replace(hub.REGISTRY["bassl"], urls=urls, architecture="tiny")
sys.argv = ["scenecut", *sys.argv[1:]]
from scenecut.cli import main

main()
"""


def _scenecut(*args: str, home: Path, urls: list[str], **env: str):
    environ = {**os.environ, "SCENECUT_HOME": str(home), "TEST_BASSL_URLS": json.dumps(urls)}
    environ.pop("SCENECUT_OFFLINE", None)
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=300,
    )


def test_segment_model_bassl_downloads_on_first_use(server, film, tmp_path):
    home = tmp_path / "home"
    missing, good = server.url + "/iic/missing", server.url + "/ms/pytorch_model.pt"
    urls = [missing, good]
    out = tmp_path / "out"
    first = _scenecut(
        "segment", str(film.path), "--model", "bassl", "-o", str(out), "--report",
        home=home, urls=urls,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    assert lines[0].startswith("warning: bassl: ") and "HTTP 404" in lines[0]
    assert lines[1] == (
        f"downloading bassl (BaSSL fine-tuned on MovieNet-SSeg, from ModelScope; "
        f"{len(PAYLOAD):,} bytes) from {good}"
    )
    # Which model ran: the JSON, the scene table and the report all say bassl.
    result = json.loads(next(out.glob("*.scenes.json")).read_text())
    assert result["settings"]["model"] == "bassl"
    assert any(line.rstrip().endswith("scenes (bassl)") for line in lines), first.stderr
    assert "model bassl" in next(out.glob("*.report.html")).read_text()
    assert (home / "weights" / "modelscope-bassl.pt.json").is_file()

    requests = len(server.requests)
    auto = _scenecut("segment", str(film.path), "--stdout", home=home, urls=urls)
    assert auto.returncode == 0, auto.stderr
    assert json.loads(auto.stdout)["settings"]["model"] == "bassl"
    assert "model: bassl" in auto.stderr and "downloading" not in auto.stderr
    assert len(server.requests) == requests  # nothing downloaded again


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_is_one_line_and_exit_2(server, film, tmp_path, how):
    url = server.url + "/ms/pytorch_model.pt"
    flag = ["--offline"] if how == "flag" else []
    env = {"SCENECUT_OFFLINE": "1"} if how == "env" else {}
    proc = _scenecut(
        "segment", str(film.path), "--model", "bassl", "--stdout", *flag,
        home=tmp_path / "home", urls=[url], **env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: bassl is not in the cache and")
    assert url in line and "weights import FILE --as bassl-local" in line
    truth = tmp_path / "truth.txt"
    truth.write_text("0\n")
    evaluated = _scenecut(
        "eval", str(film.path), "--truth", str(truth), "--model", "bassl", *flag,
        home=tmp_path / "home", urls=[url], **env,
    )  # fmt: skip
    assert evaluated.returncode == 2 and "forbids downloading" in evaluated.stderr
    extract = _scenecut(
        "train", "extract", "--data", str(tmp_path), "--encoder", "bassl", "--out",
        str(tmp_path / "feats"), *flag, home=tmp_path / "home", urls=[url], **env,
    )  # fmt: skip
    assert extract.returncode == 2 and "forbids downloading" in extract.stderr
    assert server.requests == []


def test_train_extract_downloads_its_encoder_once_before_starting(server, tmp_path, monkeypatch):
    """The download happens in the command, before any training process could race for it."""
    url = server.url + "/ms/pytorch_model.pt"
    rec = point_bassl_at(monkeypatch, url)
    res = runner.invoke(
        app,
        ["train", "extract", "--data", str(tmp_path / "no-tree"), "--encoder", "bassl",
         "--out", str(tmp_path / "feats")],
    )  # fmt: skip
    assert "downloading bassl (" in res.stderr and url in res.stderr
    assert hub.installed_path(rec).read_bytes() == PAYLOAD
    assert res.exit_code != 0  # then the missing tree is the error
