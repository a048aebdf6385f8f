"""Constant output: a candidate that gives one answer to (nearly) every item.

A model that collapsed onto one label can still score well on skewed data (the majority class of a
90/10 set scores 0.90 accuracy); such a candidate never reads as a win. :func:`constant_output` is the
one detector: the eval flags each run with it (thresholds in ``rubrics/eval.yaml``), the comparisons,
the gates and the report show the flag, and the report's decision box refuses a flagged candidate as
a ship (advisor.report.decision; for results stored without the flag it runs this detector with
``rubrics/report.yaml``'s thresholds).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from advisor.rubric import load_rubric, value


def _norm(text) -> str:
    return " ".join(str(text or "").split()).lower()


def constant_output(outputs: Sequence[str | None], references: Sequence[str | None], share: float, margin: float,
                    min_items: int = 5) -> dict | None:
    """The candidate's most common answer when it covers ``share`` of the answered items and the
    references are not (nearly) as concentrated (its share exceeds theirs by more than ``margin``);
    else None. Answers compare case-folded, whitespace collapsed."""
    got = [_norm(o) for o in outputs if o is not None]
    if len(got) < max(1, min_items):
        return None
    answer, count = Counter(got).most_common(1)[0]
    top = count / len(got)
    refs = [_norm(r) for r in references if r is not None]
    ref_top = Counter(refs).most_common(1)[0][1] / len(refs) if refs else 0.0
    if top >= share and top > ref_top + margin:
        return {"answer": answer[:80], "share": top, "count": count, "items": len(got), "reference_share": ref_top}
    return None


def thresholds(project_root: Path | None = None) -> tuple[float, float, int]:
    """(share, margin, min_items) of ``rubrics/eval.yaml`` (a project may override them)."""
    r = load_rubric("eval", project_root)
    return (float(value(r, "constant_output", "share")), float(value(r, "constant_output", "margin")),
            int(value(r, "constant_output", "min_items")))


def describe(flag: dict | None) -> str | None:
    """``constant output: 'yes' for 150 of 150 items`` (None for no flag)."""
    if not flag:
        return None
    return f"constant output: '{flag['answer']}' for {flag['count']} of {flag['items']} items"
