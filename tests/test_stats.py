"""Statistics against constructed cases with known answers (evaluators/stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluators import stats

# ----------------------------------------------------------------------------- one-run intervals


def test_wilson_8_of_10():
    # p = 0.8, z = 1.959964: centre = (0.8 + z^2/20) / (1 + z^2/10) = 0.7167,
    # half = z / (1 + z^2/10) * sqrt(0.016 + z^2/400) = 0.2266  ->  0.4902 .. 0.9433
    lo, hi = stats.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=5e-4)
    assert hi == pytest.approx(0.9433, abs=5e-4)


def test_wilson_edges():
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35  # 0.2775 at 95%
    lo, hi = stats.wilson_interval(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.8
    assert stats.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)
    # a higher level gives a wider interval
    lo99, hi99 = stats.wilson_interval(8, 10, level=0.99)
    lo95, hi95 = stats.wilson_interval(8, 10)
    assert lo99 < lo95 and hi99 > hi95


def test_mean_ci_auto_picks_wilson_for_binary():
    res = stats.mean_ci([1] * 8 + [0] * 2)
    assert res["method"] == "wilson"
    assert res["value"] == pytest.approx(0.8)
    assert res["ci"] == stats.wilson_interval(8, 10)
    assert res["n"] == 10


def test_mean_ci_t_interval_by_hand():
    # mean 3, sd = sqrt(2.5) = 1.5811, sem = 0.70711, t(0.975, df=4) = 2.776445 -> 3 -/+ 1.96324
    res = stats.mean_ci([1, 2, 3, 4, 5], method="t")
    assert res["value"] == pytest.approx(3.0)
    assert res["ci"][0] == pytest.approx(1.03676, abs=1e-4)
    assert res["ci"][1] == pytest.approx(4.96324, abs=1e-4)


def test_mean_ci_bootstrap_is_seeded_and_close_to_t():
    x = np.random.default_rng(1).normal(10.0, 2.0, size=400)
    a = stats.mean_ci(x)
    b = stats.mean_ci(x)
    assert a["method"] == "bootstrap"
    assert a == b  # deterministic
    t = stats.mean_ci(x, method="t")
    assert a["ci"][0] < a["value"] < a["ci"][1]
    width_boot, width_t = a["ci"][1] - a["ci"][0], t["ci"][1] - t["ci"][0]
    assert width_boot == pytest.approx(width_t, rel=0.12)
    other_seed = stats.mean_ci(x, seed=1)
    assert other_seed["ci"] != a["ci"]


def test_mean_ci_drops_missing_and_handles_empty():
    res = stats.mean_ci([1.0, None, float("nan"), 3.0], method="t")
    assert res["n"] == 2 and res["value"] == pytest.approx(2.0)
    empty = stats.mean_ci([None, None])
    assert empty["value"] is None and empty["ci"] is None and empty["n"] == 0
    with pytest.raises(ValueError):
        stats.mean_ci([0.5, 1.0], method="wilson")
    with pytest.raises(ValueError):
        stats.mean_ci([1.0], method="nope")


def test_bootstrap_ci_matches_mean_ci_for_the_mean():
    x = np.random.default_rng(2).exponential(size=150)
    via_stat = stats.bootstrap_ci(lambda idx: float(x[idx].mean()), len(x))
    via_mean = stats.mean_ci(x, method="bootstrap")
    assert via_stat["value"] == pytest.approx(via_mean["value"])
    assert via_stat["ci"] == pytest.approx(via_mean["ci"])  # same seeded resamples


def test_bootstrap_ci_skips_undefined_resamples():
    y = np.array([0] * 3 + [1] * 3)

    def stat(idx):  # undefined when a resample has one class only
        sub = y[idx]
        return None if sub.min() == sub.max() else float(sub.mean())

    res = stats.bootstrap_ci(stat, len(y), n_resamples=500)
    assert res["value"] == pytest.approx(0.5)
    assert res["ci"] is not None and 0.0 < res["ci"][0] <= 0.5 <= res["ci"][1] < 1.0
    never = stats.bootstrap_ci(lambda idx: None, 5, n_resamples=100)
    assert never["value"] is None and never["ci"] is None


# ------------------------------------------------------------------------------------ McNemar


def _table(both, only_a, only_b, neither):
    a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
    b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
    return a, b


def test_mcnemar_exact_b1_c9():
    # exact two-sided p = 2 * sum_{k<=1} C(10,k) / 2^10 = 2 * 11 / 1024 = 0.021484375
    a, b = _table(both=20, only_a=1, only_b=9, neither=5)
    res = stats.mcnemar_exact(a, b)
    assert (res["b"], res["c"]) == (1, 9)
    assert res["p_value"] == pytest.approx(0.021484375, abs=1e-12)
    assert res["n"] == 35
    # symmetric in the direction of the difference
    assert stats.mcnemar_exact(b, a)["p_value"] == pytest.approx(0.021484375, abs=1e-12)


def test_mcnemar_more_cases():
    # b=0, c=5: 2 * (1/32) = 0.0625; no discordant pairs: 1
    a, b = _table(both=3, only_a=0, only_b=5, neither=2)
    assert stats.mcnemar_exact(a, b)["p_value"] == pytest.approx(0.0625)
    a, b = _table(both=4, only_a=0, only_b=0, neither=6)
    assert stats.mcnemar_exact(a, b)["p_value"] == 1.0
    # b=c: p = 1 (capped)
    a, b = _table(both=0, only_a=3, only_b=3, neither=0)
    assert stats.mcnemar_exact(a, b)["p_value"] == 1.0
    with pytest.raises(ValueError):
        stats.mcnemar_exact([0.5, 1], [1, 0])


def test_newcombe_paired_ci_published_example():
    # Cavo et al. (2012) table [[59, 6], [16, 80]] (Fagerland, Lydersen & Laake 2017, ch. 8):
    # estimate 65/161 - 75/161 = -0.0621, Newcombe square-and-add 95% CI -0.1186 to -0.0046.
    # Rows are the first treatment (our run b), columns the second (run a).
    a, b = _table(both=59, only_a=16, only_b=6, neither=80)
    lo, hi = stats.newcombe_paired_ci(a, b)
    assert lo == pytest.approx(-0.1186, abs=1e-4)
    assert hi == pytest.approx(-0.0046, abs=1e-4)
    assert stats.newcombe_paired_ci([], []) is None


def test_newcombe_coverage_by_simulation():
    # correlated paired outcomes, p_a = 0.6, p_b = 0.7; the 95% interval should cover 0.1 ~95%
    rng = np.random.default_rng(7)
    n, reps, covered = 60, 400, 0
    for _ in range(reps):
        u = rng.random(n)
        v = np.where(rng.random(n) < 0.7, u, rng.random(n))  # uniform, correlated with u
        a = (u < 0.6).astype(int)
        b = (v < 0.7).astype(int)
        lo, hi = stats.newcombe_paired_ci(a, b)
        covered += lo <= 0.1 <= hi
    assert 0.90 <= covered / reps <= 0.995


# -------------------------------------------------------------------------- paired continuous


def test_sign_flip_exact_small_case():
    # d = [1, 2, 3]: the 8 sign patterns give |sum| = 6,0,2,4,4,2,0,6; >= 6 in 2 of 8 -> 0.25
    assert stats.sign_flip_pvalue([1.0, 2.0, 3.0]) == pytest.approx(0.25)
    assert stats.sign_flip_pvalue([0.0, 0.0]) == 1.0
    # zeros do not count: same as above
    assert stats.sign_flip_pvalue([0.0, 1.0, 2.0, 0.0, 3.0]) == pytest.approx(0.25)


def test_paired_bootstrap_identical_runs():
    x = np.random.default_rng(3).random(50)
    res = stats.paired_bootstrap(x, x.copy())
    assert res["delta"] == 0.0
    assert res["ci"] == [0.0, 0.0]
    assert res["p_value"] == 1.0
    assert res["n"] == 50


def test_paired_bootstrap_constant_shift():
    a = np.random.default_rng(4).random(30)
    res = stats.paired_bootstrap(a, a + 1.0)
    assert res["delta"] == pytest.approx(1.0)
    assert res["ci"] == pytest.approx([1.0, 1.0])
    # only the all-positive sign pattern is as extreme: Monte Carlo floor 1/(B+1)
    assert res["p_value"] == pytest.approx(1.0 / (stats.DEFAULT_RESAMPLES + 1.0))


def test_paired_bootstrap_detects_and_misses_as_it_should():
    rng = np.random.default_rng(5)
    a = rng.normal(size=300)
    strong = stats.paired_bootstrap(a, a + 0.3 + rng.normal(scale=0.5, size=300))
    assert strong["p_value"] < 0.001 and strong["ci"][0] > 0.2
    null = stats.paired_bootstrap(a, a + rng.normal(scale=0.5, size=300))
    assert null["p_value"] > 0.05 and null["ci"][0] < 0.0 < null["ci"][1]
    again = stats.paired_bootstrap(a, a + 0.3 + np.random.default_rng(5).normal(scale=0.5, size=300))
    assert (
        again["ci"]
        == stats.paired_bootstrap(a, a + 0.3 + np.random.default_rng(5).normal(scale=0.5, size=300))["ci"]
    )


def test_paired_bootstrap_stat_corpus():
    x = np.random.default_rng(6).random(80)
    same = stats.paired_bootstrap_stat(lambda i: float(x[i].mean()), lambda i: float(x[i].mean()), len(x))
    assert same["delta"] == 0.0 and same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0
    shifted = stats.paired_bootstrap_stat(
        lambda i: float(np.median(x[i])), lambda i: float(np.median(x[i] + 0.5)), len(x)
    )
    assert shifted["delta"] == pytest.approx(0.5)
    assert shifted["p_value"] < 0.01


def test_wins_losses_ties():
    a = [0.1, 0.5, 0.5, 0.9, None]
    b = [0.2, 0.5, 0.4, 0.95, 1.0]
    assert stats.wins_losses_ties(a, b) == {"wins": 2, "losses": 1, "ties": 1}
    assert stats.wins_losses_ties(a, b, tol=0.06) == {"wins": 1, "losses": 1, "ties": 2}
    assert stats.wins_losses_ties(a, b, higher_is_better=False) == {"wins": 1, "losses": 2, "ties": 1}
    with pytest.raises(ValueError):
        stats.wins_losses_ties([1, 2], [1])


def test_compare_binary_uses_mcnemar():
    a, b = _table(both=20, only_a=1, only_b=9, neither=5)
    res = stats.compare("accuracy", a, b)
    assert res["test"] == "mcnemar_exact"
    assert set(res) >= {"delta", "ci", "p_value", "test", "wins", "losses", "ties", "n"}
    assert res["delta"] == pytest.approx(8 / 35)
    assert res["p_value"] == pytest.approx(0.021484375)
    assert (res["wins"], res["losses"], res["ties"], res["n"]) == (9, 1, 25, 35)
    assert res["ci"][0] < res["delta"] < res["ci"][1]
    assert res["ci"][0] > 0  # agrees with p < 0.05 here


def test_compare_continuous_uses_paired_bootstrap():
    a = [0.2, 0.4, 0.6, 0.8, 0.5, None]
    b = [0.3, 0.5, 0.5, 0.9, 0.7, 0.1]
    res = stats.compare("rouge_l", a, b)
    assert res["test"] == "paired_bootstrap"
    assert res["n"] == 5
    assert res["delta"] == pytest.approx(0.08)
    assert (res["wins"], res["losses"], res["ties"]) == (4, 1, 0)
    # exact sign-flip over the 2^5 sign patterns of d = [.1, .1, -.1, .1, .2] (observed sum 0.4):
    # with k of the four 0.1s positive and sign t on 0.2, sum = 0.1 (2k - 4) + 0.2 t, so
    # |sum| >= 0.4 for (k=4, t=+), (k=3, t=+), (k=1, t=-), (k=0, t=-): 1 + 4 + 4 + 1 = 10 of 32
    assert res["p_value"] == pytest.approx(10 / 32)
    forced = stats.compare("x", [1, 0, 1], [1, 1, 1], kind="continuous")
    assert forced["test"] == "paired_bootstrap"
    with pytest.raises(ValueError):
        stats.compare("x", [1], [1], kind="ordinal")


def test_compare_lower_is_better_keeps_delta_sign():
    a = [10.0, 12.0, 9.0]
    b = [8.0, 11.0, 9.5]
    res = stats.compare("perplexity", a, b, higher_is_better=False)
    assert res["delta"] == pytest.approx(-0.8333333)
    assert (res["wins"], res["losses"], res["ties"]) == (2, 1, 0)


def test_compare_empty():
    res = stats.compare("accuracy", [None], [1])
    assert res["n"] == 0 and res["delta"] is None and res["p_value"] is None


# ------------------------------------------------------------------------------------------ power


def test_power_is_alpha_at_zero_and_monotone_in_n():
    assert stats.power_paired(100, 0.0, sd=1.0) == pytest.approx(0.05)
    assert stats.power_paired(100, 0.0, p_base=0.7) == pytest.approx(0.05)
    ns = [10, 30, 100, 300, 1000, 3000]
    binary = [stats.power_paired(n, 0.05, p_base=0.7) for n in ns]
    cont = [stats.power_paired(n, 0.1, sd=1.0) for n in ns]
    assert binary == sorted(binary) and binary[0] < 0.2 and binary[-1] > 0.95
    assert cont == sorted(cont) and cont[-1] > 0.99
    # more discordance (less correlated runs) means less power
    assert stats.power_paired(200, 0.05, p_base=0.7, p_discordant=0.1) > stats.power_paired(
        200, 0.05, p_base=0.7, p_discordant=0.3
    )


def test_min_detectable_effect_decreases_with_n():
    mdes = [stats.min_detectable_effect(n, 0.6) for n in (50, 100, 200, 400, 800)]
    assert all(m is not None for m in mdes)
    assert mdes == sorted(mdes, reverse=True)
    # roughly 1/sqrt(n): quadrupling n halves the MDE (within 15%)
    assert mdes[4] / mdes[2] == pytest.approx(0.5, rel=0.15)
    for n, m in zip((50, 100, 200, 400, 800), mdes, strict=True):
        assert stats.power_paired(n, m, p_base=0.6) == pytest.approx(0.8, abs=1e-6)
    assert stats.min_detectable_effect(100, 1.0) is None  # nothing left to improve
    cont = stats.min_detectable_effect(32, sd=1.0)
    assert cont == pytest.approx(0.5, abs=0.01)


def test_items_needed_known_values():
    # paired z-test: n = ((1.959964 + 0.841621) * 1 / 0.5)^2 = 31.4 -> 32
    assert stats.items_needed(0.5, sd=1.0) == 32
    # Connor (1987): psi = 0.2, delta = 0.1:
    # n = (1.959964 * sqrt(0.2) + 0.841621 * sqrt(0.19))^2 / 0.01 = 154.6 -> 155
    n = stats.items_needed(0.1, p_discordant=0.2, p_base=0.5)
    assert n in (154, 155)
    assert stats.power_paired(n, 0.1, p_base=0.5, p_discordant=0.2) >= 0.8
    assert stats.power_paired(n - 1, 0.1, p_base=0.5, p_discordant=0.2) < 0.8
    assert stats.items_needed(0.0, p_base=0.5) is None
    with pytest.raises(ValueError):
        stats.power_paired(100, 0.1)  # neither p_base nor sd


def test_level_validation():
    with pytest.raises(ValueError):
        stats.mean_ci([1, 0], level=1.5)
    assert math.isclose(stats.mean_ci([1, 0, 1], level=0.9)["level"], 0.9)
