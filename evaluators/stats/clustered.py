"""Cluster-robust standard errors for evals whose items are not independent (several questions about the
same document, turns of one conversation): Miller (2024), "Adding Error Bars to Evals: A Statistical
Approach to Language Model Evaluations", arXiv:2411.00640, section 2.2 (eq. 4).

For scores ``s_i`` in clusters ``c`` with mean ``s̄`` over ``n`` items::

    SE_clustered^2 = SE_CLT^2 + 1/n^2 * sum_c sum_{i in c} sum_{j in c, j != i} (s_i - s̄)(s_j - s̄)
                   = 1/n^2 * sum_c (sum_{i in c} (s_i - s̄))^2

with ``SE_CLT^2 = 1/n^2 * sum_i (s_i - s̄)^2`` (the sandwich estimator without a small-sample
correction; with one item per cluster it is the plain CLT standard error). A paired difference uses the
same formula on ``d_i = b_i - a_i`` (Miller section 4.1). Intervals are ``value ± z * SE`` and the
paired p-value is the two-sided z-test, as in the paper; with few clusters (under ~30) they are
optimistic, and the result says how many clusters there were.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from evaluators.stats.base import DEFAULT_LEVEL, _as_float_array, _check_level, _interval, _z


def cluster_codes(clusters: Sequence[Any]) -> np.ndarray:
    """Integer codes of cluster keys; a missing key (None or "") is a cluster of its own."""
    codes: dict[Any, int] = {}
    out = np.empty(len(clusters), dtype=int)
    for i, c in enumerate(clusters):
        key = ("__own__", i) if c is None or c == "" else ("key", str(c))
        out[i] = codes.setdefault(key, len(codes))
    return out


def clustered_se(values: Any, clusters: Sequence[Any]) -> float | None:
    """Miller's cluster-robust standard error of the mean of ``values`` (None/NaN values dropped with
    their cluster labels); None when no value is left."""
    x = _as_float_array(values)
    if x.size != len(clusters):
        raise ValueError(f"values and clusters differ in length ({x.size} vs {len(clusters)})")
    keep = np.isfinite(x)
    x = x[keep]
    n = x.size
    if n == 0:
        return None
    codes = cluster_codes([c for c, k in zip(clusters, keep, strict=True) if k])
    resid = x - x.mean()
    sums = np.bincount(codes, weights=resid)
    return float(math.sqrt(float(np.sum(sums * sums))) / n)


def _n_clusters(clusters: Sequence[Any], keep: np.ndarray) -> int:
    return int(len(set(cluster_codes([c for c, k in zip(clusters, keep, strict=True) if k]).tolist())))


def clustered_mean_ci(values: Any, clusters: Sequence[Any], level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """Mean with a cluster-robust interval: ``{"value", "se", "ci", "n", "clusters", "method", "level"}``."""
    _check_level(level)
    x = _as_float_array(values)
    keep = np.isfinite(x)
    out: dict[str, Any] = {"value": None, "se": None, "ci": None, "n": int(keep.sum()), "clusters": 0,
                           "method": "cluster_robust_miller2024", "level": level}
    se = clustered_se(x, clusters)
    if se is None:
        return out
    mean = float(x[keep].mean())
    z = _z(level)
    out.update(value=mean, se=se, ci=_interval(mean - z * se, mean + z * se), clusters=_n_clusters(clusters, keep))
    return out


def clustered_paired(a: Any, b: Any, clusters: Sequence[Any], level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """Paired difference ``mean(b - a)`` with its cluster-robust SE, interval and two-sided z-test p-value,
    over the items scored on both sides: ``{"delta", "se", "ci", "p_value", "n", "clusters", "method"}``."""
    _check_level(level)
    xa, xb = _as_float_array(a), _as_float_array(b)
    if xa.shape != xb.shape or xa.size != len(clusters):
        raise ValueError("paired scores and clusters need the same number of items")
    d = xb - xa
    keep = np.isfinite(d)
    out: dict[str, Any] = {"delta": None, "se": None, "ci": None, "p_value": None, "n": int(keep.sum()),
                           "clusters": 0, "method": "cluster_robust_miller2024", "level": level}
    se = clustered_se(d, clusters)
    if se is None:
        return out
    delta = float(d[keep].mean())
    z = _z(level)
    if se > 0:
        p = 2.0 * (1.0 - NormalDist().cdf(abs(delta) / se))
    else:
        p = 1.0 if delta == 0 else 0.0
    out.update(delta=delta, se=se, ci=_interval(delta - z * se, delta + z * se), p_value=float(min(1.0, p)),
               clusters=_n_clusters(clusters, keep))
    return out
