"""Power of a paired comparison: the power for a given effect, the smallest detectable effect and the
items needed (normal approximations; McNemar after Connor 1987, continuous as a paired z-test)."""

from __future__ import annotations

import math

from evaluators.stats.base import (
    _sps,
)

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
