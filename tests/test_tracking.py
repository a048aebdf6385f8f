"""MLflow tracking against a real local MLflow store (a sqlite: URI), read back through MLflow's own client."""

from __future__ import annotations

import pytest
import train_fixtures as fx

from advisor.project import load_project
from advisor.store import Store
from advisor.tracking import log_eval, log_train

mlflow = pytest.importorskip("mlflow")
train_tiny_model = fx.train_tiny_model
SFT_TRAIN = {"max_steps": 6, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64, "seed": 7}


def test_a_training_run_and_an_eval_become_mlflow_runs_read_back_by_mlflow(tmp_path, train_tiny_model):
    from mlflow.tracking import MlflowClient

    project_dir = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, SFT_TRAIN)
    result = fx.train(project_dir, "lora")
    project = load_project(project_dir)
    with Store.for_project(project, read_only=True) as store:
        run = store.get_run(result["run_id"])
        log = store.train_log(result["run_id"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    card = tmp_path / "README.md"
    card.write_text("model card\n")
    mid = log_train(uri, project.name, run, log, artifacts=[card])
    assert log_train(uri, project.name, run, log) == mid  # the same store run is logged once
    client = MlflowClient(tracking_uri=uri)
    got = client.get_run(mid)
    assert got.data.tags["advise.run_id"] == result["run_id"] and got.info.status == "FINISHED"
    assert got.data.params["plugin"] == "lora" and got.data.params["hp.max_steps"] == "6"
    losses = client.get_metric_history(mid, "train/loss")
    assert [m.step for m in losses] == [r["step"] for r in log if "loss" in r]
    assert got.data.metrics["final_loss"] == pytest.approx(losses[-1].value)
    arts = [a.path for a in client.list_artifacts(mid)]
    assert arts == ["README.md"]
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not in the working directory

    ev = {"summary_run_id": "eval_summary-x", "primary_metric": "accuracy", "items": 40, "settings": {"seed": 0},
          "runs": [{"candidate": "base:zero-shot", "metrics": {"accuracy": {"value": 0.1, "ci": [0.04, 0.23]}}},
                   {"candidate": "tuned:lora", "metrics": {"accuracy": {"value": 0.9, "ci": [0.77, 0.96]}}}],
          "comparisons": [{"a": "base:zero-shot", "b": "tuned:lora",
                           "metrics": {"accuracy": {"delta": 0.8, "ci": [0.65, 0.9], "p_value": 1e-9}}}]}
    eid = log_eval(uri, project.name, ev)
    m = client.get_run(eid).data.metrics
    assert m["tuned_lora/accuracy"] == 0.9 and m["tuned_lora/accuracy/ci_low"] == 0.77
    assert m["tuned_lora vs base_zero-shot/accuracy/p_value"] == pytest.approx(1e-9)
    exp = client.get_experiment_by_name("advise/ticket-routing-tiny")
    assert {r.info.run_id for r in client.search_runs([exp.experiment_id])} == {mid, eid}
