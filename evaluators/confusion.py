"""A candidate's confusion matrix on a classification-like eval: gold label (rows) by answer (columns).

Labels compare normalised (:func:`evaluators.metrics.normalize.normalize_label`); the ``top`` most
frequent gold labels are shown by name (``rubrics/eval.yaml`` confusion.top_labels), every other gold
label and every answer outside them is counted under ``other``. Stored with each run's summary
(``confusion``) and shown in the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from evaluators.metrics.normalize import normalize_label

OTHER = "other"


def confusion_matrix(outputs: Sequence[str | None], references: Sequence[Sequence[str]], top: int) -> dict | None:
    """``{"labels": [...], "matrix": [[count]], "items": n, "other": bool}`` over the answered items
    (``outputs[i]`` None: not answered, left out); None when no item was answered."""
    pairs = [(normalize_label(r[0]), normalize_label(o)) for o, r in zip(outputs, references, strict=True)
             if o is not None and r]
    if not pairs:
        return None
    spelling: dict[str, str] = {}
    for r in references:
        if r:
            spelling.setdefault(normalize_label(r[0]), r[0].strip())
    gold = Counter(g for g, _ in pairs)
    shown = [g for g, _ in sorted(gold.items(), key=lambda kv: (-kv[1], kv[0]))[: max(1, top)]]
    index = {g: i for i, g in enumerate(shown)}
    other = any(g not in index or p not in index for g, p in pairs)
    size = len(shown) + (1 if other else 0)
    matrix = [[0] * size for _ in range(size)]
    for g, p in pairs:
        matrix[index.get(g, len(shown))][index.get(p, len(shown))] += 1
    labels = [spelling.get(g, g)[:60] for g in shown] + ([OTHER] if other else [])
    return {"labels": labels, "matrix": matrix, "items": len(pairs), "other": other}
