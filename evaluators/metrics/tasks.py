"""Default metrics of each task kind; the first is the headline (primary) metric."""

from __future__ import annotations

from evaluators.metrics.base import MetricError

TASK_KINDS = ("classification", "extraction_json", "generation", "qa")



def default_metrics(
    task_kind: str,
    *,
    has_schema: bool = False,
    has_label_scores: bool = False,
    has_logprobs: bool = False,
    embeddings: bool = True,
) -> list[str]:
    """Metric names to compute for a task kind; the first one is the headline (primary) metric.

    ``has_schema``/``has_label_scores``/``has_logprobs`` add metrics that need those inputs;
    ``embeddings=False`` leaves out ``embedding_similarity`` (which loads a sentence model).
    """
    if task_kind == "classification":
        names = ["accuracy", "macro_f1", "macro_precision", "macro_recall"]
        if has_label_scores:
            names.append("roc_auc")
    elif task_kind == "extraction_json":
        names = ["json_match", "json_valid", "json_field_f1"]
        if has_schema:
            names.insert(2, "json_schema")
    elif task_kind == "generation":
        names = ["rouge_l", "rouge1", "rouge2", "bleu", "chrf"]
        if embeddings:
            names.append("embedding_similarity")
    elif task_kind == "qa":
        names = ["exact_match", "token_f1", "rouge_l"]
        if embeddings:
            names.append("embedding_similarity")
    else:
        raise MetricError(f"unknown task kind {task_kind!r}; expected one of {', '.join(TASK_KINDS)}")
    if has_logprobs:
        names += ["mean_logprob", "perplexity"]
    return names


def primary_metric(task_kind: str) -> str:
    return default_metrics(task_kind, embeddings=False)[0]


