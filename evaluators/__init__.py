"""Evaluation: metrics (``evaluators.metrics``) and the statistics behind "is it really better?"
(``evaluators.stats``).

The names below are re-exported lazily (PEP 562), so ``import evaluators`` costs nothing; the
submodules import numpy/scipy when first used, and never torch, transformers or
sentence-transformers at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # metrics
    "Metric": "metrics",
    "MetricError": "metrics",
    "MetricResult": "metrics",
    "CorpusStat": "metrics",
    "METRICS": "metrics",
    "TASK_KINDS": "metrics",
    "compare_metric": "metrics",
    "default_metrics": "metrics",
    "evaluate": "metrics",
    "get_metric": "metrics",
    "list_metrics": "metrics",
    "primary_metric": "metrics",
    "register": "metrics",
    # stats
    "bootstrap_ci": "stats",
    "compare": "stats",
    "items_needed": "stats",
    "mcnemar_exact": "stats",
    "mean_ci": "stats",
    "min_detectable_effect": "stats",
    "paired_bootstrap": "stats",
    "paired_bootstrap_stat": "stats",
    "power_paired": "stats",
    "wilson_interval": "stats",
    "wins_losses_ties": "stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evaluators' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
