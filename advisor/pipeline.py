"""``advise run``: assess -> baseline evals -> training -> tuned eval -> comparison -> report.

Each stage reads and writes the run store, and is skipped when its stored result is still valid:
the assessment and the eval items are cached by the hash of their inputs, and a finished training
run with the same inputs (plugin, config, base model, data hashes) is reused; an interrupted one is
resumed from its last checkpoint. When the verdict is prompting or RAG nothing is trained and the
report compares the strategies; when the assessment found blockers the run stops before spending
compute (unless ``ignore_blockers``) and the report says why.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from advisor.assess.assessment import assess, assess_and_store, inputs_hash
from advisor.errors import AdviseError, BlockedError
from advisor.files import check_output_path
from advisor.methods import METHOD_TO_PLUGIN, NO_TRAINING, estimate_row
from advisor.modelcard import render_card
from advisor.project import load_project
from advisor.report.collect import collect
from advisor.report.render import write_report
from advisor.store import Store, StoreError
from evaluators.gates import check_project
from evaluators.results import stored_results
from evaluators.runner import run_eval
from trainers import CONFIG_SNAPSHOT, plugin_names
from trainers.runner import TerminalProgress, execute, plan_new, plan_resume

STAGES = ("assess", "baseline", "train", "tuned", "report")


def choose_plugin(project, method: str | None = None) -> tuple[dict | None, str | None]:
    """(assessment recommendation or None, method) for a training run: --method, else project.yaml's
    method, else the verdict of an assessment of the project's current inputs (nothing is written: the
    training checks come first; ``store_assessment`` keeps it once they passed). The plugin itself is
    picked by ``trainers.runner.resolve_method`` from advisor.methods' one map."""
    if method or project.method != "auto":
        return None, method
    return assess(project, use_embeddings=False)["recommendation"], None


def store_assessment(project) -> list[str]:
    """The report compares the estimate with the actual run: keep the assessment of the data trained on
    (reused when stored already) and return its blockers. An assessment that cannot be made does not stop
    a training run that passed its own checks."""
    docs = project.data_path("docs")
    try:
        assessment, _ = assess_and_store(project, use_embeddings=bool(docs and docs.is_dir()), command="advise train")
    except AdviseError:
        return []
    return list(assessment["recommendation"].get("blockers") or [])


def check_blockers(blockers: list[str], ignore: bool, project) -> None:
    """Blockers hold everywhere, not only in `advise run`: training on data with blockers is refused
    (exit 1, the blockers listed) unless the user says --ignore-blockers (recorded in the run)."""
    if blockers and not ignore:
        raise BlockedError(f"the assessment found {len(blockers)} blocker(s): " + "; ".join(blockers)
                           + " -- fix them, or pass --ignore-blockers to train anyway", file=project.project_file)


def _check_method(method: str | None) -> None:
    """--method: a project method (prompting, rag, lora, full, rlhf) or an installed training plugin."""
    if method is None or method in NO_TRAINING:
        return

    known = [*NO_TRAINING, *METHOD_TO_PLUGIN, *(n for n in plugin_names() if n not in METHOD_TO_PLUGIN)]
    if method not in known:
        raise AdviseError(f"--method {method}: unknown; expected one of {', '.join(known)}")


@dataclass
class PipelineResult:
    status: str  # done | blocked | stopped | planned
    method: str
    stages: dict[str, str] = field(default_factory=dict)  # stage -> ran | skipped (why) | not run
    notes: list[str] = field(default_factory=list)
    report: str | None = None
    plan: dict | None = None
    blockers: list[str] = field(default_factory=list)
    outcome: dict | None = None  # the answer: verdict, each candidate's primary metric, gates, decision, report

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _say(msg: str) -> None:
    print(f"advise: {msg}", file=sys.stderr, flush=True)


def _plan(assessment: dict, method: str, trains: bool, until: str | None) -> dict:
    est = {e["method"]: e for e in (assessment.get("estimate") or {}).get("methods", [])}
    key = estimate_row(method)
    e = est.get(key, {})
    stop = STAGES.index(until) if until else len(STAGES) - 1
    stages = []
    for i, s in enumerate(STAGES):
        if i > stop:
            break
        if s in ("train", "tuned") and not trains:
            continue
        stages.append(s)
    return {"method": method, "stages": stages, "estimate": {k: e.get(k) for k in (
        "train_tokens", "gpu_hours", "wall_hours", "cost_usd", "memory_gb", "fits", "cpu_hours", "fits_note")}}


