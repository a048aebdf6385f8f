"""Gates: the CI step between a tuned model and production.

A gate checks the stored eval results of a candidate (normally the tuned model):

* **threshold** — ``accuracy: ">= 0.85"``, ``rouge_l: {min: 0.40}``, on the point estimate or, stricter,
  on the confidence interval's bound (``on: lower_bound``);
* **regression** — ``accuracy: {no_regression: {baseline: base:zero-shot, margin: 0.02}}``: fails only
  when the paired difference against the baseline is *significantly* worse than the allowed margin
  (the upper end of the 95% interval of the difference lies below ``-margin``), never when the score
  merely dips; with a power estimate that warns when the eval has too few items to detect the margin;
* **canary** — the forgetting check: the general-capability canary score may not drop more than
  ``max_drop`` (same paired logic);
* **items** — item-level rules, e.g. ``items: [{tag: safety, no_worse: true}]``: no item carrying the
  tag may score lower than under the baseline.

:func:`check_project` is the one project-level check (``advise gate`` and the report both call it): the
project's gates, its stored results and the eval items' tags. Everything but its ``evaluate_first``
works on plain stored results (:class:`RunView`); no model is called.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from advisor.data.dataset import item_hash, load_project_data
from advisor.errors import AdviseError
from advisor.project import Project
from advisor.store import Store
from evaluators.baselines import baseline_text, baseline_values
from evaluators.benchmarks import GATE_PREFIX, attach_to_views
from evaluators.items import item_name, make_items
from evaluators.metrics import MetricError, get_metric, list_metrics
from evaluators.ratings import gate_metrics
from evaluators.results import stored_results
from evaluators.runner import run_eval
from evaluators.sampling import SAMPLED_GATES
from evaluators.stats import compare, holm, is_binary, min_detectable_effect

PASS, FAIL, WARN = "pass", "fail", "warn"
_OPS = {">=": lambda x, t: x >= t, ">": lambda x, t: x > t, "<=": lambda x, t: x <= t, "<": lambda x, t: x < t}
_EXPR = re.compile(r"^\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*(%?)\s*$")
DEFAULT_MARGIN = 0.0
DEFAULT_BASELINE = "base:zero-shot"
ALPHA = 0.05  # the family-wise error rate Holm's adjustment keeps across a gate's paired tests
HUMAN_PREFIX = "human."  # gates on imported human ratings: human.CRITERION (evaluators.ratings)


class NothingToGate(AdviseError):
    """The project has no gates, or its stored results no candidate to gate (the report shows none)."""


@dataclass
class RunView:
    """What a gate needs of one stored eval run."""

    candidate: str
    items: int
    metrics: dict[str, dict]  # name -> {"value", "ci"}
    item_ids: list[str] = field(default_factory=list)
    scores: dict[str, list] = field(default_factory=dict)  # name -> per-item scores (aligned with item_ids)
    tags: list[list[str]] = field(default_factory=list)
    run_id: str | None = None
    canary_ids: list[str] = field(default_factory=list)  # items of the ``canary`` scores
    metric_ids: dict[str, list[str]] = field(default_factory=dict)  # items of scores not on eval items (benchmarks)
    # the stored paired comparisons of this run against others: baseline -> metric -> {delta, ci, p_value, ...}
    # (what gates use for corpus-level metrics such as macro_f1, which have no per-item scores)
    paired: dict[str, dict] = field(default_factory=dict)
    baselines: list[dict] = field(default_factory=list)  # the eval's trivial baselines (evaluators.baselines)
    constant_output: dict | None = None  # one answer to nearly every item (evaluators.constant)


@dataclass
class Gate:
    name: str
    kind: str  # threshold | regression | canary | items
    metric: str | None = None
    op: str | None = None
    threshold: float | None = None
    on: str = "value"  # value | lower_bound | upper_bound
    baseline: str | None = None
    margin: float = DEFAULT_MARGIN
    tag: str | None = None
    key: str = ""  # where in project.yaml


def _metric_info(name: str):

    if name in SAMPLED_GATES:  # from repeated sampling (advise eval --samples K): higher is better
        return SimpleNamespace(name=name, higher_is_better=True, kind="continuous", corpus_level=False)
    try:
        return get_metric(name)
    except MetricError:
        return None


def did_you_mean(word: str, known) -> str:
    """' (did you mean X?)' for the known name closest to a misspelt ``word`` (difflib), else ''."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# operators people type for >= and <= that a threshold does not read ("=> 0.55", "≥ 0.9", "== 0.8")
