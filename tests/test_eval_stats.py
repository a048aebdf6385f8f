"""Statistics across many comparisons and clustered items: Holm and Benjamini-Hochberg adjusted
p-values checked against statsmodels' multipletests, Miller's (2024) cluster-robust standard errors
checked against a direct computation of the paper's formula and against statsmodels' cluster-robust OLS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluators.stats import (
    adjust_comparisons,
    benjamini_hochberg,
    clustered_mean_ci,
    clustered_paired,
    clustered_se,
    holm,
)

multitest = pytest.importorskip("statsmodels.stats.multitest")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_holm_and_bh_match_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.05, 4), rng.uniform(0, 1, 11), [0.03, 0.03, 1.0]])  # with ties
    rng.shuffle(p)
    for ours, method in ((holm(list(p)), "holm"), (benjamini_hochberg(list(p)), "fdr_bh")):
        theirs = multitest.multipletests(p, method=method)[1]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_none_pvalues_stay_none_and_are_not_counted():
    p = [0.01, None, 0.04, 0.03]
    h, q = holm(p), benjamini_hochberg(p)
    assert h[1] is None and q[1] is None
    ref_h = multitest.multipletests([0.01, 0.04, 0.03], method="holm")[1]
    ref_q = multitest.multipletests([0.01, 0.04, 0.03], method="fdr_bh")[1]
    np.testing.assert_allclose([h[0], h[2], h[3]], ref_h, atol=1e-12)
    np.testing.assert_allclose([q[0], q[2], q[3]], ref_q, atol=1e-12)
    assert holm([]) == [] and benjamini_hochberg([None]) == [None]
    with pytest.raises(ValueError):
        holm([1.5])


def test_adjust_comparisons_keeps_the_primary_plain_and_adjusts_the_rest_as_one_family():
    comps = [{"a": "base", "b": "t1", "metrics": {"accuracy": {"p_value": 0.01}, "f1": {"p_value": 0.02},
                                                   "rouge": {"p_value": 0.5}}},
             {"a": "base", "b": "t2", "metrics": {"accuracy": {"p_value": 0.2}, "f1": {"p_value": 0.001},
                                                   "rouge": {"p_value": None}}}]
    info = adjust_comparisons(comps, "accuracy", declared=True)
    assert info["tests"] == 5 and info["primary_tests"] == 2 and info["family"] == 3
    assert comps[0]["metrics"]["accuracy"] == {"p_value": 0.01, "p_holm": 0.01, "p_bh": 0.01, "adjusted": False}
    fam = [0.02, 0.5, 0.001]
    got_h = [comps[0]["metrics"]["f1"]["p_holm"], comps[0]["metrics"]["rouge"]["p_holm"],
             comps[1]["metrics"]["f1"]["p_holm"]]
    got_q = [comps[0]["metrics"]["f1"]["p_bh"], comps[0]["metrics"]["rouge"]["p_bh"],
             comps[1]["metrics"]["f1"]["p_bh"]]
    np.testing.assert_allclose(got_h, multitest.multipletests(fam, method="holm")[1], atol=1e-12)
    np.testing.assert_allclose(got_q, multitest.multipletests(fam, method="fdr_bh")[1], atol=1e-12)
    assert "p_holm" not in comps[1]["metrics"]["rouge"]


# ------------------------------------------------------------------------------------------ clustered


def _miller_direct(s, clusters):
    """Miller (2024) eq. 4 written out term by term: SE_CLT^2 plus the within-cluster cross products."""
    n = len(s)
    mean = sum(s) / n
    clt = sum((x - mean) ** 2 for x in s) / n / n
    cross = 0.0
    for i in range(n):
        for j in range(n):
            if i != j and clusters[i] == clusters[j]:
                cross += (s[i] - mean) * (s[j] - mean)
    return math.sqrt(clt + cross / n / n)


def _clustered_data(seed, n_clusters=37, binary=True):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, n_clusters)
    clusters, scores = [], []
    for c, k in enumerate(sizes):
        p = rng.uniform(0.1, 0.9)  # items of one document share their difficulty
        for _ in range(k):
            clusters.append(f"doc{c}")
            scores.append(float(rng.random() < p) if binary else float(rng.normal(p, 0.2)))
    return np.array(scores), clusters


@pytest.mark.parametrize("seed,binary", [(0, True), (1, True), (2, False)])
def test_clustered_se_matches_millers_formula_and_statsmodels(seed, binary):
    s, cl = _clustered_data(seed, binary=binary)
    se = clustered_se(s, cl)
    assert se == pytest.approx(_miller_direct(list(s), cl), rel=1e-10)
    sm = pytest.importorskip("statsmodels.api")
    groups = np.unique(cl, return_inverse=True)[1]
    fit = sm.OLS(s, np.ones((len(s), 1))).fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False})
    assert se == pytest.approx(float(fit.bse[0]), rel=1e-8)
    # correlated items widen the interval over the independent-items one
    iid = math.sqrt(np.mean((s - s.mean()) ** 2) / len(s))
    assert se > iid
    r = clustered_mean_ci(s, cl)
    assert r["clusters"] == 37 and r["n"] == len(s)
    assert r["ci"][0] == pytest.approx(s.mean() - 1.959963984540054 * se)
    assert r["ci"][1] == pytest.approx(s.mean() + 1.959963984540054 * se)


def test_one_item_per_cluster_is_the_plain_clt_error_and_missing_keys_are_their_own_cluster():
    s = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    clt = math.sqrt(np.mean((s - s.mean()) ** 2) / len(s))
    assert clustered_se(s, list("abcdef")) == pytest.approx(clt)
    assert clustered_se(s, [None] * 6) == pytest.approx(clt)
    assert clustered_mean_ci(s, ["x", None, "", "y", None, "x"])["clusters"] == 5
    assert clustered_se([None, None], ["a", "b"]) is None


def test_clustered_paired_difference():
    a, cl = _clustered_data(3)
    rng = np.random.default_rng(9)
    b = np.where(rng.random(a.size) < 0.15, 1 - a, a)
    b[:5] = np.nan  # not scored on one side: dropped
    r = clustered_paired(a, b, cl)
    keep = np.isfinite(b)
    d = (b - a)[keep]
    se = _miller_direct(list(d), [c for c, k in zip(cl, keep, strict=True) if k])
    assert r["n"] == int(keep.sum()) and r["delta"] == pytest.approx(d.mean())
    assert r["se"] == pytest.approx(se, rel=1e-10)
    from statistics import NormalDist
    assert r["p_value"] == pytest.approx(2 * (1 - NormalDist().cdf(abs(d.mean()) / se)))
    same = clustered_paired(a, a, cl)
    assert same["delta"] == 0 and same["p_value"] == 1.0 and same["ci"] == [0.0, 0.0]
