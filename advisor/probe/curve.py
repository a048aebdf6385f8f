"""Learning curves: a saturating power law in the number of training examples, fitted to the probe's
fine-tuning arms, with its uncertainty from a bootstrap over dev items.

    score(n) = a - b * n ** (-c),   a <= upper (the metric's best value), b >= 0, c in [0.05, 2]

(Hestness et al. 2017: error falls as a power law in the data size, then flattens.) The fit is
refitted on every bootstrap resample of the dev items (the same items for every arm: paired), and
the extrapolated score at 1x, 2x and 4x the training set is read off each fit; the interval is the
2.5th-97.5th percentile. With fewer points than parameters, or scores that do not rise beyond their
noise, the curve says "inconclusive" instead of extrapolating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CurveFit:
    status: str  # fitted | inconclusive
    why: str = ""
    params: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, dict] = field(default_factory=dict)  # "1x" -> {n, value, ci}
    trend: str = ""  # more data would help | has stopped helping | ...
    against: dict[str, dict] = field(default_factory=dict)  # arm -> {delta, ci} of the 1x prediction minus it

    def to_dict(self) -> dict:
        return {"status": self.status, "why": self.why, "params": self.params, "predictions": self.predictions,
                "trend": self.trend, "against": self.against}


def _fit(n: np.ndarray, y: np.ndarray, upper: float) -> tuple[float, float, float] | None:
    """Least squares over a grid of exponents c (a and b are linear given c), a clipped to [y.max, upper]."""
    best = None
    for c in np.linspace(0.05, 2.0, 60):
        x = n ** (-c)
        A = np.stack([np.ones_like(x), -x], axis=1)
        try:
            (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
        except np.linalg.LinAlgError:
            continue
        b = max(float(b), 0.0)
        a = float(np.clip(a, float(y.max()) if b > 0 else float(y.mean()), upper))
        if b > 0:  # refit b for the clipped a
            b = max(float(np.dot(a - y, x) / max(np.dot(x, x), 1e-12)), 0.0)
        err = float(np.sum((a - b * x - y) ** 2))
        if best is None or err < best[0]:
            best = (err, a, b, float(c))
    return None if best is None else best[1:]


def _predict(p: tuple[float, float, float], n: float) -> float:
    a, b, c = p
    return a - b * n ** (-c)


def fit_curve(sizes: Sequence[int], per_item: Sequence[Sequence[float]], full_size: int, *,
              upper: float = 1.0, multiples: Sequence[float] = (1.0, 2.0, 4.0), resamples: int = 400,
              seed: int = 0, min_points: int = 3,
              against: dict[str, Sequence[float]] | None = None) -> CurveFit:
    """``sizes[i]`` training examples gave per-item dev scores ``per_item[i]`` (the same dev items, in the
    same order, for every arm); extrapolate to ``full_size * multiple`` examples. ``against``: other arms'
    per-item scores on the same items; the 1x prediction minus each one's mean gets a paired interval
    (the same resamples)."""
    against = against or {}
    if len(sizes) < min_points:
        return CurveFit("inconclusive", f"{len(sizes)} fine-tuning fraction(s) measured; a curve needs "
                                        f"{min_points} (more data or a larger --budget-minutes)")
    scores = np.asarray([np.asarray(s, dtype=float) for s in per_item])  # arms x items
    keep = ~np.isnan(scores).any(axis=0)
    scores = scores[:, keep]
    others = {k: np.asarray(v, dtype=float)[keep] for k, v in against.items()}
    if scores.shape[1] < 5:
        return CurveFit("inconclusive", "too few dev items scored on every arm")
    n = np.asarray(sizes, dtype=float)
    y = scores.mean(axis=1)
    point = _fit(n, y, upper)
    if point is None:
        return CurveFit("inconclusive", "the power law could not be fitted")
    rng = np.random.default_rng(seed)
    m = scores.shape[1]
    boots = {k: [] for k in multiples}
    deltas: dict[str, list[float]] = {k: [] for k in others}
    gains = []
    for _ in range(resamples):
        idx = rng.integers(0, m, m)
        yb = scores[:, idx].mean(axis=1)
        pb = _fit(n, yb, upper)
        if pb is None:
            continue
        for k in multiples:
            boots[k].append(_predict(pb, full_size * k))
        at1 = min(_predict(pb, full_size * multiples[0]), upper)
        for name, o in others.items():
            deltas[name].append(at1 - float(np.nanmean(o[idx])))
        gains.append(yb[-1] - yb[0])
    # a trend: the largest arm beats the smallest beyond the bootstrap noise of that difference
    lo_gain = float(np.percentile(gains, 2.5)) if gains else 0.0
    preds = {}
    for k in multiples:
        v = float(np.clip(_predict(point, full_size * k), 0.0 if upper == 1.0 else -np.inf, upper))
        ci = [float(np.percentile(boots[k], 2.5)), float(np.percentile(boots[k], 97.5))] if boots[k] else None
        preds[f"{k:g}x"] = {"n": int(full_size * k), "value": round(v, 4),
                           "ci": [round(max(ci[0], 0.0 if upper == 1.0 else ci[0]), 4), round(min(ci[1], upper), 4)]
                           if ci else None}
    a, b, c = point
    fit = CurveFit("fitted", params={"a": round(a, 4), "b": round(b, 4), "c": round(c, 4)}, predictions=preds)
    at1_point = preds[f"{multiples[0]:g}x"]["value"]
    for name, o in others.items():
        d = deltas[name]
        fit.against[name] = {"delta": round(at1_point - float(np.nanmean(o)), 4),
                             "ci": [round(float(np.percentile(d, 2.5)), 4), round(float(np.percentile(d, 97.5)), 4)]
                             if d else None}
    if lo_gain <= 0:
        fit.status = "inconclusive"
        fit.why = (f"the fractions do not yet show a trend: the largest arm's gain over the smallest "
                   f"({y[-1] - y[0]:+.3f}) is within its noise (95% interval reaches {lo_gain:+.3f})")
        return fit
    at1, at4 = preds[f"{multiples[0]:g}x"]["value"], preds[f"{multiples[-1]:g}x"]["value"]
    slope_hint = at4 - at1
    fit.trend = ("more data would help" if slope_hint > 0.02 else "more data has stopped helping")
    return fit
