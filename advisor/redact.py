"""Secrets never reach the store, the terminal or a log: redaction of known secrets from any text.

* :func:`register` a secret's value when it is read (the endpoint backend registers the API key it
  reads from the environment, and the password of a URL's userinfo);
* :func:`redact` replaces every registered value, URL userinfo (``https://user:pw@host`` ->
  ``https://***@host``), ``Bearer <token>`` and the well-known API-key shapes of
  ``rubrics/secrets.yaml`` with ``***``;
* :class:`RedactingConnection` is the SQLite connection of the run store: every text it writes is
  redacted first; :class:`RedactingStream` wraps stdout/stderr while a command runs.

The patterns are deliberately narrow (a token must look like one) so that ordinary text about
"bearer tokens" is left as it is.
"""

from __future__ import annotations

import io
import re
import sqlite3
import threading
from functools import cache

from advisor.rubric import load_rubric

MASK = "***"
MIN_SECRET = 6  # shorter values are not registered: replacing them would mangle ordinary text

_lock = threading.Lock()
_secrets: set[str] = set()
_rx: re.Pattern | None = None

# scheme://userinfo@  (RFC 3986 §3.2.1: userinfo is deprecated for credentials but still used)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+@")
# RFC 6750 §2.1 bearer tokens; a token must contain a digit and be 8+ characters long
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}")


@cache
def _key_shapes() -> re.Pattern | None:
    shapes = [s["pattern"] for s in load_rubric("secrets").get("key_shapes", [])]
    return re.compile("|".join(f"(?:{p})" for p in shapes)) if shapes else None


def register(value: str | None) -> None:
    """Remember a secret's value (and its URL-quoted form) so that :func:`redact` removes it."""
    global _rx
    if not value or len(value) < MIN_SECRET:
        return
    from urllib.parse import quote

    with _lock:
        new = {value, quote(value, safe="")} - _secrets
        if not new:
            return
        _secrets.update(new)
        _rx = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    """``text`` without any known secret. Cheap when there is nothing to redact."""
    if not isinstance(text, str) or not text:
        return text
    rx = _rx
    if rx is not None:
        text = rx.sub(MASK, text)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    shapes = _key_shapes()
    if shapes is not None:
        text = shapes.sub(MASK, text)
    return text


def _clean(params):
    if isinstance(params, dict):
        return {k: redact(v) if isinstance(v, str) else v for k, v in params.items()}
    return tuple(redact(v) if isinstance(v, str) else v for v in params)


class RedactingConnection(sqlite3.Connection):
    """A SQLite connection whose parameters are redacted before they are written (the run store's
    ``factory``): a secret in a run's config, result or error never reaches the file."""

    def execute(self, sql, parameters=(), /):
        return super().execute(sql, _clean(parameters))

    def executemany(self, sql, seq, /):
        return super().executemany(sql, (_clean(p) for p in seq))


class RedactingStream(io.TextIOBase):
    """A text stream that redacts what is written to it before passing it on (stdout/stderr while a
    command runs)."""

    def __init__(self, inner):
        self._inner = inner

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("a text stream")  # click probes with b"": this is not a binary stream
        self._inner.write(redact(s))
        return len(s)

    def flush(self):
        self._inner.flush()

    def isatty(self):
        return bool(getattr(self._inner, "isatty", lambda: False)())

    def fileno(self):
        try:
            return self._inner.fileno()
        except AttributeError:
            raise io.UnsupportedOperation("fileno") from None

    @property
    def encoding(self):
        return getattr(self._inner, "encoding", "utf-8")

    @property
    def errors(self):
        return getattr(self._inner, "errors", "strict")

    def writable(self):
        return True
