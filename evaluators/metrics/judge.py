"""``judge_score``: the LLM-as-judge score an item carries (``item['judge_score']``, written by the
eval from :mod:`evaluators.judge`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluators.metrics.base import CONTINUOUS, Item, metric


@metric("judge_score", kind=CONTINUOUS, needs_reference=False, higher_is_better=True,
        description="LLM-as-judge score in [0, 1] from a rubric template (item['judge_score'], see evaluators.judge)",
        requires=("judge_score",))
def _judge_score(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    return None if item.get("judge_score") is None else float(item["judge_score"])
