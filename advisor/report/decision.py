"""The answer at the top of the report: ship, do not ship, or inconclusive, and why.

Computed from what the run store holds (no model call): the eval summary's paired comparison of the
best candidate against the strongest baseline on the primary metric, the gate results, each
candidate's stored per-item outputs and the training run. The rules and numbers are in
``rubrics/report.yaml``:

* **do not ship** when a gate fails, when the candidate is significantly worse than the baseline, or
  when it gives one answer to nearly every item (a collapsed model never reads as a win, whatever
  its score on skewed data);
* **ship** when it is significantly better (the 95% interval of the paired difference excludes zero
  in the metric's direction, p < alpha) and every gate passes;
* **inconclusive** otherwise, with the number of paired items that would detect the observed
  difference (``evaluators.stats.items_needed``) or, for no difference, the smallest difference the
  eval can detect (``min_detectable_effect``).

It also picks the side-by-side examples (items the candidate won, lost and tied, seeded).
"""

from __future__ import annotations

import math
import random

from advisor.data.dataset import load_project_data
from advisor.project import Project
from advisor.rubric import load_rubric, value
from advisor.store import Store
from evaluators import stats
from evaluators.constant import constant_output as one_answer
from evaluators.metrics import get_metric
from evaluators.runner import make_items

TESTS = {"mcnemar_exact": "McNemar", "paired_bootstrap": "paired bootstrap",
         "judge_pairwise_both_orders": "judge, both orders"}
MAX_TEXT = 600


def higher_is_better(metric: str, ev: dict | None = None) -> bool:
    """The metric's direction: from the stored comparison when it says, else the metric registry."""
    for c in (ev or {}).get("comparisons") or []:
        d = (c.get("metrics") or {}).get(metric) or {}
        if d.get("higher_is_better") is not None:
            return bool(d["higher_is_better"])
    try:
        return bool(get_metric(metric).higher_is_better)
    except Exception:  # noqa: BLE001 - an unknown (plugin or judge) metric: the usual direction
        return True


def p_text(p: float | None) -> str:
    if p is None:
        return "p –"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+,.3f}" if signed else f"{x:,.3f}"


def _primary(ev: dict) -> str | None:
    if ev.get("primary_metric"):
        return ev["primary_metric"]
    for r in ev.get("runs") or []:
        for m in r.get("metrics") or {}:
            return m
    return None


def _val(run: dict, m: str) -> float | None:
    return ((run.get("metrics") or {}).get(m) or {}).get("value")


def _pair(ev: dict, m: str, hib: bool) -> tuple[dict, dict, dict] | None:
    """(candidate run, baseline run, comparison): the best tuned run against the strongest untuned run
    it was compared with; with nothing tuned, the best prompt strategy against the reference run."""
    runs = [r for r in ev.get("runs") or [] if _val(r, m) is not None]
    comps = {(c["a"], c["b"]): c for c in ev.get("comparisons") or [] if m in (c.get("metrics") or {})}
    if len(runs) < 2 or not comps:
        return None
    sign = 1 if hib else -1
    tuned = [r for r in runs if r["candidate"].startswith("tuned:")]
    if tuned:
        cands = sorted(tuned, key=lambda r: -sign * _val(r, m))
        bases = [r for r in runs if not r["candidate"].startswith("tuned:")]
    else:
        cands = sorted(runs[1:], key=lambda r: -sign * _val(r, m))
        bases = runs[:1]
    for cand in cands:
        pairs = [(b, comps[(b["candidate"], cand["candidate"])]) for b in bases
                 if (b["candidate"], cand["candidate"]) in comps]
        if pairs:
            base, comp = max(pairs, key=lambda bc: sign * _val(bc[0], m))
            return cand, base, comp
    return None


def _per_item(store: Store, run: dict) -> list[dict]:
    got = store.get_run(run["run_id"]) if run.get("run_id") else None
    return ((got or {}).get("result") or {}).get("per_item") or []


