"""Many comparisons at once: Holm's step-down (family-wise error) and Benjamini-Hochberg's step-up
(false discovery rate) adjusted p-values, and :func:`adjust_comparisons`, which marks an eval's paired
comparisons with both.

An eval compares every candidate pair on every metric; at p < 0.05 one in twenty true nulls reads as
significant. The declared primary metric (``eval.primary_metric``, else the headline metric) keeps its
plain test: it was chosen before the data was seen. Every other (comparison, metric) p-value is one
member of one family and carries ``p_holm`` (what a gate uses) and ``p_bh`` (what exploratory tables
show), beside the raw ``p_value``.

Both adjustments follow Holm (1979) and Benjamini & Hochberg (1995) exactly as statsmodels'
``multipletests(method="holm" | "fdr_bh")`` computes them (checked in tests/test_eval_stats.py).
``None`` p-values (a test that could not run) stay ``None`` and are not counted in the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

METHODS = ("holm", "bh")


def _valid(pvalues: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.array([i for i, p in enumerate(pvalues) if p is not None and np.isfinite(p)], dtype=int)
    vals = np.array([float(pvalues[i]) for i in idx], dtype=float)
    if vals.size and (np.any(vals < 0) or np.any(vals > 1)):
        raise ValueError("p-values must lie within [0, 1]")
    return idx, vals


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values: sorted ascending, ``p_(k) * (m - k + 1)`` made monotone
    non-decreasing and capped at 1 (``m`` = the number of non-None p-values)."""
    idx, p = _valid(pvalues)
    out: list[float | None] = [None] * len(pvalues)
    m = p.size
    if m == 0:
        return out
    order = np.argsort(p, kind="mergesort")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    for rank, j in enumerate(order):
        out[int(idx[j])] = float(adj[rank])
    return out


def benjamini_hochberg(pvalues: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg step-up adjusted p-values (q-values): sorted ascending, ``p_(k) * m / k``
    made monotone from the largest down and capped at 1."""
    idx, p = _valid(pvalues)
    out: list[float | None] = [None] * len(pvalues)
    m = p.size
    if m == 0:
        return out
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    for rank, j in enumerate(order):
        out[int(idx[j])] = float(adj[rank])
    return out


def adjust(pvalues: Sequence[float | None], method: str) -> list[float | None]:
    """``holm`` or ``bh`` adjusted p-values (same order as given)."""
    if method == "holm":
        return holm(pvalues)
    if method == "bh":
        return benjamini_hochberg(pvalues)
    raise ValueError(f"unknown adjustment {method!r} ({', '.join(METHODS)})")


def adjust_comparisons(comparisons: list[dict], primary: str | None, *, declared: bool = False) -> dict[str, Any]:
    """Add ``p_holm`` and ``p_bh`` to every metric entry of every comparison (``{"a", "b", "metrics":
    {name: {"p_value", ...}}}``, changed in place) but the primary metric's, which keeps its plain test
    (``p_holm`` = ``p_bh`` = its ``p_value``, ``adjusted: false``). Returns what the report and the
    gate say about it: ``{"tests", "primary_tests", "family", "primary_metric", "declared", "methods"}``
    (``tests`` = every p-value computed, ``family`` = those adjusted together)."""
    family: list[dict] = []
    primary_tests = 0
    for comp in comparisons:
        for name, entry in (comp.get("metrics") or {}).items():
            if entry.get("p_value") is None:
                continue
            if name == primary:
                entry.update(p_holm=entry["p_value"], p_bh=entry["p_value"], adjusted=False)
                primary_tests += 1
            else:
                family.append(entry)
    raw = [e["p_value"] for e in family]
    for e, h, q in zip(family, holm(raw), benjamini_hochberg(raw), strict=True):
        e.update(p_holm=h, p_bh=q, adjusted=True)
    return {"tests": primary_tests + len(family), "primary_tests": primary_tests, "family": len(family),
            "primary_metric": primary, "declared": declared,
            "methods": {"gate": "holm", "exploratory": "benjamini_hochberg"}}
