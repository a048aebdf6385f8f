"""`advise probe`: cheap experiments on a slice of the team's own data before the full spend.

Arms, cheapest first: zero-shot and few-shot at several k (score against k), RAG and an oracle context
when there are docs, a closed-book knowledge probe on training questions, then the recommended plugin
trained on nested fractions of train (steps scaling with the fraction), each evaluated on a dev split
carved from train (the held-out eval set is never used to choose). A learning curve over the
fine-tuning arms extrapolates the score at 100%, 2x and 4x the data; the measured verdict says which
method wins at full data and by how much, next to the rule-based one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

from advisor.assess.assessment import assess_and_store
from advisor.data.dataset import load_project_data
from advisor.data.docs import doc_files, load_docs
from advisor.errors import AdviseError
from advisor.hashing import file_hash, stable_hash
from advisor.hf import model_fingerprint
from advisor.methods import NO_TRAINING, estimate_row, plugin_for
from advisor.probe.arms import ArmResult, evaluate_arm, train_arm
from advisor.probe.curve import fit_curve
from advisor.probe.options import ProbeOptions
from advisor.probe.oracle import oracle_lines
from advisor.probe.split import dev_split, nested_fractions
from advisor.probe.verdict import measured_verdict
from advisor.probe.workspace import Workspace
from advisor.project import Project
from advisor.rubric import load_rubric, value
from advisor.store import Store
from advisor.training import run_settings, total_steps
from evaluators.stats import wilson_interval

PROBE_VERSION = 1
Say = Callable[[str], None]


def _inputs(project: Project) -> dict:
    """What the arms' results depend on: project.yaml's settings, the data and docs contents and the
    base model's identity (not the code of advise: an upgrade must not throw finished arms away)."""
    parts: dict = {"project": project.model_dump(mode="json"), "rubric": load_rubric("probe", project.root)}
    for key in ("train", "eval"):
        p = project.data_path(key)
        parts[key] = file_hash(p) if p is not None and p.is_file() else None
    docs = project.data_path("docs")
    if docs is not None and docs.is_dir():
        parts["docs"] = {str(f.relative_to(docs)): file_hash(f) for f in doc_files(docs, project.root)}
    bm = project.base_model_dir()
    parts["base_model"] = model_fingerprint(bm) if bm is not None and bm.is_dir() else project.base_model
    return parts


def _full_run_steps(project: Project, plugin: str, n_train: int) -> int:
    """Optimizer steps of the full training run the probe stands in for: what the plugin runs with
    (advisor.training: its defaults, then project.yaml's train keys), as the estimate counts it."""
    s = run_settings(plugin, project.train.model_dump(exclude_unset=True), n_train)
    return total_steps(s["max_steps"], s["epochs"], default_epochs=s["epochs"] or 1.0, batch_size=s["batch_size"],
                       grad_accum=s["grad_accum"], examples=n_train)


def _plugin(project: Project, rec: dict, options: ProbeOptions, fmt: str) -> str | None:
    if options.method:
        return plugin_for(options.method)
    chosen = str(getattr(project.method, "value", project.method))
    if chosen != "auto" and chosen not in NO_TRAINING:
        return plugin_for(chosen)
    m = rec.get("method")
    if m and m not in NO_TRAINING:
        return plugin_for(m, rec.get("variant"))
    return "dpo" if fmt == "preference" else "lora"


