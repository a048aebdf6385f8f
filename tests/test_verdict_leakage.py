"""Leakage of eval records into train: every copy counted, kinds and severity, a remedy that fits.

Counts are checked against an independent count on the real data (banking77 from the shared datasets).
"""

import csv
import json
import re

import pytest
from conftest import assess_json, chat, codes


def _norm(text: str) -> str:  # independent of advisor.data.textnorm: casefold, drop punctuation, squash spaces
    return " ".join(re.sub(r"[^\w\s]|_", " ", text.casefold()).split())


def test_banking77_leakage_counts_every_eval_record_and_matches_an_independent_count(shared_datasets, make_project):
    with open(shared_datasets / "banking77" / "train.csv", newline="", encoding="utf-8") as fh:
        train = [(r["text"], r["category"]) for r in csv.DictReader(fh)]
    with open(shared_datasets / "banking77" / "test.csv", newline="", encoding="utf-8") as fh:
        test = [(r["text"], r["category"]) for r in csv.DictReader(fh)]
    train_inputs = {_norm(t) for t, _ in train}
    train_pairs = {(t, c) for t, c in train}
    first = [r for r in test if _norm(r[0]) in train_inputs]
    assert len(first) == 25  # banking77 test vs train, normalised (README of the shared datasets: 11 in the sample)
    test = test + first[:10] + first[:3]  # leaked eval records two and three times: each copy is an eval record
    root = make_project([chat(t, c) for t, c in train], [chat(t, c) for t, c in test],
                        task="Route each customer message to one of 77 intents.")
    out = assess_json(root)
    leak = out["data"]["leakage"]
    leaked = [i for i, (t, _) in enumerate(test) if _norm(t) in train_inputs]
    assert len(leaked) == 38
    exact = [i for i in leaked if test[i] in train_pairs]
    assert leak["eval_items_leaked"] == len(leaked) + leak["ngram"] + leak["output"]
    assert leak["exact"] + leak["normalised"] == len(leaked)
    assert leak["exact"] == len(exact)
    assert len({_norm(test[i][0]) for i in leaked}) == 25
    assert leak["distinct_texts_leaked"] == 25 + leak["ngram"] + leak["output"]  # the 13 copies are not distinct
    share = leak["eval_items_leaked"] / len(test)
    assert leak["share"] == round(share, 4) and leak["severity"] == ("blocker" if share > leak["blocker_share"] else "warning")


def _entity_questions(countries, start=0):
    return [{"instruction": "Answer from the report.",
             "input": f"What is {c}'s estimated mean percentage [95% credible interval] of total population "
                      f"infected as of 28th March according to the model of the report?",
             "output": f"{10 + (i * 7) % 50}.{i % 10}% [{i % 5}.1%-{20 + i % 30}.4%] for {c}"}
            for i, c in enumerate(countries, start)]


COUNTRIES = ["France", "Germany", "Italy", "Spain", "Austria", "Belgium", "Denmark", "Norway", "Sweden", "Greece",
             "Portugal", "Poland", "Hungary", "Finland", "Ireland", "Iceland", "Estonia", "Latvia", "Malta", "Cyprus",
             "Croatia", "Serbia", "Albania", "Romania", "Bulgaria", "Slovakia", "Slovenia", "Ukraine", "Moldova",
             "Belarus", "Lithuania", "Luxembourg", "Switzerland", "Netherlands", "Montenegro", "Macedonia",
             "Kosovo", "Bosnia", "Andorra", "Monaco"]


def test_a_question_asked_once_per_entity_is_template_overlap_not_leakage(make_project):
    train = _entity_questions(COUNTRIES[:30]) * 8  # 240 records
    ev = _entity_questions(COUNTRIES[30:], 30)  # the same question about other countries
    out = assess_json(make_project(train, ev, task="Answer the question from the epidemiology report."))
    leak = out["data"]["leakage"]
    assert leak["eval_items_leaked"] == 0 and leak["template"] == len(ev)
    rec = out["recommendation"]
    assert not any("eval records" in b for b in rec["blockers"])
    w = next(w for w in rec["warnings"] if "share only template phrasing with train" in w)
    assert f"{len(ev)} of {len(ev)} eval records" in w and "re-split train and eval by template" in w
    assert codes(out)["leakage_template"]["examples"][0]["detail"].startswith("train line")


