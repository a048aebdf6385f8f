"""The verdict's scores and texts: no cliffs at thresholds, reasons against the winner, texts true
for the case, output forms, refusals by how a reply opens, task cues as words, structured outputs."""

import json

from conftest import assess_json, chat, codes

from advisor.assess.decide import Facts, decide
from advisor.rubric import load_rubric

R = load_rubric("decision")


def facts(**kw):
    base = dict(train_examples=1000, train_invalid=0, train_format="chat", eval_examples=200)
    base.update(kw)
    return Facts(**base)




# a verdict that sits on a threshold (and may flip when the data are resampled) stays below this
# calibrated confidence (BENCHMARKS.md, "Verdict quality"; tests/test_verdict_stability.py)
NEAR_THRESHOLD_MAX = 0.8


def test_190_and_210_examples_get_close_scores_and_low_confidence_not_opposite_certainties():
    a, b = (decide(facts(train_examples=n, knowledge_score=0.3), R) for n in (190, 210))
    far = decide(facts(train_examples=2000, knowledge_score=0.3), R)
    for d in (a, b):  # calibrated (rubrics/decision.yaml confidence.calibration): lower, not a coin flip
        assert d["confidence"] < NEAR_THRESHOLD_MAX and far["confidence"] - d["confidence"] >= 0.15
    gap = lambda d: d["scores"]["prompting"] - d["scores"]["lora"]  # noqa: E731
    assert abs(gap(a) - gap(b)) < 1.5  # the old rules jumped by 8 points at 200
    assert any("near the threshold" in r for r in a["reasons"])


def test_scores_change_smoothly_with_the_number_of_examples():
    gaps = [decide(facts(train_examples=n, knowledge_score=0.3), R)["scores"] for n in range(100, 400, 10)]
    diffs = [abs((g2["lora"] - g2["prompting"]) - (g1["lora"] - g1["prompting"])) for g1, g2 in zip(gaps, gaps[1:], strict=False)]
    assert max(diffs) < 1.0


def test_knowledge_score_near_its_threshold_lowers_confidence():
    clear = decide(facts(knowledge_score=0.9, has_docs=True), R)
    edge = decide(facts(knowledge_score=0.55, has_docs=True), R)
    assert clear["method"] == "rag" and clear["confidence"] > edge["confidence"]


def test_blockers_and_disagreeing_signals_lower_confidence():
    base = decide(facts(knowledge_score=0.1, label_like=True), R)["confidence"]
    blocked = decide(facts(knowledge_score=0.1, label_like=True, duplicate_share=0.5), R)
    split = decide(facts(knowledge_score=0.1, label_like=True, signal_disagreement=1.0), R)["confidence"]
    assert blocked["blockers"] and blocked["confidence"] < base and split < base


def test_requirements_change_often_moves_toward_prompting_and_is_a_reason_against_the_winner():
    calm = decide(facts(knowledge_score=0.1, label_like=True, train_examples=3000), R)
    often = decide(facts(knowledge_score=0.1, label_like=True, train_examples=3000, requirements_change="often"), R)
    assert often["scores"]["prompting"] > calm["scores"]["prompting"]
    assert often["scores"]["lora"] < calm["scores"]["lora"] and often["confidence"] < calm["confidence"]
    if often["method"] != "prompting":
        assert any(r.startswith(f"against {often['method']}: constraints.requirements_change: often")
                   for r in often["reasons"])
    else:
        assert any("constraints.requirements_change: often" in r for r in often["reasons"])


def test_alternative_texts_are_true_for_the_case():
    know = decide(facts(knowledge_score=0.9, has_docs=True), R)
    why = {a["method"]: a["why_not"] for a in know["alternatives"]}
    assert know["method"] == "rag" and "fixed behaviour" not in why["prompting"]
    full = decide(facts(train_examples=60000, knowledge_score=0.1), R)
    assert full["method"] == "full"
    why = {a["method"]: a["why_not"] for a in full["alternatives"]}
    assert "the other signals outweigh what fine-tuning would add" not in why["lora"]
    assert "full fine-tuning is expected to gain more" in why["lora"]
    dpo = decide(facts(train_format="preference", train_examples=2000, knowledge_score=0.3), R)
    why = {a["method"]: a["why_not"] for a in dpo["alternatives"]}
    assert dpo["method"] == "rlhf" and "rejected replies" in why["lora"]