def run_probe(project: Project, options: ProbeOptions | None = None, *, say: Say | None = None) -> dict:
    say = say or (lambda _msg: None)
    t_start = time.perf_counter()
    options = options or ProbeOptions.defaults(project.root)
    table = load_rubric("probe", project.root)
    d = lambda k: value(table, "defaults", k)  # noqa: E731
    if not project.base_model:
        raise AdviseError("base_model is required for a probe (a hub id or a local model directory)",
                          file=project.project_file)
    data = load_project_data(project)
    pool = data.train
    size = min(int(d("dev_max")), max(int(d("dev_min")), round(float(d("dev_share")) * len(pool))))
    if options.max_items:
        size = min(size, options.max_items)
    if size < int(d("dev_min")) and not options.max_items or len(pool) - size < int(d("min_arm_examples")):
        raise AdviseError(f"too few training examples for a probe ({len(pool)}): it needs a dev split of "
                          f"{int(d('dev_min'))} and at least {int(d('min_arm_examples'))} to train on",
                          file=project.data_path("train"))
    split = dev_split(pool, size=size, seed=options.seed)
    assessment, _ = assess_and_store(project, use_embeddings=False, command="advise probe")
    rec = assessment["recommendation"]
    key = stable_hash({"v": PROBE_VERSION, "inputs": _inputs(project), "options": options.key()})
    ws = Workspace(project, key)
    state = ws.load_state()
    arms_state: dict = state.setdefault("arms", {})
    source = project.data_path("train")
    docs_dir = project.data_path("docs")
    has_docs = bool(docs_dir and docs_dir.is_dir() and doc_files(docs_dir, project.root))
    plugin = _plugin(project, rec, options, data.format) if options.fine_tune else None
    budget_s = options.budget_minutes * 60 if options.budget_minutes else None
    skipped: list[str] = []
    limits: list[str] = []

    def run_arm(name: str, fn: Callable[[], ArmResult]) -> dict | None:
        if name in arms_state:
            say(f"probe: {name}: done earlier ({_fmt(arms_state[name])})")
            return arms_state[name]
        if budget_s is not None and time.perf_counter() - t_start > budget_s:
            skipped.append(name)
            return None
        say(f"probe: {name} ...")
        arm = fn().to_dict()
        arms_state[name] = arm
        ws.save_state(state)
        say(f"probe: {name}: {_fmt(arm)}")
        return arm

    # -- prompting arms ------------------------------------------------------------------------------
    base_dir = ws.arm_project("prompt", train=split.train, dev=split.dev, source=source, docs=has_docs)
    for k in options.shots:
        if k == 0:
            run_arm("zero-shot", lambda: evaluate_arm("zero-shot", "prompting", base_dir, "base:zero-shot",
                                                      seed=options.seed, shots=0))
        else:
            arm_dir = ws.arm_project(f"shots-{k}", train=split.train, dev=split.dev, source=source,
                                     eval_overrides={"few_shot_k": k})
            run_arm(f"few-shot k={k}", lambda arm_dir=arm_dir, k=k: evaluate_arm(
                f"few-shot k={k}", "prompting", arm_dir, "base:few-shot", seed=options.seed, shots=k))
    # -- RAG and its oracle ----------------------------------------------------------------------------
    oracle_found = None
    if has_docs:
        run_arm("rag", lambda: evaluate_arm("rag", "rag", base_dir, "base:rag", seed=options.seed))
        lines, oracle_found = oracle_lines(split.dev, ws._source_lines(source), load_docs(docs_dir, project.root))
        oracle_src = ws.root / "oracle-dev.jsonl"
        if not oracle_src.is_file():
            ws.root.mkdir(parents=True, exist_ok=True)
            oracle_src.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        # the oracle file holds the dev records in order: map each record to its line there
        renumbered = [replace(r, line=i + 1) for i, r in enumerate(split.dev)]
        oracle_dir = ws.arm_project("oracle", train=split.train, dev=renumbered, source=source,
                                    dev_source=oracle_src)
        run_arm("oracle context", lambda: evaluate_arm(
            "oracle context", "oracle", oracle_dir, "base:zero-shot", seed=options.seed,
            note=f"the passage holding the answer found for {oracle_found} of {len(split.dev)} items"))
    # -- knowledge probe: the training questions, closed book ------------------------------------------
    knowledge = None
    if options.knowledge:
        n_k = min(int(d("knowledge_items")), len(split.train))
        k_dir = ws.arm_project("knowledge", train=split.train[n_k:] or split.train, dev=split.train[:n_k],
                               source=source)
        k_arm = run_arm("knowledge (closed book)", lambda: evaluate_arm(
            "knowledge (closed book)", "knowledge", k_dir, "base:zero-shot", seed=options.seed))
        if k_arm is not None:
            scores = [s for s in k_arm["per_item"].values() if s is not None]
            thr = float(d("knowledge_known_threshold"))
            known = sum(1 for s in scores if s >= thr)
            knowledge = {"items": len(scores), "known": known,
                         "known_share": round(known / len(scores), 4) if scores else None,
                         "ci": wilson_interval(known, len(scores)) if scores else None,
                         "reading": _knowledge_reading(known, len(scores))}
    # -- fine-tuning arms on nested fractions ----------------------------------------------------------
    ft_arms: list[dict] = []
    full_steps = _full_run_steps(project, plugin, len(pool)) if plugin else 0
    probe_steps = 0
    if plugin:
        subsets = nested_fractions(split.train, options.fractions, seed=options.seed,
                                   min_examples=int(d("min_arm_examples")))
        for frac, subset in subsets:
            steps = max(1, math.ceil(full_steps * len(subset) / len(pool)))
            name = f"{plugin} on {len(subset)} examples"
            arm_dir = ws.arm_project(f"ft-{len(subset)}", train=subset, dev=split.dev, source=source,
                                     train_overrides={"max_steps": steps, "epochs": None})
            arm = run_arm(name, lambda arm_dir=arm_dir, steps=steps, subset=subset, frac=frac, name=name: train_arm(
                name, arm_dir, plugin=plugin, steps=steps, seed=options.seed, fraction=round(frac, 4),
                train_examples=len(subset)))
            if arm is not None:
                ft_arms.append(arm)
                probe_steps += arm.get("steps") or steps
    arms = [a for a in arms_state.values()]
    # -- the curve, the verdict ------------------------------------------------------------------------
    curve = None
    if ft_arms:
        dev_keys = sorted(set.intersection(*(set(a["per_item"]) for a in ft_arms)))
        comparators = [a for a in arms if a["kind"] in ("prompting", "rag") and a.get("value") is not None]
        best_prompt = max((a for a in comparators if a["kind"] == "prompting"), key=lambda a: a["value"], default=None)
        rag = next((a for a in comparators if a["kind"] == "rag"), None)
        against = {a["name"]: [a["per_item"].get(k) if a["per_item"].get(k) is not None else float("nan")
                               for k in dev_keys] for a in (best_prompt, rag) if a is not None}
        higher = all(a.get("higher_is_better", True) for a in ft_arms)
        curve = fit_curve([a["train_examples"] for a in ft_arms],
                          [[a["per_item"].get(k) if a["per_item"].get(k) is not None else float("nan")
                            for k in dev_keys] for a in ft_arms],
                          len(pool), upper=1.0 if higher else float("inf"),
                          multiples=[float(x) for x in d("extrapolate_to")],
                          resamples=int(d("bootstrap_resamples")), seed=options.seed,
                          min_points=int(d("min_fractions_for_trend")), against=against).to_dict()
        if not higher:
            limits.append("the primary metric falls as it improves: the learning curve is fitted as is")
    verdict = measured_verdict(arms, curve, plugin, rec)
    if curve and curve.get("status") == "fitted":
        limits.append("the fine-tuning arms train fewer steps as well as fewer examples: a full run can land above "
                      "the extrapolated interval (BENCHMARKS.md, probe: a real full run landed far above it), so "
                      "read the extrapolation as a lower bound")
    share = round(probe_steps / full_steps, 4) if full_steps else None
    if share is not None and share > float(d("max_compute_share")):
        limits.append(f"the fine-tuning arms used {share:.0%} of the full run's steps (target "
                      f"{float(d('max_compute_share')):.0%}): with {len(pool)} training examples the smallest "
                      f"useful arm ({int(d('min_arm_examples'))} examples) is already a large share")
    if skipped:
        limits.append(f"the budget ({options.budget_minutes:g} min) ran out before: {', '.join(skipped)}")
    if oracle_found is not None and oracle_found < len(split.dev):
        limits.append(f"the oracle context was found for {oracle_found} of {len(split.dev)} dev items only")
    rag_arm = arms_state.get("rag")
    oracle_arm = arms_state.get("oracle context")
    rag_reading = _rag_reading(rag_arm, oracle_arm, arms_state.get("zero-shot"))
    result = {
        "key": key,
        "dev": split.describe(),
        "metric": next((a["metric"] for a in arms if a.get("metric")), None),
        "plugin": plugin,
        "arms": [_public(a, rec, assessment, plugin, len(pool)) for a in arms],
        "shots": [{"k": a["shots"], "value": a["value"], "ci": a["ci"]} for a in arms
                  if a["kind"] == "prompting" and a.get("shots") is not None],
        "curve": curve,
        "knowledge": knowledge,
        "rag": rag_reading,
        "compute": {"probe_train_steps": probe_steps, "full_run_steps": full_steps, "share": share},
        "verdict": verdict,
        "rule_verdict": {"method": rec.get("method"), "confidence": rec.get("confidence")},
        "skipped": skipped,
        "limits": limits,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    with Store.for_project(project) as store:
        rid = store.start_run("probe", name=project.name, inputs_hash=key, config=options.key(),
                              command="advise probe")
        store.finish_run(rid, "done", result)
    result["run_id"] = rid
    return result


def _fmt(arm: dict) -> str:
    if arm.get("value") is None:
        return "no score"
    ci = arm.get("ci")
    return f"{arm['metric']} {arm['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + \
        f" in {arm['seconds']:.1f} s"


def _knowledge_reading(known: int, n: int) -> str:
    if not n:
        return "no training question could be scored"
    share = known / n
    if share >= 0.5:
        return (f"the base model already answers {known} of {n} training questions closed-book: the task leans on "
                "facts it knows, so fine-tuning mostly teaches form")
    return (f"the base model answers {known} of {n} training questions closed-book: most answers are new to it; "
            "fine-tuning learns new facts slowly and raises hallucination (Gekhman et al. 2024), retrieval "
            "supplies them")


def _rag_reading(rag: dict | None, oracle: dict | None, zero: dict | None) -> dict | None:
    if not rag or not oracle or rag.get("value") is None or oracle.get("value") is None:
        return None
    gap = oracle["value"] - rag["value"]
    lift = oracle["value"] - (zero or {}).get("value", 0.0) if zero and zero.get("value") is not None else None
    if gap > 0.1:
        text = f"the retriever misses: the oracle context scores {gap:+.3f} above retrieval"
    elif lift is not None and lift < 0.05:
        text = "the model cannot read it: even the passage holding the answer does not raise the score"
    else:
        text = "retrieval finds what the model needs: the oracle context adds little over it"
    return {"rag": rag["value"], "oracle": oracle["value"], "zero_shot": (zero or {}).get("value"), "reading": text}


def _public(arm: dict, rec: dict, assessment: dict, plugin: str | None, n_full: int) -> dict:
    out = {k: v for k, v in arm.items() if k != "per_item"}
    out["cost_usd"] = 0.0  # measured on this machine, where the probe ran
    if arm["kind"] == "fine-tuning":
        rows = {e["method"]: e for e in (assessment.get("estimate") or {}).get("methods", [])}
        row = rows.get(estimate_row(plugin or ""), {})
        out["full_run_cost_usd"] = row.get("cost_usd")
        out["full_run_wall_hours"] = row.get("wall_hours")
    return out
