"""Statistics across many comparisons and clustered items: Holm and Benjamini-Hochberg adjusted
p-values checked against statsmodels' multipletests, Miller's (2024) cluster-robust standard errors
checked against a direct computation of the paper's formula and against statsmodels' cluster-robust OLS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from loopback_chat import serve

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


# ------------------------------------------------------------------------ end to end through the CLI

import json  # noqa: E402
from collections import defaultdict  # noqa: E402

import eval_fixtures as fx  # noqa: E402
import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from eval_fixtures import copy_project  # noqa: E402

from advisor.cli.main import main  # noqa: E402
from advisor.project import load_project  # noqa: E402
from advisor.store import Store  # noqa: E402
from evaluators.gates import RunView, evaluate_gates, parse_gates  # noqa: E402

tiny_model_dir = fx.tiny_model_dir
ITEMS = 30


def invoke(*args):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture(scope="module")
def clustered(tmp_path_factory, tiny_model_dir):
    """The ticket project with 30 eval items in 10 documents (metadata.doc_id), tagged by message length,
    eval.primary_metric: macro_f1 and two regression gates; evaluated with the tiny base model and
    answers produced elsewhere (right on most items)."""
    tmp = tmp_path_factory.mktemp("clustered")
    root = copy_project(tmp / "ticket", tiny_model_dir, max_items=ITEMS, cluster_field="metadata.doc_id",
                        primary_metric="macro_f1",
                        gates={"accuracy": {"no_regression": {"baseline": "base:zero-shot"}},
                               "macro_f1": {"no_regression": {"baseline": "base:zero-shot"}}})
    recs = [json.loads(x) for x in (root / "data" / "eval.jsonl").read_text().splitlines()]
    for i, r in enumerate(recs):
        r["id"] = f"q{i}"
        r["metadata"] = {"doc_id": f"doc{i // 3}"}
        r["tags"] = ["short" if len(r["messages"][1]["content"]) < 45 else "long"]
    (root / "data" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rows = [{"id": r["id"], "output": r["messages"][-1]["content"] if (i // 3) % 4 else "card_arrival"}
            for i, r in enumerate(recs[:ITEMS])]
    preds = tmp / "answers.jsonl"
    preds.write_text("".join(json.dumps(x) + "\n" for x in rows))
    args = ("eval", root, "--candidate", "base:zero-shot", "--canary", "none", "--no-progress",
            "--predictions", preds, "--name", "sys")
    r = invoke(*args, "--json")
    assert r.exit_code == 0, r.stderr
    table = invoke(*args)  # cached: no model call
    assert table.exit_code == 0, table.stderr
    res = json.loads(r.stdout)
    with Store.for_project(load_project(root)) as store:
        per_item = {x["candidate"]: store.get_run(x["run_id"])["result"]["per_item"] for x in res["runs"]}
    return root, res, table.stdout, per_item, recs


def test_eval_counts_comparisons_and_adjusts_all_but_the_declared_primary(clustered):
    _, res, out, _, _ = clustered
    mult = res["multiplicity"]
    assert res["primary_metric"] == "macro_f1" and mult["declared"] is True
    entries = [(c["a"], c["b"], m, d) for c in res["comparisons"] for m, d in c["metrics"].items()
               if d.get("p_value") is not None]
    assert mult["tests"] == len(entries) >= 4 and mult["primary_tests"] == 1
    family = [d for _, _, m, d in entries if m != "macro_f1"]
    assert mult["family"] == len(family)
    raw = [d["p_value"] for d in family]
    np.testing.assert_allclose([d["p_holm"] for d in family], multitest.multipletests(raw, method="holm")[1])
    np.testing.assert_allclose([d["p_bh"] for d in family], multitest.multipletests(raw, method="fdr_bh")[1])
    prim = next(d for _, _, m, d in entries if m == "macro_f1")
    assert prim["adjusted"] is False and prim["p_holm"] == prim["p_value"]
    assert f"{mult['tests']} paired tests: macro_f1 (declared in eval.primary_metric)" in " ".join(out.split())


def test_clustered_intervals_match_a_direct_computation(clustered):
    _, res, out, per_item, recs = clustered
    cl = res["clusters"]
    assert cl == {"field": "metadata.doc_id", "clusters": 10, "items": ITEMS, "missing": 0,
                  "method": "cluster_robust_miller2024"}
    doc = {i + 1: r["metadata"]["doc_id"] for i, r in enumerate(recs)}  # eval line -> document
    z = 1.959963984540054
    for run in res["runs"]:
        rows = [x for x in per_item[run["candidate"]] if x["scores"].get("accuracy") is not None]
        s = [x["scores"]["accuracy"] for x in rows]
        se = _miller_direct(s, [doc[x["line"]] for x in rows])
        c = run["metrics"]["accuracy"]["clustered"]
        assert c["se"] == pytest.approx(se, rel=1e-9, abs=1e-12) and c["n"] == len(s)
        assert c["ci"] == pytest.approx([np.mean(s) - z * se, np.mean(s) + z * se])
    comp = next(c for c in res["comparisons"] if c["b"] == "external:sys")
    a = {x["line"]: x["scores"]["accuracy"] for x in per_item[comp["a"]]}
    b = {x["line"]: x["scores"]["accuracy"] for x in per_item[comp["b"]]}
    lines = [n for n in a if a[n] is not None and b.get(n) is not None]
    d = [b[n] - a[n] for n in lines]
    c = comp["metrics"]["accuracy"]["clustered"]
    assert c["se"] == pytest.approx(_miller_direct(d, [doc[n] for n in lines]), rel=1e-9)
    assert c["clusters"] == 10 and comp["metrics"]["accuracy"]["delta"] == pytest.approx(np.mean(d))
    assert "clustered by metadata.doc_id, 10 clusters of 30 items" in " ".join(out.split())


def test_slices_per_label_and_tag_match_the_stored_scores(clustered):
    _, res, out, per_item, recs = clustered
    sl = res["slices"]
    assert sl["metric"] == "accuracy" and sl["kinds"] == ["label", "tag"]
    for name, rows in sl["candidates"].items():
        groups = defaultdict(list)
        for x in per_item[name]:
            rec = recs[x["line"] - 1]
            if x["scores"].get("accuracy") is None:
                continue
            groups[("label", rec["messages"][-1]["content"])].append(x["scores"]["accuracy"])
            groups[("tag", rec["tags"][0])].append(x["scores"]["accuracy"])
        assert {(r["kind"], r["name"]) for r in rows} == set(groups)
        for r in rows:
            vals = groups[(r["kind"], r["name"])]
            assert r["n"] == len(vals) and r["value"] == pytest.approx(np.mean(vals))
            assert r["ci"][0] <= r["value"] <= r["ci"][1]
        worst = sl["worst"][name]
        eligible = sorted(r["value"] for r in rows if r["n"] >= sl["min_items"])
        assert [w["value"] for w in worst] == eligible[:len(worst)] and len(worst) == min(3, len(eligible))
    # per-slice differences against the reference run, BH over every slice of every comparison
    [comp] = sl["comparisons"]
    assert (comp["a"], comp["b"]) == ("base:zero-shot", "external:sys")
    a = {x["line"]: x["scores"]["accuracy"] for x in per_item["base:zero-shot"]}
    b = {x["line"]: x["scores"]["accuracy"] for x in per_item["external:sys"]}
    for row in comp["slices"]:
        lines = [n for n in a if a[n] is not None and b[n] is not None
                 and (recs[n - 1]["messages"][-1]["content"] if row["kind"] == "label" else recs[n - 1]["tags"][0])
                 == row["name"]]
        assert row["n"] == len(lines) and row["delta"] == pytest.approx(np.mean([b[n] - a[n] for n in lines]))
    raw = [r["p_value"] for r in comp["slices"]]
    np.testing.assert_allclose([r["p_bh"] for r in comp["slices"]], multitest.multipletests(raw, method="fdr_bh")[1])
    hits = [r for r in comp["slices"] if r["p_bh"] < 0.05]
    assert hits  # the external answers are right on most items, the tiny base model on none
    line = " ".join(out.split())
    assert "external:sys vs base:zero-shot, slices that differ after Benjamini-Hochberg over" in line
    assert f"{hits[0]['kind']} {hits[0]['name']} {hits[0]['delta']:+.3f}" in line
    ext_worst = sl["worst"]["external:sys"][0]
    assert f"{ext_worst['kind']} {ext_worst['name']} {ext_worst['value']:.3f}" in " ".join(out.split())


def test_report_shows_comparisons_clusters_and_slices_and_the_gate_counts_its_tests(clustered):
    root, res, _, _, _ = clustered
    g = invoke("gate", root, "--candidate", "external:sys", "--json")
    assert g.exit_code in (0, 1), g.stderr
    gres = json.loads(g.stdout)
    assert gres["multiplicity"]["tests"] == 2 and gres["multiplicity"]["family"] == 1
    acc = next(x for x in gres["gates"] if x["metric"] == "accuracy")
    f1 = next(x for x in gres["gates"] if x["metric"] == "macro_f1")
    assert acc["adjusted"] is True and acc["p_holm"] == pytest.approx(acc["p_value"])  # a family of one
    assert f1["adjusted"] is False and "Holm" not in f1["message"]
    rep = invoke("report", root)
    assert rep.exit_code == 0, rep.stderr
    html = (root / ".advise" / "report.html").read_text()
    assert "Many comparisons" in html and f"{res['multiplicity']['tests']} paired tests were made" in html
    assert "Clustered by metadata.doc_id, 10 clusters" in html
    assert "Slices: accuracy per label and per tag" in html
    assert "accuracy per slice: <code>external:sys</code> − <code>base:zero-shot</code>" in html
    # the report gates the newest tuned candidate (none here): the gate of external:sys rendered directly
    from advisor.report.collect import collect
    from advisor.report.render import render_report

    with Store.for_project(load_project(root)) as store:
        data = collect(load_project(root), store)
    html = render_report({**data, "gate": gres})
    assert "The gates below make 2 paired comparison(s): 1 on the primary metric <code>macro_f1</code>" in html


def test_bad_primary_metric_or_cluster_field_is_exit_2_with_the_yaml_line(tmp_path, tiny_model_dir):
    for key, value, why in (("primary_metric", "rouge_l", "eval.primary_metric: rouge_l is not among the metrics"),
                            ("cluster_field", "doc_id", "eval.cluster_field: no eval record has the field 'doc_id'")):
        root = copy_project(tmp_path / key, tiny_model_dir, max_items=6, **{key: value})
        r = invoke("eval", root, "--candidate", "base:zero-shot", "--canary", "none", "--no-progress")
        assert r.exit_code == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        text = (root / "project.yaml").read_text().splitlines()
        n = next(i for i, t in enumerate(text, 1) if t.strip().startswith(f"{key}:"))
        assert len(lines) == 1 and f"project.yaml:{n}" in lines[0] and why in lines[0], r.stderr
        assert yaml.safe_load("\n".join(text))["eval"][key] == value


def test_a_regression_significant_only_before_holm_warns_instead_of_failing():
    n = 40
    base = [1.0] * 30 + [0.0] * 10
    cand = [0.0] * 10 + [1.0] * 20 + [1.0, 1.0] + [0.0] * 8  # 10 items lost, 2 won: McNemar p = 0.039
    ids = [f"i{i}" for i in range(n)]
    views = {"base:zero-shot": RunView("base:zero-shot", n, {}, ids, {"accuracy": base, "exact_match": base}),
             "tuned:x": RunView("tuned:x", n, {}, ids, {"accuracy": cand, "exact_match": cand})}
    gates = parse_gates({"accuracy": {"no_regression": {"margin": 0}}, "exact_match": {"no_regression": {"margin": 0}}})
    plain = evaluate_gates(gates, views, "tuned:x", primary="accuracy")
    assert [g["status"] for g in plain["gates"]] == ["fail", "fail"]  # a family of one: Holm changes nothing
    assert plain["gates"][0]["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    both = evaluate_gates(gates, views, "tuned:x", primary="macro_f1")  # neither is the primary
    assert both["multiplicity"] == {"tests": 2, "family": 2, "primary_metric": "macro_f1", "method": "holm",
                                    "alpha": 0.05}
    assert [g["status"] for g in both["gates"]] == ["warn", "warn"] and both["status"] == "pass"
    assert all(g["p_holm"] == pytest.approx(2 * g["p_value"]) for g in both["gates"])
    assert "not after (Holm p=0.0771 >= 0.05)" in both["warnings"][0]


# --------------------------------------------------------------------------- repeated sampling

from itertools import combinations  # noqa: E402

from evaluators.sampling import pass_at_k, pass_hat_k  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_pass_at_k_and_pass_hat_k_match_enumerating_every_subset_of_samples(n):
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(outcomes, k))
            assert pass_at_k(n, c, k) == pytest.approx(np.mean([any(s) for s in subsets]))
            assert pass_hat_k(n, c, k) == pytest.approx(np.mean([all(s) for s in subsets]))
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def _answer(i: int, truth: str, seed: int) -> str:
    """Item i's answer under a seed: right always (i % 3 == 0), right on two seeds in three (1), never (2)."""
    wrong = "card_arrival" if truth != "card_arrival" else "exchange_rate"
    if i % 3 == 0 or (i % 3 == 1 and (seed + i) % 3 != 0):
        return truth
    return wrong


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, tiny_model_dir):
    """A loopback OpenAI-compatible server whose answers depend on the request's seed; evaluated with
    --samples 4 --temperature 0.7 and a pass_hat_k gate."""
    root = copy_project(tmp_path_factory.mktemp("sampled") / "ticket", tiny_model_dir, max_items=18,
                        gates={"pass_hat_k": ">= 0.3"})
    recs = [json.loads(x) for x in (root / "data" / "eval.jsonl").read_text().splitlines()][:18]
    index = {r["messages"][1]["content"].strip(): (i, r["messages"][-1]["content"]) for i, r in enumerate(recs)}

    def answer(body: dict) -> str:
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1].strip()
        i, truth = index[user]
        return _answer(i, truth, int(body.get("seed", 0)))

    with serve(answer) as url:
        args = ("eval", root, "--endpoint", url, "--endpoint-model", "m", "--candidate", "endpoint:*",
                "--strategy", "zero-shot", "--canary", "none", "--no-progress", "--samples", "4", "--temperature", "0.7")
        r = invoke(*args, "--json")
        assert r.exit_code == 0, r.stderr
        table = invoke(*args)
        assert table.exit_code == 0, table.stderr
        g = invoke("gate", root, "--candidate", "endpoint:m:zero-shot", "--json")
        yield root, json.loads(r.stdout), table.stdout, recs, g


