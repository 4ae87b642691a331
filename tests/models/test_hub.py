"""Weights registry and downloads, against a real HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from loopback import TINY, Server, modelscope_file
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.errors import UsageError
from scenecut.models import download, hub, scorers

# Every download here goes to a server the test starts on 127.0.0.1.
pytestmark = pytest.mark.loopback
runner = CliRunner()
PAYLOAD = modelscope_file(seed=0)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>" + b" " * 320 + b"</html>"


@pytest.fixture
def server():
    s = Server()
    s.files["/w.pth"] = PAYLOAD
    yield s
    s.close()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SCENECUT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def record(url: str | tuple[str, ...], **changes) -> hub.WeightRecord:
    base = hub.WeightRecord(
        name="test-weights",
        urls=(url,) if isinstance(url, str) else url,
        filename="w.pth",
        kind="finetuned",
        architecture="tiny",
        preprocessing=hub.BASSL_PREPROCESSING,
        licence="test",
        title="test weights",
        description="test",
        sha256=SHA,
        size=len(PAYLOAD),
    )
    return replace(base, **changes)


def cache_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "weights").glob("*")) if home.exists() else []


def test_cache_dir_precedence(monkeypatch, tmp_path):
    assert hub.weights_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("SCENECUT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "scenecut"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hub.cache_dir() == Path.home() / ".cache" / "scenecut"


def test_download_reports_progress_and_installs(server, home):
    calls: list[tuple[int, int | None]] = []
    path = hub.download(record(server.url + "/w.pth"), progress=lambda d, t: calls.append((d, t)))
    assert path == home / "weights" / "w.pth"
    assert path.read_bytes() == PAYLOAD
    assert cache_files(home) == ["w.pth", "w.pth.json"]
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == len(PAYLOAD)
    assert {t for _, t in calls} == {len(PAYLOAD)}
    # Installed and verified: no second request.
    before = len(server.ranges)
    assert hub.download(record(server.url + "/w.pth")) == path
    assert len(server.ranges) == before


def test_dropped_connection_is_resumed_with_range(server, home):
    server.drop_after, server.drops = 100_000, 1
    path = hub.download(record(server.url + "/w.pth"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    assert server.ranges == [None, "bytes=100000-"]


def test_partial_file_survives_failures_and_next_call_resumes(server, home):
    server.drop_after, server.drops = 50_000, download._ATTEMPTS
    rec = record(server.url + "/w.pth")
    with pytest.raises(hub.DownloadError, match="resumes"):
        hub.download(rec)
    assert cache_files(home) == ["w.pth.part", "w.pth.part.url"]  # never the final name
    part_size = (home / "weights" / "w.pth.part").stat().st_size
    assert part_size == 50_000 * download._ATTEMPTS
    server.ranges.clear()
    assert hub.download(rec).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={part_size}-"]
    assert cache_files(home) == ["w.pth", "w.pth.json"]


def test_server_ignoring_range_still_gives_the_right_file(server, home):
    server.ignore_range = True
    server.drop_after, server.drops = 120_000, 1
    path = hub.download(record(server.url + "/w.pth"))
    assert path.read_bytes() == PAYLOAD
    assert server.ranges[1] == "bytes=120000-"


def test_complete_part_is_not_fetched_again(server, home):
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "w.pth.part").write_bytes(PAYLOAD)
    assert hub.download(record(server.url + "/w.pth")).read_bytes() == PAYLOAD
    assert server.ranges == []
    # Without a known size the server answers 416 and the .part is taken as complete.
    (home / "weights" / "w.pth").unlink()
    (home / "weights" / "w.pth.part").write_bytes(PAYLOAD)
    assert hub.download(record(server.url + "/w.pth", size=None)).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_sha256_mismatch_leaves_nothing(server, home):
    bad = "0" * 64
    with pytest.raises(hub.DownloadError, match=f"expected {bad}, got {SHA}"):
        hub.download(record(server.url + "/w.pth", sha256=bad))
    assert cache_files(home) == []


def test_size_mismatch_leaves_nothing(server, home):
    server.files["/short.pth"] = PAYLOAD[:1000]
    with pytest.raises(hub.DownloadError, match="1000 bytes, expected"):
        hub.download(record(server.url + "/short.pth"))
    assert cache_files(home) == []


def test_url_hash_prefix_is_checked_when_no_sha256(server, home):
    server.files[f"/resnet-{SHA[:8]}.pth"] = PAYLOAD
    server.files["/resnet-deadbeef.pth"] = PAYLOAD
    good = record(f"{server.url}/resnet-{SHA[:8]}.pth", sha256=None, size=None)
    assert good.sha256_prefix == SHA[:8]
    assert hub.download(good).read_bytes() == PAYLOAD
    bad = record(f"{server.url}/resnet-deadbeef.pth", sha256=None, filename="other.pth")
    with pytest.raises(hub.DownloadError, match="deadbeef"):
        hub.download(bad)
    assert cache_files(home) == ["w.pth", "w.pth.json"]


def test_http_404_and_unreachable_server(server, home):
    with pytest.raises(hub.DownloadError, match="HTTP 404") as err:
        hub.download(record(server.url + "/missing.pth"))
    assert "/missing.pth" in str(err.value)
    url = server.url + "/w.pth"
    server.close()
    with pytest.raises(hub.DownloadError, match=r"cannot reach .*offline"):
        hub.download(record(url))
    assert not (home / "weights" / "w.pth").exists()


def test_no_direct_link():
    with pytest.raises(hub.DownloadError, match="by hand"):
        hub.download(hub.get("scrl"))


def test_tarball_member_is_extracted_with_its_config(server, home):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [("bassl/model-v1.ckpt", PAYLOAD), ("bassl/config.json", b"{}")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buffer.getvalue()
    server.files["/bassl.tar.gz"] = blob
    rec = record(
        server.url + "/bassl.tar.gz",
        name="bassl-test",
        filename="bassl.tar.gz",
        archive_member="top/model-v1.ckpt",  # wrong folder: the unique file name still matches
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )
    path = hub.download(rec)
    assert path == home / "weights" / "bassl-test" / "model-v1.ckpt"
    assert path.read_bytes() == PAYLOAD
    assert (path.parent / "config.json").read_bytes() == b"{}"
    assert cache_files(home) == ["bassl-test"]
    before = len(server.ranges)
    assert hub.download(rec) == path
    assert len(server.ranges) == before


def test_resolve(tmp_path, monkeypatch):
    local = tmp_path / "mine.pt"
    local.write_bytes(b"x")
    assert hub.resolve(local) == local
    assert hub.resolve(str(local)) == local
    with pytest.raises(hub.WeightsError, match="scenecut weights pull bassl"):
        hub.resolve("bassl")
    with pytest.raises(hub.WeightsError, match="neither a registered"):
        hub.resolve("no-such-weights")
    installed = hub.installed_path(hub.get("bassl"))
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"x")
    assert hub.resolve("bassl") == installed


def test_registry_is_honest():
    for name, r in hub.REGISTRY.items():
        assert r.name == name
        assert r.sha256 is None or len(r.sha256) == 64
        assert r.kind in ("encoder", "pretrained", "finetuned")
        assert r.url or r.homepage
    assert hub.get("resnet50-imagenet-v2").sha256_prefix == "11ad3fa6"
    assert hub.get("bassl").sha256_prefix is None
    with pytest.raises(hub.WeightsError, match="unknown weights"):
        hub.get("nope")


def test_readme_is_generated_from_the_registry():
    readme = Path(__file__).parents[2] / "weights" / "README.md"
    assert readme.read_text() == hub.registry_markdown(), (
        "run: python -m scenecut.models > weights/README.md"
    )


def test_cli_list_and_info(home):
    res = runner.invoke(app, ["weights", "list"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == list(hub.REGISTRY)
    assert "installed" in res.stderr and "57.40" in res.stderr
    res = runner.invoke(app, ["weights", "info", "bassl-pretrained-40epoch"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["urls"] == [
        "https://twg.kakaocdn.net/brainrepo/bassl/checkpoints/bassl_40epoch.tar.gz"
    ]
    assert data["sha256"] is None and data["installed"] is False
    assert data["preprocessing"]["resize"] == 256
    assert data["path"].startswith(str(home))
    res = runner.invoke(app, ["weights", "info", "nope"])
    assert isinstance(res.exception, hub.WeightsError)


def test_cli_pull_prints_the_path(monkeypatch, tmp_path):
    seen = {}

    def fake_download(record, *, force, progress, notice):
        seen.update(name=record.name, force=force, progress=progress)
        return tmp_path / "x.pth"

    monkeypatch.setattr(hub, "download", fake_download)
    res = runner.invoke(app, ["weights", "pull", "bassl", "--force"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(tmp_path / "x.pth")
    assert seen == {"name": "bassl", "force": True, "progress": None}  # stderr is no terminal


# --------------------------------------------------------------------------------------------
# What a download must be before it is installed (issue 14, item 4)


def test_a_login_page_instead_of_the_checkpoint_is_not_installed(server, home):
    server.files["/login.pt"] = HTML
    rec = record(server.url + "/login.pt", sha256=None, size=None)
    with pytest.raises(hub.DownloadError, match="did not give a usable test-weights checkpoint"):
        hub.download(rec)
    assert cache_files(home) == []  # neither the final name nor a .part


def test_a_short_content_length_is_not_installed(server, home):
    """The server announces (and sends) half the file: no hash to catch it, but it does not
    load."""
    server.claims["/w.pth"] = len(PAYLOAD) // 2
    with pytest.raises(hub.DownloadError, match="damaged zip checkpoint"):
        hub.download(record(server.url + "/w.pth", sha256=None, size=None))
    assert cache_files(home) == []


def test_a_body_shorter_than_announced_is_an_error(server, home):
    """Content-Length says the whole file, the body stops halfway, and the server then answers
    the resume with "416: the file ends there"."""
    server.files["/cut.pth"] = PAYLOAD[: len(PAYLOAD) // 2]
    server.claims["/cut.pth"] = len(PAYLOAD)
    with pytest.raises(hub.DownloadError, match=f"first announced {len(PAYLOAD)} bytes"):
        hub.download(record(server.url + "/cut.pth", sha256=None, size=None))
    assert cache_files(home) == []


def test_a_checkpoint_of_the_wrong_kind_is_not_installed(server, home):
    """A sound file, but an encoder where the record promises a fine-tuned model."""
    import torch

    from scenecut.models import bassl

    buffer = io.BytesIO()
    state = bassl.build(TINY).state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith("shot_encoder.")}, buffer)
    server.files["/encoder.pth"] = buffer.getvalue()
    with pytest.raises(hub.DownloadError, match=r"BaSSL layout: missing \(42\): crn"):
        hub.download(record(server.url + "/encoder.pth", sha256=None, size=None))
    assert cache_files(home) == []


def _install_broken_modelscope() -> Path:
    broken = hub.installed_path(hub.get("bassl"))
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(HTML)  # what an older version installed from a login page
    return broken


def test_auto_skips_a_broken_installed_model(home, tmp_path, caplog):
    broken = _install_broken_modelscope()
    junk = hub.imported_path("junk")
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\x08" + bytes(7) + b"{}")  # a cut-short safetensors file
    with caplog.at_level(logging.WARNING, logger="scenecut"):
        choice = scorers.choose_model("auto")
    assert choice.name == "fused"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and not any("\n" in w for w in warnings)
    assert warnings[0].startswith("skipping bassl:") and str(broken) in warnings[0]
    assert "weights pull bassl --force" in warnings[0]
    assert warnings[1].startswith("skipping junk:") and "--as junk --overwrite" in warnings[1]

    mine = tmp_path / "mine.pt"
    mine.write_bytes(PAYLOAD)
    hub.import_weights(mine, "mine")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scenecut"):
        choice = scorers.choose_model("auto")
    assert choice.name == "mine"  # the next choice, not the broken first one
    assert any("skipping bassl" in r.getMessage() for r in caplog.records)


def test_pull_replaces_a_broken_installed_file(server, home, caplog):
    rec = record(server.url + "/w.pth", sha256=None, size=None)
    installed = hub.installed_path(rec)
    installed.parent.mkdir(parents=True)
    installed.write_bytes(HTML)
    with caplog.at_level(logging.WARNING, logger="scenecut"):
        assert hub.download(rec).read_bytes() == PAYLOAD
    assert server.ranges == [None]
    assert any("does not load" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------
# Slow and stalled servers (issue 14, item 8)


def _download_in_thread(rec, progress=None, limit: float = 30.0):
    """Run ``hub.download`` with a generous deadline: a hang fails the test, not the suite."""
    outcome: dict = {}

    def run():
        try:
            outcome["path"] = hub.download(rec, progress=progress)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"download still running after {limit} s"
    return outcome


def test_a_stalled_server_fails_in_time_and_the_next_pull_resumes(server, home, monkeypatch):
    monkeypatch.setenv("SCENECUT_DOWNLOAD_TIMEOUT", "0.5")
    server.stall_after = 1000
    rec = record(server.url + "/w.pth")
    outcome = _download_in_thread(rec)
    error = outcome.get("error")
    assert isinstance(error, hub.DownloadError), outcome
    assert "stalled" in str(error) and "resumes" in str(error)
    part = home / "weights" / "w.pth.part"
    assert part.read_bytes() == PAYLOAD[: 1000 * download._ATTEMPTS]  # every byte received is kept
    assert server.ranges == [None, "bytes=1000-", "bytes=2000-"]
    assert cache_files(home) == ["w.pth.part", "w.pth.part.url"]

    server.stall_after = None
    server.ranges.clear()
    assert hub.download(rec).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={1000 * download._ATTEMPTS}-"]


def test_a_trickling_server_counts_as_stalled_and_progress_moves(server, home, monkeypatch):
    """400 bytes/s, under the 1 KiB/s floor: given up after the deadline, not after hours."""
    monkeypatch.setenv("SCENECUT_DOWNLOAD_TIMEOUT", "0.5")
    server.trickle = (20, 0.05)
    calls: list[int] = []
    outcome = _download_in_thread(record(server.url + "/w.pth"), lambda done, _: calls.append(done))
    assert "stalled" in str(outcome.get("error")), outcome
    moved = sorted(set(calls))
    assert len(moved) >= 10 and moved[1] <= 200  # every small read shows, not one per MB
    assert (home / "weights" / "w.pth.part").stat().st_size == max(calls)


def test_a_bad_timeout_setting_is_a_usage_error(server, home, monkeypatch):
    monkeypatch.setenv("SCENECUT_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="SCENECUT_DOWNLOAD_TIMEOUT"):
        hub.download(record(server.url + "/w.pth"))


# --------------------------------------------------------------------------------------------
# Damaged archives (issue 14, item 11)


def _tarball(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _tar_record(server, path: str, **changes) -> hub.WeightRecord:
    return record(
        server.url + path,
        name="bassl-test",
        filename="bassl.tar.gz",
        archive_member="bassl/model-v1.ckpt",
        **{"sha256": None, "size": None, **changes},
    )


def test_a_truncated_archive_is_a_clear_error_and_installs_nothing(server, home):
    blob = _tarball([("bassl/model-v1.ckpt", PAYLOAD), ("bassl/config.json", b"{}")])
    server.files["/cut.tar.gz"] = blob[: len(blob) * 2 // 3]  # the server itself has half
    with pytest.raises(hub.DownloadError, match="damaged or truncated archive") as err:
        hub.download(_tar_record(server, "/cut.tar.gz"))
    assert "pull bassl-test" in str(err.value)
    assert cache_files(home) == []  # no .part, no folder, no .extracting


def test_an_archive_bomb_or_escaping_member_is_refused(server, home):
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bassl/model-v1.ckpt")  # 2 GiB of holes in 200 bytes
        info.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.size": str(1 << 31)}
        tar.addfile(info)
    server.files["/bomb.tar.gz"] = bomb.getvalue()
    with pytest.raises(hub.DownloadError, match="likely archive bomb"):
        hub.download(_tar_record(server, "/bomb.tar.gz"))
    server.files["/escape.tar.gz"] = _tarball([("../model-v1.ckpt", PAYLOAD)])
    with pytest.raises(hub.DownloadError, match="outside its folder"):
        hub.download(_tar_record(server, "/escape.tar.gz"))
    assert cache_files(home) == []
    assert not (home / "model-v1.ckpt").exists()


PULL = """
import sys
from dataclasses import replace
from scenecut.cli import main
from scenecut.models import hub


base = hub.get("bassl-pretrained")
hub.REGISTRY["bassl-pretrained"] = replace(base, urls=(sys.argv[1],), sha256=None, size=None)
sys.argv = ["scenecut", "weights", "pull", "bassl-pretrained"]
main()
"""


def test_pull_of_a_truncated_archive_is_exit_1_not_interrupted(server, home):
    """Through the real command (the registry's bassl record pointed at the loopback server):
    the cut-short gzip stream used to escape as EOFError, which click reports as Ctrl-C."""
    import subprocess
    import sys

    blob = _tarball([("bassl/model-v1.ckpt", PAYLOAD)])
    server.files["/bassl.tar.gz"] = blob[: len(blob) // 2]
    proc = subprocess.run(
        [sys.executable, "-c", PULL, server.url + "/bassl.tar.gz"],
        capture_output=True,
        text=True,
        env={**os.environ, "SCENECUT_HOME": str(home)},
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("downloading bassl-pretrained"), proc.stderr
    assert lines[1].startswith("error:") and "damaged or truncated archive" in lines[1]
    assert "interrupted" not in proc.stderr
    assert cache_files(home) == []