def _cut(text, limit: int = MAX_TEXT) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def _examples(rows_a: list[dict], rows_b: list[dict], m: str, hib: bool, texts: dict, k: int, seed: int) -> dict:
    by_a = {r["item"]: r for r in rows_a}
    kinds: dict[str, list[dict]] = {"won": [], "lost": [], "tied": []}
    for rb in rows_b:
        ra = by_a.get(rb["item"])
        sa, sb = ((ra or {}).get("scores") or {}).get(m), (rb.get("scores") or {}).get(m)
        if ra is None or sa is None or sb is None or ra.get("error") or rb.get("error"):
            continue
        d = (sb - sa) if hib else (sa - sb)
        kind = "won" if d > 0 else ("lost" if d < 0 else "tied")
        inp, ref = texts.get(rb["item"], (None, None))
        kinds[kind].append({"line": rb.get("line"), "input": _cut(inp), "reference": _cut(ref),
                            "a_output": _cut(ra.get("output")), "b_output": _cut(rb.get("output")),
                            "a_score": sa, "b_score": sb})
    rng = random.Random(seed)
    out = {}
    for kind, rows in kinds.items():
        pick = rng.sample(rows, min(k, len(rows)))
        out[kind] = {"total": len(rows), "items": sorted(pick, key=lambda r: r["line"] or 0)}
    return out


def _item_texts(project: Project, ev: dict) -> dict[str, tuple[str, str]]:
    try:
        data = load_project_data(project)
        n = (ev.get("data") or {}).get("eval_items")
        items = make_items(data.eval, project.eval.max_items)
    except Exception:  # noqa: BLE001 - examples are a courtesy: the decision stands without them
        return {}
    if n is not None and n != len(items):
        return {}
    return {it.hash: (it.record.key, it.references[0] if it.references else "") for it in items}


def _items_needed(d: dict, n: int, binary: bool, alpha: float, power: float) -> tuple[int | None, float | None]:
    """(paired items that would detect the observed difference, smallest difference these n items detect)."""
    delta = abs(d.get("delta") or 0.0)
    try:
        if binary:
            p_base = d.get("a_value")
            if p_base is None:
                return None, None
            disc = None
            if d.get("wins") is not None and d.get("losses") is not None and n:
                disc = (d["wins"] + d["losses"]) / n or None
            mde = stats.min_detectable_effect(n, p_base=p_base, alpha=alpha, power=power)
            need = stats.items_needed(delta, p_base=p_base, p_discordant=disc, alpha=alpha, power=power) if delta else None
            return need, mde
        ci = d.get("ci")
        if not ci or n < 2:
            return None, None
        sd = (ci[1] - ci[0]) / (2 * 1.959964) * math.sqrt(n)  # the paired differences' SD, from the interval
        if sd <= 0:
            return None, None
        mde = stats.min_detectable_effect(n, sd=sd, alpha=alpha, power=power)
        need = stats.items_needed(delta, sd=sd, alpha=alpha, power=power) if delta else None
        return need, mde
    except ValueError:
        return None, None


def _gates_text(gate: dict | None) -> tuple[str, bool | None]:
    """(sentence, passed): passed is None when there are no gates or they could not be checked."""
    if not gate:
        return "no gates", None
    gs = gate.get("gates") or []
    if gate.get("status") == "error":
        return "the gates could not be checked: " + "; ".join(g.get("message", "") for g in gs), None
    failed = [g for g in gs if g.get("status") == "fail"]
    if failed:
        return (f"{len(failed)} of {len(gs)} gate{'s' if len(gs) != 1 else ''} fail"
                f"{'s' if len(failed) == 1 else ''}: " + "; ".join(g["gate"] for g in failed)), False
    warned = [g for g in gs if g.get("status") == "warn"]
    text = "the gate passes" if len(gs) == 1 else f"all {len(gs)} gates pass"
    if warned:
        text += f" ({len(warned)} with a warning: {'; '.join(g['gate'] for g in warned)})"
    return text, True


def _training_text(train: dict | None, assessment: dict | None) -> str | None:
    if not train:
        return None
    parts = []
    if train.get("wall_seconds") is not None:
        s = float(train["wall_seconds"])
        parts.append(f"{s:,.0f} s" if s < 120 else (f"{s / 60:,.1f} min" if s < 7200 else f"{s / 3600:,.1f} h"))
    est = next((e for e in ((assessment or {}).get("estimate") or {}).get("methods", [])
                if e.get("method") == train.get("estimate_method", train.get("method"))), None)
    if est and est.get("cost_usd") is not None:
        parts.append(f"estimated cost ${est['cost_usd']:,.2f}")
    return ("training took " + ", ".join(parts)) if parts else None


