"""Paired comparisons between candidates' runs on the items both answered (``delta = b - a``):
McNemar / Newcombe for binary metrics, paired bootstrap otherwise (:mod:`evaluators.stats`), with
wins/losses/ties and the items that got worse; the judge's pairwise verdicts in both orders."""

from __future__ import annotations

from typing import Any

from advisor.hashing import stable_hash
from advisor.store import Store
from evaluators import stats
from evaluators.evaluator import LISTED_MAX, CandidateRun
from evaluators.items import question
from evaluators.metrics import compare_metric, get_metric
from evaluators.task import headline_metric


def compare_runs(a: CandidateRun, b: CandidateRun, metrics: list[str], *, judge=None, store: Store | None = None,
                 regressions_max: int = LISTED_MAX) -> dict[str, Any]:
    """Paired comparison of run b against run a on the items both answered (``delta = b - a``)."""

    common = [i for i in range(len(a.items)) if a.errors[i] is None and b.errors[i] is None]
    out: dict[str, Any] = {"a": a.name, "b": b.name, "items": len(common), "metrics": {}}
    refs = [a.items[i].references for i in common]
    for name in metrics:
        if name == "judge_pairwise":
            continue
        m = get_metric(name)
        if m.corpus_level:
            r = compare_metric(m, [a.outputs[i] for i in common], [b.outputs[i] for i in common], refs,
                               [a.metric_fields(i) for i in common], items_b=[b.metric_fields(i) for i in common])
        else:
            r = stats.compare(m.name, [a.scores[name][i] for i in common], [b.scores[name][i] for i in common],
                              kind=m.kind, higher_is_better=m.higher_is_better)
            r["a_value"], r["b_value"] = r.get("a_mean"), r.get("b_mean")
        out["metrics"][name] = {k: r.get(k) for k in ("delta", "ci", "p_value", "test", "n", "a_value", "b_value",
                                                      "wins", "losses", "ties", "higher_is_better")
                                if k in r or k == "higher_is_better"}
        out["metrics"][name]["higher_is_better"] = m.higher_is_better
    if judge is not None and ("judge_pairwise" in metrics or "judge_score" in metrics):
        out["metrics"]["judge_pairwise"] = _judge_pairwise(a, b, common, judge, store)
    primary = headline_metric(metrics)
    out["primary_metric"] = primary
    worse = []
    if primary is not None:
        pm = out["metrics"][primary]
        out.update(wins=pm.get("wins"), losses=pm.get("losses"), ties=pm.get("ties"))
        hib = get_metric(primary).higher_is_better
        for i in common:
            sa, sb = a.scores[primary][i], b.scores[primary][i]
            if sa is None or sb is None:
                continue
            if (sb < sa) if hib else (sb > sa):
                rec = a.items[i].record
                worse.append({"item": a.items[i].hash, "line": a.items[i].line, "name": a.items[i].name,
                              "input": rec.key[:300],
                              "reference": a.items[i].references[0][:300], "a_output": (a.outputs[i] or "")[:500],
                              "b_output": (b.outputs[i] or "")[:500], "a_score": sa, "b_score": sb})
    out["regressions_total"] = len(worse)
    out["regressions"] = worse[:regressions_max]
    return out


def _judge_pairwise(a: CandidateRun, b: CandidateRun, common: list[int], judge, store: Store | None) -> dict:

    jfp = judge.fingerprint()
    key = stable_hash({"pair": [a.fingerprint, b.fingerprint], "judge": jfp})
    cached = store.get_items(key, a.settings_hash + b.settings_hash, [a.items[i].hash for i in common]) if store else {}
    outcomes: dict[int, int | None] = {}
    todo = []
    for i in common:
        row = cached.get(a.items[i].hash)
        if row and row.get("data", {}).get("outcome") is not None:
            outcomes[i] = row["data"]["outcome"]
        else:
            todo.append(i)
    consistent = []
    for start in range(0, len(todo), 16):
        idx = todo[start : start + 16]
        res = judge.pairwise([question(a.items[i].record) for i in idx], [a.outputs[i] for i in idx],
                             [b.outputs[i] for i in idx], [a.items[i].references[0] for i in idx])
        rows = []
        for i, v in zip(idx, res, strict=True):
            outcomes[i] = v.outcome
            if v.outcome is not None:
                consistent.append(bool(v.consistent))
                rows.append((a.items[i].hash, None, {"outcome": v.outcome, "first": v.first, "second": v.second,
                                                     "consistent": v.consistent}, None))
        if store is not None and rows:
            store.put_items(key, a.settings_hash + b.settings_hash, rows)
    for i in common:
        row = cached.get(a.items[i].hash)
        if row and row.get("data", {}).get("consistent") is not None:
            consistent.append(bool(row["data"]["consistent"]))
    vals = [outcomes.get(i) for i in common]
    got = [v for v in vals if v is not None]
    pb = stats.paired_bootstrap([0.0] * len(got), [float(v) for v in got])
    return {"delta": pb["delta"], "ci": pb["ci"], "p_value": pb["p_value"], "test": "judge_pairwise_both_orders",
            "n": len(got), "wins": sum(1 for v in got if v > 0), "losses": sum(1 for v in got if v < 0),
            "ties": sum(1 for v in got if v == 0), "failed": len(vals) - len(got),
            "consistency": (sum(consistent) / len(consistent)) if consistent else None, "higher_is_better": True}


def comparison_pairs(runs: list[CandidateRun]) -> list[tuple[CandidateRun, CandidateRun]]:
    """The reference run (the first: base zero-shot when run) against every other run, and every
    untuned run against every tuned one."""
    if len(runs) < 2:
        return []
    pairs = [(runs[0], r) for r in runs[1:]]
    untuned = [r for r in runs if r.spec.source != "tuned"]
    tuned = [r for r in runs if r.spec.source == "tuned"]
    for u in untuned[1:]:
        for t in tuned:
            pairs.append((u, t))
    seen, out = set(), []
    for a, b in pairs:
        if (a.name, b.name) not in seen and a is not b:
            seen.add((a.name, b.name))
            out.append((a, b))
    return out

