"""The run store: one SQLite file per project (``.advise/store.sqlite``).

Every stage writes here (assessments, eval runs and their per-item outputs, training runs and
their loss logs, gate results) so a later stage, a report or a CI gate reads it without
recomputing, and an interrupted stage resumes. The schema is versioned with ``PRAGMA user_version``
and migrated forward on open; a store written by a newer version of advise is refused with a clear
error rather than misread.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from advisor.errors import AdviseError
from advisor.redact import RedactingConnection

SCHEMA_VERSION = 1
STORE_FILE = "store.sqlite"

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


def new_run_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


class Store:
    """The run store (``PROJECT/.advise/store.sqlite``). Use it as a context manager::

        with Store.for_project(project) as store: ...          # writes: creates .advise/ when absent
        with Store.for_project(project, read_only=True) as s:  # reads: s is None when there is no store

    Opening for reading never creates the directory or the file.
    """

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if read_only:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
                self.db.row_factory = sqlite3.Row
                self._check_version()
                return
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, factory=RedactingConnection)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise AdviseError(f"the run store cannot be read ({e}); move it away to start a new one",
                              file=self.path) from None

    @classmethod
    def for_project(cls, project, *, read_only: bool = False) -> Store | _NoStore:
        """The project's store; for reading, a stand-in that is None in a ``with`` when none exists."""
        path = project.store_dir / STORE_FILE
        if read_only and not path.is_file():
            return _NoStore()
        return cls(path, read_only=read_only)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_version(self) -> int:
        v = self.db.execute("PRAGMA user_version").fetchone()[0]
        if v > SCHEMA_VERSION:
            raise AdviseError(f"the run store was written by a newer advise (schema {v}, this one reads "
                              f"{SCHEMA_VERSION}); upgrade advise", file=self.path)
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
            (run_id, kind, name, inputs_hash, json.dumps(config or {}, default=str), command,
             json.dumps(versions or {}), parent, time.time()),
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "done", result: dict | None = None,
                   error: str | None = None) -> None:
        self.db.execute("UPDATE runs SET status=?, result=?, error=?, ended=? WHERE id=?",
                        (status, json.dumps(result, default=str) if result is not None else None, error,
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

    @staticmethod
    def _row(r: sqlite3.Row | None) -> dict | None:
        if r is None:
            return None
        d = dict(r)
        for k in ("config", "result", "versions"):
            if d.get(k):
                d[k] = json.loads(d[k])
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
                out[r["item"]] = {"output": r["output"], "data": json.loads(r["data"]) if r["data"] else {},
                                  "error": r["error"]}
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
        return [{"step": r["step"], **json.loads(r["data"])} for r in rows]

    def add_artifact(self, run_id: str, kind: str, path: Path, sha256: str | None = None) -> None:
        self.db.execute("INSERT INTO artifacts (run_id, kind, path, sha256, created) VALUES (?, ?, ?, ?, ?)",
                        (run_id, kind, str(path), sha256, time.time()))

    def artifacts(self, run_id: str) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM artifacts WHERE run_id=?", (run_id,))]


class _NoStore:
    """What ``Store.for_project(project, read_only=True)`` returns when there is no store: None inside
    ``with``, and nothing is created."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None

    def close(self) -> None:
        return None
