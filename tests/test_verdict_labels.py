"""Label-set form: when the task spells out its labels and outputs write them in another form (case,
punctuation, surrounding text such as "Label: x"), each such output is a label_form_mismatch finding
with file:line. Real data: PubMedQA yes/no/maybe answers and the BANKING77 ticket sample."""

import json
import shutil
import sys
from pathlib import Path

import yaml
from conftest import SAMPLES, assess_json, codes

sys.path.insert(0, str(Path(__file__).resolve().parent / "scenarios"))

from build import load, write  # noqa: E402

SCEN = {s["id"]: s for s in load()}


def _rewrite_outputs(path: Path, changes: dict[int, str]) -> None:
    """Set the assistant reply of the records at these 1-based lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for ln, reply in changes.items():
        rec = json.loads(lines[ln - 1])
        rec["messages"][-1]["content"] = reply
        lines[ln - 1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_pubmedqa_labels_in_another_form_are_findings_with_file_and_line(shared_datasets, tmp_path):
    root = write(tmp_path / "pubmed", SCEN["pubmed-labels-800"], shared_datasets)
    clean = assess_json(root)
    assert clean["data"]["train"]["outputs"]["task_labels"]["labels"] == ["yes", "no", "maybe"]
    assert "label_form_mismatch" not in codes(clean)
    train = root / "data" / "train.jsonl"
    _rewrite_outputs(train, {3: "Yes", 10: "Answer: no", 11: "maybe.", 40: "The answer is yes."})
    out = assess_json(root)
    f = codes(out)["label_form_mismatch"]
    assert f["count"] == 4 and f["severity"] == "warning"
    where = {e["line"]: e["detail"] for e in f["examples"]}
    assert set(where) == {3, 10, 11, 40} and all(e["file"].endswith("train.jsonl") for e in f["examples"])
    assert where[3] == "'Yes' for the label 'yes' (in another case or with punctuation)"
    assert where[10] == "'Answer: no' for the label 'no' (inside other text)"
    lab = out["data"]["train"]["outputs"]["task_labels"]
    assert lab["case"] == 2 and lab["surrounding"] == 2 and lab["exact"] == 796 and lab["applies"]


def test_ticket_queues_written_as_label_colon_x(tmp_path):
    root = tmp_path / "ticket"
    shutil.copytree(SAMPLES / "ticket-routing-tiny", root, ignore=shutil.ignore_patterns(".advise"))
    _rewrite_outputs(root / "data" / "train.jsonl", {5: "Label: card_arrival", 6: "EXCHANGE_RATE"})
    out = assess_json(root)
    where = {e["line"]: e["detail"] for e in codes(out)["label_form_mismatch"]["examples"]}
    assert set(where) == {5, 6}
    assert "'Label: card_arrival' for the label 'card_arrival'" in where[5]


def test_a_parenthesised_list_that_is_not_the_output_set_raises_nothing(shared_datasets, tmp_path):
    s = {**SCEN["covid-docs-600"], "task": "Answer questions about COVID-19 research (papers, preprints and reports)."}
    root = write(tmp_path / "covid", s, shared_datasets)
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    assert "papers, preprints" in cfg["task"]
    out = assess_json(root)
    assert "label_form_mismatch" not in codes(out)
    assert out["data"]["train"]["outputs"]["task_labels"]["applies"] is False


def test_a_bracketed_stage_direction_in_a_chat_reply_is_not_invalid_json(shared_datasets, tmp_path):
    """hh-rlhf replies such as '[image]' open with a bracket: text, not a broken JSON output."""
    root = tmp_path / "hh"
    shutil.copytree(SAMPLES / "hh-harmless-prefs", root, ignore=shutil.ignore_patterns(".advise"))
    out = assess_json(root)
    assert "invalid_json_output" not in codes(out)
    assert "json" not in out["data"]["train"]["outputs"]["forms"]["counts"]