def run_pipeline(project_dir: Path, *, method: str | None = None, until: str | None = None, dry_run: bool = False,
                 ignore_blockers: bool = False, out: Path | None = None, progress: bool = True) -> PipelineResult:

    if until is not None and until not in STAGES:
        raise AdviseError(f"--until {until}: expected one of {', '.join(STAGES)}")
    project = load_project(project_dir)
    _check_method(method)

    check_output_path(out, "the report (--out)", force=True)  # ownership: checked by the command
    command = "advise " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("advise") else "advise run"
    docs = project.data_path("docs")
    use_emb = bool(docs and docs.is_dir())
    before = _stored_assessment_id(project, use_emb)
    assessment, run_id = assess_and_store(project, use_embeddings=use_emb, command=command)
    rec = assessment["recommendation"]
    chosen = method or rec["method"]
    trains = chosen not in NO_TRAINING
    # the plugin `advise train` would pick: assess's QLoRA variant included
    train_method = method or ("qlora" if chosen == "lora" and rec.get("variant") == "qlora" else chosen)
    result = PipelineResult("done", chosen, {"assess": "skipped (stored assessment still valid)"
                                             if before and before == run_id else "ran"})
    blocked = bool(rec["blockers"]) and not ignore_blockers
    result.plan = _plan(assessment, train_method if trains else chosen, trains and not blocked,
                        "assess" if blocked else until)
    if not trains:
        result.notes.append(
            f"The verdict is {chosen}: no training is worth it for this project ({'; '.join(rec['reasons'][:2])}). "
            "The report compares the prompt strategies instead.")
    if rec["blockers"] and ignore_blockers:
        result.notes.append("Blockers were found and ignored (--ignore-blockers): " + "; ".join(rec["blockers"]))
    if blocked:
        result.status = "blocked"
        result.blockers = list(rec["blockers"])
        result.plan["stages"] = ["assess", "report"]
        result.notes.append("Stopped before spending compute: the assessment found blockers (listed below). "
                            "Fix them, or run again with --ignore-blockers.")
        for s in STAGES[1:-1]:
            result.stages[s] = "not run (blockers)"
    # every training check (plugin, hyperparameters, data, model, hardware) before any compute is spent
    train_plan = None
    if trains and not blocked and (until is None or STAGES.index(until) >= STAGES.index("train")):

        train_plan = plan_new(project.root, method=train_method)
        result.plan["plugin"] = train_plan.plugin.name
    if dry_run:
        result.status = "planned" if not blocked else "blocked"
        return result

    report_path = out or (project.store_dir / "report.html")
    if blocked:
        pass
    elif until == "assess":
        result.status = "stopped"
    else:
        _evaluate(project, result, "baseline", candidates=["base:*"], progress=progress)
        if until != "baseline":
            if trains:
                _train(project, train_plan, result)
                if until != "train":
                    _evaluate(project, result, "tuned", candidates=None, progress=progress)
            else:
                result.stages["train"] = f"skipped (verdict {chosen})"
        result.status = "done" if until in (None, "report") else "stopped"
    path, data = _report(project, report_path, result)
    result.report = str(path)
    result.stages["report"] = "ran"
    result.outcome = outcome(project, data, result.report)
    return result


def outcome(project, data: dict, report: str) -> dict:
    """What the run found, from the report's data: the verdict (method, confidence), each candidate's
    primary metric with its 95% interval, the gate outcome and the decision, and where the report is."""
    rec = (data.get("assessment") or {}).get("recommendation") or {}
    decision = data.get("decision") or {}
    ev = data.get("eval") or {}
    runs = ev.get("runs") or []
    metric = decision.get("metric") or next((m for r in runs for m in r.get("metrics") or {}), None)
    candidates = [{"candidate": r["candidate"], "metric": metric, "items": r.get("items"),
                   "value": ((r.get("metrics") or {}).get(metric) or {}).get("value"),
                   "ci": ((r.get("metrics") or {}).get(metric) or {}).get("ci")} for r in runs] if metric else []
    gate = data.get("gate")
    if gate:
        gates = {"status": gate.get("status"), "gates": [{"gate": g.get("gate"), "status": g.get("status"),
                                                          "message": g.get("message")} for g in gate.get("gates") or []]}
    elif project.eval.gates:
        gates = {"status": "not checked", "gates": [], "why": "no tuned candidate has eval results"}
    else:
        gates = {"status": "no gates", "gates": []}
    return {"verdict": {"method": rec.get("method"), "variant": rec.get("variant"), "confidence": rec.get("confidence")},
            "candidates": candidates, "gates": gates,
            "decision": {k: decision.get(k) for k in ("outcome", "sentence", "candidate", "baseline")} if decision else None,
            "report": report}


