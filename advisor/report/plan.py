"""The plan after the offline eval: an online A/B test, what to watch in production and when to re-train.

Computed from what the report already holds (the decision's pair, the stored per-item outputs, the
project's data), no model call; the thresholds are in ``rubrics/report.yaml`` (``plan``), each with
its source.

* **A/B test**: users or requests per arm to detect the measured effect and a smaller one (a stated
  share of it), two independent arms at the rubric's alpha and power
  (:mod:`evaluators.stats.abtest`): two proportions from the measured rates when the metric is 0/1
  per item, two means from the per-item scores' SD otherwise.
* **Monitoring**: each signal with its statistic, the baseline measured now and the alert and
  re-train thresholds: the inputs' length in words against the training inputs (population stability
  index over the training inputs' deciles, with the eval set's PSI measured now), the label mix of
  the answers against the training labels (PSI), the refusal-like and format-error rates of the
  candidate's eval answers, and the primary metric on a labelled production sample.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from advisor.assess.outputs import OutputStats, output_form
from advisor.data.dataset import load_project_data
from advisor.data.findings import Findings
from advisor.project import Project
from advisor.rubric import load_rubric, value
from advisor.store import Store
from evaluators.stats.abtest import ab_n_means, ab_n_proportions, cohens_h

PSI_FLOOR = 1e-4  # an empty bin's share (PSI is undefined for a zero share)


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares (same bins)."""
    e = np.maximum(np.asarray(expected, float), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, float), PSI_FLOOR)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def psi_noise(bins: int, n: int, m: int) -> float:
    """The PSI expected with no shift at all, from sampling alone, between ``n`` and ``m`` items over
    ``bins`` bins: ``(bins - 1)(1/n + 1/m)`` (``n m / (n + m)`` PSI is about chi-square with bins - 1
    degrees of freedom; Yurdakul 2018)."""
    return (bins - 1) * (1.0 / max(1, n) + 1.0 / max(1, m))


def min_window(bins: int, m: int, level: float) -> int | None:
    """Fewest production requests per window whose no-shift PSI against ``m`` training items stays
    under half ``level`` (so an alert at ``level`` is a shift, not noise); None when no window can."""
    room = level / 2.0 / max(1, bins - 1) - 1.0 / max(1, m)
    return math.ceil(1.0 / room) if room > 0 else None


def _psi_statistic(what: str, bins: int, m: int, level: float) -> str:
    w = min_window(bins, m, level)
    return (f"PSI over {what} ({bins} bins), on windows of "
            + (f"at least {w:,} requests" if w else "as many requests as possible")
            + f" (their no-shift PSI under {level / 2:g})")


def length_bins(train_lengths: list[int], deciles: int = 10) -> list[float]:
    """Inner bin edges: the training inputs' deciles (duplicates dropped)."""
    if not train_lengths:
        return []
    qs = np.quantile(np.asarray(train_lengths, float), [i / deciles for i in range(1, deciles)])
    return sorted({float(q) for q in qs})


def shares(lengths: list[int], edges: list[float]) -> list[float]:
    """Share of ``lengths`` in each bin of ``edges`` (right-closed: x <= edge)."""
    counts = np.bincount(np.searchsorted(edges, np.asarray(lengths, float), side="left"), minlength=len(edges) + 1)
    return (counts / max(1, len(lengths))).tolist()


def _words(text: str) -> int:
    return len(str(text or "").split())


def _norm(text) -> str:
    return " ".join(str(text or "").split()).casefold()


def _per_item(store: Store, ev: dict, candidate: str) -> list[dict]:
    run = next((r for r in ev.get("runs") or [] if r.get("candidate") == candidate), None)
    got = store.get_run(run["run_id"]) if run and run.get("run_id") else None
    return ((got or {}).get("result") or {}).get("per_item") or []


def _above(rate: float, rise: float, k: int, tail: str) -> str:
    """The threshold ``rate + k * rise`` of a share, or why there is none (a rate cannot pass 100%)."""
    x = rate + k * rise
    return f"> {x:.1%}{tail}" if x < 1.0 else "– (the offline rate leaves no room: fix it before shipping)"