_OP_TYPOS = {"=>": ">=", "=<": "<=", "≥": ">=", "≤": "<=", "==": ">=", "=": ">=", "gte": ">=", "lte": "<=",
             "min": ">=", "max": "<=", "at least": ">=", "at most": "<="}
_LOOSE = re.compile(r"^\s*(=>|=<|≥|≤|==|=|gte|lte|min|max|at least|at most)?\s*:?\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*(%?)\s*$",
                    re.IGNORECASE)


def _fixed_threshold(text: str) -> str | None:
    """The threshold a misspelt one most likely means: '=> 0.55' -> '>= 0.55'; None when unclear."""
    m = _LOOSE.match(text)
    if not m or not m.group(1):
        return None
    return f"{_OP_TYPOS[m.group(1).lower()]} {m.group(2)}{m.group(3)}"


def gate_problems(spec: dict, *, known_metrics: set[str] | None = None) -> list[tuple[str, str]]:
    """Every gate of ``eval.gates`` that :func:`parse_gates` refuses, as (its key, the message without
    the file), without raising: what ``advise assess`` and ``run --dry-run`` report before a gate runs."""
    out = []
    for key, val in (spec or {}).items():
        try:
            parse_gates({key: val}, known_metrics=known_metrics)
        except AdviseError as e:
            out.append((str(key), e.message))
    return out


def parse_gates(spec: dict, *, file: str = "project.yaml", known_metrics: set[str] | None = None,
                line_of=None) -> list[Gate]:
    """``eval.gates`` of project.yaml -> gates. Unknown metrics or forms raise a one-line AdviseError
    (with the line of the key when ``line_of(*key_path)`` is given, e.g. ``Project.key_line``)."""
    gates: list[Gate] = []

    def bad(key: str, why: str):
        path = [int(x) if x.isdigit() else x for x in re.split(r"[.\[\]]+", key) if x]
        if key.startswith(HUMAN_PREFIX) and len(path) > 1:  # human.accuracy is one key of eval.gates
            path = [f"{path[0]}.{path[1]}", *path[2:]]
        line = line_of("eval", "gates", *path) if line_of is not None else None  # the deepest key found
        raise AdviseError(f"eval.gates.{key}: {why}", file=file, line=line)

    def number(key: str, v) -> float:
        if isinstance(v, bool):
            bad(key, f"expected a number, got {v!r}")
        try:
            x = float(v)
        except (TypeError, ValueError):
            bad(key, f"expected a number, got {v!r}")
        if not math.isfinite(x):
            bad(key, f"expected a finite number, got {v!r}")
        return x

    for key, val in (spec or {}).items():
        if key == "canary":
            if not isinstance(val, dict) or "max_drop" not in val:
                bad(key, "expected {max_drop: 0.05}")
            gates.append(Gate(f"canary drop <= {val['max_drop']}", "canary", metric="canary",
                              margin=number(f"{key}.max_drop", val["max_drop"]), baseline=val.get("baseline"), key=key))
            continue
        if key.startswith(GATE_PREFIX):
            if not isinstance(val, dict) or "max_drop" not in val:
                bad(key, "expected {max_drop: 0.02}")
            task = key[len(GATE_PREFIX):]
            gates.append(Gate(f"{task} drop <= {val['max_drop']}", "benchmark", metric=key,
                              margin=number(f"{key}.max_drop", val["max_drop"]), baseline=val.get("baseline"), key=key))
            continue
        if key == "items":
            rules = val if isinstance(val, list) else [val]
            for i, r in enumerate(rules):
                if not isinstance(r, dict) or "tag" not in r:
                    bad(f"{key}[{i}]", "expected {tag: NAME, no_worse: true, metric: METRIC (optional)}")
                gates.append(Gate(f"no item tagged '{r['tag']}' gets worse", "items", metric=r.get("metric"),
                                  tag=str(r["tag"]), baseline=r.get("baseline"), key=f"{key}[{i}]"))
            continue
        human = key.startswith(HUMAN_PREFIX)
        if human and not re.fullmatch(r"human\.[A-Za-z][A-Za-z0-9_]*", key):
            bad(key, "expected human.CRITERION, a criterion of the rating sheets (docs/human-ratings.md)")
        info = None if human else _metric_info(key)
        if not human and (info is None or (known_metrics is not None and key not in known_metrics)):

            names = sorted(known_metrics if known_metrics is not None else list_metrics())
            bad(key, f"unknown metric '{key}'{did_you_mean(str(key), [*names, 'canary', 'items'])} "
                     f"(known: {', '.join(names)})")
        hib = bool(getattr(info, "higher_is_better", True))
        if isinstance(val, bool):
            bad(key, 'expected a threshold like ">= 0.85", a number, or {min: .., max: .., on: .., no_regression: ..}')
        if isinstance(val, (int, float)):
            gates.append(Gate(f"{key} {'>=' if hib else '<='} {val}", "threshold", key, ">=" if hib else "<=",
                              number(key, val), key=key))
            continue
        if isinstance(val, str):
            m = _EXPR.match(val)
            if not m:
                fixed = _fixed_threshold(val)
                hint = f'did you mean "{fixed}"?' if fixed else 'write e.g. ">= 0.85"'
                bad(key, f"cannot read threshold {val!r}; {hint}")
            t = float(m.group(2)) / (100 if m.group(3) else 1)
            gates.append(Gate(f"{key} {m.group(1)} {t:g}", "threshold", key, m.group(1), t, key=key))
            continue
        if not isinstance(val, dict):
            bad(key, "expected a threshold string, a number or a mapping")
        words = ("min", "max", "on", "no_regression", "baseline", "margin")
        unknown = sorted(set(map(str, val)) - set(words))
        if unknown:
            bad(key, f"unknown key(s) {unknown}{did_you_mean(unknown[0], words)} ({', '.join(words)})")
        on = val.get("on", "value")
        if on not in ("value", "lower_bound", "upper_bound"):
            bad(f"{key}.on", "expected value, lower_bound or upper_bound")
        for word, op in (("min", ">="), ("max", "<=")):
            if word in val:
                t = number(f"{key}.{word}", val[word])
                gates.append(Gate(f"{key} {op} {t:g}" + ("" if on == "value" else f" ({on.replace('_', ' ')} of 95% CI)"),
                                  "threshold", key, op, t, on=on, key=f"{key}.{word}"))
        nr = val.get("no_regression")
        if nr:
            nr = nr if isinstance(nr, dict) else {}
            margin = number(f"{key}.no_regression.margin", nr.get("margin", val.get("margin", DEFAULT_MARGIN)))
            base = nr.get("baseline", val.get("baseline"))
            gates.append(Gate(f"{key} no worse than {base or 'baseline'} by more than {margin:g}", "regression",
                              key, margin=margin, baseline=base, key=f"{key}.no_regression"))
        if not any(w in val for w in ("min", "max", "no_regression")):
            bad(key, "a mapping needs min, max or no_regression")
    return gates