def _stored_assessment_id(project, use_embeddings: bool) -> str | None:

    if not (project.store_dir / "store.sqlite").is_file():
        return None
    store = Store.for_project(project)
    try:
        run = store.latest_run("assess", inputs_hash=inputs_hash(project), name="embeddings" if use_embeddings else "plain")
        return run["id"] if run else None
    finally:
        store.close()


def _evaluate(project, result: PipelineResult, stage: str, *, candidates, progress: bool) -> None:

    _say(f"{stage} eval")
    if not project.base_model:
        raise AdviseError("base_model is required to evaluate and train", file=project.project_file)
    ev = run_eval(project, candidates=candidates, progress=progress and sys.stderr.isatty())
    computed = sum(r.get("computed", 0) for r in ev["runs"])
    result.stages[stage] = "ran" if computed else "skipped (all items cached)"


def _train(project, plan, result: PipelineResult) -> None:

    method = plan.plugin.name
    store = Store.for_project(project)
    try:
        # a run recorded by an older advise has the hash with the base model's absolute path
        hashes = [h for h in (plan.request["inputs_hash"], plan.request.get("inputs_hash_absolute")) if h]
        done = next((d for h in hashes if (d := store.latest_run("train", inputs_hash=h))), None)
        unfinished = next((r for r in store.list_runs("train")
                           if r["inputs_hash"] in hashes and r["status"] in ("running", "interrupted", "failed")
                           and (project.store_dir / "runs" / r["id"] / "checkpoints").is_dir()), None)
    finally:
        store.close()
    if done:
        _say(f"training skipped: run {done['id']} already trained {method} on the same data and config")
        result.stages["train"] = f"skipped (run {done['id']} is still valid)"
        return
    if unfinished:
        _say(f"resuming interrupted training run {unfinished['id']}")
        try:
            plan = plan_resume(project.root, unfinished["id"])
        except AdviseError as e:
            _say(f"cannot resume {unfinished['id']} ({e.message}); starting a new run")
    _say(f"training {plan.plugin.name}")
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        execute(plan, progress=TerminalProgress(), command="advise run")
    result.stages["train"] = "ran (resumed)" if plan.resume else "ran"


def _report(project, path: Path, result: PipelineResult | None) -> tuple[Path, dict]:

    store = Store.for_project(project)
    try:
        pipeline = None
        if result is not None:
            pipeline = {"notes": result.notes, "training_note": next((n for n in result.notes if "no training" in n), None)}
        data = collect(project, store, pipeline=pipeline)
    finally:
        store.close()
    return write_report(data, path), data


def report_only(project_dir: Path, out: Path | None = None) -> Path:

    project = load_project(project_dir)

    check_output_path(out, "the report (--out)", force=True)  # ownership: checked by the command
    if project.store_dir.exists() and not project.store_dir.is_dir():
        raise StoreError("is a file, expected the project's .advise directory (move it away)", file=project.store_dir)
    if not (project.store_dir / "store.sqlite").is_file():
        raise AdviseError("no run store yet: run advise run (or assess, eval, train) first", file=project.store_dir)
    return _report(project, out or (project.store_dir / "report.html"), None)[0]


def write_model_card(artifact: Path, out_dir: Path, project_dir: Path | None) -> Path | None:
    """The Hugging Face model card beside an exported model: the training run's snapshot (in the
    artifact), and, from the project's store, its newest eval and gate result (read only)."""
    snap_file = Path(artifact) / CONFIG_SNAPSHOT
    try:
        snapshot = json.loads(snap_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        snapshot = {}
    facts: dict = {"name": Path(artifact).name, "task": "not stated"}
    ev = gates = None
    try:
        project = load_project(project_dir) if project_dir is not None else None
    except AdviseError:
        project = None
    if project is not None:
        facts = {"name": project.name, "task": project.task}
        with Store.for_project(project, read_only=True) as store:
            if store is not None:
                ev = stored_results(project, store)
                if ev is not None:
                    try:
                        gates = check_project(project, store, summary=ev)
                    except AdviseError:
                        gates = None
    path = Path(out_dir) / "README.md"
    path.write_text(render_card(project=facts, snapshot=snapshot, eval_result=ev, gates=gates), encoding="utf-8")
    return path
