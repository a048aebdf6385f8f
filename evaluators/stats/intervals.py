"""Intervals of one run: Wilson for 0/1 scores, bootstrap (or Student-t) of the mean, bootstrap of a
corpus statistic."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from evaluators.stats.base import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    _check_level,
    _finite,
    _interval,
    _percentile_interval,
    _resample_blocks,
    _sps,
    _z,
    is_binary,
)

# ------------------------------------------------------------------------------------ one-run intervals


def wilson_interval(successes: int, n: int, level: float = DEFAULT_LEVEL) -> list[float] | None:
    """Wilson score interval for a binomial proportion ``successes / n`` (``None`` when n == 0)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, n], got {successes} of {n}")
    z = _z(level)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return _interval(lo, hi)


def mean_ci(
    values: Any,
    level: float = DEFAULT_LEVEL,
    method: str = "auto",
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Mean of ``values`` with a confidence interval.

    ``method``: ``"auto"`` (Wilson when all values are 0/1, bootstrap otherwise), ``"wilson"``,
    ``"bootstrap"`` (percentile, seeded) or ``"t"`` (Student-t). ``None``/NaN values are dropped.

    Returns ``{"value", "ci", "n", "method", "level"}``; ``value`` and ``ci`` are ``None`` when no
    value is left.
    """
    _check_level(level)
    arr = _finite(values)
    n = int(arr.size)
    if method == "auto":
        method = "wilson" if is_binary(arr) else "bootstrap"
    if method not in {"wilson", "bootstrap", "t"}:
        raise ValueError(f"unknown interval method {method!r} (auto, wilson, bootstrap, t)")
    out: dict[str, Any] = {"value": None, "ci": None, "n": n, "method": method, "level": level}
    if n == 0:
        return out
    mean = float(arr.mean())
    out["value"] = mean
    if method == "wilson":
        if not is_binary(arr):
            raise ValueError("the Wilson interval needs 0/1 values")
        out["ci"] = wilson_interval(int(arr.sum()), n, level)
    elif method == "t":
        if n < 2:
            out["ci"] = _interval(mean, mean)
        else:
            sem = float(arr.std(ddof=1)) / math.sqrt(n)
            t = float(_sps().t.ppf(0.5 + level / 2.0, df=n - 1))
            out["ci"] = _interval(mean - t * sem, mean + t * sem)
    else:
        rng = np.random.default_rng(seed)
        means = np.concatenate([arr[idx].mean(axis=1) for idx in _resample_blocks(rng, n, n_resamples)])
        out["ci"] = _percentile_interval(means, level)
    return out


def bootstrap_ci(
    stat_fn: Callable[[np.ndarray], float | None],
    n_items: int,
    level: float = DEFAULT_LEVEL,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Percentile bootstrap interval of a corpus-level statistic.

    ``stat_fn(indices)`` computes the statistic on the items at ``indices`` (an int array, with
    repeats); it may return ``None``/NaN for a resample where it is undefined (e.g. ROC AUC with one
    class), and those resamples are left out. When more than half are undefined the CI is ``None``.

    Returns ``{"value", "ci", "n", "method": "bootstrap", "level", "n_resamples"}``.
    """
    _check_level(level)
    out: dict[str, Any] = {
        "value": None,
        "ci": None,
        "n": int(n_items),
        "method": "bootstrap",
        "level": level,
        "n_resamples": n_resamples,
    }
    if n_items <= 0:
        return out
    value = stat_fn(np.arange(n_items))
    out["value"] = None if value is None or not math.isfinite(value) else float(value)
    rng = np.random.default_rng(seed)
    samples = np.empty(n_resamples, dtype=float)
    many = getattr(stat_fn, "many", None)  # vectorised over a block of resamples (CorpusStat)
    i = 0
    for block in _resample_blocks(rng, n_items, n_resamples):
        if many is not None:
            samples[i : i + len(block)] = many(block)
            i += len(block)
            continue
        for idx in block:
            v = stat_fn(idx)
            samples[i] = np.nan if v is None else float(v)
            i += 1
    if np.isfinite(samples).sum() * 2 >= n_resamples:
        out["ci"] = _percentile_interval(samples, level)
    return out


