"""Every format-error class gets a finding with file:line; the rest of the file is still used."""

import json

import pytest
from click.testing import CliRunner
from conftest import assess_json, chat, codes

from advisor.cli.main import main

GOOD = [chat(f"my card {i} was declined at shop {i * 7}", "card_declined") for i in range(30)]

# the 7 classes of OpenAI's chat data-prep cookbook, plus our equivalents
CHAT_CASES = [
    ("data_type", '["not", "an", "object"]'),
    ("missing_messages_list", {"messages": "hello"}),
    ("missing_messages_list", {"messages": []}),
    ("message_missing_key", {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}),
    ("message_unrecognized_key", {"messages": [{"role": "user", "content": "a", "colour": 1},
                                               {"role": "assistant", "content": "b"}]}),
    ("unrecognized_role", {"messages": [{"role": "boss", "content": "a"}, {"role": "assistant", "content": "b"}]}),
    ("missing_content", {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "b"}]}),
    ("example_missing_assistant_message", {"messages": [{"role": "user", "content": "hi"}]}),
    ("empty_content", {"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "b"}]}),
    ("invalid_json", '{"messages": [}'),
]


@pytest.mark.parametrize("code,bad", CHAT_CASES, ids=[c for c, _ in CHAT_CASES])
def test_chat_error_classes(make_project, code, bad):
    root = make_project(GOOD[:10] + [bad] + GOOD[10:])
    out = assess_json(root)
    f = codes(out)[code]
    assert f["severity"] == "error" and f["count"] == 1
    assert f["examples"][0]["line"] == 11
    assert f["examples"][0]["file"].endswith("data/train.jsonl")
    assert out["data"]["train"]["examples"] == 30 and out["data"]["train"]["invalid"] == 1


def test_chat_warnings_role_order_and_missing_messages(make_project):
    recs = GOOD + [
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                      {"role": "assistant", "content": "c"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "c"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"},
                      {"role": "user", "content": "d"}]},
    ]
    out = assess_json(make_project(recs))
    c = codes(out)
    assert c["role_order"]["examples"][0]["line"] == 31
    assert c["missing_user_message"]["examples"][0]["line"] == 32
    assert c["last_message_not_assistant"]["examples"][0]["line"] == 33
    assert c["missing_system_message"]["count"] == 2  # lines 31 and 33
    assert out["data"]["train"]["invalid"] == 0


def test_alpaca_prompt_completion_and_preference_errors(make_project):
    alpaca = [{"instruction": "Describe", "input": f"place {i}", "output": f"A nice place number {i}."} for i in range(20)]
    alpaca += [{"instruction": "Describe", "input": "x"}, {"instruction": 3, "output": "y"},
               {"instruction": "Describe", "output": " "}, {"instruction": "D", "output": "o", "colour": "red"}]
    out = assess_json(make_project(alpaca, name="a"))
    c = codes(out)
    assert c["missing_field"]["examples"][0]["line"] == 21
    assert c["wrong_type"]["examples"][0]["line"] == 22
    assert c["empty_content"]["examples"][0]["line"] == 23
    assert c["unrecognized_key"]["examples"][0]["line"] == 24
    assert out["data"]["train"] == {**out["data"]["train"], "examples": 21, "invalid": 3, "format": "alpaca"}

    pc = [{"prompt": f"Summarise text {i}", "completion": f"Summary {i}"} for i in range(10)] + [{"prompt": "p"}]
    out = assess_json(make_project(pc, name="pc"))
    assert codes(out)["missing_field"]["examples"][0]["line"] == 11

    pref = [{"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"} for i in range(10)]
    pref += [{"prompt": "q", "chosen": "same", "rejected": "same"}, {"prompt": "q", "chosen": "", "rejected": "r"},
             {"prompt": "q", "chosen": "c", "rejected": "  "},
             {"prompt": [{"role": "user", "content": "q"}], "chosen": "c\n\nHuman: more?", "rejected": "r"},
             {"prompt": "q2", "chosen": "fine", "rejected": "Human: and what else?"}]
    out = assess_json(make_project(pref, name="pref"))
    c = codes(out)
    assert c["chosen_equals_rejected"]["examples"][0]["line"] == 11
    assert c["empty_chosen"]["examples"][0]["line"] == 12
    assert c["empty_rejected"]["examples"][0]["line"] == 13
    assert [e["line"] for e in c["embedded_turn_markers"]["examples"]] == [14, 15]  # inside, and at the start
    assert "mixed_prompt_formats" in c
    assert out["data"]["train"]["preference"]["pairs"] == 12


