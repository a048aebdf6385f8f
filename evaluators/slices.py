"""Scores per slice of the eval items, with intervals: per reference label (a record's ``label``, else the
reference answer of a classification task) and per tag (a record's ``tags``), for every candidate on the
headline metric; the worst slices named; and per slice the paired difference of every candidate against
the reference run (the first, as in the eval's comparisons) with its raw and Benjamini-Hochberg adjusted
p-value (all slices and candidates one family).

Slices are exploratory: many of them, each small, so an interval is wide and a low slice may be chance;
the report says so and names the worst ones to look at, not to gate on.
"""

from __future__ import annotations

from typing import Any

from evaluators import stats
from evaluators.evaluator import CandidateRun
from evaluators.items import EvalItem

WORST_MAX = 3  # slices named as the worst per candidate
MIN_ITEMS = 3  # a slice needs at least this many scored items to be named among the worst


def item_slices(item: EvalItem, task_kind: str) -> list[tuple[str, str]]:
    """The (kind, name) slices an item belongs to: its label and each of its tags."""
    extra = item.record.extra or {}
    out: list[tuple[str, str]] = []
    label = extra.get("label")
    if label is None and task_kind == "classification":
        label = item.references[0].strip() if item.references else None
    if label is not None and not isinstance(label, (dict, list)):
        out.append(("label", str(label)))
    tags = extra.get("tags")
    for t in tags if isinstance(tags, list) else ([tags] if tags is not None else []):
        if not isinstance(t, (dict, list)):
            out.append(("tag", str(t)))
    return list(dict.fromkeys(out))


def slice_block(runs: list[CandidateRun], items: list[EvalItem], metric: str | None, task_kind: str) -> dict | None:
    """Per-slice means with 95% intervals for every run (``metric``'s per-item scores), or None when the
    items have no label or tag (or the metric has no per-item score)."""
    if metric is None or not runs:
        return None
    membership = [item_slices(it, task_kind) for it in items]
    names = list(dict.fromkeys(s for ms in membership for s in ms))
    if not names:
        return None
    kinds = list(dict.fromkeys(k for k, _ in names))
    names.sort(key=lambda s: (kinds.index(s[0]), s[1]))
    out: dict[str, Any] = {"metric": metric, "kinds": kinds, "slices": len(names), "candidates": {}, "worst": {},
                           "min_items": MIN_ITEMS}
    for run in runs:
        scores = run.scores.get(metric)
        if scores is None:
            continue
        rows = []
        for kind, name in names:
            vals = [scores[i] for i, ms in enumerate(membership) if (kind, name) in ms and scores[i] is not None]
            ci = stats.mean_ci(vals)
            rows.append({"kind": kind, "name": name, "n": ci["n"], "value": ci["value"], "ci": ci["ci"]})
        out["candidates"][run.name] = rows
        ranked = sorted((r for r in rows if r["n"] >= MIN_ITEMS and r["value"] is not None),
                        key=lambda r: (r["value"], (r["ci"] or [0, 0])[1], -r["n"]))
        out["worst"][run.name] = ranked[:WORST_MAX]
    out["comparisons"] = _slice_comparisons(runs, membership, names, metric)
    return out if out["candidates"] else None


def _slice_comparisons(runs: list[CandidateRun], membership: list[list[tuple[str, str]]],
                       names: list[tuple[str, str]], metric: str) -> list[dict]:
    """Each run against the first, per slice: delta, its interval and p-value, and BH across them all."""
    ref = runs[0]
    out, entries = [], []
    for run in runs[1:]:
        sa, sb = ref.scores.get(metric), run.scores.get(metric)
        if sa is None or sb is None:
            continue
        rows = []
        for kind, name in names:
            idx = [i for i, ms in enumerate(membership) if (kind, name) in ms and sa[i] is not None and sb[i] is not None]
            if not idx:
                continue
            c = stats.compare(metric, [sa[i] for i in idx], [sb[i] for i in idx])
            row = {"kind": kind, "name": name, "n": c["n"], "delta": c["delta"], "ci": c["ci"],
                   "p_value": c["p_value"], "test": c["test"]}
            rows.append(row)
            entries.append(row)
        out.append({"a": ref.name, "b": run.name, "slices": rows})
    for row, q in zip(entries, stats.benjamini_hochberg([r["p_value"] for r in entries]), strict=True):
        row["p_bh"] = q
    return out