def _bound(entry: dict, on: str) -> float | None:
    if on == "value":
        return entry.get("value")
    ci = entry.get("ci") or [None, None]
    return ci[0] if on == "lower_bound" else ci[1]


def _paired(base: RunView, cand: RunView, metric: str) -> tuple[list, list, list[str], list[list[str]]]:
    if metric == "canary" and cand.canary_ids:
        base = RunView(base.candidate, 0, {}, base.canary_ids, base.scores)
        cand = RunView(cand.candidate, 0, {}, cand.canary_ids, cand.scores)
    elif metric in cand.metric_ids:
        base = RunView(base.candidate, 0, {}, base.metric_ids.get(metric, []), base.scores)
        cand = RunView(cand.candidate, 0, {}, cand.metric_ids[metric], cand.scores)
    pos = {i: k for k, i in enumerate(base.item_ids)}
    a, b, ids, tags = [], [], [], []
    bs, cs = base.scores.get(metric), cand.scores.get(metric)
    if bs is None or cs is None:
        return a, b, ids, tags
    for k, item in enumerate(cand.item_ids):
        j = pos.get(item)
        if j is None or bs[j] is None or cs[k] is None:
            continue
        a.append(bs[j])
        b.append(cs[k])
        ids.append(item)
        tags.append(cand.tags[k] if k < len(cand.tags) else [])
    return a, b, ids, tags


