"""A hostile OpenAI-compatible endpoint on 127.0.0.1 for the hardening tests (a threaded http.server).

The behaviour is chosen by the first path segment: ``http://127.0.0.1:PORT/<mode>/v1`` is the endpoint,
``/<mode>/v1/chat/completions`` the route. Every behaviour is bounded in time (``MAX_HOLD`` seconds) and
size, and ``stop()`` releases whatever is still held, so a failing test cannot hang the suite.

modes: ``ok`` (answers "card_arrival"), ``redirect-302``/``redirect-307`` (to ``redirect_to``, another origin),
``redirect-same`` (307 to this server's ``ok`` route), ``echo`` (401 whose body echoes the request's
Authorization header, as some proxies do), ``trickle`` (a 200 reply, one byte every 0.2 s), ``silent``
(accepts, reads, never answers), ``huge`` (a 9 MiB reply), ``deep`` (JSON nested 100,000 levels).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_HOLD = 20.0  # seconds any one request may be held open by trickle/silent


def completion(text: str) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}]}).encode()


class HostileEndpoint:
    def __init__(self):
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization)
        self.bodies: list[bytes] = []
        self.redirect_to: str | None = None
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, mode: str, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/{mode}/v1"

    def stop(self) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def _handler(self):
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                self.do_POST()

            def do_POST(self):  # noqa: N802
                n = min(int(self.headers.get("Content-Length", 0) or 0), 1 << 20)
                body = self.rfile.read(n) if n else b""
                auth = self.headers.get("Authorization")
                with state.lock:
                    state.requests.append((self.path, auth))
                    state.bodies.append(body)
                mode = self.path.strip("/").split("/")[0]
                try:
                    self._mode(mode, auth)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client gave up: what the bounds are for

            def _mode(self, mode: str, auth: str | None):
                if mode == "ok":
                    self._send(200, completion("card_arrival"))
                elif mode.startswith("redirect-3"):
                    self._send(int(mode.split("-")[1]), b"{}",
                               {"Location": state.redirect_to or "http://localhost:9/v1/chat/completions"})
                elif mode == "redirect-same":
                    self._send(307, b"{}", {"Location": "/ok/v1/chat/completions"})
                elif mode == "echo":
                    msg = f"invalid credentials: {auth}"
                    self._send(401, json.dumps({"error": {"message": msg}}).encode())
                elif mode == "trickle":
                    body = completion("card_arrival " * 50)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    t0 = time.monotonic()
                    for i in range(len(body)):
                        if state.stopped.is_set() or time.monotonic() - t0 > MAX_HOLD:
                            return
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(0.2)
                elif mode == "silent":
                    state.stopped.wait(MAX_HOLD)
                elif mode == "huge":
                    size = 9 * 1024 * 1024
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    block = b" " * 65536
                    for _ in range(size // len(block)):
                        self.wfile.write(block)
                elif mode == "deep":
                    self._send(200, b"[" * 100_000 + b"]" * 100_000)
                else:
                    self._send(404, b'{"error": {"message": "no such route"}}')

        return Handler
