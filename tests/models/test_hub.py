"""Weights registry and downloads, against a real HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scenecut.cli import app
from scenecut.models import hub

runner = CliRunner()
PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """Serves ``files``; records each request's Range header. Modes: drop the connection after
    ``drop_after`` bytes for the first ``drops`` requests; ignore Range."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.drop_after = 0
        self.drops = 0
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.ranges.append(self.headers.get("Range"))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                header = self.headers.get("Range")
                if header and not server.ignore_range:
                    start = int(header.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drops > 0:
                    server.drops -= 1
                    self.wfile.write(body[: server.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


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


def record(url: str, **changes) -> hub.WeightRecord:
    base = hub.WeightRecord(
        name="test-weights",
        url=url,
        filename="w.pth",
        kind="encoder",
        architecture="resnet50",
        preprocessing=hub.BASSL_PREPROCESSING,
        licence="test",
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
    assert cache_files(home) == ["w.pth"]
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
    server.drop_after, server.drops = 50_000, hub._ATTEMPTS
    rec = record(server.url + "/w.pth")
    with pytest.raises(hub.DownloadError, match="resumes"):
        hub.download(rec)
    assert cache_files(home) == ["w.pth.part"]  # never the final name
    part_size = (home / "weights" / "w.pth.part").stat().st_size
    assert part_size == 50_000 * hub._ATTEMPTS
    server.ranges.clear()
    assert hub.download(rec).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={part_size}-"]
    assert cache_files(home) == ["w.pth"]


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
    assert cache_files(home) == ["w.pth"]


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
    installed = hub.installed_path(hub.get("modelscope-bassl"))
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"x")
    assert hub.resolve("modelscope-bassl") == installed


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
    res = runner.invoke(app, ["weights", "info", "bassl-40epoch"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["url"].endswith("bassl_40epoch.tar.gz")
    assert data["sha256"] is None and data["installed"] is False
    assert data["preprocessing"]["resize"] == 256
    assert data["path"].startswith(str(home))
    res = runner.invoke(app, ["weights", "info", "nope"])
    assert isinstance(res.exception, hub.WeightsError)


def test_cli_pull_prints_the_path(monkeypatch, tmp_path):
    seen = {}

    def fake_download(record, *, force, progress):
        seen.update(name=record.name, force=force, progress=progress)
        return tmp_path / "x.pth"

    monkeypatch.setattr(hub, "download", fake_download)
    res = runner.invoke(app, ["weights", "pull", "bassl", "--force"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(tmp_path / "x.pth")
    assert seen == {"name": "bassl", "force": True, "progress": None}  # stderr is no terminal
