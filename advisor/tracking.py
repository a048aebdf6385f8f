"""Optional experiment tracking in MLflow (``pip install -e ".[mlflow]"``): each training run and each
eval of the run store becomes an MLflow run with its parameters, its metrics with their 95% intervals,
the loss curve (a metric per step), and the report and model card as artifacts.

The run store stays the source of truth: tracking copies what the store holds, after the fact, and an
MLflow run carries the store's run id as its tag ``advise.run_id``, so logging the same run twice is a
no-op. ``tracking: {mlflow: URI}`` in project.yaml or ``--mlflow URI`` turns it on; a local
``sqlite:///path/mlflow.db`` store keeps its artifacts beside the database (``path/mlartifacts``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from advisor.errors import AdviseError
from advisor.store import Store

EXPERIMENT_PREFIX = "advise"
_KEY = re.compile(r"[^\w.\- /]")


def _key(text: str) -> str:
    """An MLflow metric or parameter name: letters, digits, _ - . / and spaces (others become _)."""
    return _KEY.sub("_", text)[:250]


def require_mlflow() -> None:
    """Tracking asked for without mlflow installed: one line, before any compute is spent."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise AdviseError("MLflow tracking needs mlflow: pip install -e \".[mlflow]\" (in the advise checkout)") from None


def _client(uri: str):
    require_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _artifact_root(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


def _experiment(client, uri: str, project_name: str) -> str:
    name = f"{EXPERIMENT_PREFIX}/{project_name}"
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_root(uri))


def _existing(client, experiment_id: str, run_id: str):
    found = client.search_runs([experiment_id], filter_string=f"tags.`advise.run_id` = '{run_id}'", max_results=1)
    return found[0] if found else None


def _flat(prefix: str, obj: Any, out: dict[str, str]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (list, tuple)):
        out[_key(prefix)] = ",".join(map(str, obj))[:500]
    elif obj is not None:
        out[_key(prefix)] = str(obj)[:500]


def _log(client, run_id: str, *, params: dict[str, str], metrics: list[tuple[str, float, int]],
         tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    ps = [Param(k, v) for k, v in params.items()]
    ms = [Metric(_key(k), float(v), now, step) for k, v, step in metrics if v is not None]
    ts = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, max(len(ps), len(ms), len(ts)) or 1, 100):  # MLflow's batch limits
        client.log_batch(run_id, metrics=ms[i:i + 100], params=ps[i:i + 100], tags=ts[i:i + 100])


def log_train(uri: str, project_name: str, run: dict, train_log: list[dict],
              artifacts: list[Path] = ()) -> str:
    """One training run of the store (its row, its loss log) as an MLflow run; returns its MLflow id."""
    client = _client(uri)
    exp = _experiment(client, uri, project_name)
    done = _existing(client, exp, run["id"])
    if done is not None:
        return done.info.run_id
    mr = client.create_run(exp, run_name=run["id"], tags={"advise.run_id": run["id"], "advise.kind": "train",
                                                           "advise.plugin": str(run.get("name"))})
    params: dict[str, str] = {}
    config = run.get("config") or {}
    _flat("", {k: config.get(k) for k in ("plugin", "base_model", "chosen_by")}, params)
    _flat("hp", config.get("config") or config.get("hyperparameters") or {}, params)
    result = run.get("result") or {}
    metrics: list[tuple[str, float, int]] = []
    for row in train_log:
        step = int(row.get("step") or 0)
        for k in ("loss", "learning_rate", "grad_norm"):
            if isinstance(row.get(k), (int, float)):
                metrics.append((f"train/{k}", row[k], step))
    for k in ("final_loss", "seconds", "tokens_per_second", "peak_memory_mb", "steps"):
        v = result.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.append((k, v, 0))
    _log(client, mr.info.run_id, params=params, metrics=metrics, tags={"advise.status": str(run.get("status"))})
    for a in artifacts:
        if Path(a).is_file():
            client.log_artifact(mr.info.run_id, str(a))
    client.set_terminated(mr.info.run_id, "FINISHED" if run.get("status") == "done" else "FAILED")
    return mr.info.run_id