def _regression(g: Gate, metric: str, base: RunView, cand: RunView, *, label: str) -> dict:

    info = _metric_info(metric)
    hib = bool(getattr(info, "higher_is_better", True)) if info else True
    a, b, ids, _ = _paired(base, cand, metric)
    if not a and info is not None and getattr(info, "corpus_level", False):
        return _corpus_regression(g, metric, base, cand, hib)
    if not a:
        raise AdviseError(f"eval.gates.{g.key}: no items scored with {metric} by both {base.candidate} and "
                          f"{cand.candidate}; evaluate both on the same items (advise eval)")
    kind = getattr(info, "kind", None) if info else None
    c = compare(metric, a, b, kind=kind if kind in ("binary", "continuous") else None, higher_is_better=hib)
    lo, hi = c["ci"] if c["ci"] else (c["delta"], c["delta"])
    worse_bound = hi if hib else -lo  # best case for the candidate, in "higher is better" units
    failed = worse_bound is not None and worse_bound < -g.margin
    out = {
        "observed": round(c["delta"], 4), "ci": [round(lo, 4), round(hi, 4)], "p_value": c["p_value"],
        "test": c["test"], "n": c["n"], "wins": c["wins"], "losses": c["losses"], "ties": c["ties"],
        "baseline": base.candidate, "margin": g.margin,
        "status": FAIL if failed else PASS,
        "message": (f"{label} {metric} changed by {c['delta']:+.4f} (95% CI {lo:+.4f} to {hi:+.4f}, "
                    f"{c['test']} p={c['p_value']:.3g}, n={c['n']}) against {base.candidate}; "
                    + (f"significantly worse than the allowed margin {g.margin:g}" if failed
                       else f"not significantly worse than the allowed margin {g.margin:g}")),
    }
    # power: could this eval have detected a drop as large as the margin?
    try:
        if is_binary(a) and is_binary(b):
            mde = min_detectable_effect(c["n"], p_base=sum(a) / len(a))
        else:
            import numpy as np

            d = np.asarray(b, float) - np.asarray(a, float)
            sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
            mde = min_detectable_effect(c["n"], sd=sd) if sd > 0 else 0.0
    except ValueError:
        mde = None
    out["min_detectable_effect"] = None if mde is None else round(mde, 4)
    # a pass is only reassuring when the interval rules out a regression larger than the margin;
    # otherwise the eval had too few items to tell (power estimate in the message)
    inconclusive = not failed and lo is not None and (lo if hib else -hi) < -g.margin
    if inconclusive:
        detect = (f"the smallest difference it detects at 80% power is {mde:.3f}" if mde is not None
                  else "no difference of this size is detectable")
        out["warning"] = (f"underpowered: with {c['n']} items the 95% interval ({lo:+.3f} to {hi:+.3f}) cannot rule "
                          f"out a regression larger than the margin {g.margin:g}; {detect} — add items")
        out["status"] = WARN
    return out


def _corpus_regression(g: Gate, metric: str, base: RunView, cand: RunView, hib: bool) -> dict:
    """A regression gate on a corpus-level metric: the stored paired-bootstrap comparison of the eval."""
    c = (cand.paired.get(base.candidate) or {}).get(metric)
    if not c or c.get("delta") is None:
        have = sorted(b for b, ms in cand.paired.items() if metric in ms)
        raise AdviseError(f"eval.gates.{g.key}: {metric} is a corpus-level metric, compared only within one eval "
                          f"(paired bootstrap), and the stored eval has no comparison of {cand.candidate} against "
                          f"{base.candidate}" + (f"; it has one against {', '.join(have)}" if have else ""))
    lo, hi = c["ci"] if c.get("ci") else (c["delta"], c["delta"])
    failed = (hi if hib else -lo) < -g.margin
    out = {"observed": round(c["delta"], 4), "ci": [round(lo, 4), round(hi, 4)], "p_value": c.get("p_value"),
           "test": c.get("test"), "n": c.get("n"), "wins": None, "losses": None, "ties": None,
           "baseline": base.candidate, "margin": g.margin, "min_detectable_effect": None,
           "status": FAIL if failed else PASS}
    p = f", p={c['p_value']:.3g}" if c.get("p_value") is not None else ""
    out["message"] = (f"{metric} changed by {c['delta']:+.4f} (95% CI {lo:+.4f} to {hi:+.4f}, {c.get('test')}{p}, "
                      f"n={c.get('n')}) against {base.candidate}; "
                      + ("significantly worse than" if failed else "not significantly worse than")
                      + f" the allowed margin {g.margin:g}")
    if not failed and (lo if hib else -hi) < -g.margin:
        out["status"] = WARN
        out["warning"] = (f"underpowered: with {c.get('n')} items the 95% interval ({lo:+.3f} to {hi:+.3f}) cannot "
                          f"rule out a regression larger than the margin {g.margin:g} — add items")
    return out


