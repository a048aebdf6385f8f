"""``advise assess``: the data, the goal and the constraints in, a recommendation out.

Project -> profiles of the eval and train files (one streaming pass each) -> goal signals ->
estimates -> decision. The result is a plain dict that follows the project contract.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from advisor import __version__
from advisor.assess.decide import Facts, decide, leak_severity
from advisor.assess.estimate import estimate
from advisor.assess.leakage import KINDS, LeakageIndex
from advisor.assess.lookalike import report_lookalike_labels
from advisor.assess.outputs import task_expectation
from advisor.assess.profile import FileProfile, profile_file
from advisor.assess.signals import docs_dir_has_files, goal_signals
from advisor.assess.tokens import context_window, make_counter
from advisor.data.docs import doc_files
from advisor.data.findings import Findings
from advisor.errors import AdviseError
from advisor.files import is_regular_file, require_regular_file
from advisor.hashing import file_hash, stable_hash
from advisor.methods import METHODS
from advisor.project import Project
from advisor.rubric import load_rubric, value
from advisor.store import Store, StoreError
from advisor.versions import versions

DEFAULT_EPOCHS = 3


def _display(project: Project, path: Path) -> str:
    return str(path)


def _epochs(project: Project, n: int) -> float:
    t = project.train
    if t.epochs:
        return float(t.epochs)
    if t.max_steps and n:
        return t.max_steps * t.batch_size / n
    return float(DEFAULT_EPOCHS)


def assess(project: Project, *, use_embeddings: bool = True) -> dict:
    t0 = time.perf_counter()
    checks = load_rubric("data_checks", project.root)
    rubric = load_rubric("decision", project.root)
    findings = Findings()
    model_dir = project.base_model_dir()  # resolved against the project directory, not the working directory
    if model_dir is not None and not (model_dir / "config.json").is_file():
        what = "does not exist" if not model_dir.is_dir() else "has no config.json (an unfinished build or copy?)"
        findings.add("base_model_missing", _display(project, project.project_file), project.key_line("base_model"),
                     f"{model_dir} {what}: tokens estimated from characters, model size from the name if it "
                     "states one")
        model_dir = None  # not built yet: estimates fall back to the name
    counter = make_counter(project.base_model, model_dir, value(checks, "tokens", "chars_per_token"),
                           value(checks, "tokens", "per_message_overhead"))
    ctx = context_window(model_dir)
    declared = project.data.format

    train_path = project.data_path("train")
    eval_path = project.data_path("eval")
    require_regular_file(train_path, "training data file", " (data.train in project.yaml)")
    if eval_path is not None:
        require_regular_file(eval_path, "eval data file", " (data.eval in project.yaml)")

    common = dict(declared=declared, counter=counter, rubric=checks, findings=findings, context=ctx,
                  max_length=project.train.max_length, expected_form=task_expectation(project.task, checks))
    leakage = None
    eval_prof: FileProfile | None = None
    if eval_path is not None:
        leakage = LeakageIndex(n=value(checks, "leakage", "ngram"),
                               template_share=value(checks, "leakage", "template_ngram_share"),
                               min_share=value(checks, "leakage", "ngram_min_share"),
                               group_fields=tuple(value(checks, "leakage", "group_fields")))
        eval_prof = profile_file(eval_path, role="eval", leakage=leakage, display=_display(project, eval_path),
                                 **common)
    train_prof = profile_file(train_path, role="train", leakage=leakage, display=_display(project, train_path),
                              **common)
    if train_prof.stats.examples == 0:
        first = next((f for f in findings.to_list() if f["severity"] == "error"), None)
        where = first["examples"][0] if first and first["examples"] else {"file": str(train_path), "line": None}
        why = f": {first['message']}" if first else ""
        raise AdviseError(f"no valid training example{why}", file=where["file"], line=where["line"])

    leak = {"exact": 0, "normalised": 0, "output": 0, "ngram": 0, "template": 0, "eval_items_leaked": 0,
            "distinct_texts_leaked": 0, "templates_ignored": 0}
    if leakage is not None:
        _leakage_block(leakage, leak, findings, _display(project, eval_path), eval_prof.stats.examples)
        if eval_prof.label_set is not None and train_prof.label_set is not None:
            for lab in sorted(eval_prof.label_set - train_prof.label_set):
                findings.add("eval_label_unseen", _display(project, eval_path), None, f"'{lab}'")
    report_lookalike_labels([(_display(project, path), path, (prof.summary["outputs"].get("labels") or {}).get("counts"))
                             for prof, path in ((train_prof, train_path), (eval_prof, eval_path)) if prof is not None],
                            findings, declared)

    signals = goal_signals(project, train_prof, rubric, use_embeddings=use_embeddings, findings=findings)

    tokens = train_prof.summary["tokens"]
    n_train = train_prof.stats.examples
    epochs = _epochs(project, n_train)
    c = project.constraints
    est = _estimate(project, model_dir, tokens.get("total", 0), epochs, signals, n_train)
    by_method = {e["method"]: e for e in est.get("methods", [])} if isinstance(est, dict) else {}

    facts = Facts(
        train_examples=n_train,
        train_invalid=train_prof.stats.invalid,
        train_format=train_prof.stats.format,
        eval_examples=eval_prof.stats.examples if eval_prof else None,
        leaked_eval=leak["eval_items_leaked"],
        leak_detail=(f"exact {leak['exact']}, normalised {leak['normalised']}, same output {leak['output']}, "
                     f"{leak.get('ngram_size', 13)}-gram {leak['ngram']}"),
        leak=leak if leakage else None,
        mixed_formats=len(train_prof.stats.formats) > 1,
        duplicate_share=train_prof.summary["duplicates"]["share"],
        knowledge_score=signals["knowledge_score"],
        label_like=bool(train_prof.summary["outputs"].get("label_like")),
        has_docs=docs_dir_has_files(project.data_path("docs"), project.root),
        facts_change=c.facts_change,
        needs_citations=c.needs_citations,
        requirements_change=c.requirements_change,
        hardware=c.hardware,
        budget_usd=c.budget_usd,
        on_prem=bool(c.data_must_stay_on_prem),
        method_override=project.method,
        estimates=by_method,
        signal_disagreement=signals.get("disagreement", 0.0),
        output_form=train_prof.summary["outputs"].get("forms"),
    )
    rec = decide(facts, rubric)
    if leakage is not None:
        leak.update(leak_severity(leak["eval_items_leaked"], facts.eval_examples or 0, rubric))
    if isinstance(est, dict):
        est["recommended"] = rec["method"]

    def file_block(p: FileProfile | None) -> dict | None:
        if p is None:
            return None
        return {"path": p.stats.path, **p.summary}

    return {
        "advise_version": __version__,
        "project": {"name": project.name, "task": project.task, "base_model": project.base_model,
                    "method": project.method, "constraints": c.model_dump()},
        "recommendation": rec,
        "data": {"train": file_block(train_prof), "eval": file_block(eval_prof), "leakage": leak if leakage else None,
                 "docs": signals.get("docs")},
        "signals": {k: v for k, v in signals.items() if k != "docs"},
        "estimate": est,
        "findings": findings.to_list(),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _leakage_block(leakage: LeakageIndex, leak: dict, findings: Findings, ev_display: str, n_eval: int) -> None:
    """Count leaked eval records (every copy) by kind into ``leak``, with a finding per record."""
    leakage.finish()
    n = leakage.n
    for code, hits in leakage.hits.items():
        for ev_line, tr_line in sorted(hits.items()):
            detail = f"train line {tr_line}"
            if ev_line in leakage.ngram_share:
                side, share = leakage.ngram_share[ev_line]
                what = "content" if code == "leakage_ngram" else "shared template phrasing; the content that varies differs"
                detail += f" ({share:.0%} of the {side}'s {n}-grams; {what})"
            findings.add(code, ev_display, ev_line, detail)
        leak[code.removeprefix("leakage_")] = len(hits)
    leaked = leakage.leaked_eval_lines()
    leak["eval_items_leaked"] = len(leaked)
    leak["distinct_texts_leaked"] = leakage.distinct_texts(leaked)
    leak["train_records_involved"] = len({tr for k in KINDS for tr in leakage.hits[k].values()})
    leak["share"] = round(len(leaked) / n_eval, 4) if n_eval else 0.0
    leak["templates_ignored"] = leakage.templates
    leak["boilerplate_ngrams"] = leakage.boilerplate
    leak["template_example"] = leakage.common_template() if leak["template"] else None
    leak["ngram_any"] = leakage.ngram_any
    leak["ngram_min_share"] = leakage.min_share
    leak["ngram_size"] = n
    shared = leakage.group_shared
    if shared:
        fields = Counter(f for f, _, _ in shared.values())
        field = fields.most_common(1)[0][0]
        leak["groups"] = {"field": field, "eval_records": len(shared),
                          "groups": len({(f, v) for f, v, _ in shared.values()}),
                          "leaked_in_shared_groups": len(leaked & set(shared))}
        for ev_line, (f, v, tr) in sorted(shared.items()):
            findings.add("eval_group_in_train", ev_display, ev_line, f"{f} {v!r} also at train line {tr}")
    else:
        leak["groups"] = None


def inputs_hash(project: Project) -> str:
    """Everything an assessment depends on: project.yaml, data and docs contents, rubrics, version."""

    code = Path(__file__).parent
    parts: dict = {"version": __version__, "project": project.model_dump(mode="json"), "root": str(Path(project.root).resolve()),
                   # the code itself (a development install changes without a version bump)
                   "code": [(str(f.relative_to(code)), f.stat().st_size, f.stat().st_mtime_ns)
                            for f in sorted(code.rglob("*.py"))]}
    for key in ("train", "eval"):
        p = project.data_path(key)
        parts[key] = file_hash(p) if p is not None and is_regular_file(p) else None
    docs = project.data_path("docs")
    if docs is not None and docs.is_dir():
        parts["docs"] = {str(f.relative_to(docs)): file_hash(f) for f in doc_files(docs, project.root)}
    for name in ("decision", "data_checks"):
        parts[f"rubric:{name}"] = stable_hash(load_rubric(name, project.root))
    bm = project.base_model_dir()
    if bm is not None and (bm / "config.json").is_file():
        parts["base_model_config"] = file_hash(bm / "config.json")
    return stable_hash(parts)


def assess_and_store(project: Project, *, use_embeddings: bool = True, command: str | None = None) -> tuple[dict, str | None]:
    """Assess, and record the result in the project's run store (reused when inputs are unchanged).

    Returns (assessment, run id). A store that cannot be written (read-only project) is not an
    error for assess: the assessment is still returned, with run id None.
    """

    h = inputs_hash(project)
    name = "embeddings" if use_embeddings else "plain"
    try:
        opened = Store.for_project(project)
    except StoreError:
        raise  # not a store (a file in the way, another program's database): the user must see it
    except (AdviseError, OSError):
        return assess(project, use_embeddings=use_embeddings), None
    with opened as store:
        cached = store.latest_run("assess", inputs_hash=h, name=name)
        if cached and cached.get("result"):
            return cached["result"], cached["id"]
        run_id = store.start_run("assess", name=name, inputs_hash=h, command=command, versions=versions())
        try:
            result = assess(project, use_embeddings=use_embeddings)
        except BaseException as e:
            store.finish_run(run_id, "failed", error=str(e)[:500])
            raise
        store.finish_run(run_id, "done", result=result)
        return result, run_id


def stored_assessment_id(project: Project, *, use_embeddings: bool = True) -> str | None:
    """The run id of the stored assessment of the project's current inputs, or None; creates nothing."""
    with Store.for_project(project, read_only=True) as store:
        if store is None:
            return None
        run = store.latest_run("assess", inputs_hash=inputs_hash(project),
                               name="embeddings" if use_embeddings else "plain")
        return run["id"] if run else None


