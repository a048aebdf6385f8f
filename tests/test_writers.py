"""Writers of a project through the CLI: one at a time (the project lock), blockers refused by
`advise train` unless --ignore-blockers, MLflow tracking with --mlflow, the model card on export."""

from __future__ import annotations

import json

import pytest
import train_fixtures as fx
import yaml
from conftest import lock_holder

train_tiny_model = fx.train_tiny_model
SFT = {"max_steps": 4, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64, "seed": 7}


def test_a_second_writer_gets_the_holders_pid(tmp_path, train_tiny_model):
    project = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, SFT)
    holder = lock_holder(project / ".advise", "advise train")
    try:
        for args in (["eval", project, "--max-items", "2"], ["train", project, "--method", "lora"]):
            r = fx.cli(*args)
            assert r.exit_code == 2, r.output
            assert f"in use by PID {holder.pid} (advise train, since" in r.stderr
    finally:
        holder.kill()
        holder.wait()


def _with_blocker(project):
    """A train file with an exact copy of most eval records: leakage far above the metric's CI."""
    ev = (project / "data" / "eval.jsonl").read_text().splitlines()
    with open(project / "data" / "train.jsonl", "a", encoding="utf-8") as fh:
        fh.write("\n".join(ev[:80]) + "\n")


def test_train_refuses_blockers_unless_told_and_records_it(tmp_path, train_tiny_model):
    project = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, SFT)
    _with_blocker(project)
    r = fx.cli("train", project, "--method", "lora")
    assert r.exit_code == 1, r.output
    (line,) = r.stderr.strip().splitlines()  # one line, before any work
    assert "blocker(s):" in line and "--ignore-blockers" in line and "eval records" in line
    assert not (project / ".advise" / "runs").exists()  # nothing trained
    r = fx.cli("train", project, "--method", "lora", "--ignore-blockers", "--json")
    assert r.exit_code == 0, r.output
    run_id = json.loads(r.stdout)["run_id"]
    request = json.loads((project / ".advise" / "runs" / run_id / "request.json").read_text())
    assert request["ignored_blockers"] and "eval records" in request["ignored_blockers"][0]


def test_train_with_mlflow_and_export_with_a_model_card(tmp_path, train_tiny_model):
    pytest.importorskip("mlflow")
    from huggingface_hub import ModelCard
    from mlflow.tracking import MlflowClient

    project = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, SFT)
    cfg = yaml.safe_load((project / "project.yaml").read_text())
    cfg["tracking"] = {"mlflow": "sqlite:///mlflow.db"}  # relative to the project
    (project / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = fx.cli("train", project, "--method", "lora", "--json")
    assert r.exit_code == 0, r.output
    run_id = json.loads(r.stdout)["run_id"]
    assert "logged to MLflow as run" in r.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("advise/ticket-routing-tiny")
    (mr,) = client.search_runs([exp.experiment_id])
    assert mr.data.tags["advise.run_id"] == run_id and "train/loss" in mr.data.metrics
    out = tmp_path / "exported"
    r = fx.cli("export", run_id, out, "--project", project)
    assert r.exit_code == 0, r.output
    card = ModelCard.load(out / "README.md")
    assert "advise-lora" in card.data.tags and run_id in card.text and "| max_steps | 4 |" in card.text
    assert "No stored eval of this model" in card.text  # said, not invented
