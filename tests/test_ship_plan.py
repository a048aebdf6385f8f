"""The plan after the offline eval (an online A/B test's size, what to monitor, when to re-train) and the
provenance and risk section, in reports rendered by `advise report` from a real run store; the A/B sizes
checked against statsmodels' power functions."""

import hashlib
import json
import math
import re
from html import unescape

import eval_fixtures
import pytest
from click.testing import CliRunner
from test_report_decision import EVIL, answers, project, refs_of, report, store_eval

from advisor.cli.main import main
from evaluators.stats.abtest import ab_n, ab_n_exact, ab_n_means, ab_n_proportions, ab_power, cohens_h

tiny_model_dir = eval_fixtures.tiny_model_dir
sm_power = pytest.importorskip("statsmodels.stats.power")
sm_prop = pytest.importorskip("statsmodels.stats.proportion")


def section(html, sid):
    m = re.search(rf'<section id="{sid}">.*?</section>', html, re.S)
    assert m, f"no {sid} section"
    return m.group(0), " ".join(unescape(re.sub(r"<[^>]+>", " ", m.group(0))).split())


@pytest.mark.parametrize("p_a,p_b", [(0.30, 0.95), (0.30, 0.625), (0.58, 0.64), (0.10, 0.12), (0.9, 0.8)])
def test_two_proportions_match_statsmodels(p_a, p_b):
    h = cohens_h(p_a, p_b)
    assert h == pytest.approx(sm_prop.proportion_effectsize(p_b, p_a), rel=1e-12)
    want = sm_power.NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8, ratio=1.0,
                                                alternative="two-sided")
    assert ab_n_exact(h) == pytest.approx(want, rel=1e-6)
    assert ab_n_proportions(p_a, p_b) == math.ceil(want)
    for n in (10, 100, 1000):
        assert ab_power(n, h) == pytest.approx(sm_power.NormalIndPower().power(h, n, 0.05, ratio=1.0), rel=1e-9)


@pytest.mark.parametrize("delta,sd", [(0.05, 0.3), (-1.2, 4.0), (2.0, 1.0)])
def test_two_means_match_statsmodels(delta, sd):
    want = sm_power.zt_ind_solve_power(effect_size=delta / sd, alpha=0.05, power=0.8, ratio=1.0)
    assert ab_n_means(delta, sd) == math.ceil(want)
    assert ab_n(delta / sd, alpha=0.01, power=0.9) == math.ceil(
        sm_power.zt_ind_solve_power(effect_size=delta / sd, alpha=0.01, power=0.9, ratio=1.0))
    assert ab_n(0.0) is None
    with pytest.raises(ValueError):
        ab_n_means(delta, 0.0)


