"""Log-likelihood metrics of the reference under the model (``item['mean_logprob']`` and
``n_tokens``, computed by the backend): mean log-probability and perplexity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluators.metrics.base import CONTINUOUS, CorpusStat, Item, Metric, metric, register, sum_stat


def _logprob_key(config: Mapping[str, Any]) -> str:
    return str(config.get("key", "mean_logprob"))


@metric("mean_logprob", kind=CONTINUOUS, needs_reference=False, higher_is_better=True,
        description="mean per-token log-likelihood of the reference (item['mean_logprob'], from the backend)",
        value_range=(-math.inf, 0.0), requires=("mean_logprob",))
def _mean_logprob(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    v = item.get(_logprob_key(config))
    return None if v is None else float(v)


def _perplexity_item(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    v = item.get(_logprob_key(config))
    return None if v is None else math.exp(-float(v))


def _perplexity_corpus(
    preds: list[str], refs: list[list[str]], items: list[Item], config: Mapping[str, Any]
) -> CorpusStat:
    """exp(-sum(token log-likelihood) / tokens) when every item gives ``n_tokens``; otherwise
    exp(-mean of the per-item mean log-likelihoods)."""
    key = _logprob_key(config)
    lp = np.array([float(it[key]) for it in items], dtype=float)
    if items and all(it.get("n_tokens") for it in items):
        w = np.array([float(it["n_tokens"]) for it in items], dtype=float)
    else:
        w = np.ones_like(lp)
    rows = np.stack([lp * w, w], axis=1) if len(items) else np.zeros((0, 2))

    def from_stats(total: np.ndarray) -> float | None:
        return float(math.exp(-total[0] / total[1])) if total[1] > 0 else None

    return sum_stat(rows, from_stats)


register(Metric(name="perplexity", kind=CONTINUOUS, needs_reference=False, higher_is_better=False,
                description="exp(-mean log-likelihood), token-weighted when items give n_tokens",
                score_fn=_perplexity_item, corpus_fn=_perplexity_corpus, value_range=(1.0, math.inf),
                requires=("mean_logprob",)))