def test_samples_give_pass_at_k_pass_hat_k_variance_and_flaky_items(sampled):
    _, res, out, recs, _ = sampled
    smp = res["samples"]
    assert smp["k"] == 4 and smp["seeds"] == [0, 1, 2, 3] and smp["metric"] == "accuracy"
    e = smp["candidates"]["endpoint:m:zero-shot"]
    passes = np.array([[float(_answer(i, r["messages"][-1]["content"], s) == r["messages"][-1]["content"])
                        for s in range(4)] for i, r in enumerate(recs)])
    c = passes.sum(axis=1).astype(int)
    assert e["samples"] == 4 and e["items"] == 18 and e["binary"] is True
    assert e["pass_at_1"]["value"] == pytest.approx(passes.mean())
    assert e["pass_at_k"]["value"] == pytest.approx(np.mean([pass_at_k(4, x, 4) for x in c]))
    assert e["pass_hat_k"]["value"] == pytest.approx(np.mean([pass_hat_k(4, x, 4) for x in c]))
    lo, hi = e["pass_hat_k"]["ci"]
    assert lo <= e["pass_hat_k"]["value"] <= hi
    assert e["variance"]["within_item"] == pytest.approx(np.mean(np.var(passes, axis=1, ddof=1)))
    assert e["variance"]["between_item"] == pytest.approx(np.var(passes.mean(axis=1), ddof=1))
    flaky_lines = sorted(f["line"] for f in e["flaky_items"])
    assert flaky_lines == [i + 1 for i in range(18) if 0 < c[i] < 4] and e["flaky"] == len(flaky_lines)
    assert all(len(f["answers"]) == 2 for f in e["flaky_items"])
    assert res["settings"]["samples"] == 4
    assert f"pass^4 {e['pass_hat_k']['value']:.3f}" in " ".join(out.split())
    assert f"{e['flaky']} flaky item(s)" in " ".join(out.split())