def plan_rows(text_html):
    return [[" ".join(unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
            for tr in re.findall(r"<tr>(.*?)</tr>", text_html, re.S) if "<td" in tr]


def test_a_shipped_model_gets_an_ab_plan_monitoring_baselines_and_retrain_thresholds(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {"accuracy": ">= 0.6"})
    refs = refs_of(p)
    tuned = answers(refs, 0.95, 3)
    lost = next(i for i, (o, r) in enumerate(zip(tuned, refs, strict=True)) if o != r)
    tuned[lost] = EVIL  # one answer that is no label: a format error, escaped in the page
    tuned[lost + 1 if lost + 1 < len(tuned) else 0] = "I'm sorry, I can't help with that."
    store_eval(p, {"base:zero-shot": answers(refs, 0.10, 1), "base:few-shot": answers(refs, 0.30, 2),
                   "tuned:lora": tuned})
    r = CliRunner().invoke(main, ["assess", str(p.root)])  # the training labels the label mix is measured against
    assert r.exit_code == 0, r.output
    tone, _, html = report(p, tmp_path)
    assert tone == "ship"
    assert html.index('id="decision"') < html.index('id="plan"') < html.index('id="verdict"')
    raw, text = section(html, "plan")
    assert "<script" not in raw.lower()
    # the A/B table: base:few-shot 0.30 against the tuned model's measured rate, and half the effect
    table = raw[raw.index("<table>"):raw.index("</table>")]
    rows = plan_rows(table)
    assert [row[0] for row in rows] == ["the measured effect", "50% of it (a smaller effect)"]
    va = 0.30
    vb = sum(o == x for o, x in zip(tuned, refs, strict=True)) / len(refs)
    for row, pb in zip(rows, [vb, va + (vb - va) / 2], strict=True):
        want = math.ceil(sm_power.NormalIndPower().solve_power(
            effect_size=sm_prop.proportion_effectsize(pb, va), alpha=0.05, power=0.8, ratio=1.0))
        assert row[4] == f"{want:,}" and row[5] == f"{2 * want:,}", (row, want)
    assert "80% power, two-sided alpha 0.05" in text
    # monitoring: each signal with the baseline measured now and its thresholds, sources named
    monitor = plan_rows(raw[raw.index("What to monitor"):])
    signals = {row[0]: row for row in monitor}
    length = signals["input length (words) against the training inputs"]
    assert re.search(r"train p50 \d+, p90 \d+ words; eval set PSI 0\.\d{3} \(no-shift expectation at these "
                     r"sizes 0\.\d{3}\)", length[2]) and length[3] == "PSI > 0.1"
    assert re.search(r"on windows of at least [\d,]+ requests \(their no-shift PSI under 0\.05\)", length[1])
    assert length[4] == "PSI > 0.25"
    mix = signals["label mix of the answers against the training labels"]
    assert re.search(r"tuned:lora on the eval set: PSI 0\.\d{3}", mix[2]), mix
    assert signals["refusal-like answers"][2] == "1.0% of 100 eval answers"
    assert signals["refusal-like answers"][3] == "> 3.0% (baseline + 2%)"
    fmt = signals["format errors"]
    assert fmt[1].startswith("share of answers that are not one of the training labels") and fmt[2].startswith("2.0% of 100")
    acc = signals["accuracy on a labelled sample of production requests"]
    assert acc[2].startswith(f"{vb:.3f} [") and acc[4] == "a gate fails (accuracy >= 0.6)"
    assert "Siddiqi 2006" in text


def test_two_models_that_score_the_same_plan_no_test_for_no_effect(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {})
    refs = refs_of(p)
    same = answers(refs, 0.5, 1)
    store_eval(p, {"base:zero-shot": same, "tuned:lora": list(same)})
    tone, _, html = report(p, tmp_path)
    _, text = section(html, "plan")
    assert tone == "inconclusive"
    m = re.search(r"the smallest difference the offline eval could detect \+(0\.\d{3})", text)
    assert m, text


def test_provenance_names_hashes_licences_the_base_model_card_and_what_was_not_measured(tmp_path, tiny_model_dir):
    card = tmp_path / "base-model"
    card.mkdir()
    (card / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (card / "README.md").write_text(f"---\nlicense: apache-2.0\nlicense_name: '{EVIL}'\n---\n# a model\n")
    p = project(tmp_path, card, {})
    refs = refs_of(p)
    canary = {"metrics": ["exact_match"], "runs": [
        {"candidate": "base:zero-shot", "metrics": {"exact_match": {"value": 0.41, "ci": [0.3, 0.5]}}},
        {"candidate": "tuned:lora", "metrics": {"exact_match": {"value": 0.39, "ci": [0.28, 0.49]}}}]}
    store_eval(p, {"base:zero-shot": answers(refs, 0.2, 1), "tuned:lora": answers(refs, 0.9, 3)}, {"canary": canary})
    _, _, html = report(p, tmp_path)
    raw, text = section(html, "provenance")
    assert "NIST AI 100-1" in text and "AI RMF 1.0" in text
    for role in ("train", "eval"):
        digest = hashlib.sha256((p.root / "data" / f"{role}.jsonl").read_bytes()).hexdigest()
        assert f"{role} data/{role}.jsonl" in text and digest in text
    assert "LICENSE: Attribution 4.0 International" in text
    assert "NOTICE: This sample project contains data derived from BANKING77." in text
    assert "README.md: Source: BANKING77 (PolyAI), CC BY 4.0 -- see NOTICE." in text
    assert "LlamaForCausalLM" in text and "Licence: apache-2.0 (" in text
    assert "<script" not in raw.lower() and "&lt;script&gt;" in raw
    assert "tuned:lora 0.390 [0.280, 0.490]" in text and "Measured: a general-capability canary (short general questions" in text
    assert "robustness to adversarial inputs" in text and "the offline eval has 100 items" in text


def test_provenance_says_so_when_nothing_is_stated(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {})
    for name in ("LICENSE", "NOTICE", "README.md"):
        (p.root / name).unlink()
    refs = refs_of(p)
    store_eval(p, {"base:zero-shot": answers(refs, 0.2, 1), "tuned:lora": answers(refs, 0.9, 3)})
    _, _, html = report(p, tmp_path)
    _, text = section(html, "provenance")
    assert "no licence (no LICENSE, NOTICE or licence line in its README)" in text
    assert "Licence: not stated" in text and "Not measured: the stored eval has no canary scores" in text


def test_the_psi_noise_floor_is_what_samples_of_one_distribution_give():
    """With no shift at all, PSI between samples of n and m items averages (bins - 1)(1/n + 1/m); the
    monitoring window is sized so that this stays under half the alert level."""
    import numpy as np

    from advisor.report.plan import length_bins, min_window, psi, psi_noise, shares

    rng = np.random.default_rng(0)
    train = rng.poisson(12, 2000).tolist()
    edges = length_bins(train)
    bins = len(edges) + 1
    got = [psi(shares(train, edges), shares(rng.poisson(12, 300).tolist(), edges)) for _ in range(400)]
    assert float(np.mean(got)) == pytest.approx(psi_noise(bins, 300, 2000), rel=0.15)
    w = min_window(bins, 2000, 0.1)
    assert psi_noise(bins, w, 2000) <= 0.05 < psi_noise(bins, w - 1, 2000)
    assert min_window(bins, 20, 0.1) is None  # a training set this small cannot anchor a 0.1 alert
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0 and psi([0.9, 0.1], [0.1, 0.9]) > 0.25


def test_a_continuous_metric_gets_a_means_plan_from_the_per_item_spread(tmp_path, tiny_model_dir):
    """Scores between 0 and 1 per item (a ROUGE-like metric): the A/B size is a two-sample z-test on the
    mean, standardised by the pooled within-model SD of the stored per-item scores."""
    import random

    import numpy as np

    p = project(tmp_path, tiny_model_dir, {})
    refs = refs_of(p)
    rng = random.Random(5)
    base = [min(1.0, max(0.0, rng.gauss(0.40, 0.15))) for _ in refs]
    tuned = [min(1.0, max(0.0, x + rng.gauss(0.12, 0.10))) for x in base]
    store_eval(p, {"base:zero-shot": list(refs), "tuned:lora": list(refs)},
               scores={"base:zero-shot": base, "tuned:lora": tuned}, metric="rouge_l")
    _, _, html = report(p, tmp_path)
    raw, text = section(html, "plan")
    sd = float(np.sqrt((np.var(base, ddof=1) + np.var(tuned, ddof=1)) / 2))
    assert f"per-request SD ({sd:.3f}, within each model's eval answers, pooled)" in text
    rows = plan_rows(raw[raw.index("<table>"):raw.index("</table>")])
    delta = sum(tuned) / len(tuned) - sum(base) / len(base)
    for row, d in zip(rows, [delta, delta / 2], strict=True):
        want = math.ceil(sm_power.zt_ind_solve_power(effect_size=d / sd, alpha=0.05, power=0.8, ratio=1.0))
        assert row[1] == f"{d:+.3f}" and row[3] == f"{want:,}" and row[4] == f"{2 * want:,}", (row, want)
    assert "rate: control" not in raw  # no rates for a mean


def test_the_plan_says_what_the_offline_decision_means_for_the_test(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {"accuracy": ">= 0.9"})
    refs = refs_of(p)
    store_eval(p, {"base:zero-shot": answers(refs, 0.1, 1), "tuned:lora": answers(refs, 0.7, 3)})
    tone, _, html = report(p, tmp_path)
    _, text = section(html, "plan")
    assert tone == "noship" and re.search(r"The offline decision is do not ship ?: exposing users is not advised", text)


def test_a_docs_folder_is_hashed_as_a_tree_and_changes_with_any_file(tmp_path):
    import shutil

    from conftest import SAMPLES

    from advisor.project import load_project
    from advisor.report.provenance import provenance

    root = tmp_path / "rag"
    shutil.copytree(SAMPLES / "policy-faq-rag", root, ignore=shutil.ignore_patterns(".advise"))

    def docs_row():
        rows = {r["role"]: r for r in provenance(load_project(root), None, None, None, None, None)["data"]}
        return rows["docs"]

    files = sorted(f for f in (root / "docs").rglob("*") if f.is_file())
    tree = "".join(f"{f.relative_to(root / 'docs').as_posix()}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n"
                   for f in files)
    row = docs_row()
    assert row["path"] == "docs" and row["sha256"] == f"{hashlib.sha256(tree.encode()).hexdigest()} ({len(files):,} files)"
    with open(files[0], "a", encoding="utf-8") as fh:
        fh.write("\nrevised")
    assert docs_row()["sha256"] != row["sha256"]


def test_a_project_overrides_the_plan_thresholds_in_its_rubric(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {})
    (p.root / "rubrics").mkdir()
    (p.root / "rubrics" / "report.yaml").write_text("plan:\n  psi_alert: 0.2\n  smaller_effect_share: 0.25\n")
    refs = refs_of(p)
    store_eval(p, {"base:zero-shot": answers(refs, 0.2, 1), "tuned:lora": answers(refs, 0.9, 3)})
    _, _, html = report(p, tmp_path)
    raw, text = section(html, "plan")
    assert "25% of it (a smaller effect)" in text and "PSI > 0.2" in text and "PSI > 0.1 " not in text
    assert "under 0.1)" in text  # the window keeps the no-shift PSI under half the project's alert level


def test_a_corpus_level_metric_without_per_item_scores_gets_no_made_up_size(tmp_path, tiny_model_dir):
    from advisor.report.plan import plan
    from advisor.store import Store

    p = project(tmp_path, tiny_model_dir, {})
    with Store.for_project(p) as store:
        ids = {}
        for name in ("base:zero-shot", "tuned:lora"):
            ids[name] = store.start_run("eval", name=name)
            store.finish_run(ids[name], "done", {"candidate": name, "per_item": [
                {"item": f"i{k}", "line": k + 1, "output": "card_arrival", "error": None, "scores": {}} for k in range(50)]})
        ev = {"runs": [{"candidate": n, "run_id": ids[n], "metrics": {"macro_f1": {"value": v, "ci": [v - 0.1, v + 0.1]}}}
                       for n, v in (("base:zero-shot", 0.4), ("tuned:lora", 0.7))]}
        decision = {"metric": "macro_f1", "baseline": "base:zero-shot", "candidate": "tuned:lora", "items": 50,
                    "outcome": "ship", "higher_is_better": True}
        out = plan(p, store, ev, decision, None)
    assert out["ab_test"]["rows"] == [] and "no per-item scores" in out["ab_test"]["note"]
    assert any(r["signal"] == "format errors" for r in out["rows"])  # the rates are still measured


def test_a_rate_already_near_100_percent_gets_no_threshold_above_it(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {})
    refs = refs_of(p)
    store_eval(p, {"base:zero-shot": answers(refs, 0.2, 1), "tuned:lora": ["no label"] * len(refs)})
    r = CliRunner().invoke(main, ["assess", str(p.root)])
    assert r.exit_code == 0, r.output
    _, _, html = report(p, tmp_path)
    raw, _ = section(html, "plan")
    fmt = {row[0]: row for row in plan_rows(raw[raw.index("What to monitor"):])}["format errors"]
    assert fmt[2] == "100.0% of 100 eval answers" and fmt[3].startswith("– (the offline rate leaves no room")
    assert "100.0%" not in fmt[3] + fmt[4] and "102" not in fmt[3] + fmt[4]
