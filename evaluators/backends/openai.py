"""An OpenAI-compatible chat-completions endpoint as an eval backend (vLLM, TGI, hosted providers).

* ``concurrency`` requests in flight at most (a thread pool; stdlib ``urllib``, no extra dependency);
* a ``timeout`` per request; retries with exponential backoff (and ``Retry-After`` when the server
  sends one) on 429, 5xx and connection errors; other 4xx fail at once;
* a failure is recorded on its item (``Generation.error``), never turned into an empty answer;
* the API key is read from the environment variable named by ``api_key_env`` at request time and is
  never stored (``describe()`` names the variable, not its value);
* after ``unreachable_after`` items failed to connect at all (or timed out) while none succeeded, the
  endpoint is declared unreachable: the remaining items fail at once with that error instead of each
  waiting through its retries;
* hostile or broken servers are bounded: ``timeout`` is a deadline for the WHOLE request (connect,
  headers, every read: a watchdog shuts the socket at the deadline, so a server trickling a byte a
  second cannot hold an item), replies larger than :data:`MAX_REPLY_BYTES` and JSON nested too deeply
  are errors, and a redirect is followed only to the same origin (scheme, host, port): credentials
  are never sent to another host;
* the key (and a URL's userinfo) is registered with :mod:`advisor.redact`, so an error body that
  echoes it is stored and printed as ``***``.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from advisor import redact
from advisor.errors import AdviseError
from evaluators.backends.base import Backend, Generation, GenerationSettings

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# A chat completion of a few thousand tokens is tens of KiB; 8 MiB leaves room for long replies with
# logprobs while a runaway or hostile server cannot fill memory (64 items in flight x 8 MiB at most).
MAX_REPLY_BYTES = 8 * 1024 * 1024
MAX_ERROR_BODY = 64 * 1024  # of an error reply only its first words are shown
MAX_REDIRECTS = 5
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the default port filled in: what "same origin" compares."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def _show_origin(url: str) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}"


def chat_url(url: str) -> str:
    """The chat-completions URL of an endpoint given as a base URL, a ``/v1`` URL or the full URL."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AdviseError(f"endpoint {redact.redact(url)!r} is not an http(s) URL, e.g. http://localhost:8000/v1")
    if "@" in parts.netloc:  # user:password@ is sent as Basic auth by _post, never kept in the URL
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
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


class _Watchdog:
    """Shuts the request's socket down at its deadline: a blocked read returns at once."""

    def __init__(self, seconds: float):
        self.sock: socket.socket | None = None
        self.fired = False
        self.deadline = time.monotonic() + seconds
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def _fire(self) -> None:
        self.fired = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _watched(base: type, watch: _Watchdog):
    class Watched(base):  # type: ignore[misc, valid-type]
        def connect(self):
            super().connect()
            watch.sock = self.sock
            if watch.fired:
                watch._fire()

    return Watched


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watchdog):
        super().__init__()
        self.watch = watch

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self.watch), req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watchdog):
        super().__init__()
        self.watch = watch

    def https_open(self, req):
        kw = {"context": self._context}
        if getattr(self, "_check_hostname", None) is not None:  # Python 3.11
            kw["check_hostname"] = self._check_hostname
        return self.do_open(_watched(http.client.HTTPSConnection, self.watch), req, **kw)


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the request's own origin; 307/308 keep the POST and its body."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        newurl = urljoin(req.full_url, newurl)
        if origin(newurl) != origin(req.full_url):
            raise EndpointError(f"the endpoint redirected (HTTP {code}) to another origin, {_show_origin(newurl)}; "
                                "credentials are never sent across origins: give the final URL as --endpoint",
                                False)
        if code in (307, 308):
            return urllib.request.Request(newurl, data=req.data, headers=dict(req.header_items()),
                                          method=req.get_method())
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _read(resp, limit: int, what: str) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = resp.read(min(65536, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            if what == "reply":
                raise EndpointError(f"the reply is larger than {limit // (1024 * 1024)} MiB; refused", False)
            return b"".join(chunks)[:limit]


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
        self.basic_auth = None
        user_pw = urlsplit(url.strip()).netloc.rpartition("@")[0]
        if user_pw:  # credentials in the URL: sent as Basic auth, redacted everywhere
            user, _, pw = user_pw.partition(":")
            redact.register(user_pw)
            redact.register(unquote(pw))
            import base64

            self.basic_auth = "Basic " + base64.b64encode(f"{unquote(user)}:{unquote(pw)}".encode()).decode()
            redact.register(self.basic_auth.split()[1])
        if api_key_env and not ENV_NAME.fullmatch(api_key_env):
            redact.register(api_key_env)
            raise AdviseError("--api-key-env takes the NAME of an environment variable that holds the key, and the "
                              "value given is not a variable name (a key itself?); it is not shown or stored")
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
        if self.basic_auth:
            headers["Authorization"] = self.basic_auth
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                redact.register(key)
                headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with self._lock:
            self.calls["requests"] += 1
        watch = _Watchdog(self.timeout)
        opener = urllib.request.build_opener(_SameOrigin(), _HTTP(watch), _HTTPS(watch))
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                raw = _read(resp, MAX_REPLY_BYTES, "reply")
            if watch.fired:
                raise TimeoutError("timed out")
        except urllib.error.HTTPError as e:
            detail = ""
            try:
                detail = redact.redact(_read(e, MAX_ERROR_BODY, "error").decode("utf-8", "replace"))[:200]
            except Exception:  # noqa: BLE001
                pass
            if watch.fired:
                raise EndpointError(f"timed out after {self.timeout:g} s", True, connection=True) from None
            retry_after = None
            ra = e.headers.get("Retry-After") if e.headers else None
            if ra:
                try:
                    retry_after = float(ra)
                except ValueError:
                    retry_after = None
            msg = f"HTTP {e.code}" + (f": {' '.join(detail.split())}" if detail.strip() else "")
            raise EndpointError(msg, e.code in RETRY_STATUS or e.code >= 500, retry_after=retry_after) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            timed_out = watch.fired or isinstance(reason, TimeoutError) or "timed out" in str(reason)
            msg = f"timed out after {self.timeout:g} s" if timed_out else f"cannot connect: {reason}"
            raise EndpointError(redact.redact(msg), True, connection=True) from None
        finally:
            watch.cancel()
        try:
            return json.loads(raw)
        except RecursionError:
            raise EndpointError("the reply is JSON nested too deeply to read; refused", False) from None
        except ValueError:
            raise EndpointError(f"the reply is not JSON: {redact.redact(repr(raw[:120]))}", False) from None

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
            return Generation(None, error=redact.redact(f"unexpected reply shape: {json.dumps(data)[:160]}"),
                              seconds=seconds)
        if text is None:
            return Generation(None, error=f"no content (finish_reason={choice.get('finish_reason')})", seconds=seconds)
        with self._lock:
            self.successes += 1
        usage = data.get("usage") or {}
        extra = {"finish_reason": choice.get("finish_reason")} if choice.get("finish_reason") else {}
        if choice.get("finish_reason") == "length":  # stopped by max_tokens: the answer may be cut
            extra["hit_limit"] = True
        return Generation(str(text).strip(), n_tokens=usage.get("completion_tokens"), seconds=seconds, extra=extra)

    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            out = list(pool.map(lambda m: self._one(m, settings), prompts))
        self.calls["generate"] += 1
        self.calls["items"] += len(prompts)
        return out