def test_pass_hat_k_is_gateable_and_samples_need_a_temperature(sampled, tmp_path):
    root, res, _, _, g = sampled
    assert g.exit_code == 0, g.stdout + g.stderr
    gate = json.loads(g.stdout)["gates"][0]
    value = res["samples"]["candidates"]["endpoint:m:zero-shot"]["pass_hat_k"]["value"]
    assert gate["metric"] == "pass_hat_k" and gate["status"] == "pass" and gate["observed"] == round(value, 4)
    rep = invoke("report", root)
    assert rep.exit_code == 0, rep.stderr
    html = (root / ".advise" / "report.html").read_text()
    assert "Repeated sampling: 4 answers per item at temperature 0.7" in html and f"{value:.3f}" in html
    r = invoke("eval", root, "--samples", "3", "--canary", "none")
    assert r.exit_code == 2 and "--samples 3 needs --temperature above 0" in r.stderr


def test_merged_summaries_adjust_the_older_comparisons_with_the_newer():
    from evaluators.results import merge_summaries

    def summary(b, ps):
        comp = {"a": "base:zero-shot", "b": b, "metrics": {m: {"p_value": p} for m, p in ps.items()}}
        s = {"metrics": ["accuracy", "macro_f1"], "settings": {}, "primary_metric": "accuracy",
             "runs": [{"candidate": "base:zero-shot"}, {"candidate": b}], "comparisons": [comp]}
        s["multiplicity"] = adjust_comparisons(s["comparisons"], "accuracy")
        return s

    new, old = summary("tuned:a", {"accuracy": 0.01, "macro_f1": 0.02}), summary("tuned:b", {"accuracy": 0.3,
                                                                                            "macro_f1": 0.04})
    merged = merge_summaries([new, old])
    assert [c["b"] for c in merged["comparisons"]] == ["tuned:a", "tuned:b"]
    assert merged["multiplicity"]["tests"] == 4 and merged["multiplicity"]["family"] == 2
    assert [c["metrics"]["macro_f1"]["p_holm"] for c in merged["comparisons"]] == pytest.approx(
        list(multitest.multipletests([0.02, 0.04], method="holm")[1]))


