"""An HTTP server on 127.0.0.1 that misbehaves on request, for the download tests: every
download a test makes goes to it (tests never reach outside the machine)."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from scenecut.models.config import CRNConfig, ModelConfig

# Downloads must load as the checkpoint their record describes: a tiny BaSSL (ModelScope's
# layout, a flat state dict in a .pt file) of about 400 KB.
TINY = ModelConfig(
    encoder="tiny",
    crn=CRNConfig(
        input_dim=16,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=8,
        intermediate_size=256,
    ),
    resize=64,
    image_size=56,
)


def modelscope_file(seed: int = 0) -> bytes:
    """A tiny fine-tuned BaSSL with random weights, as ModelScope's ``pytorch_model.pt``."""
    import torch

    from scenecut.models import bassl

    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(bassl.build(TINY).state_dict(), buffer)
    return buffer.getvalue()


class Server:
    """Serves ``files``; records each request's Range header. Modes: drop the connection after
    ``drop_after`` bytes for the first ``drops`` requests; ignore Range; announce a
    Content-Length other than the body's (``claims``); stall after ``stall_after`` bytes until
    ``release`` is set (or, for the paths in ``stall``, after 1000 bytes); trickle
    ``trickle = (bytes, seconds)`` at a time for at most ``trickle_for`` seconds. ``requests``
    lists every (path, Range header)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.requests: list[tuple[str, str | None]] = []
        self.stall: set[str] = set()
        self.drop_after = 0
        self.drops = 0
        self.ignore_range = False
        self.claims: dict[str, int] = {}
        self.stall_after: int | None = None
        self.trickle: tuple[int, float] | None = None
        self.trickle_for = 4.0
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.ranges.append(self.headers.get("Range"))
                server.requests.append((self.path, self.headers.get("Range")))
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
                length = server.claims.get(self.path, len(data)) - start
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.close_connection = True
                try:
                    if server.drops > 0:
                        server.drops -= 1
                        self.wfile.write(body[: server.drop_after])
                    elif server.stall_after is not None or self.path in server.stall:
                        self.wfile.write(body[: server.stall_after or 1000])
                        self.wfile.flush()
                        server.release.wait(60)
                    elif server.trickle is not None:
                        step, pause = server.trickle
                        end = time.monotonic() + server.trickle_for
                        for at in range(0, len(body), step):
                            if time.monotonic() > end or server.release.is_set():
                                break
                            self.wfile.write(body[at : at + step])
                            self.wfile.flush()
                            time.sleep(pause)
                    else:
                        self.wfile.write(body[:length])
                except OSError:  # the client gave up
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