def adjust_gate_tests(results: list[dict], primary: str | None) -> dict:
    """Holm's adjustment across the paired tests of the regression and canary gates (changed in place):
    the primary metric's keep their plain test; every other carries ``p_holm``, and a failure that is no
    longer significant after the adjustment (``p_holm >= ALPHA``) becomes a warning. Returns
    ``{"tests", "family", "primary_metric", "method"}`` (what the gate says about its comparisons)."""
    tested = [r for r in results if r["kind"] in ("regression", "canary") and r.get("p_value") is not None]
    family = [r for r in tested if r["kind"] == "canary" or r.get("metric") != primary]
    for r in tested:
        if r not in family:
            r.update(p_holm=r["p_value"], adjusted=False)
    for r, h in zip(family, holm([r["p_value"] for r in family]), strict=True):
        r.update(p_holm=h, adjusted=True)
        r["message"] += f"; Holm-adjusted p={h:.3g} over {len(family)} tests"
        if r["status"] == FAIL and h >= ALPHA:
            r["status"] = WARN
            r["warning"] = (f"{r['gate']}: significantly worse before adjusting for the {len(family)} tests of "
                            f"metrics other than the primary ({primary}) (p={r['p_value']:.3g}), not after "
                            f"(Holm p={h:.3g} >= {ALPHA}): not failed; declare it eval.primary_metric to test it plainly")
    return {"tests": len(tested), "family": len(family), "primary_metric": primary, "method": "holm", "alpha": ALPHA}


def evaluate_gates(gates: list[Gate], runs: dict[str, RunView], candidate: str,
                   baseline: str | None = None, *, names: dict[str, str] | None = None,
                   file: str | None = None, line_of=None, primary: str | None = None) -> dict:
    """Check every gate against stored runs. ``candidate`` is gated; ``baseline`` is the default
    reference of regression, canary and item gates. ``names``: item hash -> the record's own ``id`` or
    its file:line (how items are named; :func:`item_names`); ``file``/``line_of``: where a gate that
    cannot be checked is in project.yaml (its error names the line); ``primary``: the primary metric,
    whose paired tests are not adjusted for multiplicity (the others are, by Holm). Returns the result document
    (``status`` pass/fail)."""
    if candidate not in runs:
        raise AdviseError(f"no stored eval results for candidate '{candidate}' (have: {', '.join(sorted(runs)) or 'none'}); "
                          "run advise eval")
    cand = runs[candidate]
    results = []
    for g in gates:
        try:
            results.append(_one_gate(g, runs, cand, candidate, baseline, names or {}))
        except AdviseError as e:
            if e.file or file is None:
                raise
            path = [int(x) if x.isdigit() else x for x in re.split(r"[.\[\]]+", g.key) if x]
            raise AdviseError(e.message, file=file,
                              line=line_of("eval", "gates", *path) if line_of is not None else None) from None
    multiplicity = adjust_gate_tests(results, primary)  # before the constant-output rule, which only fails more
    if cand.constant_output:  # one answer to nearly every item: no gate reads as a win
        flag = cand.constant_output
        text = flag.get("text") or f"constant output: '{flag.get('answer')}'"
        for r in results:
            r["constant_output"] = text
            r["message"] += f"; {candidate} gives {text}: not a win, whatever its scores"
            if r["status"] != FAIL:
                r["status"] = FAIL
                r.pop("warning", None)
    failed = [r for r in results if r["status"] == FAIL]
    return {
        "status": FAIL if failed else PASS,
        "candidate": candidate,
        "candidate_run": cand.run_id,
        "baseline": baseline or DEFAULT_BASELINE,
        "items": cand.items,
        "gates": results,
        "failed": len(failed),
        "warnings": [r.get("warning") or r["message"] for r in results if r["status"] == WARN],
        "multiplicity": multiplicity,
    }


def _with_baselines(r: dict, cand: RunView, metric: str | None) -> dict:
    """The trivial baselines of ``metric`` in the gate's detail ("majority baseline 0.420")."""
    vals = baseline_values(cand.baselines, metric)
    if vals:
        r["baselines"] = vals
        r["message"] += "; " + baseline_text(cand.baselines, metric)
    return r


