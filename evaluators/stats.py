"""Statistics for "is it better, and by how much, really?" (pure numpy/scipy, deterministic).

Everything here is seeded (``DEFAULT_SEED``): the same inputs always give the same intervals and
p-values, so a report or a CI gate does not flicker between runs.

Conventions
-----------
* Intervals are two-sided at ``level`` (default 0.95) and returned as ``[lo, hi]`` lists of floats
  (JSON-ready), or ``None`` when undefined (no items).
* In a comparison ``a`` is the reference run (e.g. the base model) and ``b`` the candidate (e.g. the
  fine-tuned model); ``delta = mean(b) - mean(a)`` in the metric's own units. ``wins`` counts items
  where ``b`` is better than ``a`` *in the metric's direction* (``higher_is_better``).

Methods
-------
* ``mean_ci``: Wilson score interval for 0/1 values ("binary"); percentile bootstrap of the mean
  (2,000 resamples by default) for anything else; Student-t interval on request.
* ``compare`` for binary metrics: McNemar's exact test (two-sided binomial test on the discordant
  pairs) for the p-value and Newcombe's hybrid score interval for the difference of paired
  proportions (Newcombe 1998, method 10) for the CI.
* ``compare`` for continuous metrics (``paired_bootstrap``): the CI is the percentile bootstrap of the
  mean paired difference (items resampled with replacement); the two-sided p-value is a **sign-flip
  (paired permutation) test** on the paired differences: under H0 each difference is symmetric about
  zero, so its sign is flipped at random (exactly, over all 2^m sign patterns, when the m non-zero
  differences are few; by Monte Carlo otherwise), p = share of flipped means at least as far from
  zero as the observed one (Monte Carlo with the +1 correction, so p >= 1/(n_resamples+1)).
* ``paired_bootstrap_stat`` for corpus-level metrics (BLEU, macro-F1, ...) whose value is not a mean
  of per-item values: items are resampled (the same indices for both runs), the CI is the percentile
  interval of the resampled deltas and the p-value the share of centred resampled deltas at least as
  extreme as the observed delta (Koehn 2004 / Riezler & Maxwell 2005 style paired bootstrap test).
* Power: normal approximations; McNemar's after Connor (1987), continuous as a paired z-test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product
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

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "bootstrap_ci",
    "compare",
    "is_binary",
    "items_needed",
    "mcnemar_exact",
    "mean_ci",
    "min_detectable_effect",
    "newcombe_paired_ci",
    "paired_bootstrap",
    "paired_bootstrap_stat",
    "power_paired",
    "sign_flip_pvalue",
    "wilson_interval",
    "wins_losses_ties",
]


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


# ------------------------------------------------------------------------------------------- pairs


def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise-complete arrays (items where either side is None/NaN are dropped)."""
    xa, xb = _as_float_array(a), _as_float_array(b)
    if xa.shape != xb.shape:
        raise ValueError(f"paired scores need the same number of items ({xa.size} vs {xb.size})")
    keep = np.isfinite(xa) & np.isfinite(xb)
    return xa[keep], xb[keep]


def wins_losses_ties(a: Any, b: Any, tol: float = 0.0, *, higher_is_better: bool = True) -> dict[str, int]:
    """Per-item head-to-head of ``b`` against ``a``.

    A *win* is an item where ``b`` beats ``a`` by more than ``tol`` in the metric's direction; a
    *loss* the reverse; everything else (including ``|b - a| <= tol``) is a tie. Items missing on
    either side are not counted.
    """
    xa, xb = _paired(a, b)
    d = xb - xa if higher_is_better else xa - xb
    wins = int(np.sum(d > tol))
    losses = int(np.sum(d < -tol))
    return {"wins": wins, "losses": losses, "ties": int(d.size) - wins - losses}


def mcnemar_exact(a_correct: Any, b_correct: Any) -> dict[str, Any]:
    """McNemar's exact test on paired 0/1 outcomes.

    ``b`` = items ``a`` got right and ``b`` got wrong, ``c`` = items ``a`` got wrong and ``b`` right
    (the discordant pairs). Under H0 ``c ~ Binomial(b + c, 1/2)``; the two-sided exact p-value is
    ``min(1, 2 * P(X <= min(b, c)))`` (1.0 when there are no discordant pairs).

    Returns ``{"b", "c", "n", "p_value"}``.
    """
    xa, xb = _paired(a_correct, b_correct)
    if not (is_binary(xa) or xa.size == 0) or not (is_binary(xb) or xb.size == 0):
        raise ValueError("McNemar's test needs 0/1 outcomes")
    b = int(np.sum((xa == 1) & (xb == 0)))
    c = int(np.sum((xa == 0) & (xb == 1)))
    m = b + c
    p = 1.0 if m == 0 else min(1.0, 2.0 * _binom_half_cdf(min(b, c), m))
    return {"b": b, "c": c, "n": int(xa.size), "p_value": p}


