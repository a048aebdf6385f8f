"""Shared fixtures: real project directories written to tmp_path, and the shared datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_projects"
SHARED = Path(os.environ.get("ADVISE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def chat(user: str, assistant: str, system: str | None = "Answer with the queue name only.") -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": msgs}


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture
def make_project(tmp_path):
    """make_project(train_records, eval_records=None, docs={"a.md": "..."}, **project_yaml_keys) -> Path"""

    def _make(train_records, eval_records=None, docs=None, name="p", **keys):
        root = tmp_path / name
        root.mkdir()
        cfg = {"name": name, "task": keys.pop("task", "Route each message to a queue."),
               "base_model": keys.pop("base_model", "Qwen/Qwen2.5-0.5B-Instruct"),
               "data": {"train": "data/train.jsonl"}}
        write_jsonl(root / "data" / "train.jsonl", train_records)
        if eval_records is not None:
            write_jsonl(root / "data" / "eval.jsonl", eval_records)
            cfg["data"]["eval"] = "data/eval.jsonl"
        if docs is not None:
            for fname, text in docs.items():
                (root / "docs").mkdir(exist_ok=True)
                (root / "docs" / fname).write_text(text, encoding="utf-8")
            cfg["data"]["docs"] = "docs/"
        cfg.update(keys)
        (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        return root

    return _make


@pytest.fixture
def shared_datasets():
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED}")
    return SHARED


def assess_json(root) -> dict:
    """`advise assess ROOT --json --no-embeddings` through the CLI (exit 0 asserted), parsed."""
    from click.testing import CliRunner

    from advisor.cli.main import main

    r = CliRunner().invoke(main, ["assess", str(root), "--json", "--no-embeddings"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def codes(out: dict) -> dict:
    """The assessment's findings by code."""
    return {f["code"]: f for f in out["findings"]}


def lock_holder(store_dir: Path, command: str):
    """Another process that holds ``store_dir``'s project lock until killed (the caller kills it);
    returned once the lock is held."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, time; from advisor.lock import project_lock\n"
        f"with project_lock(pathlib.Path({str(store_dir)!r}), {command!r}):\n"
        "    print('held', flush=True); time.sleep(300)\n")], stdout=subprocess.PIPE, text=True)
    if child.stdout.readline().strip() != "held":
        child.kill()
        raise RuntimeError("the lock holder did not take the lock")
    return child