def _ab_test(decision: dict, ev: dict, store: Store, rubric: dict) -> dict | None:
    alpha = float(value(rubric, "thresholds", "alpha"))
    power = float(value(rubric, "thresholds", "power"))
    smaller = float(value(rubric, "plan", "smaller_effect_share"))
    m, a, b = decision["metric"], decision["baseline"], decision["candidate"]
    runs = {r["candidate"]: r for r in ev.get("runs") or []}
    va = ((runs.get(a) or {}).get("metrics") or {}).get(m, {}).get("value")
    vb = ((runs.get(b) or {}).get("metrics") or {}).get(m, {}).get("value")
    if va is None or vb is None:
        return None
    arms = [[float(x) for x in (((r.get("scores") or {}).get(m)) for r in _per_item(store, ev, who) if not r.get("error"))
             if x is not None] for who in (a, b)]
    scores = arms[0] + arms[1]
    binary = bool(scores) and all(s in (0.0, 1.0) for s in scores)
    delta = vb - va
    out = {"metric": m, "control": a, "treatment": b, "control_value": va, "treatment_value": vb, "alpha": alpha,
           "power": power, "kind": "proportions" if binary else "means", "rows": []}
    if not scores:
        out["note"] = (f"{m} has no per-item scores (a corpus-level metric such as BLEU or macro-F1 is not a mean of "
                       "requests): size the online test on a per-request metric instead.")
        return out
    if delta == 0 and decision.get("min_detectable_effect"):
        effects = [("the smallest difference the offline eval could detect", float(decision["min_detectable_effect"]))]
    elif delta == 0:
        out["note"] = "The two models scored the same offline: there is no measured effect to plan a test for."
        return out
    else:
        effects = [("the measured effect", delta), (f"{smaller:.0%} of it (a smaller effect)", delta * smaller)]
    if binary:
        for label, d in effects:
            pb = min(1.0, max(0.0, va + d))
            n = ab_n_proportions(va, pb, alpha, power)
            out["rows"].append({"label": label, "delta": d, "from": va, "to": pb, "effect_size": cohens_h(va, pb),
                                "per_arm": n, "total": None if n is None else 2 * n})
        out["statistic"] = "Cohen's h of the two rates"
    else:
        # the SD of one request's score within an arm (pooled over the two models): the spread an online
        # arm has, without the difference between the models that the test is to detect
        sd = (math.sqrt((np.var(arms[0], ddof=1) + np.var(arms[1], ddof=1)) / 2.0)
              if min(len(arms[0]), len(arms[1])) > 1 else None)
        if not sd or not math.isfinite(sd):
            out["note"] = f"The per-item {m} scores have no spread to size a test from."
            return out
        out["sd"] = sd
        for label, d in effects:
            n = ab_n_means(d, sd, alpha, power)
            out["rows"].append({"label": label, "delta": d, "effect_size": d / sd, "per_arm": n,
                                "total": None if n is None else 2 * n})
        out["statistic"] = (f"the difference of mean {m} over its per-request SD ({sd:.3f}, within each model's eval "
                            "answers, pooled)")
    return out


