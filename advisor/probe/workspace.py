"""Where the probe works: ``PROJECT/.advise/probe/<key>/``, one small derived project per arm (its own
project.yaml, data files and run store), so every arm runs through the same code as `advise eval` and
`advise train` (their caches, plugins and store), and a state file that makes the probe resumable: an
arm whose result is recorded is never recomputed, an interrupted training run is resumed.

The key covers everything the arms depend on (the project's inputs hash and the probe's options), so a
change of data or options starts a fresh workspace and never mixes results.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

from advisor.data.docs import doc_files
from advisor.data.records import Record
from advisor.project import Project

STATE_FILE = "state.json"


class Workspace:
    def __init__(self, project: Project, key: str):
        self.project = project
        self.key = key
        self.root = project.store_dir / "probe" / key
        self._lines: dict[Path, list[str]] = {}

    # -- state -------------------------------------------------------------------------------------
    def load_state(self) -> dict:
        try:
            return json.loads((self.root / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"arms": {}}

    def save_state(self, state: dict) -> None:
        """Atomically: a kill -9 leaves the old state or the new one, never half a file."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.root / STATE_FILE)

    # -- derived projects ----------------------------------------------------------------------------
    def _source_lines(self, path: Path) -> list[str]:
        if path not in self._lines:
            self._lines[path] = path.read_text(encoding="utf-8").splitlines()
        return self._lines[path]

    def _write_records(self, path: Path, records: Sequence[Record], source: Path) -> None:
        """The records' own lines of the source file (their format and extra keys kept as they were)."""
        lines = self._source_lines(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(lines[r.line - 1] + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, path)

    def arm_project(self, name: str, *, train: Sequence[Record], dev: Sequence[Record], source: Path,
                    docs: bool = False, train_overrides: dict | None = None,
                    eval_overrides: dict | None = None, dev_source: Path | None = None) -> Path:
        """A derived project directory for one arm (written once; reused when it exists)."""
        d = self.root / name
        if (d / "project.yaml").is_file():
            return d
        d.mkdir(parents=True, exist_ok=True)
        self._write_records(d / "data" / "train.jsonl", train, source)
        self._write_records(d / "data" / "dev.jsonl", dev, dev_source or source)
        p = self.project
        cfg = p.model_dump(mode="json", exclude_none=True)
        cfg["name"] = f"{p.name}-probe-{name}".replace(".", "_")
        base_dir = p.base_model_dir()
        if base_dir is not None:
            cfg["base_model"] = str(base_dir.resolve())
            if base_dir.resolve().is_relative_to(Path(p.root).resolve()):  # moves with the project
                cfg["base_model"] = Path(os.path.relpath(base_dir.resolve(), d.resolve())).as_posix()
        cfg["data"] = {"train": "data/train.jsonl", "eval": "data/dev.jsonl", "format": p.data.format.value
                       if hasattr(p.data.format, "value") else p.data.format}
        src_docs = p.data_path("docs")
        if docs and src_docs is not None and src_docs.is_dir():
            # only the files the project's own docs rule admits (links leaving the project are not copied)
            for f in doc_files(src_docs, p.root):
                dst = d / "docs" / f.relative_to(src_docs)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dst)
            cfg["data"]["docs"] = "docs/"
        ev = dict(cfg.get("eval") or {})
        ev.pop("gates", None)
        ev.pop("max_items", None)
        ev.update(eval_overrides or {})
        cfg["eval"] = ev
        cfg["train"] = {**(cfg.get("train") or {}), **(train_overrides or {})}
        (d / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return d
