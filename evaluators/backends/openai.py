"""An OpenAI-compatible chat-completions endpoint as an eval backend (vLLM, TGI, hosted providers).

* ``concurrency`` requests in flight at most (a thread pool; stdlib ``urllib``, no extra dependency);
* a ``timeout`` per request; retries with exponential backoff (and ``Retry-After`` when the server
  sends one) on 429, 5xx and connection errors; other 4xx fail at once;
* a failure is recorded on its item (``Generation.error``), never turned into an empty answer;
* the API key is read from the environment variable named by ``api_key_env`` at request time and is
  never stored (``describe()`` names the variable, not its value);
* after ``unreachable_after`` items failed to connect at all while none succeeded, the endpoint is
  declared unreachable: the remaining items fail at once with that error instead of each waiting
  through its retries.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from advisor.errors import AdviseError
from evaluators.backends.base import Backend, Generation, GenerationSettings

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def chat_url(url: str) -> str:
    """The chat-completions URL of an endpoint given as a base URL, a ``/v1`` URL or the full URL."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AdviseError(f"endpoint {url!r} is not an http(s) URL, e.g. http://localhost:8000/v1")
    base = url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if parts.path.strip("/") == "":
        return base + "/v1/chat/completions"
    return base + "/chat/completions"


class EndpointError(Exception):
    def __init__(self, message: str, retryable: bool, connection: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retryable, self.connection, self.retry_after = retryable, connection, retry_after


class OpenAIBackend(Backend):
    """Chat completions over HTTP. ``model`` is the name the server knows the model by."""

    kind = "openai"

    def __init__(self, url: str, model: str, *, api_key_env: str | None = None, concurrency: int = 4,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 unreachable_after: int = 3, extra_body: dict | None = None, headers: dict | None = None):
        super().__init__()
        self.url = chat_url(url)
        self.model = model
        self.api_key_env = api_key_env
        if api_key_env and not os.environ.get(api_key_env):
            raise AdviseError(f"the API key variable {api_key_env} is not set in the environment")
        self.concurrency = max(1, int(concurrency))
        self.batch_size = self.concurrency * 8
        self.timeout, self.max_retries = float(timeout), max(0, int(max_retries))
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.unreachable_after = max(1, int(unreachable_after))
        self.extra_body = dict(extra_body or {})
        self.headers = dict(headers or {})
        self._lock = threading.Lock()
        self.successes = 0
        self.connection_failures = 0
        self.unreachable: str | None = None
        self.calls["requests"] = 0
        self.calls["retries"] = 0

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "model": self.model, "api_key_env": self.api_key_env,
                "concurrency": self.concurrency, "timeout": self.timeout, "max_retries": self.max_retries}

    # -- one request -------------------------------------------------------------------------------
    def _body(self, messages: list[dict], settings: GenerationSettings) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": settings.max_new_tokens,
                                "temperature": settings.temperature, "n": 1}
        if settings.sampling:
            body["top_p"] = settings.top_p
            body["seed"] = settings.seed
        body.update(self.extra_body)
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with self._lock:
            self.calls["requests"] += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = ""
            try:
                detail = e.read().decode("utf-8", "replace")[:200]
            except Exception:  # noqa: BLE001
                pass
            retry_after = None
            ra = e.headers.get("Retry-After") if e.headers else None
            if ra:
                try:
                    retry_after = float(ra)
                except ValueError:
                    retry_after = None
            msg = f"HTTP {e.code}" + (f": {' '.join(detail.split())}" if detail.strip() else "")
            raise EndpointError(msg, e.code in RETRY_STATUS or e.code >= 500, retry_after=retry_after) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
            msg = f"timed out after {self.timeout:g} s" if timed_out else f"cannot connect: {reason}"
            raise EndpointError(msg, True, connection=not timed_out) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise EndpointError(f"the reply is not JSON: {raw[:120]!r}", False) from None

    def _one(self, messages: list[dict], settings: GenerationSettings) -> Generation:
        if self.unreachable:
            return Generation(None, error=self.unreachable)
        body = self._body(messages, settings)
        t0 = time.perf_counter()
        attempt = 0
        while True:
            try:
                data = self._post(body)
                break
            except EndpointError as e:
                if self.unreachable:
                    return Generation(None, error=self.unreachable)
                if not e.retryable or attempt >= self.max_retries:
                    tries = f" (after {attempt + 1} attempts)" if attempt else ""
                    if e.connection:
                        with self._lock:
                            self.connection_failures += 1
                            if self.successes == 0 and self.connection_failures >= self.unreachable_after:
                                self.unreachable = f"endpoint unreachable: {self.url}: {e}"
                    return Generation(None, error=f"{e}{tries}", seconds=time.perf_counter() - t0)
                wait = min(self.max_backoff, self.backoff * (2 ** attempt)) * (0.5 + random.random() / 2)
                if e.retry_after is not None:
                    wait = min(self.max_backoff, max(wait, e.retry_after))
                attempt += 1
                with self._lock:
                    self.calls["retries"] += 1
                time.sleep(wait)
        seconds = time.perf_counter() - t0
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return Generation(None, error=f"unexpected reply shape: {json.dumps(data)[:160]}", seconds=seconds)
        if text is None:
            return Generation(None, error=f"no content (finish_reason={choice.get('finish_reason')})", seconds=seconds)
        with self._lock:
            self.successes += 1
        usage = data.get("usage") or {}
        return Generation(str(text).strip(), n_tokens=usage.get("completion_tokens"), seconds=seconds,
                          extra={"finish_reason": choice.get("finish_reason")} if choice.get("finish_reason") else {})

    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            out = list(pool.map(lambda m: self._one(m, settings), prompts))
        self.calls["generate"] += 1
        self.calls["items"] += len(prompts)
        return out