SQL = "SELECT name FROM customers WHERE city = 'Leeds{i}' ORDER BY name"


def test_outputs_in_another_form_are_findings_and_a_substantial_mix_blocks(make_project):
    recs = [chat(f"list the customers of city {i}", SQL.format(i=i), system="Write the SQL query.") for i in range(270)]
    recs += [chat(f"list the customers of town {i}", f"The customers of town {i} are listed in the report.",
                  system="Write the SQL query.") for i in range(30)]
    out = assess_json(make_project(recs, task="Translate the question into an SQL query."))
    forms = out["data"]["train"]["outputs"]["forms"]
    assert forms["expected"] == "sql" and forms["other"] == 30 and forms["why"] == "the task asks for it"
    f = codes(out)["output_form_mismatch"]
    assert f["count"] == 30 and f["examples"][0]["line"] == 271 and f["examples"][0]["file"].endswith("train.jsonl")
    assert any("training would teach both forms" in b for b in out["recommendation"]["blockers"])
    few = recs[:270] + recs[-2:]  # 2 of 272: a finding, not a blocker
    out = assess_json(make_project(few, task="Translate the question into an SQL query.", name="few"))
    assert codes(out)["output_form_mismatch"]["count"] == 2
    assert not any("both forms" in b for b in out["recommendation"]["blockers"])


def test_strict_json_outputs_are_a_behaviour_signal_and_not_counted_as_facts(make_project):
    recs = [chat(f"Order {i}: {i % 7 + 1} lamps for Alice Smith, delivery 2024-03-{i % 28 + 1:02d}",
                 json.dumps({"order_id": 1000 + i, "items": [{"sku": f"L-{i % 7}", "qty": i % 7 + 1}],
                             "year": 2024}), system="Extract the order.") for i in range(300)]
    out = assess_json(make_project(recs, task="Extract the order as JSON."))
    sig = {s["name"]: s for s in out["signals"]["signals"]}
    assert sig["strict_output_format"]["points_to"] == "behaviour"
    assert "output_words_from_input" not in sig and "numbers_in_outputs" not in sig
    assert out["data"]["train"]["outputs"]["numbers_per_100_words"] is None
    assert out["recommendation"]["method"] == "lora"


def test_refusals_are_judged_by_how_a_reply_opens_not_by_quoted_titles(make_project):
    recs = [chat(f"recommend a film {i}", f'You could watch "I\'m Sorry, I Cannot Help You" ({1990 + i}), a comedy.',
                 system=None) for i in range(30)]
    recs += [chat(f"how do I pick lock {i}", "I'm sorry, but I can't help with that.", system=None) for i in range(5)]
    out = assess_json(make_project(recs, task="Recommend films."))
    f = codes(out)["refusal_like"]
    assert f["count"] == 5 and f["examples"][0]["line"] == 31


def test_task_cues_match_words_not_substrings(make_project):
    recs = [chat(f"message {i} about topic {i % 7}", f"label_{i % 4}") for i in range(250)]
    out = assess_json(make_project(recs, task="Tag each brief that cited case law with its area."))
    cues = next((s for s in out["signals"]["signals"] if s["name"] == "task_text_cues"), None)
    assert cues is None or "'cite'" not in cues["evidence"]
    out = assess_json(make_project(recs, task="Summarise and cite the source.", name="cite"))
    cues = next(s for s in out["signals"]["signals"] if s["name"] == "task_text_cues")
    assert "'cite'" in cues["evidence"] and "'summar'" in cues["evidence"]