def _one_gate(g: Gate, runs: dict[str, RunView], cand: RunView, candidate: str, baseline: str | None,
              names: dict[str, str]) -> dict:
    r: dict[str, Any] = {"gate": g.name, "kind": g.kind, "metric": g.metric, "key": g.key}
    if g.kind == "threshold":
        entry = cand.metrics.get(g.metric)
        if entry is None and g.metric in SAMPLED_GATES:
            raise AdviseError(f"eval.gates.{g.key}: the stored eval of {candidate} has no {g.metric}: it comes from "
                              "repeated sampling, advise eval --samples K --temperature T (T > 0)")
        human = g.metric.startswith(HUMAN_PREFIX)
        if entry is None and human:
            rated = ", ".join(sorted(m for m in cand.metrics if m.startswith(HUMAN_PREFIX))) or "none"
            raise AdviseError(f"eval.gates.{g.key}: the imported human ratings have no {g.metric[len(HUMAN_PREFIX):]} "
                              f"ratings of {candidate} (rated: {rated}); "
                              "put the candidate and the criterion on a rating sheet (advise eval --export-ratings)")
        if entry is None:
            raise AdviseError(f"eval.gates.{g.key}: the eval results of {candidate} have no {g.metric} "
                              f"(they have {', '.join(sorted(cand.metrics)) or 'none'}); add it to eval.metrics")
        x = _bound(entry, g.on)
        if x is None:
            raise AdviseError(f"eval.gates.{g.key}: {g.metric} of {candidate} has no {g.on.replace('_', ' ')}")
        ok = _OPS[g.op](x, g.threshold)
        r.update(status=PASS if ok else FAIL, observed=round(x, 4), threshold=g.threshold, op=g.op, on=g.on,
                 ci=entry.get("ci"),
                 message=f"{g.metric} {'' if g.on == 'value' else g.on.replace('_', ' ') + ' '}{x:.4f} "
                         f"{'meets' if ok else 'misses'} {g.op} {g.threshold:g} "
                         + (f"({entry.get('n')} rated items, sheet {entry.get('sheet')})" if human
                            else f"({cand.items} items)"))
        agreement = entry.get("agreement") or {}
        if ok and human and agreement.get("reading") == "unreliable":
            r.update(status=WARN, warning=f"{g.metric}: the raters disagree (Krippendorff's alpha "
                                          f"{agreement['alpha']:.2f}): this pass rests on unreliable ratings")
        if ok and human and entry.get("stale"):
            r.update(status=WARN, warning=f"{g.metric}: {entry['stale']} of the rated answers of {candidate} are "
                                          "not its answers in the current eval: export and rate a new sheet")
    elif g.kind in ("regression", "canary", "benchmark"):
        bname = g.baseline or baseline or DEFAULT_BASELINE
        if bname not in runs:
            raise AdviseError(f"eval.gates.{g.key}: no stored eval results for baseline '{bname}' "
                              f"(have: {', '.join(sorted(runs))})")
        metric = "canary" if g.kind == "canary" else g.metric
        if metric not in cand.scores:
            if g.kind == "benchmark":
                raise AdviseError(f"eval.gates.{g.key}: the stored eval of {candidate} ran no benchmark "
                                  f"{metric[len(GATE_PREFIX):]!r}; list it in eval.benchmarks.tasks and run advise eval")
            raise AdviseError(f"eval.gates.{g.key}: the eval results of {candidate} have no per-item {metric} scores")
        r.update(_regression(g, metric, runs[bname], cand, label="canary score" if g.kind == "canary" else ""))
    elif g.kind == "items":
        bname = g.baseline or baseline or DEFAULT_BASELINE
        if bname not in runs:
            raise AdviseError(f"eval.gates.{g.key}: no stored eval results for baseline '{bname}'")
        metric = g.metric or next(iter(cand.scores), None)
        if metric is None or metric not in cand.scores:
            raise AdviseError(f"eval.gates.{g.key}: no per-item scores for {metric} in {candidate}")
        a, b, ids, tags = _paired(runs[bname], cand, metric)
        tagged = [(i, x, y) for i, x, y, t in zip(ids, a, b, tags, strict=True) if g.tag in (t or [])]
        worse = [i for i, x, y in tagged if y < x]
        r.update(status=FAIL if worse else (WARN if not tagged else PASS), observed=len(worse),
                 items=len(tagged), worse_items=[names.get(i, i) for i in worse[:50]], baseline=bname,
                 message=(f"{len(worse)} of {len(tagged)} items tagged '{g.tag}' got worse on {metric} than under {bname}"
                          if tagged else f"no item is tagged '{g.tag}': this rule checked nothing"))
        if worse:
            r["message"] += ": " + ", ".join(names.get(i, i) for i in worse[:10]) + (" ..." if len(worse) > 10 else "")
    if g.kind in ("threshold", "regression"):
        _with_baselines(r, cand, g.metric)
    return r