def decide(project: Project, store: Store, ev: dict | None, gate: dict | None, train: dict | None,
           assessment: dict | None) -> dict | None:
    """The decision box's facts (None without two compared candidates)."""
    if not ev:
        return None
    m = _primary(ev)
    if m is None:
        return None
    hib = higher_is_better(m, ev)
    pair = _pair(ev, m, hib)
    if pair is None:
        return None
    cand, base, comp = pair
    rubric = load_rubric("report", project.root)
    alpha = float(value(rubric, "thresholds", "alpha"))
    power = float(value(rubric, "thresholds", "power"))
    d = comp["metrics"][m]
    n = int(d.get("n") or comp.get("items") or 0)
    a, b = base["candidate"], cand["candidate"]
    rows_a, rows_b = _per_item(store, base), _per_item(store, cand)
    texts = _item_texts(project, ev)
    refs = [texts[r["item"]][1] for r in rows_b if r["item"] in texts]
    collapsed = cand.get("constant_output") or one_answer(  # the eval's own flag, else this rubric's
        [r.get("output") for r in rows_b if not r.get("error")], refs,
        float(value(rubric, "thresholds", "one_answer_share")), float(value(rubric, "thresholds", "one_answer_margin")))
    delta, ci, p = d.get("delta"), d.get("ci"), d.get("p_value")
    good = (lambda x: x > 0) if hib else (lambda x: x < 0)
    bad = (lambda x: x < 0) if hib else (lambda x: x > 0)
    sig = p is None or p < alpha
    better = worse = False
    if ci is not None:  # the interval excludes zero, in the metric's direction or against it
        better, worse = sig and good(ci[0] if hib else ci[1]), sig and bad(ci[1] if hib else ci[0])
    elif p is not None and delta is not None and p < alpha:
        better, worse = good(delta), bad(delta)
    test = TESTS.get(d.get("test") or "", d.get("test") or "")
    effect = (f"{num(delta, True)} {m} [{num(ci[0], True)}, {num(ci[1], True)}]" if ci
              else f"{num(delta, True)} {m}") + f", {test + ' ' if test else ''}{p_text(p)}, {n:,} items"
    if delta == 0 and d.get("wins") == 0 and d.get("losses") == 0:
        effect = f"the same {m} on every one of {n:,} items"
    gates_text, gates_ok = _gates_text(gate)
    lost = comp.get("regressions_total")
    worse_text = None if lost is None else ("no item got worse" if lost == 0 else
                                            f"{lost:,} item{'s' if lost != 1 else ''} got worse")
    need, mde = (None, None)
    reasons = []
    if collapsed:
        outcome = "do not ship"
        headline = (f"{b} gives one answer (\"{collapsed['answer']}\") to {collapsed['share']:.0%} of the items: "
                    f"not a win, whatever its {m} ({effect} against {a})")
    elif gates_ok is False:
        outcome = "do not ship"
        headline = f"{b} against {a}: {effect}; {gates_text}"
    elif worse:
        outcome = "do not ship"
        headline = f"{b} is worse than {a} by {effect}"
    elif better and (gates_ok or not gate):
        outcome = "ship"
        headline = f"{b} beats {a} by {effect}"
    else:
        outcome = "inconclusive"
        need, mde = _items_needed(d, n, d.get("test") == "mcnemar_exact", alpha, power)
        if better:
            headline = f"{b} against {a}: {effect}; {gates_text}"
        else:
            headline = f"the 95% interval cannot separate {b} from {a}: {effect}"
        if need:
            reasons.append(f"about {need:,} paired items would detect a difference of {abs(delta):.3f} "
                           f"({power:.0%} power, alpha {alpha:g}); this eval has {n:,}")
        elif mde:
            reasons.append(f"with {n:,} items only a difference of {mde:.3f} or more is detectable "
                           f"({power:.0%} power, alpha {alpha:g})")
    tail = [t for t in (None if gates_text in headline else gates_text, worse_text,
                        _training_text(train, assessment)) if t]
    examples = _examples(rows_a, rows_b, m, hib, texts, int(value(rubric, "examples", "per_kind")),
                         int(value(rubric, "examples", "seed"))) if rows_a and rows_b and texts else None
    return {"outcome": outcome, "headline": headline, "facts": tail, "reasons": reasons,
            "candidate": b, "baseline": a, "metric": m, "higher_is_better": hib, "delta": delta, "ci": ci,
            "p_value": p, "items": n, "items_needed": need, "min_detectable_effect": mde,
            "one_answer": collapsed, "gates": gates_text, "worse_items": lost, "examples": examples,
            "sentence": "; ".join([headline, *tail])}

