"""One writer per project at a time: ``PROJECT/.advise/lock`` holds the pid, host, command and start of
the command writing the project's run store and run directories (eval, train, run, probe). A second
writer gets one clear line, "in use by PID n (advise eval, since ...)", not two runs into one
directory. A lock whose process is gone (killed, SIGKILL, a crash) is stale: it is taken over and
the runs it left "running" in the store are marked interrupted, so they show and resume as such.

The lock is created atomically (``O_CREAT | O_EXCL``), so two commands started together cannot both
take it. A lock from another host is never taken over: only its owner can tell whether it lives.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from advisor.errors import AdviseError
from advisor.store import STORE_FILE, Store

LOCK_NAME = "lock"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) is not alive
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def holder(store_dir: Path) -> dict | None:
    """The live holder of the project's lock, or None (no lock, or a stale one)."""
    info = _read(store_dir / LOCK_NAME)
    if not info:
        return None
    if info.get("host") != socket.gethostname():
        return info
    return info if pid_alive(int(info.get("pid", -1))) else None


@contextlib.contextmanager
def project_lock(store_dir: Path, command: str, *, on_stale=None) -> Iterator[dict]:
    """Hold the project's lock while the block runs. ``on_stale(info)`` runs when a dead holder's lock
    is taken over (the caller marks that holder's runs interrupted)."""
    store_dir = Path(store_dir)
    if store_dir.exists() and not store_dir.is_dir():
        raise AdviseError("is a file, expected the project's .advise directory", file=store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    path = store_dir / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": time.time()}
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = _read(path)
            live = holder(store_dir)
            if live is not None and live.get("pid") != os.getpid():
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(live.get("started", 0)))
                where = "" if live.get("host") == me["host"] else f" on {live.get('host')}"
                raise AdviseError(f"the project is in use by PID {live.get('pid')}{where} ({live.get('command')}, "
                                  f"since {since}); wait for it or stop it", file=path) from None
            if live is not None:  # our own process holds it (a nested call): share it
                yield live
                return
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # stale: its process is gone
            if on_stale is not None and info:
                on_stale(info)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        try:
            yield me
        finally:
            if _read(path).get("pid") == me["pid"]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return
    raise AdviseError("could not take the project's lock (another command keeps taking it)", file=path)


@contextlib.contextmanager
def writing(project, command: str) -> Iterator[dict]:
    """The project's lock for a command that writes its store; a dead holder's runs that were left
    "running" are marked interrupted when its lock is taken over (they then show and resume as such)."""
    def stale(info: dict) -> None:
        if (project.store_dir / STORE_FILE).is_file():
            with Store.for_project(project) as store:
                store.interrupt_running(f"interrupted: its process (PID {info.get('pid')}, {info.get('command')}) "
                                        "ended without finishing")

    with project_lock(project.store_dir, command, on_stale=stale) as held:
        yield held