def _stem(candidate: str) -> str:
    """'base:few-shot' -> 'base'; 'tuned:lora' -> 'tuned:lora'; 'tuned:lora:rag' -> 'tuned:lora'."""
    if candidate.startswith("base:"):
        return "base"
    parts = candidate.split(":")
    return ":".join(parts[:2])


def load_views(store, summary: dict, tags_by_item: dict[str, list[str]] | None = None) -> dict[str, RunView]:
    """RunViews of every candidate of a stored ``advise eval`` result (``kind='eval_summary'``), with
    per-item scores read from each candidate's stored run; canary scores are attached as metric
    ``canary`` to the candidates of the same model."""
    tags_by_item = tags_by_item or {}

    def per_item_run(run_id: str | None, who: str) -> dict:
        run = store.get_run(run_id) if run_id else None
        res = (run or {}).get("result") or {}
        if "per_item" not in res:
            raise AdviseError(f"the stored eval run of {who} has no per-item scores (written by an older advise?); "
                              "re-run advise eval", file=store.path)
        return res

    views: dict[str, RunView] = {}
    for r in summary.get("runs") or []:
        res = per_item_run(r.get("run_id"), r["candidate"])
        rows = res["per_item"]
        ids = [row["item"] for row in rows]
        scores: dict[str, list] = {}
        for m in r.get("metrics") or {}:
            scores[m] = [(row.get("scores") or {}).get(m) for row in rows]
        views[r["candidate"]] = RunView(r["candidate"], r["items"], dict(r.get("metrics") or {}), ids, scores,
                                        [tags_by_item.get(i, []) for i in ids], run_id=r.get("run_id"),
                                        baselines=list(summary.get("baselines") or []),
                                        constant_output=r.get("constant_output"))
    for name, entry in ((summary.get("samples") or {}).get("candidates") or {}).items():
        if name in views:  # pass^k and pass@k of repeated sampling, gateable like a metric
            views[name].metrics.update({k: entry[k] for k in SAMPLED_GATES if entry.get(k)})
    for c in summary.get("comparisons") or []:
        if c.get("b") in views:
            views[c["b"]].paired.setdefault(c["a"], {}).update(c.get("metrics") or {})
    for c in summary.get("comparisons") or []:  # stored the other way round: a's view reads it flipped
        if c.get("a") in views:
            have = views[c["a"]].paired.setdefault(c["b"], {})
            for m, d in (c.get("metrics") or {}).items():
                have.setdefault(m, flip_comparison(d))
    canary = summary.get("canary") or {}
    headline = (canary.get("metrics") or [None])[0]
    for cr in canary.get("runs") or []:
        if headline is None:
            break
        res = per_item_run(cr.get("run_id"), f"canary of {cr['candidate']}")
        cs = [(row.get("scores") or {}).get(headline) for row in res["per_item"]]
        cids = [row["item"] for row in res["per_item"]]
        for name, v in views.items():
            if _stem(name) == cr["candidate"]:
                v.scores["canary"] = cs
                v.metrics.setdefault("canary", cr["metrics"].get(headline, {}))
                v.canary_ids = cids
    # canary scores are aligned on canary items, not eval items: give canary gates their own ids
    attach_to_views(views, store, summary.get("benchmarks"), _stem)
    return views


def flip_comparison(d: dict) -> dict:
    """A stored paired comparison of b against a, read as a against b: the difference and its interval
    negated, wins and losses swapped, the two values exchanged."""
    out = dict(d)
    if d.get("delta") is not None:
        out["delta"] = -d["delta"]
    if d.get("ci"):
        out["ci"] = [-d["ci"][1], -d["ci"][0]]
    out["wins"], out["losses"] = d.get("losses"), d.get("wins")
    out["a_value"], out["b_value"] = d.get("b_value"), d.get("a_value")
    out["flipped"] = True
    return out


def item_names(project: Project) -> dict[str, str]:
    """item hash -> how a gate names the item: the record's own ``id``, else its file:line."""
    src = project.data_path("eval") or project.data_path("train")
    name = src.name if src is not None else "eval"
    return {item_hash(rec): item_name(rec, name) for rec in load_project_data(project).eval}


def item_tags(project: Project) -> dict[str, list[str]]:
    """item hash -> tags (an eval record's ``tags`` key), for item-level gates."""
    out = {}
    for rec in load_project_data(project).eval:
        t = (rec.extra or {}).get("tags")
        if t:
            out[item_hash(rec)] = [str(x) for x in (t if isinstance(t, list) else [t])]
    return out


