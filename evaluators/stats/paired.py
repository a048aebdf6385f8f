"""Paired comparisons of two runs on the same items: wins/losses/ties, McNemar and Newcombe for 0/1
scores, the paired bootstrap with a sign-flip test, the paired bootstrap of a corpus statistic, and
:func:`compare`, which picks among them."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product
from typing import Any

import numpy as np

from evaluators.stats.base import (
    _BLOCK_ENTRIES,
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    EXACT_SIGN_FLIP_MAX,
    _as_float_array,
    _binom_half_cdf,
    _check_level,
    _finite,
    _interval,
    _percentile_interval,
    _resample_blocks,
    is_binary,
)
from evaluators.stats.intervals import wilson_interval

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


