"""What keeps an eval result from flattering a bad model, attached to each run and comparison:

* per run (:func:`run_honesty`): the constant-output flag (:mod:`evaluators.constant`), the confusion
  matrix on classification-like evals (:mod:`evaluators.confusion`) and what the length limits did
  (:mod:`evaluators.length`);
* per comparison (:func:`mark_comparisons`): whether either side gives one answer to nearly every
  item (such a b is never a win: ``b_constant_output``), and the trivial baselines of the primary
  metric beside the two scores (:mod:`evaluators.baselines`);

They are shown in ``advise eval``'s tables (a ``flags`` column, a note per comparison), not as warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.rubric import load_rubric, value
from evaluators.baselines import baseline_values
from evaluators.confusion import confusion_matrix
from evaluators.constant import constant_output, describe, thresholds
from evaluators.evaluator import CandidateRun
from evaluators.length import length_summary


def run_honesty(run: CandidateRun, kind: str, limit: int, project_root: Path | None = None) -> dict[str, Any]:
    """``{"constant_output", "length", "confusion" (classification only)}`` of one run."""
    ok = run.ok
    share, margin, min_items = thresholds(project_root)
    flag = constant_output([run.outputs[i] for i in ok], [run.items[i].references[0] for i in ok
                                                          if run.items[i].references], share, margin, min_items)
    out: dict[str, Any] = {"constant_output": flag, "length": length_summary(run.data, run.errors, limit)}
    if flag:
        flag["text"] = describe(flag)
    if kind == "classification":
        top = int(value(load_rubric("eval", project_root), "confusion", "top_labels"))
        out["confusion"] = confusion_matrix([run.outputs[i] if run.errors[i] is None else None
                                             for i in range(len(run.items))], [it.references for it in run.items], top)
    return out


def mark_comparisons(comparisons: list[dict], runs: Sequence[CandidateRun], baselines: Sequence[dict]) -> None:
    """Mark, in place, each comparison whose side gives one answer to nearly every item, and add the
    trivial baselines' scores on its primary metric."""
    flags = {r.name: (r.honesty or {}).get("constant_output") for r in runs}
    for c in comparisons:
        for side in ("a", "b"):
            f = flags.get(c[side])
            if f:
                c[f"{side}_constant_output"] = describe(f)
        if c.get("b_constant_output"):
            c["note"] = f"{c['b']} is not a win: {c['b_constant_output']}"
        vals = baseline_values(baselines, c.get("primary_metric"))
        if vals:
            c["baselines"] = vals