def log_eval(uri: str, project_name: str, result: dict, artifacts: list[Path] = ()) -> str:
    """One `advise eval` result (a stored eval summary) as an MLflow run: per candidate and metric the
    value and its 95% interval, per comparison the delta, its interval and p-value."""
    client = _client(uri)
    exp = _experiment(client, uri, project_name)
    rid = result.get("summary_run_id") or f"eval-{result.get('data', {}).get('hash')}"
    done = _existing(client, exp, rid)
    if done is not None:
        return done.info.run_id
    mr = client.create_run(exp, run_name=rid, tags={"advise.run_id": rid, "advise.kind": "eval"})
    params: dict[str, str] = {}
    _flat("", {"primary_metric": result.get("primary_metric"), "items": result.get("items"),
               "candidates": [r["candidate"] for r in result.get("runs", [])]}, params)
    _flat("settings", result.get("settings") or {}, params)
    metrics: list[tuple[str, float, int]] = []
    for r in result.get("runs", []):
        for m, v in (r.get("metrics") or {}).items():
            if not isinstance(v, dict) or v.get("value") is None:
                continue
            base = f"{r['candidate']}/{m}"
            metrics.append((base, v["value"], 0))
            if v.get("ci"):
                metrics += [(f"{base}/ci_low", v["ci"][0], 0), (f"{base}/ci_high", v["ci"][1], 0)]
    for c in result.get("comparisons", []):
        for m, v in (c.get("metrics") or {}).items():
            if not isinstance(v, dict) or v.get("delta") is None:
                continue
            base = f"{c['b']} vs {c['a']}/{m}"
            metrics.append((f"{base}/delta", v["delta"], 0))
            if v.get("ci"):
                metrics += [(f"{base}/delta_ci_low", v["ci"][0], 0), (f"{base}/delta_ci_high", v["ci"][1], 0)]
            if v.get("p_value") is not None:
                metrics.append((f"{base}/p_value", v["p_value"], 0))
    _log(client, mr.info.run_id, params=params, metrics=metrics, tags={})
    for a in artifacts:
        if Path(a).is_file():
            client.log_artifact(mr.info.run_id, str(a))
    client.set_terminated(mr.info.run_id, "FINISHED")
    return mr.info.run_id


def tracking_uri(project, override: str | None = None) -> str | None:
    """``--mlflow URI`` wins over project.yaml's ``tracking: {mlflow: URI}``; None: tracking is off.
    A relative sqlite path is relative to the project directory."""
    uri = override or getattr(getattr(project, "tracking", None), "mlflow", None)
    if not uri:
        return None
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and project.root is not None:
        rel = uri[len("sqlite:///"):]
        if not Path(rel).is_absolute():
            uri = "sqlite:///" + str((Path(project.root) / rel).resolve())
    return uri


def track_train(project, run_id: str, override: str | None = None) -> str | None:
    """Log a finished training run of the project's store to MLflow, when tracking is on."""
    uri = tracking_uri(project, override)
    if uri is None:
        return None
    with Store.for_project(project, read_only=True) as store:
        run = store.get_run(run_id) if store is not None else None
        log = store.train_log(run_id) if run is not None else []
    if run is None:
        raise AdviseError(f"no training run {run_id} in the run store", file=project.store_dir)
    card = Path((run.get("result") or {}).get("artifact") or "") / "README.md"
    return log_train(uri, project.name, run, log, artifacts=[card] if card.is_file() else [])


def track_eval(project, result: dict, override: str | None = None, report: Path | None = None) -> str | None:
    """Log an `advise eval` result to MLflow (with the report as an artifact), when tracking is on."""
    uri = tracking_uri(project, override)
    if uri is None:
        return None
    return log_eval(uri, project.name, result, artifacts=[report] if report and report.is_file() else [])