def _monitoring(project: Project, decision: dict, ev: dict, store: Store, assessment: dict | None,
                rubric: dict) -> dict:
    psi_warn = float(value(rubric, "plan", "psi_alert"))
    psi_retrain = float(value(rubric, "plan", "psi_retrain"))
    rows: list[dict] = []
    try:
        data = load_project_data(project)
    except Exception:  # noqa: BLE001 - the plan still gives the rates it can measure
        data = None
    edges: list[float] = []
    if data is not None and data.train:
        train_len = [_words(r.key) for r in data.train]
        edges = length_bins(train_len)
        base = shares(train_len, edges)
        now = psi(base, shares([_words(r.key) for r in data.eval], edges)) if data.eval else None
        pct = np.percentile(train_len, [50, 90])
        bins = len(edges) + 1
        rows.append({"signal": "input length (words) against the training inputs",
                     "statistic": _psi_statistic("the training inputs' deciles", bins, len(train_len), psi_warn),
                     "baseline": f"train p50 {pct[0]:,.0f}, p90 {pct[1]:,.0f} words; eval set PSI "
                                 + ("–" if now is None else f"{now:.3f} (no-shift expectation at these sizes "
                                    f"{psi_noise(bins, len(data.eval), len(train_len)):.3f})"),
                     "alert": f"PSI > {psi_warn:g}", "retrain": f"PSI > {psi_retrain:g}", "source": "psi"})
    rows_b = _per_item(store, ev, decision["candidate"])
    outputs = [r.get("output") for r in rows_b if not r.get("error") and r.get("output") is not None]
    labels = (((assessment or {}).get("data") or {}).get("train") or {}).get("outputs", {}).get("labels")
    label_set = {_norm(k) for k in (labels or {}).get("counts", {})}
    if labels and outputs:
        train_counts = {_norm(k): v for k, v in labels["counts"].items()}
        got = Counter(_norm(o) for o in outputs)
        keys = sorted(train_counts) + ["(other)"]
        tot_t, tot_g = sum(train_counts.values()), len(outputs)
        exp = [train_counts.get(k, 0) / tot_t for k in keys[:-1]] + [0.0]
        act = [got.get(k, 0) / tot_g for k in keys[:-1]] + [sum(v for k, v in got.items() if k not in train_counts) / tot_g]
        top = max(train_counts.items(), key=lambda kv: kv[1])
        rows.append({"signal": "label mix of the answers against the training labels",
                     "statistic": _psi_statistic(f"the {len(train_counts)} training labels and one 'other'",
                                                 len(keys), tot_t, psi_warn),
                     "baseline": f"train: largest label {top[0]!r} {top[1] / tot_t:.0%}; "
                                 f"{decision['candidate']} on the eval set: PSI {psi(exp, act):.3f} (no-shift "
                                 f"expectation {psi_noise(len(keys), tot_g, tot_t):.3f})",
                     "alert": f"PSI > {psi_warn:g}", "retrain": f"PSI > {psi_retrain:g}", "source": "psi"})
    if outputs:
        checks = load_rubric("data_checks", project.root)
        expected = ((((assessment or {}).get("data") or {}).get("train") or {}).get("outputs") or {}).get("forms", {})
        expected = expected.get("expected") if isinstance(expected, dict) else None
        stats_ = OutputStats(checks, "eval answers", Findings(keep=1), expected_form=expected)
        for i, o in enumerate(outputs):
            stats_.add(i + 1, str(o))
        refusal = stats_.summary()["refusal_share"]
        if label_set:
            bad = sum(_norm(o) not in label_set for o in outputs)
            what = "answers that are not one of the training labels"
        elif expected:
            bad = sum(output_form(str(o)) != expected for o in outputs)
            what = f"answers not in the expected form ({expected})"
        else:
            bad = sum(not str(o).strip() for o in outputs)
            what = "empty answers"
        errors = len(rows_b) - len(outputs)
        add_r = float(value(rubric, "plan", "refusal_rise"))
        add_f = float(value(rubric, "plan", "format_error_rise"))
        fmt_rate = bad / len(outputs)
        rows.append({"signal": "refusal-like answers", "statistic": "share of answers that open like a refusal",
                     "baseline": f"{refusal:.1%} of {len(outputs):,} eval answers",
                     "alert": _above(refusal, add_r, 1, f" (baseline + {add_r:.0%})"),
                     "retrain": _above(refusal, add_r, 2, " for a week"), "source": "plan"})
        rows.append({"signal": "format errors", "statistic": f"share of {what}; failed calls apart",
                     "baseline": f"{fmt_rate:.1%} of {len(outputs):,} eval answers"
                                 + (f"; {errors:,} failed calls" if errors else ""),
                     "alert": _above(fmt_rate, add_f, 1, f" (baseline + {add_f:.0%})"),
                     "retrain": _above(fmt_rate, add_f, 2, " for a week"), "source": "plan"})
    m = decision["metric"]
    ci = next((((r.get("metrics") or {}).get(m) or {}).get("ci") for r in ev.get("runs") or []
               if r.get("candidate") == decision["candidate"]), None)
    val = next((((r.get("metrics") or {}).get(m) or {}).get("value") for r in ev.get("runs") or []
                if r.get("candidate") == decision["candidate"]), None)
    if val is not None:
        hib = decision.get("higher_is_better", True)
        bound = ci[0] if ci and hib else (ci[1] if ci else None)
        gates = (project.eval.gates or {})
        rows.append({"signal": f"{m} on a labelled sample of production requests",
                     "statistic": f"{m}, as in the offline eval",
                     "baseline": f"{val:,.3f}" + (f" [{ci[0]:,.3f}, {ci[1]:,.3f}]" if ci else "") + " offline",
                     "alert": "outside the offline 95% interval" if bound is not None else "–",
                     "retrain": ("a gate fails (" + "; ".join(f"{k} {v}" for k, v in gates.items()) + ")") if gates
                     else (f"{'below' if hib else 'above'} {bound:,.3f}" if bound is not None else "–"),
                     "source": "offline"})
    return {"rows": rows, "edges": edges}


def plan(project: Project, store: Store, ev: dict | None, decision: dict | None, assessment: dict | None) -> dict | None:
    """The plan after the offline eval (None without a decision to plan for)."""
    if not ev or not decision:
        return None
    rubric = load_rubric("report", project.root)
    sources = {k: rubric["sources"][k][1] for k in ("psi", "plan", "offline")}
    return {"ab_test": _ab_test(decision, ev, store, rubric), **_monitoring(project, decision, ev, store, assessment, rubric),
            "sources": sources, "outcome": decision["outcome"]}
