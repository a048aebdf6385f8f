"""Metric registry: what each metric measures, per item and over a corpus.

A :class:`Metric` knows

* ``kind``: ``"binary"`` (every per-item score is 0 or 1, e.g. exact match) or ``"continuous"``;
* ``needs_reference`` and ``higher_is_better``;
* a per-item score ``score(prediction, references, item) -> float | None`` (``None``: not defined
  for this item, e.g. no reference, or a metric that only exists over a corpus such as macro-F1);
* optionally a corpus-level statistic (``corpus(...)``): BLEU and chrF (sacrebleu corpus scores,
  not means of sentence scores), macro-F1/precision/recall (scikit-learn semantics), ROC AUC and
  perplexity. Its value on resampled item indices gives the bootstrap CI.

Each metric is registered where it is defined: :mod:`.text` (exact match, contains, token F1, ROUGE,
BLEU, chrF), :mod:`.classification` (accuracy, macro P/R/F1, ROC AUC), :mod:`.json`,
:mod:`.embedding`, :mod:`.likelihood` (mean log-probability, perplexity), :mod:`.judge` and :mod:`.rag`
(context recall/precision, faithfulness, citation correctness of RAG candidates; lexical).
:func:`evaluate` turns predictions into the contract's ``{"value", "ci"}`` (plus ``n``/``method``),
:func:`compare_metric` into ``{"delta", "ci", "p_value", ...}`` with the tests of
:mod:`evaluators.stats`.

Scales: BLEU and chrF are 0-100 (sacrebleu's convention); everything else that is a proportion or
an F-measure is 0-1; ``embedding_similarity`` is a cosine in [-1, 1].

Nothing heavy is imported at package import: sklearn, sacrebleu, rouge-score and jsonschema are
imported on first use, sentence-transformers only inside ``embedding_similarity``.
"""

from __future__ import annotations

from evaluators.metrics import classification, embedding, json, judge, likelihood, rag, text  # noqa: F401 (they register)
from evaluators.metrics.base import (
    METRICS,
    CorpusStat,
    Metric,
    MetricError,
    MetricResult,
    compare_metric,
    evaluate,
    get_metric,
    list_metrics,
    metric,
    register,
)
from evaluators.metrics.classification import sklearn_macro
from evaluators.metrics.embedding import embedding_model_path
from evaluators.metrics.json import parse_json
from evaluators.metrics.normalize import normalize_answer, normalize_label
from evaluators.metrics.tasks import TASK_KINDS, default_metrics, primary_metric
from evaluators.metrics.text import UnicodeRougeTokenizer

__all__ = [
    "METRICS",
    "TASK_KINDS",
    "CorpusStat",
    "Metric",
    "MetricError",
    "MetricResult",
    "UnicodeRougeTokenizer",
    "compare_metric",
    "default_metrics",
    "embedding_model_path",
    "evaluate",
    "get_metric",
    "list_metrics",
    "metric",
    "normalize_answer",
    "normalize_label",
    "parse_json",
    "primary_metric",
    "register",
    "sklearn_macro",
]