def test_json_skeleton_outputs_share_boilerplate_only(make_project):
    def rec(i):
        return {"prompt": f"Extract the order from: customer {i} wants {i % 9 + 1} units of item SKU-{1000 + i} "
                          f"shipped to city number {i * 13 % 97}.",
                "completion": json.dumps({"customer_id": i, "order": {"sku": f"SKU-{1000 + i}", "units": i % 9 + 1,
                                                                      "ship_to": {"city": i * 13 % 97}},
                                          "status": "open", "priority": "normal", "channel": "email"})}
    out = assess_json(make_project([rec(i) for i in range(300)], [rec(i) for i in range(1000, 1060)],
                                   task="Extract the order as JSON."))
    assert out["data"]["leakage"]["eval_items_leaked"] == 0


def test_many_leaked_records_block_with_the_ci_in_the_text_and_the_remedy_keeps_eval_fixed(make_project):
    train = [chat(f"customer {i} asks about the balance of account {i * 31} opened in branch {i % 17}",
                  f"label_{i % 5}") for i in range(400)]
    ev = train[:30] + [chat(f"a fresh question {i} about branch opening hours {i * 3}", f"label_{i % 5}")
                       for i in range(70)]
    out = assess_json(make_project(train, ev))
    leak = out["data"]["leakage"]
    assert leak["exact"] == 30 and leak["severity"] == "blocker"
    b = next(b for b in out["recommendation"]["blockers"] if "30 of 100 eval records also appear in train" in b)
    assert "more than the 9.8% half-width of the metric's 95% confidence interval on 100 records" in b
    assert "remove the matching 30 records from train" in b and "eval file fixed" in b


def test_a_single_leaked_record_is_not_a_blocker(make_project):
    train = [chat(f"customer {i} asks about account {i * 31} in branch {i % 17}", f"label_{i % 5}") for i in range(300)]
    ev = train[:1] + [chat(f"fresh question {i} about hours {i * 3}", f"label_{i % 5}") for i in range(19)]
    out = assess_json(make_project(train, ev))
    assert out["data"]["leakage"]["eval_items_leaked"] == 1 and out["data"]["leakage"]["severity"] == "warning"
    assert not any("also appear in train" in b for b in out["recommendation"]["blockers"])


def test_shared_documents_recommend_a_split_by_group(make_project):
    def rec(doc, q):
        text = f"Section {q} of report {doc}: the committee approved budget line {doc * 10 + q} for the {q}th quarter."
        return {"prompt": f"Summarise: {text}", "completion": f"Report {doc} part {q}: budget line approved.",
                "doc_id": f"report-{doc}"}
    train = [rec(d, q) for d in range(60) for q in range(5)]
    ev = [rec(d, q) for d in range(50, 60) for q in range(5)]  # the same documents, the same sections
    out = assess_json(make_project(train, ev, task="Summarise the report section."))
    leak = out["data"]["leakage"]
    assert leak["groups"]["field"] == "doc_id" and leak["groups"]["eval_records"] == 50
    b = " ".join(out["recommendation"]["blockers"] + out["recommendation"]["warnings"])
    assert "share a `doc_id` with train (10 groups): re-split train by `doc_id`" in b
    assert codes(out)["eval_group_in_train"]["count"] == 50


@pytest.mark.parametrize("method", ["prompting", "rag"])
def test_for_prompting_and_rag_leakage_is_about_the_few_shot_pool(make_project, method):
    train = [chat(f"customer {i} asks about account {i * 31} in branch {i % 17}", f"label_{i % 5}") for i in range(40)]
    ev = train[:20] + [chat(f"fresh question {i} about hours {i * 3}", f"label_{i % 5}") for i in range(20)]
    out = assess_json(make_project(train, ev, method=method))
    text = " ".join(out["recommendation"]["blockers"] + out["recommendation"]["warnings"])
    assert "20 of 40 eval records also appear in train" in text
    assert "keep 20 train records that match eval records out of the few-shot pool" in text


def test_the_terminal_view_shows_the_warnings(tmp_path):
    """banking77's leakage within the CI is a warning: the terminal summary says so, not only --json."""
    import shutil

    from click.testing import CliRunner
    from conftest import SAMPLES

    from advisor.cli.main import main

    root = tmp_path / "b77"
    shutil.copytree(SAMPLES / "banking77-intents", root, ignore=shutil.ignore_patterns(".advise"))
    out = assess_json(root)
    warnings = out["recommendation"].get("warnings") or []
    assert warnings, "banking77's leakage should be a warning"
    r = CliRunner().invoke(main, ["assess", str(root), "--no-embeddings"])
    assert r.exit_code == 0 and "Warnings: worth a look" in r.stdout
    assert warnings[0][:40] in " ".join(r.stdout.split())
