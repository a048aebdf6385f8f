"""Stored eval results: each candidate's run is stored (``kind="eval"``, ``name=<candidate>``) with its
per-item outputs and scores, and the whole result as ``kind="eval_summary"``, so a gate or a report
reads them without any model call."""

from __future__ import annotations

from collections.abc import Sequence

from advisor.data.dataset import load_project_data
from advisor.hashing import stable_hash
from advisor.hf import model_fingerprint
from advisor.project import Project
from advisor.store import Store
from evaluators.candidates import base_model_ref
from evaluators.items import EvalItem, make_items
from evaluators.stats.multiple import adjust_comparisons


def summary_key(project: Project, items: Sequence[EvalItem]) -> str:
    """What a stored eval summary is valid for: the eval items and the base model's identity."""
    base = base_model_ref(project)
    return stable_hash({"items": [it.hash for it in items],
                        "base_model": model_fingerprint(base) if base else None})


def stored_results(project: Project, store: Store | None = None, max_items: int | None = None) -> dict | None:
    """The latest stored ``advise eval`` result for the project's current eval items and base model,
    without any model call or model load (for gates and reports); None when the store has none.
    ``max_items`` as given to the eval (default: ``project.eval.max_items``)."""
    own = store is None
    store = store or Store.for_project(project)
    try:
        data = load_project_data(project)
        key = summary_key(project, make_items(data.eval, max_items or project.eval.max_items))
        return merge_summaries([r["result"] for r in store.find_runs("eval_summary", inputs_hash=key, limit=50)
                                if r.get("result")])
    finally:
        if own:
            store.close()


def _comparable(a: dict, b: dict) -> bool:
    """Two summaries whose runs can stand side by side: the same metrics and generation settings."""
    def key(s: dict) -> dict:
        return {k: v for k, v in (s.get("settings") or {}).items() if k != "batch_size"}
    return a.get("metrics") == b.get("metrics") and key(a) == key(b)


def merge_summaries(summaries: list[dict]) -> dict | None:
    """The newest summary, completed with the candidates that only older ones evaluated on the same items
    and settings (``advise eval --candidate base:zero-shot`` after a tuned eval keeps the tuned results
    in view), with their comparisons. Newest first in; None for none."""
    if not summaries:
        return None
    out = dict(summaries[0])
    runs, comps = list(out.get("runs") or []), list(out.get("comparisons") or [])
    names = {r["candidate"] for r in runs}
    merged_from = []
    for older in summaries[1:]:
        if not _comparable(out, older):
            continue
        add = [r for r in older.get("runs") or [] if r["candidate"] not in names]
        if add:
            runs += add
            names |= {r["candidate"] for r in add}
            merged_from.append(older.get("summary_run_id"))
            have = {(c["a"], c["b"]) for c in comps}
            comps += [c for c in older.get("comparisons") or []
                      if (c["a"], c["b"]) not in have and {c["a"], c["b"]} <= names]
        if not out.get("canary") and older.get("canary"):
            out["canary"] = older["canary"]
    if merged_from:
        out.update(runs=runs, comparisons=comps, merged_from=merged_from)
        if out.get("multiplicity"):  # the comparisons of older evals join the family: adjust them together
            out["multiplicity"] = adjust_comparisons(comps, out.get("primary_metric"),
                                                     declared=bool(out["multiplicity"].get("declared")))
    return out

