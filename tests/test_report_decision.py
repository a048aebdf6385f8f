"""The report's decision box: ship, do not ship or inconclusive, from eval results written into a real run
store (per-item outputs and scores, a summary with paired comparisons), rendered by `advise report`."""

import random
import re
import shutil
from html import unescape

import eval_fixtures
import yaml
from click.testing import CliRunner
from conftest import SAMPLES

from advisor.cli.main import main
from advisor.data.dataset import load_project_data
from advisor.project import load_project
from advisor.report.render import render_report
from advisor.store import Store
from evaluators import stats
from evaluators.runner import make_items, summary_key

tiny_model_dir = eval_fixtures.tiny_model_dir
LABELS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "cash_withdrawal_charge"]
EVIL = '<script>alert("x")</script>'


def project(tmp_path, base_model, gates):
    root = tmp_path / "ticket-routing-tiny"
    shutil.copytree(SAMPLES / "ticket-routing-tiny", root, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["base_model"] = str(base_model)
    cfg["eval"]["gates"] = gates
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_project(root)


def answers(refs, accuracy, seed, wrong=None):
    """Outputs right on a seeded `accuracy` share of the items, otherwise another label (or `wrong`)."""
    rng = random.Random(seed)
    right = set(rng.sample(range(len(refs)), round(accuracy * len(refs))))
    return [r if i in right else (wrong or next(x for x in LABELS if x != r)) for i, r in enumerate(refs)]


def store_eval(p, outputs: dict[str, list[str]], extra: dict | None = None, scores: dict[str, list[float]] | None = None,
               metric: str = "accuracy"):
    """What `advise eval` stores: one eval run per candidate with per-item outputs and accuracy scores, and
    a summary (keyed by the eval items and base model) with the runs' 95% intervals and paired comparisons
    of the first candidate against every other and of every untuned one against every tuned one."""
    items = make_items(load_project_data(p).eval, p.eval.max_items)
    refs = [it.references[0] for it in items]
    kind = "binary" if scores is None else None
    with Store.for_project(p) as s:
        runs, given, scores = [], scores or {}, {}
        for name, outs in outputs.items():
            sc = given.get(name) or [1.0 if o == r else 0.0 for o, r in zip(outs, refs, strict=True)]
            scores[name] = sc
            rid = s.start_run("eval", name=name)
            s.finish_run(rid, "done", {"candidate": name, "per_item": [
                {"item": it.hash, "line": it.line, "output": o, "error": None, "scores": {metric: x}}
                for it, o, x in zip(items, outs, sc, strict=True)]})
            ci = stats.mean_ci(sc)["ci"] if kind is None else stats.wilson_interval(int(sum(sc)), len(sc))
            runs.append({"candidate": name, "items": len(items), "run_id": rid, "metrics": {metric: {
                "value": sum(sc) / len(sc), "ci": ci, "n": len(sc)}}})
        names = list(outputs)
        pairs = [(names[0], b) for b in names[1:]]
        pairs += [(a, b) for a in names[1:] if not a.startswith("tuned:") for b in names if b.startswith("tuned:")]
        comps = []
        for a, b in dict.fromkeys(pairs):
            c = stats.compare(metric, scores[a], scores[b], kind=kind)
            worse = [i for i in range(len(items)) if scores[b][i] < scores[a][i]]
            comps.append({"a": a, "b": b, "items": len(items), "primary_metric": metric,
                          "metrics": {metric: {**{k: c.get(k) for k in ("delta", "ci", "p_value", "test", "n", "wins",
                                                                       "losses", "ties")},
                                               "a_value": c.get("a_mean"), "b_value": c.get("b_mean"),
                                               "higher_is_better": True}},
                          "regressions_total": len(worse), "regressions": []})
        summary = {"primary_metric": metric, "metrics": [metric], "items": len(items),
                   "data": {"eval_items": len(items)}, "settings": {}, "runs": runs, "comparisons": comps, **(extra or {})}
        sid = s.start_run("eval_summary", name=p.name, inputs_hash=summary_key(p, items))
        s.finish_run(sid, "done", summary)
    return refs


def report(p, tmp_path):
    r = CliRunner().invoke(main, ["report", str(p.root), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r.html").read_text()
    box = re.search(r'<section id="decision" class="decision (\w+)".*?</section>', html, re.S)
    assert box, "no decision box"
    assert html.index('id="decision"') < html.index('id="verdict"')  # the answer comes first
    return box.group(1), " ".join(unescape(re.sub(r"<[^>]+>", " ", box.group(0))).split()), html


def refs_of(p):
    return [it.references[0] for it in make_items(load_project_data(p).eval, p.eval.max_items)]


def test_a_clear_win_that_passes_its_gates_reads_ship(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {"accuracy": ">= 0.6"})
    refs = refs_of(p)
    tuned = answers(refs, 0.95, 3)
    lost = next(i for i, (o, r) in enumerate(zip(tuned, refs, strict=True)) if o != r)
    tuned[lost] = EVIL  # model text in the examples is escaped like all data
    store_eval(p, {"base:zero-shot": answers(refs, 0.10, 1), "base:few-shot": answers(refs, 0.30, 2),
                   "tuned:lora": tuned})
    tone, text, html = report(p, tmp_path)
    assert tone == "ship" and text.startswith("SHIP ")
    # against the strongest baseline, with the paired interval and a readable p
    assert re.search(r"tuned:lora beats base:few-shot by \+0\.6\d\d accuracy \[\+0\.\d{3}, \+0\.\d{3}\], "
                     r"McNemar p < 0\.001, 100 items", text), text
    assert "the gate passes" in text and re.search(r"\d+ items? got worse", text)
    assert "<script" not in html.lower() and "&lt;script&gt;alert(" in html
    # examples side by side: won, lost and tied, each with both answers
    ex = html[html.index("Examples side by side"):]
    heads = re.findall(r"<h4>(Where [^<]*) \((\d+) of (\d+)\)</h4>", ex)
    assert [h[0] for h in heads] == ["Where tuned:lora won", "Where it lost", "Where they tied"]
    assert all(int(k) == min(3, int(n)) for _, k, n in heads) and sum(int(n) for _, _, n in heads) == 100
    assert ex.count('data-label="base:few-shot (') == ex.count('data-label="tuned:lora (') == sum(
        int(k) for _, k, _ in heads)


def test_a_failing_gate_or_a_worse_model_reads_do_not_ship(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {"accuracy": ">= 0.9"})
    refs = refs_of(p)
    store_eval(p, {"base:zero-shot": answers(refs, 0.1, 1), "tuned:lora": answers(refs, 0.7, 3)})
    tone, text, _ = report(p, tmp_path / "a")
    assert tone == "noship" and text.startswith("DO NOT SHIP ")
    assert "1 of 1 gate fails: accuracy >= 0.9" in text

    p = project(tmp_path / "b", tiny_model_dir, {})
    store_eval(p, {"base:zero-shot": answers(refs, 0.8, 1), "tuned:lora": answers(refs, 0.4, 3)})
    tone, text, _ = report(p, tmp_path / "b")
    assert tone == "noship" and "tuned:lora is worse than base:zero-shot by -0.4" in text and "no gates" in text


def test_a_model_that_gives_one_answer_never_reads_as_a_win(tmp_path, tiny_model_dir):
    """Always answering the commonest queue beats a poor baseline significantly, and passes a lax gate."""
    p = project(tmp_path, tiny_model_dir, {"accuracy": ">= 0.1"})
    refs = refs_of(p)
    store_eval(p, {"base:zero-shot": answers(refs, 0.02, 1, wrong="no idea"), "tuned:lora": ["card_arrival"] * len(refs)})
    tone, text, html = report(p, tmp_path)
    assert tone == "noship"
    assert 'tuned:lora gives one answer ("card_arrival") to 100% of the items: not a win' in text
    assert "beats" not in text


def test_intervals_that_overlap_read_inconclusive_with_the_sample_size_that_would_decide(tmp_path, tiny_model_dir):
    p = project(tmp_path, tiny_model_dir, {"accuracy": ">= 0.5"})
    refs = refs_of(p)
    store_eval(p, {"base:zero-shot": answers(refs, 0.58, 1), "tuned:lora": answers(refs, 0.64, 7)})
    tone, text, _ = report(p, tmp_path)
    assert tone == "inconclusive" and text.startswith("INCONCLUSIVE ")
    assert "the 95% interval cannot separate tuned:lora from base:zero-shot: +0.060 accuracy [-" in text
    need = int(re.search(r"about ([\d,]+) paired items would detect a difference of 0\.060", text).group(1).replace(",", ""))
    assert 200 < need < 100_000 and "this eval has 100" in text
    a, b = answers(refs, 0.58, 1), answers(refs, 0.64, 7)
    disc = sum((x == r) != (y == r) for x, y, r in zip(a, b, refs, strict=True)) / len(refs)
    # at that size McNemar's test has 80% power for the observed difference, one item fewer has not
    assert stats.power_paired(need, 0.06, p_base=0.58, p_discordant=disc) >= 0.8
    assert stats.power_paired(need - 1, 0.06, p_base=0.58, p_discordant=disc) < 0.8


def test_direction_aware_colours_and_no_rows_for_identical_candidates():
    data = {"project": {"name": "p"}, "eval": {"runs": [
        {"candidate": "base:zero-shot", "items": 1200, "metrics": {"perplexity": {"value": 30.0, "ci": [28.0, 32.0]}}},
        {"candidate": "base:few-shot", "items": 1200, "metrics": {"perplexity": {"value": 30.0, "ci": [28.0, 32.0]}}},
        {"candidate": "tuned:lora", "items": 1200, "metrics": {"perplexity": {"value": 12.5, "ci": [11.0, 14.0]}}}],
        "comparisons": [
            {"a": "base:zero-shot", "b": "base:few-shot", "metrics": {"perplexity": {
                "delta": 0.0, "ci": [0.0, 0.0], "p_value": 1.0, "wins": 0, "losses": 0, "ties": 1200,
                "higher_is_better": False}}},
            {"a": "base:zero-shot", "b": "tuned:lora", "metrics": {"perplexity": {
                "delta": -17.5, "ci": [-19.0, -16.0], "p_value": 1e-9, "test": "paired_bootstrap", "wins": 1100,
                "losses": 60, "ties": 40, "higher_is_better": False}}}]}}
    html = render_report(data)
    assert "perplexity <span class=\"dir\">↓ lower is better</span>" in html
    row = re.search(r"<td class=\"n good\">-17\.500</td>", html)
    assert row, "a falling perplexity is an improvement"
    assert "+0.000" not in html and "base:few-shot and base:zero-shot do not differ on perplexity" in html
    assert "1,200" in html and "1,100 / 60 / 40" in html and "&lt; 0.001" in html
