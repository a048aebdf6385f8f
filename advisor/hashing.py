"""Content identities: of a JSON-serialisable value and of a file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def stable_hash(obj) -> str:
    """sha256 of a JSON-serialisable object with sorted keys (16 hex digits)."""
    data = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
