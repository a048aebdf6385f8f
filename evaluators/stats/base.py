"""Constants and helpers shared by the intervals, paired tests and power estimates (seeded: the same
inputs always give the same numbers)."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

DEFAULT_SEED = 20240611
DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95

#: Largest number of non-zero paired differences for which the sign-flip test enumerates all 2^m
#: sign patterns exactly instead of sampling them.
EXACT_SIGN_FLIP_MAX = 12

# Keep one resampling block under about this many index entries (memory bound for large n).
_BLOCK_ENTRIES = 4_000_000


# --------------------------------------------------------------------------------------------- helpers


def _as_float_array(values: Any) -> np.ndarray:
    """1-D float array; ``None`` becomes NaN."""
    if isinstance(values, np.ndarray):
        arr = values.astype(float, copy=False).ravel()
    else:
        arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return arr


def _finite(values: Any) -> np.ndarray:
    arr = _as_float_array(values)
    return arr[np.isfinite(arr)]


def _sps():
    """scipy.stats, imported on first use (it costs ~0.5 s)."""
    from scipy import stats

    return stats


def _z(level: float) -> float:
    # the standard library's normal quantile (Wichura's AS241, ~1e-16): no scipy import on the hot path
    _check_level(level)
    return float(NormalDist().inv_cdf(0.5 + level / 2.0))


def _binom_half_cdf(x: int, m: int) -> float:
    """P(X <= x) for X ~ Binomial(m, 1/2): exact integer arithmetic for moderate m (no scipy import)."""
    if m > 5000:
        return float(_sps().binom.cdf(x, m, 0.5))
    return sum(math.comb(m, k) for k in range(x + 1)) / (1 << m)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1, got {level!r}")


def _interval(lo: float, hi: float) -> list[float]:
    return [float(lo), float(hi)]


def _percentile_interval(samples: np.ndarray, level: float) -> list[float] | None:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    alpha = 1.0 - level
    lo, hi = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return _interval(lo, hi)


def _resample_blocks(rng: np.random.Generator, n: int, n_resamples: int):
    """Yield blocks of bootstrap index rows, shape (rows, n), ``n_resamples`` rows in total."""
    rows = max(1, min(n_resamples, _BLOCK_ENTRIES // max(n, 1)))
    done = 0
    while done < n_resamples:
        k = min(rows, n_resamples - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def is_binary(values: Any) -> bool:
    """True when every finite value is 0 or 1 (and there is at least one)."""
    arr = _finite(values)
    return arr.size > 0 and bool(np.all((arr == 0.0) | (arr == 1.0)))