def _estimate(project: Project, model_dir: Path | None, tokens_per_epoch: int, epochs: float, signals: dict,
              n_train: int = 0) -> dict:

    c = project.constraints
    docs_chars = (signals.get("docs") or {}).get("characters", 0)
    try:
        return estimate(
            methods=[m for m in METHODS],
            # a local base_model reaches the estimate as its project-relative directory (never the cwd's)
            base_model=project.base_model if project.base_model_dir() is None else str(project.base_model_dir()),
            model_dir=model_dir,
            train_tokens_per_epoch=int(tokens_per_epoch),
            epochs=epochs,
            hardware=c.hardware,
            budget_usd=c.budget_usd,
            on_prem=c.data_must_stay_on_prem,
            max_length=project.train.max_length,
            lora_r=project.train.lora_r,
            batch_size=project.train.batch_size,
            docs_tokens=int(docs_chars / 4),
            train=project.train.model_dump(exclude_unset=True),  # each row: what its plugin will run with
            train_examples=n_train,
        )
    except ValueError as e:  # an unknown GPU name in constraints.hardware
        raise AdviseError(f"constraints.hardware: {e}", file=project.project_file,
                          line=project.key_line("constraints", "hardware")) from None


def stored_leakage(project: Project) -> dict | None:
    """The leakage counts of the stored assessment of the project's current inputs (any variant), or
    None when none is stored; reads only."""
    with Store.for_project(project, read_only=True) as store:
        if store is None:
            return None
        h = inputs_hash(project)
        run = store.latest_run("assess", inputs_hash=h, name="embeddings") or store.latest_run(
            "assess", inputs_hash=h, name="plain")
    return ((run or {}).get("result") or {}).get("data", {}).get("leakage") if run else None
