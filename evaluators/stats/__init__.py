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

* Clustered items (``eval.cluster_field``): Miller (2024) cluster-robust standard errors of means and
  paired differences (:mod:`.clustered`).
* Many comparisons: Holm (gates) and Benjamini-Hochberg (exploratory tables) adjusted p-values beside
  the raw ones; the declared primary metric keeps its plain test (:mod:`.multiple`).

Modules: :mod:`.intervals` (one run), :mod:`.paired` (two runs on the same items), :mod:`.power`,
:mod:`.clustered`, :mod:`.multiple`.
"""

from __future__ import annotations

from evaluators.stats.base import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    EXACT_SIGN_FLIP_MAX,
    is_binary,
)
from evaluators.stats.clustered import clustered_mean_ci, clustered_paired, clustered_se
from evaluators.stats.intervals import bootstrap_ci, mean_ci, wilson_interval
from evaluators.stats.multiple import adjust, adjust_comparisons, benjamini_hochberg, holm
from evaluators.stats.paired import (
    compare,
    mcnemar_exact,
    newcombe_paired_ci,
    paired_bootstrap,
    paired_bootstrap_stat,
    sign_flip_pvalue,
    wins_losses_ties,
)
from evaluators.stats.power import items_needed, min_detectable_effect, power_paired

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "EXACT_SIGN_FLIP_MAX",
    "adjust",
    "adjust_comparisons",
    "benjamini_hochberg",
    "bootstrap_ci",
    "clustered_mean_ci",
    "clustered_paired",
    "clustered_se",
    "compare",
    "holm",
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
