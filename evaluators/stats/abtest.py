"""Sample size of an online A/B test: two independent arms (users or requests split at random), unlike
the offline eval's paired comparison (:mod:`.power`, the same items scored by both models).

* Two proportions (a 0/1 outcome per request: right/wrong, accepted/rejected): the effect is
  Cohen's h, ``2 asin(sqrt(p_b)) - 2 asin(sqrt(p_a))`` (Cohen 1988, ch. 6), tested with the normal
  approximation of the arcsine-transformed proportions;
* two means (a score per request): the standardised difference ``delta / sd``, a two-sample z-test.

Both solve the power of the two-sided z-test, both tails counted,
``Phi(|d| sqrt(n / 2) - z) + Phi(-|d| sqrt(n / 2) - z)`` with ``z = Phi^-1(1 - alpha / 2)`` and
``n`` per arm (equal arms), for the smallest whole ``n``: the same equation as statsmodels'
``NormalIndPower`` with ``ratio=1`` (``zt_ind_solve_power``), rounded up.
"""

from __future__ import annotations

import math

from evaluators.stats.base import _sps


def cohens_h(p_a: float, p_b: float) -> float:
    """Cohen's h of the change from proportion ``p_a`` (control) to ``p_b`` (treatment)."""
    for p in (p_a, p_b):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"a proportion must be within [0, 1], got {p!r}")
    return 2.0 * math.asin(math.sqrt(p_b)) - 2.0 * math.asin(math.sqrt(p_a))


def ab_power(n_per_arm: float, effect: float, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample z-test with ``n_per_arm`` in each arm for the standardised
    ``effect`` (Cohen's h or d)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    if n_per_arm <= 0:
        return 0.0
    z = float(_sps().norm.ppf(1.0 - alpha / 2.0))
    x = abs(effect) * math.sqrt(n_per_arm / 2.0)
    return float(_sps().norm.cdf(x - z) + _sps().norm.cdf(-x - z))


def ab_n_exact(effect: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The (fractional) ``n`` per arm at which :func:`ab_power` reaches ``power``; None for no effect."""
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be between 0 and 1, got {power!r}")
    if effect == 0 or not math.isfinite(effect):
        return None
    if power <= alpha:
        return 0.0
    z = float(_sps().norm.ppf(1.0 - alpha / 2.0))
    hi = 2.0 * ((z + float(_sps().norm.ppf(power))) / abs(effect)) ** 2  # one tail: an upper bound
    lo = 0.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if ab_power(mid, effect, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def ab_n(effect: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Users or requests per arm (whole, rounded up) to detect the standardised ``effect``."""
    n = ab_n_exact(effect, alpha, power)
    return None if n is None else max(1, math.ceil(n - 1e-9))


def ab_n_proportions(p_a: float, p_b: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Per arm, to detect a change of a rate from ``p_a`` (control) to ``p_b`` (treatment)."""
    return ab_n(cohens_h(p_a, p_b), alpha, power)


def ab_n_means(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Per arm, to detect a difference ``delta`` of a mean score whose per-request SD is ``sd``."""
    if sd <= 0:
        raise ValueError(f"the standard deviation must be positive, got {sd!r}")
    return ab_n(delta / sd, alpha, power)