def newcombe_paired_ci(a_correct: Any, b_correct: Any, level: float = DEFAULT_LEVEL) -> list[float] | None:
    """Newcombe's hybrid score interval (1998, method 10) for ``p_b - p_a`` on paired 0/1 data.

    The "square-and-add" interval built from the Wilson intervals of both proportions and the
    (continuity-adjusted) phi correlation of the pairs; stays within [-1, 1] and behaves well for
    small n and proportions near 0 or 1 (recommended by Fagerland, Lydersen & Laake 2014).
    """
    xa, xb = _paired(a_correct, b_correct)
    n = int(xa.size)
    if n == 0:
        return None
    both = int(np.sum((xa == 1) & (xb == 1)))
    only_a = int(np.sum((xa == 1) & (xb == 0)))
    only_b = int(np.sum((xa == 0) & (xb == 1)))
    neither = n - both - only_a - only_b
    # theta = p1 - p2 with p1 = p_b (candidate), p2 = p_a (reference)
    s1, s2 = both + only_b, both + only_a
    p1, p2 = s1 / n, s2 / n
    l1, u1 = wilson_interval(s1, n, level)  # type: ignore[misc]
    l2, u2 = wilson_interval(s2, n, level)  # type: ignore[misc]
    # phi: correlation of the two outcomes from the 2x2 table [[both, only_b], [only_a, neither]]
    # (rows: b right/wrong, columns: a right/wrong), with Newcombe's continuity adjustment of the
    # cross-product as in Altman et al. (2000) and Fagerland et al. (2017).
    denom = s1 * (n - s1) * s2 * (n - s2)
    cross = both * neither - only_a * only_b
    if denom == 0:
        phi = 0.0
    elif cross > n / 2.0:
        phi = (cross - n / 2.0) / math.sqrt(denom)
    elif cross >= 0:
        phi = 0.0
    else:
        phi = cross / math.sqrt(denom)
    theta = p1 - p2
    d_lo = (p1 - l1) ** 2 - 2.0 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    d_hi = (u1 - p1) ** 2 - 2.0 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    lo = theta - math.sqrt(max(d_lo, 0.0))
    hi = theta + math.sqrt(max(d_hi, 0.0))
    return _interval(max(-1.0, lo), min(1.0, hi))