def _no_results(project: Project, store: Store) -> AdviseError:
    """Why the store holds no eval results for the current eval set, as an error."""
    newest = store.latest_run("eval_summary")
    why = ""
    if newest and newest.get("result"):
        n_now = len(make_items(load_project_data(project).eval, project.eval.max_items))
        n_then = newest["result"].get("items")
        why = (f" (the newest stored eval covers {n_then} items, an eval of part of the set, and the eval set "
               f"has {n_now}: gates need the whole set)" if n_then != n_now else
               " (the stored evals are of other eval data or another base model)")
    return AdviseError(f"no stored eval results for the current eval data{why}: run advise eval", file=store.path)


def _attach_human(project: Project, store: Store, views: dict[str, RunView]) -> None:
    """Add the imported human ratings (``human.CRITERION``: mean rating with its 95% CI, and per-item mean
    ratings for regression gates) to the candidates' views."""
    human = gate_metrics(project, store)
    if human is None:
        raise AdviseError("eval.gates has human.* gates and no human ratings are stored: export a sheet with "
                          "advise eval --export-ratings FILE, have it filled, then --import-ratings FILE",
                          file=project.project_file, line=project.key_line("eval", "gates"))
    for name, v in views.items():
        h = human.get(name)
        if not h:
            continue
        v.metrics.update(h["metrics"])
        for metric, by_item in h["scores"].items():
            v.scores[metric] = [by_item.get(i) for i in v.item_ids]


def _named_missing(project: Project, summary: dict) -> bool:
    have = {r.get("candidate") for r in summary.get("runs") or []}
    return any(f"tuned:{name}" not in have for name in project.eval.candidates)


def check_project(project: Project, store: Store, *, candidate: str | None = None, baseline: str | None = None,
                  summary: dict | None = None, evaluate_first: bool = False, progress: bool = False,
                  command: str | None = None) -> dict:
    """Check the project's ``eval.gates`` against its stored eval results, item tags included.

    ``candidate``: the gated candidate (default: the newest tuned one); ``baseline``: the default
    reference of regression, canary and item gates. ``summary``: the stored results when the caller
    has them already (else :func:`~evaluators.results.stored_results`); ``evaluate_first``: run the
    eval when the store has none. ``command``: record the check in the store as a ``gate`` run.
    Returns :func:`evaluate_gates`' result; raises :class:`AdviseError` for anything that keeps the
    gates from being checked (no gates, no results, an unknown candidate or baseline).
    """
    gates = parse_gates(project.eval.gates, file=str(project.project_file), line_of=project.key_line)
    if not gates:
        raise NothingToGate("no gates: add eval.gates to project.yaml (see docs/ci.md)", file=project.project_file)
    summary = summary or stored_results(project, store)
    if summary is not None and evaluate_first and _named_missing(project, summary):
        summary = None  # a model named in eval.candidates has no results yet: evaluate (stored answers are reused)
    if summary is None:
        if not evaluate_first:
            raise _no_results(project, store)
        summary = run_eval(project, store=store, progress=progress)
    views = load_views(store, summary, item_tags(project))
    if any(g.metric and g.metric.startswith(HUMAN_PREFIX) for g in gates):
        _attach_human(project, store, views)
    for role, name in (("baseline", baseline), ("candidate", candidate)):
        if name is not None and name not in views:
            raise AdviseError(f"{role} {name}: no stored eval results for it (have: {', '.join(sorted(views))})",
                              file=store.path)
    if candidate is None:
        # the newest tuned candidate; without one, answers produced elsewhere (advise eval --predictions)
        tuned = [n for n in views if n.startswith("tuned:")] or [n for n in views if n.startswith("external:")]
        if not tuned:
            raise NothingToGate("the stored eval results have no tuned candidate: train first, or name the candidate "
                              f"to gate (have: {', '.join(sorted(views))})", file=store.path)
        candidate = tuned[0]
    result = evaluate_gates(gates, views, candidate, baseline, names=item_names(project),
                            file=str(project.project_file), line_of=project.key_line,
                            primary=summary.get("primary_metric"))
    if command is not None:
        run = store.start_run("gate", name=candidate, config={"gates": project.eval.gates, "baseline": baseline},
                              inputs_hash=summary.get("data", {}).get("hash"), command=command)
        store.finish_run(run, "done", result)
    return result