def test_mixed_formats_and_declared_format(make_project):
    recs = GOOD + [{"prompt": "p", "completion": "c"}]
    out = assess_json(make_project(recs, name="mixed"))
    assert "mixed_formats" in codes(out)
    assert any("several formats" in b for b in out["recommendation"]["blockers"])
    out = assess_json(make_project(recs, name="declared", data={"train": "data/train.jsonl", "format": "chat"}))
    f = codes(out)["format_mismatch"]
    assert f["examples"][0]["line"] == 31 and out["data"]["train"]["invalid"] == 1


def test_blank_lines_and_bad_utf8(make_project, tmp_path):
    root = make_project(GOOD, name="enc")
    with open(root / "data" / "train.jsonl", "ab") as fh:
        fh.write(b"\n" + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    out = assess_json(root)
    c = codes(out)
    assert c["blank_line"]["examples"][0]["line"] == 31
    assert c["file_not_utf8"]["examples"][0]["line"] == 32


def test_openai_toy_file_flaws(make_project, shared_datasets):
    lines = (shared_datasets / "openai_toy_chat" / "toy_chat_fine_tuning.jsonl").read_text().splitlines()
    out = assess_json(make_project(lines, name="toy", base_model="some/model", train={"max_length": 512}))
    c = codes(out)
    assert c["missing_system_message"]["examples"][0]["line"] == 3
    assert c["missing_user_message"]["examples"][0]["line"] == 4
    assert c["over_max_length"]["examples"][0]["line"] == 5  # the 26,000-character reply
    assert out["recommendation"]["method"] == "prompting"
    assert out["data"]["train"]["messages"] == 19 and out["data"]["train"]["messages_per_example"] == 3.8


def test_no_valid_example_exits_2_naming_file_and_line(make_project):
    root = make_project(['{"messages": [}', "not json"])
    r = CliRunner().invoke(main, ["assess", str(root), "--json"])
    assert r.exit_code == 2
    assert r.stdout == ""
    assert "data/train.jsonl:1: no valid training example" in r.stderr and "Traceback" not in r.stderr


def test_missing_data_file_exits_2(make_project):
    root = make_project(GOOD)
    (root / "data" / "train.jsonl").unlink()
    r = CliRunner().invoke(main, ["assess", str(root)])
    assert r.exit_code == 2 and "train.jsonl: training data file not found" in r.stderr


def test_implicit_prompt_from_hh_transcripts(make_project, shared_datasets):
    import gzip

    with gzip.open(shared_datasets / "hh_rlhf_harmless" / "harmless-base_test.jsonl.gz", "rt") as fh:
        lines = [next(fh).rstrip("\n") for _ in range(300)]
    out = assess_json(make_project(lines, name="hh", task="Answer helpfully, refuse harmful requests."))
    assert out["data"]["train"]["format"] == "preference"
    assert codes(out)["implicit_prompt"]["count"] == out["data"]["train"]["examples"]


def test_tokens_with_a_local_tokenizer_are_exact(make_project, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([r["messages"][1]["content"] for r in GOOD] * 3,
                            trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]"]))
    mdir = tmp_path / "model"
    mdir.mkdir()
    tok.save(str(mdir / "tokenizer.json"))
    (mdir / "config.json").write_text(json.dumps({"max_position_embeddings": 20}))
    root = make_project(GOOD, name="tok", base_model=str(mdir))
    out = assess_json(root)
    t = out["data"]["train"]["tokens"]
    assert t["exact"] is True and t["context_window"] == 20
    expected = sum(
        sum(len(tok.encode(m["content"], add_special_tokens=False).ids) for m in r["messages"]) + 4 * 3 for r in GOOD)
    assert t["total"] == expected
    assert t["over_context"] == sum(
        1 for r in GOOD
        if sum(len(tok.encode(m["content"], add_special_tokens=False).ids) for m in r["messages"]) + 12 > 20)


def test_large_file_token_stats_are_sampled_estimates(make_project):
    recs = [chat(f"message number {i} " + "word " * (i % 50), "label_" + str(i % 3)) for i in range(25000)]
    out = assess_json(make_project(recs, name="big"))
    t = out["data"]["train"]["tokens"]
    assert t["exact"] is False and 15000 < t["sampled_examples"] < 25000
    assert t["total_margin_95"] > 0
    true_total = sum(sum(round(len(m["content"]) / 4) or 1 for m in r["messages"]) + 12 for r in recs)
    assert abs(t["total"] - true_total) <= 3 * t["total_margin_95"]


def test_label_balance_json_outputs_and_refusals(make_project):
    recs = [chat(f"msg {i}", "card_declined") for i in range(60)] + [chat(f"other {i}", "refund") for i in range(4)]
    out = assess_json(make_project(recs, name="labels"))
    labels = out["data"]["train"]["outputs"]["labels"]
    assert labels["classes"] == 2 and labels["counts"] == {"card_declined": 60, "refund": 4}
    assert labels["imbalance_ratio"] == 15.0
    c = codes(out)
    assert "label_imbalance" in c and c["rare_label"]["count"] == 1

    js = [chat(f"extract {i}", json.dumps({"name": f"n{i}", "amount": i})) for i in range(18)]
    js += [chat("extract x", '{"name": "x", "amount": }'), chat("extract y", '{"other": 1}'),
           chat("q", "I'm sorry, but I can't help with that.")]
    out = assess_json(make_project(js, name="json"))
    j = out["data"]["train"]["outputs"]["json"]
    assert j["outputs"] == 20 and j["parse_rate"] == 0.95 and j["structures"] == 2
    c = codes(out)
    assert c["invalid_json_output"]["examples"][0]["line"] == 19
    assert c["refusal_like"]["examples"][0]["line"] == 21


def test_another_instruction_or_system_prompt_is_another_example(make_project):
    """Same input, different instruction / system prompt: different tasks, not duplicates, conflicts or
    exact leakage. The same instruction and input twice still is a duplicate."""
    inputs = [f"The parcel {i} arrived late and the box was damaged at corner {i * 3}." for i in range(60)]
    tasks = [("Classify the sentiment.", "negative"), ("Translate to French.", "Le colis est arrivé en retard."),
             ("Summarise in three words.", "late damaged parcel")]
    train = [{"instruction": t, "input": x, "output": o} for x in inputs for t, o in tasks]
    ev = [{"instruction": "Extract the parcel number.", "input": x, "output": str(i)} for i, x in enumerate(inputs[:20])]
    out = assess_json(make_project(train, ev, name="alp"))
    found = codes(out)
    for code in ("duplicate_exact", "duplicate_normalised", "conflicting_outputs", "leakage_exact",
                 "leakage_normalised"):
        assert code not in found, found[code]
    assert not any("deduplicate" in b for b in out["recommendation"]["blockers"])
    # the passages themselves were trained on: lm-eval's 13-gram decontamination still counts that
    assert found["leakage_ngram"]["count"] == 20
    sysdup = [{"messages": [{"role": "system", "content": f"Answer in {lang}."}, {"role": "user", "content": x},
                            {"role": "assistant", "content": f"{lang} answer {i}"}]}
              for i, x in enumerate(inputs) for lang in ("French", "German")]
    found = codes(assess_json(make_project(sysdup, name="sys")))
    assert "duplicate_exact" not in found and "conflicting_outputs" not in found
    twice = train + train[:30]
    assert codes(assess_json(make_project(twice, name="twice")))["duplicate_exact"]["count"] == 30