def sign_flip_pvalue(
    differences: Any, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> float:
    """Two-sided paired permutation (sign-flip) p-value for ``mean(differences) == 0``.

    Exact over all 2^m sign patterns when the m non-zero differences number at most
    ``EXACT_SIGN_FLIP_MAX``; otherwise Monte Carlo with ``n_resamples`` patterns and the +1
    correction. All-zero differences give 1.0.
    """
    d = _finite(differences)
    d = d[d != 0.0]
    m = int(d.size)
    if m == 0:
        return 1.0
    observed = abs(float(d.sum()))
    eps = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if m <= EXACT_SIGN_FLIP_MAX:
        signs = np.array(list(product((1.0, -1.0), repeat=m)))
        sums = np.abs(signs @ d)
        return float(np.mean(sums >= observed - eps))
    rng = np.random.default_rng(seed)
    hits = 0
    rows = max(1, min(n_resamples, _BLOCK_ENTRIES // m))
    done = 0
    while done < n_resamples:
        k = min(rows, n_resamples - done)
        signs = rng.integers(0, 2, size=(k, m), dtype=np.int8) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed - eps))
        done += k
    return (hits + 1.0) / (n_resamples + 1.0)


def paired_bootstrap(
    a: Any,
    b: Any,
    level: float = DEFAULT_LEVEL,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Paired comparison of per-item scores: ``delta = mean(b) - mean(a)``.

    CI: percentile bootstrap of the mean paired difference (items resampled with replacement, seeded).
    p-value: two-sided sign-flip permutation test on the paired differences (see
    :func:`sign_flip_pvalue`). Identical runs give delta 0, CI [0, 0] and p = 1.

    Returns ``{"delta", "ci", "p_value", "n", "ci_method", "p_method"}``.
    """
    _check_level(level)
    xa, xb = _paired(a, b)
    n = int(xa.size)
    out: dict[str, Any] = {
        "delta": None,
        "ci": None,
        "p_value": None,
        "n": n,
        "ci_method": "paired_bootstrap_percentile",
        "p_method": "sign_flip",
    }
    if n == 0:
        return out
    d = xb - xa
    out["delta"] = float(d.mean())
    rng = np.random.default_rng(seed)
    means = np.concatenate([d[idx].mean(axis=1) for idx in _resample_blocks(rng, n, n_resamples)])
    out["ci"] = _percentile_interval(means, level)
    out["p_value"] = sign_flip_pvalue(d, n_resamples=n_resamples, seed=seed)
    return out


def paired_bootstrap_stat(
    stat_a: Callable[[np.ndarray], float | None],
    stat_b: Callable[[np.ndarray], float | None],
    n_items: int,
    level: float = DEFAULT_LEVEL,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Paired bootstrap for corpus-level statistics (``stat_x(indices) -> float``).

    The same resampled item indices feed both runs. ``delta = stat_b(all) - stat_a(all)``; CI is the
    percentile interval of the resampled deltas; the two-sided p-value is
    ``(1 + #{|delta* - delta| >= |delta|}) / (1 + B)`` over the finite resampled deltas (the
    bootstrap distribution shifted to H0). Resamples where a statistic is undefined are skipped.

    Returns ``{"delta", "ci", "p_value", "n", "ci_method", "p_method"}``.
    """
    _check_level(level)
    out: dict[str, Any] = {
        "delta": None,
        "ci": None,
        "p_value": None,
        "n": int(n_items),
        "ci_method": "paired_bootstrap_percentile",
        "p_method": "paired_bootstrap",
    }
    if n_items <= 0:
        return out
    full = np.arange(n_items)
    va, vb = stat_a(full), stat_b(full)
    if va is None or vb is None or not (math.isfinite(va) and math.isfinite(vb)):
        return out
    delta = float(vb) - float(va)
    out["delta"] = delta
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples, dtype=float)
    many_a, many_b = getattr(stat_a, "many", None), getattr(stat_b, "many", None)
    i = 0
    for block in _resample_blocks(rng, n_items, n_resamples):
        if many_a is not None and many_b is not None:
            deltas[i : i + len(block)] = many_b(block) - many_a(block)
            i += len(block)
            continue
        for idx in block:
            ra, rb = stat_a(idx), stat_b(idx)
            deltas[i] = np.nan if ra is None or rb is None else float(rb) - float(ra)
            i += 1
    finite = deltas[np.isfinite(deltas)]
    if finite.size * 2 < n_resamples:
        return out
    out["ci"] = _percentile_interval(finite, level)
    eps = 1e-12 * max(1.0, abs(delta))
    if abs(delta) <= eps:
        out["p_value"] = 1.0
    else:
        hits = int(np.sum(np.abs(finite - delta) >= abs(delta) - eps))
        out["p_value"] = (hits + 1.0) / (finite.size + 1.0)
    return out


def compare(
    metric_name: str,
    a_scores: Any,
    b_scores: Any,
    *,
    kind: str | None = None,
    higher_is_better: bool = True,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    tol: float = 0.0,
) -> dict[str, Any]:
    """Compare per-item scores of run ``b`` against run ``a`` on the same items.

    ``kind``: ``"binary"`` (McNemar exact p, Newcombe CI), ``"continuous"`` (paired bootstrap CI,
    sign-flip p) or ``None`` to infer (binary when all values on both sides are 0/1). Items missing
    (None/NaN) on either side are dropped. ``delta = mean(b) - mean(a)`` in the metric's units
    whatever its direction; ``wins``/``losses`` follow ``higher_is_better``.

    Returns ``{"metric", "delta", "ci", "p_value", "test", "wins", "losses", "ties", "n",
    "a_mean", "b_mean", "ci_method", "level"}`` (plus ``"discordant": {"b", "c"}`` for McNemar).
    """
    xa, xb = _paired(a_scores, b_scores)
    n = int(xa.size)
    if kind is None:
        kind = "binary" if n and is_binary(xa) and is_binary(xb) else "continuous"
    if kind not in {"binary", "continuous"}:
        raise ValueError(f"unknown metric kind {kind!r} (binary, continuous)")
    out: dict[str, Any] = {
        "metric": metric_name,
        "delta": None,
        "ci": None,
        "p_value": None,
        "test": "mcnemar_exact" if kind == "binary" else "paired_bootstrap",
        "n": n,
        "a_mean": float(xa.mean()) if n else None,
        "b_mean": float(xb.mean()) if n else None,
        "level": level,
    }
    out.update(wins_losses_ties(xa, xb, tol, higher_is_better=higher_is_better))
    if kind == "binary":
        mc = mcnemar_exact(xa, xb)
        out["ci_method"] = "newcombe_paired_score"
        out["discordant"] = {"b": mc["b"], "c": mc["c"]}
        if n:
            out["delta"] = float(xb.mean() - xa.mean())
            out["ci"] = newcombe_paired_ci(xa, xb, level)
            out["p_value"] = mc["p_value"]
    else:
        pb = paired_bootstrap(xa, xb, level, n_resamples=n_resamples, seed=seed)
        out["ci_method"] = pb["ci_method"]
        out["p_method"] = pb["p_method"]
        out["delta"], out["ci"], out["p_value"] = pb["delta"], pb["ci"], pb["p_value"]
    return out


# ------------------------------------------------------------------------------------------- power


def _default_discordance(p_base: float, delta: float) -> float:
    """Discordant share if the two runs' outcomes were independent (conservative for fine-tunes,
    whose errors correlate positively with the base model's)."""
    p_new = p_base + delta
    return p_base * (1.0 - p_new) + p_new * (1.0 - p_base)


def power_paired(
    n: int,
    delta: float,
    *,
    p_base: float | None = None,
    p_discordant: float | None = None,
    sd: float | None = None,
    alpha: float = 0.05,
) -> float:
    """Power of a two-sided paired test with ``n`` items to detect a true difference ``delta``.

    * Continuous (``sd`` = SD of the paired differences): paired z-test,
      ``Phi(sqrt(n)|delta|/sd - z) + Phi(-sqrt(n)|delta|/sd - z)``.
    * Binary (``p_base`` = reference accuracy): McNemar's test, normal approximation of Connor (1987)
      with discordant share ``p_discordant`` (default: the independence value
      ``p_a(1-p_b) + p_b(1-p_a)``, conservative when the runs' errors correlate):
      ``Phi((sqrt(n)|delta| - z sqrt(psi)) / sqrt(psi - delta^2))`` (+ the other tail).

    Returns alpha when delta == 0; monotone increasing in ``n`` and ``|delta|``.
    """
    if n <= 0:
        return 0.0
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    z = float(_sps().norm.ppf(1.0 - alpha / 2.0))
    delta = abs(float(delta))
    if sd is not None:
        if sd <= 0:
            return 1.0 if delta > 0 else alpha
        x = math.sqrt(n) * delta / sd
        return float(_sps().norm.cdf(x - z) + _sps().norm.cdf(-x - z))
    if p_base is None:
        raise ValueError("power_paired needs p_base (binary metric) or sd (continuous metric)")
    if not 0.0 <= p_base <= 1.0:
        raise ValueError(f"p_base must be within [0, 1], got {p_base!r}")
    psi = _default_discordance(p_base, delta) if p_discordant is None else float(p_discordant)
    if psi <= 0.0:
        return alpha if delta == 0 else 1.0
    if delta > psi:
        raise ValueError(f"a difference of {delta} needs at least that share of discordant items ({psi})")
    spread = math.sqrt(max(psi - delta * delta, 1e-15))
    root_n = math.sqrt(n)
    return float(
        _sps().norm.cdf((root_n * delta - z * math.sqrt(psi)) / spread)
        + _sps().norm.cdf((-root_n * delta - z * math.sqrt(psi)) / spread)
    )


def min_detectable_effect(
    n: int,
    p_base: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    p_discordant: float | None = None,
    sd: float | None = None,
) -> float | None:
    """Smallest improvement ``delta > 0`` that ``n`` paired items detect with the given power.

    Binary metrics: give ``p_base`` (the reference run's accuracy); the improvement is bounded by
    ``1 - p_base`` (and by ``p_discordant`` when given) and ``None`` is returned when even that is
    not detectable. Continuous metrics: give ``sd`` of the paired differences. Decreasing in ``n``.
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be between 0 and 1, got {power!r}")
    if n <= 0:
        return None

    def pw(d: float) -> float:
        return power_paired(n, d, p_base=p_base, p_discordant=p_discordant, sd=sd, alpha=alpha)

    if sd is not None:
        hi = max(sd, 1e-12)
        while pw(hi) < power:
            hi *= 2.0
    else:
        if p_base is None:
            raise ValueError("min_detectable_effect needs p_base (binary metric) or sd (continuous)")
        hi = 1.0 - p_base
        if p_discordant is not None:
            hi = min(hi, p_discordant)
        if hi <= 0 or pw(hi) < power:
            return None
    lo = 0.0
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if pw(mid) >= power:
            hi = mid
        else:
            lo = mid
    return float(hi)


def items_needed(
    delta: float,
    p_base: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    p_discordant: float | None = None,
    sd: float | None = None,
    max_n: int = 10_000_000,
) -> int | None:
    """Smallest number of paired items whose :func:`power_paired` reaches ``power`` for ``delta``.

    ``None`` when ``delta`` is 0 or more than ``max_n`` items would be needed.
    """
    if delta == 0:
        return None

    def pw(n: int) -> float:
        return power_paired(n, delta, p_base=p_base, p_discordant=p_discordant, sd=sd, alpha=alpha)

    if pw(max_n) < power:
        return None
    lo, hi = 0, 1
    while pw(hi) < power:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pw(mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi
