"""The HTML report: one self-contained file a stakeholder can open and trust.

* the decision first (``decision.py``: ship, do not ship or inconclusive), the plan after it (``plan.py``:
  an online A/B test's size, what to monitor and when to re-train), then the verdict, results
  (with examples side by side), training, data health, cost, provenance and risk (``provenance.py``)
  and reproducibility;
* numbers read right: each metric's direction is named and colours follow it (a falling perplexity is
  green), p-values read "< 0.001", thousands are separated, each column has one unit (in its header);
* readable on a phone (tables scroll in place, example tables become cards) and printable;
* every piece of data and model text is escaped (jinja2 autoescape); charts are matplotlib SVG
  inlined in the page; there are no scripts and no network requests, enforced by a strict
  Content-Security-Policy (``default-src 'none'``);
* long texts are cut and the list of worse items is capped, so 1,000 eval items stay under 1 MB.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from advisor import __version__
from advisor.assess.estimate.compute import duration, parameter_count
from advisor.files import write_output
from advisor.report import charts
from advisor.report.decision import TESTS, higher_is_better

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
MAX_WORSE_ITEMS = 50
MAX_TEXT = 1500


def _env():
    from jinja2 import Environment, FunctionLoader, select_autoescape

    def load(name: str):
        return resources.files("advisor.report").joinpath("templates", name).read_text(encoding="utf-8")

    return Environment(loader=FunctionLoader(load), autoescape=select_autoescape(default=True, default_for_string=True),
                       trim_blocks=True, lstrip_blocks=True)


def _cut(text, limit: int = MAX_TEXT) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def _charts(data: dict, metric_names: list[str]) -> dict[str, list[str]]:

    out: dict[str, list[str]] = {"results": [], "training": [], "data": []}
    ev = data.get("eval") or {}
    runs = ev.get("runs") or []
    for m in metric_names[:2]:
        rows = [(r["candidate"], r["metrics"][m]) for r in runs if r["metrics"].get(m, {}).get("value") is not None]
        if rows:
            out["results"].append(charts.bar_with_ci(f"{m} by candidate (95% CI)", [c for c, _ in rows],
                                                     [x["value"] for _, x in rows], [x.get("ci") for _, x in rows], m))
    train = data.get("train") or {}
    hist = train.get("loss_history") or []
    pts = [(h["step"], h["loss"]) for h in hist if h.get("loss") is not None]
    if len(pts) >= 2:
        out["training"].append(charts.line("training loss", [s for s, _ in pts], [v for _, v in pts], "step", "loss"))
    a = data.get("assessment") or {}
    t = ((a.get("data") or {}).get("train") or {})
    h = (t.get("tokens") or {}).get("histogram")
    if h and h.get("counts"):
        out["data"].append(charts.histogram("tokens per train example", h["counts"], h["edges"], "tokens"))
    labels = (t.get("outputs") or {}).get("labels")
    if labels:
        out["data"].append(charts.horizontal_counts("train examples per label", labels["counts"]))
    return out


def _worse(data: dict) -> dict | None:
    w = (data.get("eval") or {}).get("worse")
    if not w:
        return None
    items = [{**{k: _cut(it.get(k)) for k in ("input", "reference", "a_output", "b_output")},
              "name": it.get("name")} for it in w["items"][:MAX_WORSE_ITEMS]]
    return {"a": w["a"], "b": w["b"], "items": items, "total": w.get("total", len(w["items"]))}


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def _signed(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:+,.{digits}f}"


def _pval(p) -> str:
    return "–" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _identical(d: dict) -> bool:
    """No difference at all: equal on every item (no wins, no losses) or, for corpus-level metrics that
    count none, a zero difference with a zero-width interval."""
    if d.get("delta") != 0:
        return False
    if d.get("wins") is not None or d.get("losses") is not None:
        return not d.get("wins") and not d.get("losses")
    ci = d.get("ci")
    return bool(ci) and ci[0] == 0 and ci[1] == 0


def _comparisons(ev: dict, directions: dict[str, bool], alpha: float = 0.05) -> tuple[list[dict], list[str]]:
    """Rows of the paired-comparisons table, coloured in each metric's direction; a pair that does not
    differ on a metric is not a row (a 0.000 difference between identical answers says nothing) but one
    note per pair."""
    rows, same = [], {}
    for c in ev.get("comparisons") or []:
        for m, d in (c.get("metrics") or {}).items():
            if _identical(d):
                same.setdefault((c["a"], c["b"]), []).append(m)
                continue
            hib = d.get("higher_is_better", directions.get(m, True))
            delta, p = d.get("delta"), d.get("p_value")
            tone = ""
            if delta is not None and delta != 0 and p is not None and p < alpha:
                tone = "good" if (delta > 0) == bool(hib) else "bad"
            rows.append({"a": c["a"], "b": c["b"], "metric": m, "hib": hib, "d": d, "tone": tone})
    notes = [f"{b} and {a} do not differ on {', '.join(ms)}: the same score on every item." for (a, b), ms in same.items()]
    return rows, notes


def _config_rows(config) -> list[tuple[str, str]]:
    import json

    if not isinstance(config, dict):
        return []
    out = []
    for k, v in config.items():
        if v is None or v == [] or v == {}:
            continue
        if isinstance(v, float):
            v = f"{v:g}"
        elif isinstance(v, int) and not isinstance(v, bool):
            v = f"{v:,}"
        elif not isinstance(v, str):
            v = json.dumps(v, default=str)
        out.append((k.replace("_", " "), v))
    return out


def _probe_charts(probe: dict | None) -> list[str]:
    """The probe's shots chart (score against k) and learning curve (score against training examples,
    with the extrapolated points), as inline SVG; data labels are plain text."""
    if not probe:
        return []
    out = []
    shots = [s for s in probe.get("shots") or [] if s.get("value") is not None]
    if len(shots) > 1:
        out.append(charts.bar_with_ci(f"{probe.get('metric')} against few-shot k", [f"k={s['k']}" for s in shots],
                                      [s["value"] for s in shots], [s.get("ci") for s in shots]))
    ft = [a for a in probe.get("arms") or [] if a.get("kind") == "fine-tuning" and a.get("value") is not None]
    if len(ft) > 1:
        xs = [a["train_examples"] for a in ft]
        ys = [a["value"] for a in ft]
        curve = probe.get("curve") or {}
        if curve.get("status") == "fitted":
            for pred in curve.get("predictions", {}).values():
                xs.append(pred["n"])
                ys.append(pred["value"])
        out.append(charts.line(f"{probe.get('metric')} against training examples (measured, then extrapolated)",
                               xs, ys, "training examples", probe.get("metric") or "score"))
    return out


def render_report(data: dict) -> str:
    """``data``: project (dict), assessment, eval ({runs, comparisons, worse, canary}), train, gate,
    repro (dict of label -> text), pipeline ({notes, training_note})."""
    ev = data.get("eval") or {}
    metric_names: list[str] = []
    for r in ev.get("runs") or []:
        for m in r.get("metrics", {}):
            if m not in metric_names:
                metric_names.append(m)
    env = _env()
    env.filters.update(num=_fmt, signed=_signed, pval=_pval, duration=duration, params=parameter_count)
    directions = {m: higher_is_better(m, ev) for m in metric_names}
    comparisons, same = _comparisons(ev, directions)
    css = resources.files("advisor.report").joinpath("templates", "report.css").read_text(encoding="utf-8")
    train = data.get("train")
    est = None
    a = data.get("assessment") or {}
    if train and a.get("estimate"):
        est = next((e for e in a["estimate"].get("methods", []) if e["method"] == train.get("estimate_method", train.get("method"))), None)
        if est is not None:
            est = dict(est)
            wh, where = est.get("wall_hours"), a["estimate"].get("hardware", {}).get("description", "")
            if est.get("cpu_hours") is not None and a["estimate"].get("hardware", {}).get("kind") != "gpu":
                wh, where = est["cpu_hours"], "this CPU (order of magnitude)"
            est["wall_seconds"], est["where"] = (None if wh is None else wh * 3600), where
    return env.get_template("report.html.jinja").render(
        csp=CSP, css=css, version=__version__, generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        project=data.get("project") or {}, assessment=a or None, eval=ev or None, train=train,
        train_estimate=est, gate=data.get("gate"), canary=ev.get("canary"), benchmarks=ev.get("benchmarks"),
        worse=_worse(data),
        metric_names=metric_names, charts=_charts(data, metric_names), decision=data.get("decision"),
        directions=directions, comparisons=comparisons, same_scores=same, tests=TESTS,
        hyperparameters=_config_rows((train or {}).get("config")),
        repro={k: _cut(v, 6000) for k, v in (data.get("repro") or {}).items()},
        pipeline={"notes": [], "training_note": None, **(data.get("pipeline") or {})},
        eval_note=data.get("eval_note"), train_note=data.get("train_note"),
        probe=data.get("probe"), probe_charts=_probe_charts(data.get("probe")),
        ratings=data.get("ratings"),
        plan=data.get("plan"), provenance=data.get("provenance"),
    )


def write_report(data: dict, out: Path) -> Path:

    return write_output(out, render_report(data), "the report (--out)")
