"""Fixtures and helpers of the training tests. A test module binds a fixture to a module name:
``train_tiny_model = train_fixtures.train_tiny_model``.

* ``train_tiny_model`` (session): a very small Llama (hidden 64, 2 layers, vocab 1000, no pretraining)
  built locally by trainers.tiny_model, so a few training steps take a second or two;
* :func:`copy_project` copies a sample project (without its .advise/) to a temporary directory with
  ``base_model`` pointed at the tiny model and a ``train:`` block for a short run;
* :func:`train` plans and executes a run in this process (what ``advise train`` does);
* :func:`cli` runs the ``advise`` command line in this process (click's CliRunner).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_projects"
ADVISE = [sys.executable, "-c", "import sys; from advisor.cli.main import main; sys.exit(main())"]

_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def train_tiny_model(tmp_path_factory) -> Path:
    if "tiny" not in _BUILT:
        from trainers.tiny_model import build_tiny_model

        out = tmp_path_factory.mktemp("train-tiny") / "tiny"
        build_tiny_model(out, pretrain_steps=0, seed=0, hidden_size=64, layers=2, heads=2, vocab_size=1000)
        _BUILT["tiny"] = out
    return _BUILT["tiny"]


def copy_project(sample: str, dst: Path, base_model, train: dict | None = None, max_records: int | None = None,
                 **keys) -> Path:
    shutil.copytree(SAMPLES / sample, dst, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((dst / "project.yaml").read_text(encoding="utf-8"))
    cfg["base_model"] = str(base_model)
    if train is not None:
        cfg["train"] = train
    cfg.update(keys)
    (dst / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    if max_records:
        for name in ("train.jsonl", "eval.jsonl"):
            f = dst / "data" / name
            if f.is_file():
                lines = f.read_text(encoding="utf-8").splitlines()[:max_records]
                f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


def train(project_dir: Path, method: str | None = None, max_steps: int | None = None, **kw) -> dict:
    """What `advise train` does, through the Python API: the pipeline chooses (and stores the
    assessment the report needs), the trainers layer plans and runs."""
    from advisor.pipeline import choose_plugin, store_assessment
    from advisor.project import load_project
    from trainers.runner import execute, plan_new

    rec, method = choose_plugin(load_project(project_dir), method)
    plan = plan_new(project_dir, method=method, max_steps=max_steps, recommendation=rec, **kw)
    store_assessment(plan.project)
    return execute(plan, command="pytest")


def cli(*args: str):
    from click.testing import CliRunner

    from advisor.cli.main import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def advise_subprocess(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*ADVISE, *map(str, args)], capture_output=True, text=True, env=env, cwd=REPO, **kw)


def losses(result: dict) -> list[float]:
    return [v for _, v in result["loss_history"]]


def loss_fell(result: dict) -> bool:
    ls = losses(result)
    k = max(1, len(ls) // 3)
    return sum(ls[-k:]) / k < sum(ls[:k]) / k


def adapter_tensors(artifact: Path) -> dict:
    from safetensors.torch import load_file

    f = Path(artifact) / "adapter_model.safetensors"
    if not f.is_file():
        f = Path(artifact) / "model.safetensors"
    return load_file(str(f))


def snapshot(artifact: Path) -> dict:
    return json.loads((Path(artifact) / "advise_train.json").read_text(encoding="utf-8"))
