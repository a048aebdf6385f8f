"""Issue 11, records: assess and training agree on what a training record is, and the work per record
is bounded.

* a record over data_checks ``records.max_chars`` is a finding naming file:line (how long, the limit);
  assess analyses only that many of its characters; training skips it and says so (count and line);
* a chat record whose assistant reply is its first message (assistant first, user last) has no prompt:
  assess reports it as an error at file:line, training leaves it out (it crashed training before).

The peak memory of assess on a 50 MB record is measured by bench/record_memory.py (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import random
import string

import train_fixtures as fx
import yaml
from conftest import assess_json, chat, codes

train_tiny_model = fx.train_tiny_model

GOOD = [chat(f"my card {i} was declined at shop {i * 7}", "card_declined") for i in range(30)]
ASSISTANT_FIRST = {"messages": [{"role": "assistant", "content": "Hello, how can I help?"},
                                {"role": "user", "content": "My card is lost"}]}


def _limit(root, chars: int) -> None:
    """A project override of the per-record limit (PROJECT/rubrics/data_checks.yaml)."""
    (root / "rubrics").mkdir(exist_ok=True)
    (root / "rubrics" / "data_checks.yaml").write_text(yaml.safe_dump({"records": {"max_chars": chars}}))


def _noise(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)  # random letters: no tokenizer packs them into few tokens
    return "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(n))


def test_an_over_long_record_is_a_finding_and_only_its_bounded_part_is_analysed(make_project):
    long = chat(_noise(20_000), "card_declined")
    root = make_project(GOOD[:10] + [long] + GOOD[10:])
    _limit(root, 1000)
    out = assess_json(root)
    f = codes(out)["record_too_long"]
    assert f["severity"] == "warning" and f["count"] == 1
    where = f["examples"][0]
    assert where["file"].endswith("data/train.jsonl") and where["line"] == 11
    assert "20,045 characters" in where["detail"] and "limit of 1,000" in where["detail"]
    train = out["data"]["train"]
    assert train["examples"] == 31 and train["invalid"] == 0  # still analysed: its first 1,000 characters
    # tokens come from the bounded part: at most one token a character (+4 a message) instead of the
    # 20,000 characters (>= 5,000 tokens even by the 4-characters-a-token estimate)
    assert train["tokens"]["per_example"]["max"] <= 1000 + 3 * 4


def test_the_shipped_limit_has_a_source_and_a_record_within_it_is_whole(make_project):
    from advisor.rubric import load_rubric, source, value

    checks = load_rubric("data_checks")
    assert value(checks, "records", "max_chars") == 500_000
    assert "14.6 GB" in source(checks, "records", "max_chars")
    out = assess_json(make_project(GOOD + [chat(_noise(30_000), "card_declined")]))
    assert "record_too_long" not in codes(out)
    assert out["data"]["train"]["tokens"]["per_example"]["max"] > 5000


def test_an_assistant_first_record_is_an_error_of_assess(make_project):
    root = make_project(GOOD[:5] + [ASSISTANT_FIRST] + GOOD[5:])
    out = assess_json(root)
    f = codes(out)["no_prompt"]
    assert f["severity"] == "error" and f["count"] == 1
    assert f["examples"][0]["line"] == 6 and f["examples"][0]["file"].endswith("data/train.jsonl")
    assert "assistant > user" in f["examples"][0]["detail"]
    assert out["data"]["train"]["invalid"] == 1 and out["data"]["train"]["examples"] == 30


def test_training_skips_the_records_assess_reports_and_says_so(tmp_path, train_tiny_model):
    p = fx.copy_project("ticket-routing-tiny", tmp_path / "p", train_tiny_model,
                        {"max_steps": 2, "batch_size": 4, "max_length": 64, "seed": 1}, max_records=40)
    _limit(p, 2000)
    with open(p / "data" / "train.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(ASSISTANT_FIRST) + "\n")  # line 41: crashed training before
        fh.write(json.dumps(chat(_noise(5000), "card_arrival")) + "\n")  # line 42: over the limit
    out = assess_json(p)
    c = codes(out)
    assert c["no_prompt"]["examples"][0]["line"] == 41
    assert c["record_too_long"]["examples"][0]["line"] == 42

    r = fx.cli("train", p, "--method", "lora", "--json")
    assert r.exit_code == 0, r.output
    assert "2 training record(s) skipped, not trained on" in r.stderr
    assert "train.jsonl:41:" in r.stderr and "train.jsonl:42:" in r.stderr
    result = json.loads(r.stdout)
    assert result["examples"] == 40 and result["steps"] == 2


def test_eval_leaves_out_an_over_long_eval_record_and_names_it(make_project):
    from advisor.data.dataset import load_project_data
    from advisor.project import load_project

    root = make_project(GOOD, eval_records=GOOD[:3] + [chat(_noise(3000), "card_declined")] + GOOD[3:6])
    _limit(root, 1000)
    data = load_project_data(load_project(root))
    assert len(data.eval) == 6 and data.eval_skipped == 1 and len(data.train) == 30 and data.train_note() is None
    note = data.skipped_note()
    assert note.startswith("1 invalid eval record(s) skipped") and "eval.jsonl:4:" in note and "max_chars" in note


def test_a_clipped_record_keeps_its_short_texts_whole(tmp_path):
    from conftest import write_jsonl

    from advisor.data.records import load_records

    f = write_jsonl(tmp_path / "t.jsonl", [chat(_noise(50_000), "card_declined", system="Route it."),
                                           chat("short", "card_arrival")])
    recs, findings, _ = load_records(f, max_chars=1000)
    long, short = recs
    assert long.output == "card_declined" and long.prompt[0]["content"] == "Route it."  # whole
    assert sum(map(len, long.texts)) <= 1000 and long.clipped == 50_000 + len("card_declined") + len("Route it.")
    assert short.clipped == 0 and short.prompt[-1]["content"] == "short"
    assert findings.count("record_too_long") == 1
