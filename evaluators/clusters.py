"""Clustered items (``eval.cluster_field`` in project.yaml, e.g. ``doc_id`` or ``metadata.doc_id``): several
eval items about one document or conversation are not independent, and intervals that treat them as
independent are too narrow. Every per-item metric of every run and comparison gets Miller's (2024)
cluster-robust interval (:mod:`evaluators.stats.clustered`) beside the usual one, under ``clustered``."""

from __future__ import annotations

from typing import Any

from evaluators import stats
from evaluators.evaluator import CandidateRun
from evaluators.items import EvalItem
from evaluators.stats.clustered import cluster_codes


def record_field(item: EvalItem, path: str) -> Any:
    """A record's field by dotted path into its extra keys (``doc_id``, ``metadata.doc_id``); None when absent."""
    node: Any = item.record.extra or {}
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if isinstance(node, (dict, list)) else node


def cluster_block(field: str | None, runs: list[CandidateRun], items: list[EvalItem], run_summaries: list[dict],
                  comparisons: list[dict]) -> dict | None:
    """Add ``clustered`` intervals to the runs' and comparisons' per-item metrics (in place); returns
    ``{"field", "clusters", "items", "missing", "method"}`` or None without a cluster field."""
    if not field:
        return None
    keys = [record_field(it, field) for it in items]
    missing = sum(1 for k in keys if k is None or k == "")
    by_name = {r.name: r for r in runs}
    for summary in run_summaries:
        run = by_name.get(summary["candidate"])
        if run is None:
            continue
        for m, entry in summary["metrics"].items():
            if m in run.scores:
                c = stats.clustered_mean_ci(run.scores[m], keys)
                if c["n"]:
                    entry["clustered"] = {k: c[k] for k in ("se", "ci", "clusters", "n")}
    for comp in comparisons:
        a, b = by_name.get(comp["a"]), by_name.get(comp["b"])
        if a is None or b is None:
            continue
        common = [i for i in range(len(items)) if a.errors[i] is None and b.errors[i] is None]
        for m, entry in comp["metrics"].items():
            if m in a.scores and m in b.scores:
                c = stats.clustered_paired([a.scores[m][i] for i in common], [b.scores[m][i] for i in common],
                                           [keys[i] for i in common])
                if c["n"]:
                    entry["clustered"] = {k: c[k] for k in ("se", "ci", "p_value", "clusters", "n")}
    return {"field": field, "clusters": len(set(cluster_codes(keys).tolist())), "items": len(items),
            "missing": missing, "method": "cluster_robust_miller2024"}
