"""Files the commands write for the user (the report, JUnit XML, Markdown summaries): checked before any
work, written atomically, and a path that cannot be written is one clear line, not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

from advisor.errors import AdviseError


def _existing_parent(path: Path) -> Path:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_output_path(path: Path | None, option: str) -> None:
    """Refuse, before any work, a destination that can never be written as a file."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise AdviseError(f"{option} names a directory; give a file path (e.g. {path / 'out'})", file=path)
    parent = _existing_parent(path)
    if parent.exists() and not parent.is_dir():
        raise AdviseError(f"{option}: {parent} is a file, so {path.name} cannot be created under it", file=path)


def check_output_dir(path: Path, what: str) -> None:
    """Refuse, before any work, a directory that cannot be created or written: a file in the way, or no
    write permission in the nearest existing parent."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AdviseError(f"{what} must be a directory, and this is a file", file=path)
    parent = path if path.exists() else _existing_parent(path)
    if not parent.is_dir():
        raise AdviseError(f"{what}: {parent} is a file, so the directory cannot be created under it", file=path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AdviseError(f"{what}: no permission to write in {parent}", file=path)


def write_output(path: Path, text: str, option: str) -> Path:
    """Write text to path atomically (a reader never sees half a file); errors name the file."""
    path = Path(path)
    check_output_path(path, option)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise AdviseError(f"cannot write {option}: {e.strerror or e}", file=path) from None
    return path