def test_clustered_by_paper_on_the_covid_qa_sample_project(tmp_path):
    """The covid-qa-docs sample: 58 eval questions about 12 papers (``source``); answers produced elsewhere
    (the reference for the questions of three papers, a wrong sentence for the rest), no base model."""
    import shutil

    root = tmp_path / "covid"
    shutil.copytree(fx.REPO / "sample_projects" / "covid-qa-docs", root, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg.pop("base_model")
    cfg["eval"] = {"cluster_field": "source", "metrics": ["token_f1", "exact_match"]}
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    recs = [json.loads(x) for x in (root / "data" / "eval.jsonl").read_text().splitlines() if x.strip()]
    papers = sorted({r["source"] for r in recs})
    right = set(papers[:3])
    rows = [{"id": r["id"], "output": r["messages"][-1]["content"] if r["source"] in right else "no idea"}
            for r in recs]
    preds = tmp_path / "answers.jsonl"
    preds.write_text("".join(json.dumps(x) + "\n" for x in rows))
    r = invoke("eval", root, "--canary", "none", "--json", "--predictions", preds, "--name", "three-papers")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["clusters"]["clusters"] == len(papers) == 12 and res["clusters"]["items"] == len(recs) == 58
    em = res["runs"][0]["metrics"]["exact_match"]
    s = [float(x["source"] in right) for x in recs]
    assert em["value"] == pytest.approx(np.mean(s))
    se = _miller_direct(s, [x["source"] for x in recs])
    assert em["clustered"]["se"] == pytest.approx(se)
    # every paper's questions all right or all wrong: the clustered interval is much wider than Wilson's
    assert em["clustered"]["ci"][1] - em["clustered"]["ci"][0] > 1.4 * (em["ci"][1] - em["ci"][0])
