"""A loopback OpenAI-compatible chat-completions server for tests: ``serve(answer)`` runs one on a free
port of 127.0.0.1 and yields its base URL (``http://127.0.0.1:PORT/v1``). ``answer(body)`` gets the
request's JSON body and returns the reply text, or ``(text, finish_reason)``.

(tests/test_eval_http.py keeps its own richer server: status codes, retries, delays, auth headers.)"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def serve(answer: Callable[[dict], str | tuple[str, str]]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            reply = answer(body)
            text, finish = reply if isinstance(reply, tuple) else (reply, "stop")
            out = json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model"),
                              "choices": [{"index": 0, "finish_reason": finish,
                                           "message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
