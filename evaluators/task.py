"""What the task is and what to measure: the task kind from the reference outputs, the metrics of
the project (``eval.metrics``, else the defaults of the kind) and the headline metric."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from advisor.data.records import Record
from advisor.errors import AdviseError
from advisor.project import Project
from advisor.rubric import load_rubric, value
from evaluators.items import EvalItem
from evaluators.metrics import MetricError, default_metrics, get_metric

JSON_SHARE = 0.9  # share of reference outputs that parse as JSON for an extraction task
SHORT_ANSWER_WORDS = 8  # mean words of a reference at most for a QA task (longer: generation)


def detect_task_kind(records: Sequence[Record], project_root: Path | None = None) -> str:
    """classification (label-like outputs: a small closed set of short answers), extraction_json (JSON
    outputs), qa (short free answers) or generation, from the reference outputs."""

    outs = [r.output.strip() for r in records if r.output and r.output.strip()]
    if not outs:
        return "generation"
    parsed = 0
    for o in outs:
        if o[:1] in "{[":
            try:
                json.loads(o)
                parsed += 1
            except ValueError:
                pass
    if parsed / len(outs) >= JSON_SHARE:
        return "extraction_json"
    rubric = load_rubric("data_checks", project_root)
    labels = {o.casefold() for o in outs}
    mean_words = sum(len(o.split()) for o in outs) / len(outs)
    if (len(outs) >= 10 and len(labels) <= value(rubric, "outputs", "label_max_classes")
            and mean_words <= value(rubric, "outputs", "label_max_words")
            and len(labels) / len(outs) <= value(rubric, "outputs", "label_max_distinct_share")):
        return "classification"
    return "qa" if mean_words <= SHORT_ANSWER_WORDS else "generation"


def choose_metrics(project: Project, kind: str, *, has_schema: bool = False, has_label_scores: bool = False,
                   has_logprobs: bool = False, judge: bool = False) -> list[str]:
    """project.eval.metrics when set (validated), else the defaults of the task kind; the first
    per-item-or-corpus metric is the headline."""

    if project.eval.metrics:
        names = []
        for n in project.eval.metrics:
            if n == "judge_pairwise":
                names.append(n)
                continue
            try:
                names.append(get_metric(n).name)
            except MetricError as e:
                raise AdviseError(f"eval.metrics: {e}", file=project.project_file) from None
        if judge and "judge_score" not in names:
            names.append("judge_score")
        return list(dict.fromkeys(names))
    names = default_metrics(kind, has_schema=has_schema, has_label_scores=has_label_scores,
                            has_logprobs=has_logprobs and kind in ("generation", "qa"))
    if judge:
        names.append("judge_score")
    return names


def label_token_cap(items: Sequence[EvalItem], train: Sequence[Record]) -> int:
    """A generous bound on the tokens of any label (UTF-8 bytes + 8): byte-level tokenizers never need
    more tokens than bytes, so a longer reply cannot be a label."""
    longest = max([len(r.encode()) for it in items for r in it.references] +
                  [len(r.output.strip().encode()) for r in train] + [1])
    return longest + 8



def headline_metric(metrics: Sequence[str]) -> str | None:
    """The headline metric: the first one with a per-item score."""
    for m in metrics:
        if m != "judge_pairwise" and get_metric(m).per_item:
            return m
    return None
