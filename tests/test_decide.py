"""The decision engine on constructed cases with known answers."""

from advisor.assess.decide import Facts, decide
from advisor.rubric import load_rubric

R = load_rubric("decision")


def facts(**kw):
    base = dict(train_examples=1000, train_invalid=0, train_format="chat", eval_examples=200)
    base.update(kw)
    return Facts(**base)


def test_few_examples_means_prompting():
    d = decide(facts(train_examples=120, knowledge_score=0.2), R)
    assert d["method"] == "prompting"
    assert any("train examples: 120 < 200" in r for r in d["reasons"])
    lora = next(a for a in d["alternatives"] if a["method"] == "lora")
    assert "120 < 200" in lora["why_not"]


def test_knowledge_that_changes_means_rag_and_lora_stacks_with_enough_data():
    d = decide(facts(knowledge_score=0.8, has_docs=True, facts_change="weekly", needs_citations=True), R)
    assert d["method"] == "rag"
    assert d["also"] == []  # knowledge leaning gives lora no positive score
    d = decide(facts(train_examples=3000, knowledge_score=0.66, has_docs=True, label_like=True), R)
    assert d["method"] == "rag" and d["also"] == ["lora"]


def test_preference_pairs_mean_rlhf_and_few_pairs_block():
    d = decide(facts(train_format="preference", train_examples=1200, knowledge_score=0.3), R)
    assert d["method"] == "rlhf" and d["variant"] == "dpo"
    d = decide(facts(train_format="preference", train_examples=60, method_override="rlhf"), R)
    assert any("too few for DPO" in b for b in d["blockers"])


def test_requirements_that_change_often_mean_prompting():
    d = decide(facts(requirements_change="often", knowledge_score=0.5), R)
    assert d["method"] == "prompting"


def test_large_data_prefers_full_and_budget_or_memory_can_veto_it():
    d = decide(facts(train_examples=50000, knowledge_score=0.1, label_like=False), R)
    assert d["method"] == "full"
    over = {"full": {"method": "full", "within_budget": False, "cost_usd": 9000, "fits": True}}
    d = decide(facts(train_examples=50000, knowledge_score=0.1, budget_usd=500, estimates=over), R)
    assert d["method"] == "lora"
    assert any("$9,000 > budget $500" in a["why_not"] for a in d["alternatives"] if a["method"] == "full")


def test_qlora_variant_when_lora_only_fits_in_4_bit():
    est = {"lora": {"method": "lora", "fits": False, "suggest": "qlora", "memory_gb": 150}}
    d = decide(facts(knowledge_score=0.2, estimates=est, hardware="1x A100-80GB"), R)
    assert d["method"] == "lora" and d["variant"] == "qlora"
    assert not any("does not fit" in b for b in d["blockers"])


def test_blockers_leakage_invalid_duplicates():
    d = decide(facts(leaked_eval=30, leak_detail="exact 30", train_invalid=300, duplicate_share=0.5), R)
    text = " ".join(d["blockers"])
    assert "30 of 200 eval records also appear in train" in text
    assert "15.0% of the eval set, more than the 6.9% half-width of the metric's 95% confidence interval" in text
    assert "300 of 1300 train records are invalid" in text
    assert "duplicate others" in text


def test_leakage_within_the_ci_is_a_warning_and_the_threshold_is_a_rubric_value():
    d = decide(facts(leaked_eval=3, leak_detail="exact 3"), R)
    assert not any("eval records" in b for b in d["blockers"])
    assert any("3 of 200 eval records also appear in train" in w and "a warning, not a blocker" in w
               for w in d["warnings"])
    strict = {**R, "thresholds": {**R["thresholds"], "leak_blocker_ci_z": {"value": 0.3, "source": "test"}}}
    assert any("3 of 200 eval records" in b for b in decide(facts(leaked_eval=3, leak_detail="exact 3"), strict)["blockers"])


def test_confidence_grows_with_margin_and_falls_with_invalid_records():
    clear = decide(facts(knowledge_score=0.1, label_like=True), R)["confidence"]
    messy = decide(facts(knowledge_score=0.1, label_like=True, train_invalid=400), R)["confidence"]
    close = decide(facts(train_examples=210, knowledge_score=0.5), R)["confidence"]
    assert clear > messy and clear > close
    assert 0.1 <= close <= 0.95


def test_no_gpu_but_a_small_model_trains_on_cpu():
    tiny = {m: {"method": m, "fits": False, "cpu_hours": 0.01, "memory_gb": 1.1} for m in ("lora", "full", "rlhf")}
    d = decide(facts(knowledge_score=0.1, label_like=True, hardware="none", estimates=tiny), R)
    assert d["method"] == "lora" and d["blockers"] == []
    assert any("training runs on this CPU in under a minute" in r for r in d["reasons"])
    # every training method runs on the CPU: none is ruled out for want of a GPU
    assert not any("needs a GPU" in a["why_not"] for a in d["alternatives"]), d["alternatives"]
    big = {m: {"method": m, "fits": False, "cpu_hours": 900.0, "memory_gb": 60} for m in ("lora", "full", "rlhf")}
    d = decide(facts(knowledge_score=0.1, label_like=True, hardware="none", estimates=big, method_override="lora"), R)
    assert any("more than this machine (no GPU), and no affordable way" in b for b in d["blockers"])


def test_a_model_too_big_to_serve_on_premises_blocks_prompting_and_rag():
    serve = {m: {"method": m, "fits": False, "memory_gb": 816} for m in ("prompting", "rag")}
    d = decide(facts(knowledge_score=0.9, has_docs=True, hardware="1x A10G", budget_usd=0, on_prem=True,
                     estimates=serve), R)
    assert d["method"] == "rag"
    assert any("serving the base model for rag needs about 816 GB, which does not fit 1x A10G" in b
               for b in d["blockers"])
    d = decide(facts(knowledge_score=0.9, has_docs=True, hardware="1x A10G", estimates=serve), R)
    assert d["blockers"] == []  # a hosted API can serve it when the data may leave
