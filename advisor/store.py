"""The run store: one SQLite file per project (``.advise/store.sqlite``).

Every stage writes here (assessments, eval runs and their per-item outputs, training runs and
their loss logs, gate results) so a later stage, a report or a CI gate reads it without
recomputing, and an interrupted stage resumes. The schema is versioned with ``PRAGMA user_version``
and migrated forward on open; a store written by a newer version of advise is refused with a clear
error rather than misread; a file that is not an advise store (another program's SQLite database,
rows whose JSON does not parse) is one clear error naming the file.

Paths are stored relative to the project: a path inside the project directory (an adapter, a run
directory, a data file, a local base model) is written relative to the project root and read back
under the project the store is in now, so a copied or moved project reads its own files, never the
original's. Rows written before this (absolute paths) are read the same way: a path under the
directory the run recorded as its project (``project_dir``), or under another project's
``.advise/``, is read under the current project when the file is there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from advisor.errors import AdviseError
from advisor.project import STORE_DIR
from advisor.redact import RedactingConnection

SCHEMA_VERSION = 1
STORE_FILE = "store.sqlite"
TABLES = ("runs", "eval_items", "train_log", "artifacts")
# the keys (JSON paths) of a stored config/result whose values were written relative to the project
PORTABLE_KEY = "_project_paths"

_MIGRATIONS = {
    1: """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,               -- assess | eval | train | gate | run
        name TEXT,                        -- e.g. the candidate or method
        status TEXT NOT NULL,             -- running | done | failed | interrupted
        inputs_hash TEXT,                 -- hash of everything the result depends on
        config TEXT,                      -- JSON
        result TEXT,                      -- JSON
        error TEXT,
        command TEXT,
        versions TEXT,                    -- JSON: library versions
        parent TEXT,                      -- e.g. the pipeline run that started it
        started REAL NOT NULL,
        ended REAL
    );
    CREATE INDEX runs_kind ON runs(kind, status, started);
    CREATE INDEX runs_inputs ON runs(kind, inputs_hash);
    CREATE TABLE eval_items (
        candidate TEXT NOT NULL,          -- candidate fingerprint (model, adapter, strategy)
        item TEXT NOT NULL,               -- item hash
        settings TEXT NOT NULL,           -- generation settings hash
        output TEXT,
        data TEXT,                        -- JSON: scores, logprobs, retrieved passages, latency
        error TEXT,
        created REAL NOT NULL,
        PRIMARY KEY (candidate, item, settings)
    );
    CREATE TABLE train_log (
        run_id TEXT NOT NULL,
        step INTEGER NOT NULL,
        data TEXT NOT NULL,               -- JSON: loss, lr, tokens, seconds
        PRIMARY KEY (run_id, step)
    );
    CREATE TABLE artifacts (
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,               -- adapter | model | report | checkpoint
        path TEXT NOT NULL,
        sha256 TEXT,
        created REAL NOT NULL
    );
    """,
}


class StoreError(AdviseError):
    """What is at the store's place is not a usable advise store (a file where .advise/ belongs, another
    program's database, a broken row, a newer schema): unlike a store that cannot be written (a
    read-only project), no command goes on without it."""


def new_run_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _roots(root: Path) -> list[str]:
    """The spellings of a project root that a stored absolute path may start with."""
    out = [os.path.abspath(root)]
    try:
        out.append(str(Path(root).resolve()))
    except (OSError, RuntimeError):
        pass
    return list(dict.fromkeys(out))


def _under(path: str, roots: list[str]) -> str | None:
    """``path`` relative to the first of ``roots`` it is inside (posix form, '.' for a root), else None."""
    if not os.path.isabs(path):
        return None
    norm = os.path.normpath(path)
    for r in roots:
        if norm == r:
            return "."
        if norm.startswith(r.rstrip(os.sep) + os.sep):
            return Path(os.path.relpath(norm, r)).as_posix()
    return None


def project_relative(path: str, root: Path) -> str:
    """``path`` relative to the project ``root`` (posix form) when it is an absolute path inside it."""
    return _under(path, _roots(root)) or path if isinstance(path, str) else path


def portable(value, roots: list[str], where: tuple = (), found: list | None = None):
    """``value`` (JSON-like) with every string that is an absolute path inside the project made relative
    to its root; the JSON paths of the strings changed are appended to ``found``."""
    if isinstance(value, str):
        rel = _under(value, roots)
        if rel is not None and found is not None:
            found.append(list(where))
            return rel
        return value
    if isinstance(value, dict):
        return {k: portable(v, roots, (*where, k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, roots, (*where, i), found) for i, v in enumerate(value)]
    return value


def relocate(path: str, root: Path, old_root: str | None = None) -> str:
    """An absolute path of an older row, read under the project at ``root``: a path under the project
    the row recorded (``old_root``), or under another project's ``.advise/``, becomes the same path under
    ``root`` when that exists there; otherwise it is returned as it is (the reader decides)."""
    if not isinstance(path, str) or not os.path.isabs(path) or _under(path, _roots(root)) is not None:
        return path
    rel = _under(path, [os.path.normpath(old_root)]) if old_root and os.path.isabs(old_root) else None
    if rel is None:
        parts = Path(path).parts
        if STORE_DIR in parts:
            i = len(parts) - 1 - parts[::-1].index(STORE_DIR)
            rel = Path(*parts[i:]).as_posix()
    if rel is None:
        return path
    here = Path(root).resolve() / rel
    return str(here) if here.exists() else path


def _restore(value, root: Path, old_root: str | None):
    """Strings of an older row (no PORTABLE_KEY): absolute paths of the old project read under this one."""
    if isinstance(value, str):
        return relocate(value, root, old_root)
    if isinstance(value, dict):
        return {k: _restore(v, root, old_root) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, root, old_root) for v in value]
    return value


def _set(obj, where: list, fn) -> None:
    for k in where[:-1]:
        obj = obj[k]
    obj[where[-1]] = fn(obj[where[-1]])


class Store:
    """The run store (``PROJECT/.advise/store.sqlite``). Use it as a context manager::

        with Store.for_project(project) as store: ...          # writes: creates .advise/ when absent
        with Store.for_project(project, read_only=True) as s:  # reads: s is None when there is no store

    Opening for reading never creates the directory or the file.
    """

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        # the project whose store this is (paths inside it are stored relative to it)
        self.root = self.path.parent.parent if self.path.parent.name == STORE_DIR else None
        self._roots = _roots(self.root) if self.root is not None else []
        parent = self.path.parent
        if parent.exists() and not parent.is_dir():
            raise StoreError(f"is a file, expected the project's {parent.name} directory (move it away)",
                              file=parent)
        if self.path.exists() and not self.path.is_file():
            raise StoreError("is not a file, expected the project's run store (move it away)", file=self.path)
        try:
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AdviseError(f"cannot create the run store's directory: {e.strerror or e}", file=parent) from None
        try:
            if read_only:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
                self.db.row_factory = sqlite3.Row
                if self._check_version() == 0:  # an empty file: nothing stored yet
                    self.db.close()
                    self.db = sqlite3.connect(":memory:", isolation_level=None)
                    self.db.row_factory = sqlite3.Row
                    self._migrate()
                return
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, factory=RedactingConnection)
            self.db.row_factory = sqlite3.Row
            self._check_version()  # before any write: a foreign database is left as it is
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:  # an OperationalError: e.g. a read-only project; else not a store
            kind = AdviseError if isinstance(e, sqlite3.OperationalError) else StoreError
            raise kind(f"the run store cannot be read ({e}); move it away to start a new one",
                       file=self.path) from None

    @classmethod
    def for_project(cls, project, *, read_only: bool = False) -> Store | _NoStore:
        """The project's store; for reading, a stand-in that is None in a ``with`` when none exists."""
        path = project.store_dir / STORE_FILE
        if read_only and not path.is_file():
            if path.parent.exists() and not path.parent.is_dir():
                raise StoreError(f"is a file, expected the project's {STORE_DIR} directory (move it away)",
                                  file=path.parent)
            if path.exists() or path.is_symlink():
                raise StoreError("is not a file, expected the project's run store (move it away)", file=path)
            return _NoStore()
        return cls(path, read_only=read_only)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_version(self) -> int:
        """The schema version; a database that is not an advise store (tables of another program, or
        advise's tables missing) is refused before anything is written to it."""
        v = self.db.execute("PRAGMA user_version").fetchone()[0]
        if v > SCHEMA_VERSION:
            raise StoreError(f"the run store was written by a newer advise (schema {v}, this one reads "
                              f"{SCHEMA_VERSION}); upgrade advise", file=self.path)
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [t for t in TABLES if t not in tables]
        if (v == 0 and tables) or (v > 0 and missing):
            what = f"its tables are {', '.join(sorted(tables)[:5])}" if v == 0 else f"table {missing[0]} is missing"
            raise StoreError(f"is not an advise run store ({what}); move it away and advise starts a new one",
                              file=self.path)
        return v

    def _migrate(self) -> None:
        v = self._check_version()
        for target in range(v + 1, SCHEMA_VERSION + 1):
            self.db.executescript("BEGIN;" + _MIGRATIONS[target] + f"PRAGMA user_version={target}; COMMIT;")

    def close(self) -> None:
        self.db.close()

    # -- runs ------------------------------------------------------------------------------------
    def start_run(self, kind: str, *, name: str | None = None, config: dict | None = None,
                  inputs_hash: str | None = None, command: str | None = None, versions: dict | None = None,
                  parent: str | None = None, run_id: str | None = None) -> str:
        run_id = run_id or new_run_id(kind)
        self.db.execute(
            "INSERT INTO runs (id, kind, name, status, inputs_hash, config, command, versions, parent, started)"
            " VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
            (run_id, kind, name, inputs_hash, self._dumps(config or {}), command,
             json.dumps(versions or {}), parent, time.time()),
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "done", result: dict | None = None,
                   error: str | None = None) -> None:
        self.db.execute("UPDATE runs SET status=?, result=?, error=?, ended=? WHERE id=?",
                        (status, self._dumps(result) if result is not None else None, error,
                         time.time(), run_id))

    def interrupt_running(self, why: str) -> list[str]:
        """Mark every run still "running" as interrupted (their process is gone: a stale project lock);
        returns their ids."""
        ids = [r["id"] for r in self.db.execute("SELECT id FROM runs WHERE status='running'")]
        for rid in ids:
            self.db.execute("UPDATE runs SET status='interrupted', error=?, ended=? WHERE id=?", (why, time.time(), rid))
        return ids

    def reopen_run(self, run_id: str, command: str | None = None) -> None:
        """A resumed run goes back to 'running' under the same id (its result and end are cleared)."""
        self.db.execute("UPDATE runs SET status='running', ended=NULL, error=NULL, result=NULL, "
                        "command=COALESCE(?, command) WHERE id=?", (command, run_id))

    # -- paths relative to the project -------------------------------------------------------------
    def _dumps(self, value) -> str:
        """JSON of a config or result, with paths inside the project stored relative to it."""
        if self._roots and isinstance(value, dict):
            found: list = []
            value = json.loads(json.dumps(value, default=str))
            value = portable(value, self._roots, (), found)
            if found:
                value[PORTABLE_KEY] = found
        return json.dumps(value, default=str)

    def resolve(self, stored: str, old_root: str | None = None) -> str:
        """A path as stored, as a path now: relative ones under this project, older absolute ones of
        the project moved here (:func:`relocate`)."""
        if self.root is None or not isinstance(stored, str):
            return stored
        if not os.path.isabs(stored):
            return str(Path(self.root).resolve() / stored)
        return relocate(stored, self.root, old_root)

    def _loads(self, text: str, what: str):
        try:
            return json.loads(text)
        except ValueError as e:
            raise StoreError(f"the run store holds a broken row ({what}: {e}); move the store away to start "
                              "a new one", file=self.path) from None

    def _paths_back(self, value, old_root: str | None):
        if not isinstance(value, dict) or self.root is None:
            return value
        marked = value.pop(PORTABLE_KEY, None)
        if marked is None:  # an older row: absolute paths
            return _restore(value, self.root, old_root)
        for where in marked if isinstance(marked, list) else []:
            try:
                _set(value, where, self.resolve)
            except (KeyError, IndexError, TypeError):
                continue
        return value

    def _row(self, r: sqlite3.Row | None) -> dict | None:
        if r is None:
            return None
        d = dict(r)
        for k in ("config", "result", "versions"):
            if d.get(k):
                d[k] = self._loads(d[k], f"{k} of run {d.get('id')}")
        old_root = (d.get("config") or {}).get("project_dir") if isinstance(d.get("config"), dict) else None
        for k in ("config", "result"):
            d[k] = self._paths_back(d.get(k), old_root)
        return d

    def get_run(self, run_id: str) -> dict | None:
        return self._row(self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone())

    def latest_run(self, kind: str, *, inputs_hash: str | None = None, name: str | None = None,
                   status: str | None = "done") -> dict | None:
        runs = self.find_runs(kind, inputs_hash=inputs_hash, name=name, status=status, limit=1)
        return runs[0] if runs else None

    def find_runs(self, kind: str, *, inputs_hash: str | None = None, name: str | None = None,
                  status: str | None = "done", limit: int = 100) -> list[dict]:
        """Runs of a kind, newest first, optionally with a given inputs hash, name and status."""
        q, args = "SELECT * FROM runs WHERE kind=?", [kind]
        if inputs_hash is not None:
            q += " AND inputs_hash=?"
            args.append(inputs_hash)
        if name is not None:
            q += " AND name=?"
            args.append(name)
        if status is not None:
            q += " AND status=?"
            args.append(status)
        q += " ORDER BY started DESC, rowid DESC LIMIT ?"
        args.append(limit)
        return [self._row(r) for r in self.db.execute(q, args)]

    def list_runs(self, kind: str | None = None, limit: int = 100) -> list[dict]:
        if kind:
            rows = self.db.execute("SELECT * FROM runs WHERE kind=? ORDER BY started DESC LIMIT ?", (kind, limit))
        else:
            rows = self.db.execute("SELECT * FROM runs ORDER BY started DESC LIMIT ?", (limit,))
        return [self._row(r) for r in rows]

    # -- eval item cache ---------------------------------------------------------------------------
    def get_items(self, candidate: str, settings: str, items: Iterable[str]) -> dict[str, dict]:
        items = list(items)
        out: dict[str, dict] = {}
        for i in range(0, len(items), 500):
            chunk = items[i : i + 500]
            q = (f"SELECT item, output, data, error FROM eval_items WHERE candidate=? AND settings=? "
                 f"AND item IN ({','.join('?' * len(chunk))})")
            for r in self.db.execute(q, [candidate, settings, *chunk]):
                data = self._loads(r["data"], f"eval item {r['item']}") if r["data"] else {}
                out[r["item"]] = {"output": r["output"], "data": data, "error": r["error"]}
        return out

    def put_items(self, candidate: str, settings: str, rows: Iterable[tuple[str, str | None, dict, str | None]]) -> None:
        """rows: (item hash, output, data, error). Written in one transaction: a crash keeps whole batches."""
        now = time.time()
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO eval_items (candidate, item, settings, output, data, error, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(candidate, item, settings, out, json.dumps(data, default=str), err, now)
                 for item, out, data, err in rows],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # -- training log and artifacts ----------------------------------------------------------------
    def log_train(self, run_id: str, step: int, data: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO train_log (run_id, step, data) VALUES (?, ?, ?)",
                        (run_id, step, json.dumps(data)))

    def train_log(self, run_id: str) -> list[dict]:
        rows = self.db.execute("SELECT step, data FROM train_log WHERE run_id=? ORDER BY step", (run_id,))
        return [{"step": r["step"], **self._loads(r["data"], f"training log of run {run_id}, step {r['step']}")}
                for r in rows]

    def add_artifact(self, run_id: str, kind: str, path: Path, sha256: str | None = None) -> None:
        self.db.execute("INSERT INTO artifacts (run_id, kind, path, sha256, created) VALUES (?, ?, ?, ?, ?)",
                        (run_id, kind, _under(str(path), self._roots) or str(path), sha256, time.time()))

    def artifacts(self, run_id: str) -> list[dict]:
        """The run's artifacts, their paths as they are now (under this project)."""
        rows = [dict(r) for r in self.db.execute("SELECT * FROM artifacts WHERE run_id=?", (run_id,))]
        old_root = None
        if any(os.path.isabs(r["path"]) for r in rows):
            cfg = self.db.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
            if cfg is not None and cfg[0]:
                conf = self._loads(cfg[0], f"config of run {run_id}")
                old_root = conf.get("project_dir") if isinstance(conf, dict) else None
        for r in rows:
            r["path"] = self.resolve(r["path"], old_root)
        return rows


class _NoStore:
    """What ``Store.for_project(project, read_only=True)`` returns when there is no store: None inside
    ``with``, and nothing is created."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None

    def close(self) -> None:
        return None
