"""The model card `advise export` writes: parsed by huggingface_hub's ModelCard, with the run's facts."""

from __future__ import annotations

from huggingface_hub import ModelCard

from advisor.modelcard import render_card

SNAPSHOT = {"run_id": "train-1", "plugin": "lora", "base_model": "Qwen/Qwen2.5-0.5B-Instruct",
            "config": {"max_steps": 200, "learning_rate": 0.001, "lora_r": 16, "epochs": None},
            "data": {"format": "chat", "train_examples": 396, "train_sha256": "ab" * 32}}
EVAL = {"items": 100, "runs": [
    {"candidate": "base:zero-shot", "metrics": {"accuracy": {"value": 0.05, "ci": [0.02, 0.11]}}},
    {"candidate": "tuned:lora", "metrics": {"accuracy": {"value": 0.93, "ci": [0.86, 0.97]},
                                            "macro_f1": {"value": 0.92, "ci": [0.85, 0.96]}}}],
    "comparisons": [{"a": "base:zero-shot", "b": "tuned:lora",
                     "metrics": {"accuracy": {"delta": 0.88, "ci": [0.8, 0.94], "p_value": 1e-20}}}]}


def test_the_card_parses_and_carries_base_model_hyperparameters_hashes_and_intervals():
    text = render_card(project={"name": "ticket", "task": "Route <b>|tickets|</b>", "license": "cc-by-4.0"},
                       snapshot=SNAPSHOT, eval_result=EVAL, gates={"status": "pass", "candidate": "tuned:lora",
                                                               "gates": [{"gate": "accuracy >= 0.6", "status": "pass"}]})
    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct" and data["license"] == "cc-by-4.0"
    assert data["library_name"] == "transformers" and "advise-lora" in data["tags"]
    results = data["model-index"][0]["results"]
    assert {m["type"]: m["value"] for r in results for m in r["metrics"]} == {"accuracy": 0.93, "macro_f1": 0.92}
    body = card.text
    assert "| learning_rate | 0.001 |" in body and "| lora_r | 16 |" in body and "epochs" not in body
    assert "ab" * 32 in body and "| accuracy | 0.9300 | [0.8600, 0.9700] |" in body
    assert "+0.8800 [+0.8000, +0.9400], p < 0.001" in body and "accuracy >= 0.6: PASS" in body
    assert "<b>" not in body and "\\|tickets\\|" in body  # data is escaped, not markup


def test_a_local_base_model_and_no_eval_are_said_as_such():
    text = render_card(project={"name": "p", "task": "t"}, snapshot={**SNAPSHOT, "base_model": "/models/tiny"})
    card = ModelCard(text)
    assert "base_model" not in card.data.to_dict()  # a local path is no hub id
    assert "No stored eval of this model" in card.text and "No gate result stored." in card.text
