"""Gather what the report shows from the run store, without any model call."""

from __future__ import annotations

import json

from advisor.assess.assessment import inputs_hash
from advisor.errors import AdviseError
from advisor.methods import estimate_row
from advisor.project import Project
from advisor.report.decision import decide
from advisor.report.plan import plan
from advisor.report.provenance import provenance
from advisor.store import Store
from advisor.versions import versions
from evaluators.gates import NothingToGate, check_project
from evaluators.length import length_notes
from evaluators.ratings import analyse as analyse_ratings
from evaluators.results import stored_results


def _current_assessment(project: Project, store: Store) -> tuple[dict | None, bool]:
    """(assessment, stale): the stored assessment of the project's current inputs; when there is none,
    the newest one, flagged stale (an unchanged project reuses an older run, so "newest" is not "current")."""

    run = store.latest_run("assess", inputs_hash=inputs_hash(project))
    if run and run.get("result"):
        return run["result"], False
    run = store.latest_run("assess")
    return (run["result"], True) if run and run.get("result") else (None, False)


def _worse(ev: dict) -> dict | None:
    """Items that got worse, base -> tuned (the comparison against the first base candidate)."""
    comps = [c for c in ev.get("comparisons") or [] if c["b"].startswith("tuned:") and c["a"].startswith("base:")]
    if not comps:
        comps = [c for c in ev.get("comparisons") or [] if c.get("regressions")]
    if not comps:
        return None
    c = comps[0]
    return {"a": c["a"], "b": c["b"], "items": c.get("regressions") or [], "total": c.get("regressions_total", 0)}


def _canary(ev: dict) -> dict | None:
    block = ev.get("canary") or {}
    metric = (block.get("metrics") or [None])[0]
    if not metric:
        return None
    out = {r["candidate"]: r["metrics"][metric] for r in block.get("runs") or [] if r["metrics"].get(metric)}
    return out or None


def _honesty(ev: dict) -> dict | None:
    """What keeps the results from flattering (templates/eval_honesty.html.jinja): per candidate its
    constant-output flag, the answers and prompts the limits cut, its confusion matrix; the baselines."""
    runs = []
    for r in ev.get("runs") or []:
        flags = [f for f in [((r.get("constant_output") or {}).get("text"))] if f]
        runs.append({"candidate": r["candidate"], "flags": flags, "notes": length_notes(r.get("length"), r.get("strategy")),
                     "confusion": r.get("confusion")})
    baselines = [{"candidate": b["candidate"], "what": b.get("what", "")} for b in ev.get("baselines") or []]
    sizing = ev.get("max_new_tokens") or {}
    if not baselines and not any(x["flags"] or x["notes"] or x["confusion"] for x in runs):
        return None
    return {"runs": runs, "baselines": baselines, "max_new_tokens": sizing}


def _gate(project: Project, store: Store, ev: dict) -> dict | None:
    """The gates as ``advise gate`` checks them (the newest tuned candidate), or None when there is
    nothing to gate; a gate that cannot be checked shows as an error."""
    if not project.eval.gates or not ev:
        return None
    try:
        return check_project(project, store, summary=ev)
    except NothingToGate:
        return None
    except AdviseError as e:
        return {"status": "error", "gates": [{"gate": "gates", "status": "fail", "message": e.render()}]}


def collect(project: Project, store: Store, *, pipeline: dict | None = None) -> dict:

    assessment, stale = _current_assessment(project, store)
    pipeline = dict(pipeline or {})
    if stale:
        pipeline["notes"] = [*pipeline.get("notes", []),
                             "This assessment was made for earlier inputs: project.yaml, the data, docs or rubrics "
                             "changed since. Run advise assess to bring it up to date."]
    ev = None
    try:
        ev = stored_results(project, store)
    except Exception:  # noqa: BLE001 - a report still renders without eval results
        ev = None
    eval_note = None
    if not ev:
        newest = store.latest_run("eval_summary")
        if newest and newest.get("result"):
            n = newest["result"].get("items")
            eval_note = (f"No eval results for the current eval set and base model. The newest stored eval "
                         f"({newest['id']}, {n} items) is of other items (a --max-items run, or older data) or "
                         "another base model: run advise eval.")
    train_note = None
    last = store.latest_run("train", status=None)
    if last and last.get("status") != "done":
        err = f": {last['error']}" if last.get("error") else ""
        train_note = (f"The latest training run, {last['id']}, is {last.get('status')}{err}. "
                      f"advise train {project.root} --resume {last['id']} continues it from its last checkpoint.")
    train = None
    run = store.latest_run("train")
    if run and run.get("result"):
        train = dict(run["result"])
        train["loss_history"] = [{"step": r["step"], "loss": r.get("loss")} for r in store.train_log(run["id"])]
        method = train.get("method")
        train["estimate_method"] = estimate_row(method)
    eval_block = None
    if ev:
        # the trivial baselines are rows of the results table, clearly named baseline:majority/random
        eval_block = {"runs": (ev.get("runs") or []) + (ev.get("baselines") or []),
                      "comparisons": ev.get("comparisons") or [], "worse": _worse(ev), "canary": _canary(ev),
                      "honesty": _honesty(ev), "benchmarks": ev.get("benchmarks") or None,
                      **{k: ev.get(k) for k in ("multiplicity", "clusters", "slices", "samples")}}
    trained_on: dict = {}
    repro = {
        "project.yaml": project.project_file.read_text(encoding="utf-8") if project.project_file.is_file() else "",
        "data": json.dumps({k: (assessment or {}).get("data", {}).get(k, {}) and {
            "path": assessment["data"][k]["path"], "examples": assessment["data"][k]["examples"]}
            for k in ("train", "eval")}, indent=1),
        "base model": json.dumps({"id": project.base_model, "revision": (train or {}).get("base_model_revision")}),
        "versions": json.dumps(versions(), indent=1),
    }
    if train:
        repro["training config"] = json.dumps(train.get("config"), indent=1, default=str)
        repro["training run"] = json.dumps({k: train.get(k) for k in ("run_id", "method", "artifact", "run_dir")},
                                           indent=1)
        tr = store.get_run(train["run_id"]) or {}
        trained_on = tr.get("config", {}).get("data") or {}
        if trained_on:
            repro["data hashes"] = json.dumps(tr["config"]["data"], indent=1, default=str)
        if tr.get("command"):
            repro["training command"] = tr["command"]
    if ev:
        repro["eval settings"] = json.dumps(ev.get("settings"), indent=1, default=str)
        repro["eval items"] = json.dumps(ev.get("data"), indent=1, default=str)
    commands = [r["command"] for r in store.list_runs(limit=200) if r.get("command")]
    if commands:
        repro["commands"] = "\n".join(dict.fromkeys(reversed(commands)))
    gate = _gate(project, store, ev)
    try:
        ratings = analyse_ratings(project, store)
    except AdviseError as e:  # a report still renders; the problem is shown where the ratings would be
        ratings = {"error": e.render()}
    probe_run = store.latest_run("probe")
    decision = decide(project, store, ev, gate, train, assessment)
    return {
        "project": {"name": project.name, "task": project.task, "base_model": project.base_model},
        "probe": (probe_run or {}).get("result"),
        "decision": decision,
        "plan": plan(project, store, ev, decision, assessment),
        "provenance": provenance(project, assessment, ev, train, decision, (eval_block or {}).get("canary"),
                                 trained_on),
        "assessment": assessment,
        "eval": eval_block,
        "train": train,
        "gate": gate,
        "ratings": ratings,
        "repro": repro,
        "pipeline": pipeline,
        "eval_note": eval_note,
        "train_note": train_note,
    }
