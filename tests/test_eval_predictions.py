"""advise eval --predictions FILE --name NAME: answers produced elsewhere scored as candidate external:NAME
through the CLI on the ticket-routing sample project (tiny local model for the base candidate): matched by
id or by line, unmatched and missing named in one warning, stored, compared, gated and in the report; a bad
line is exit 2 with file:line."""

from __future__ import annotations

import json
import random

import eval_fixtures as fx
import pytest
import yaml
from click.testing import CliRunner
from eval_fixtures import copy_project

from advisor.cli.main import main
from advisor.project import load_project
from advisor.store import Store

tiny_model_dir = fx.tiny_model_dir
ITEMS = 24


def invoke(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def eval_lines(root):
    return [json.loads(x) for x in (root / "data" / "eval.jsonl").read_text().splitlines()]


def with_ids(root):
    recs = eval_lines(root)
    for i, r in enumerate(recs):
        r["id"] = f"ticket-{i + 1}"
    (root / "data" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return recs


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def one_line_error(r) -> str:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advise: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def by_id(tmp_path_factory, tiny_model_dir):
    """Eval records with ids; predictions in shuffled order: right for most, wrong for some, none for
    three, and one id that is not in the eval set; the project gates accuracy and its regression."""
    tmp = tmp_path_factory.mktemp("preds")
    root = copy_project(tmp / "ticket", tiny_model_dir, max_items=ITEMS,
                        gates={"accuracy": {"min": 0.6, "no_regression": {"baseline": "base:zero-shot"}}})
    recs = with_ids(root)[:ITEMS]
    rows, expected = [], {}
    for i, r in enumerate(recs):
        if i in (3, 10, 17):
            continue
        ref = r["messages"][-1]["content"]
        out = ref if i % 5 else ("exchange_rate" if ref != "exchange_rate" else "card_arrival")
        rows.append({"id": r["id"], "output": out})
        expected[r["id"]] = float(out == ref)
    random.Random(0).shuffle(rows)
    rows.append({"id": "not-in-eval", "output": "card_arrival"})
    preds = write(tmp / "answers.jsonl", rows)
    r = invoke("eval", root, "--candidate", "base:zero-shot", "--canary", "none", "--no-progress", "--json",
               "--predictions", preds, "--name", "oracle")
    assert r.exit_code == 0, r.stderr
    return root, preds, json.loads(r.stdout), r.stderr, expected


def test_external_candidate_is_scored_on_the_matched_items(by_id):
    _, _, res, _, expected = by_id
    runs = {x["candidate"]: x for x in res["runs"]}
    ext = runs["external:oracle"]
    assert ext["source"] == "external" and ext["items"] == ITEMS and ext["errors"] == 3
    acc = ext["metrics"]["accuracy"]
    assert acc["n"] == len(expected) == 21
    assert acc["value"] == pytest.approx(sum(expected.values()) / len(expected))
    assert acc["ci"][0] < acc["value"] < acc["ci"][1]


def test_unmatched_and_missing_are_named_in_one_warning(by_id):
    _, preds, _, err, _ = by_id
    warns = [x for x in err.splitlines() if "predictions" in x]
    assert len(warns) == 1, err
    w = warns[0]
    assert str(preds) in w and "1 prediction(s) match no eval item (id not-in-eval)" in w
    assert "3 of 24 eval items have no prediction (id ticket-4, id ticket-11, id ticket-18)" in w


def test_external_candidate_is_stored_compared_gated_and_reported(by_id):
    root, _, res, _, expected = by_id
    comp = next(c for c in res["comparisons"] if c["b"] == "external:oracle")
    assert comp["a"] == "base:zero-shot" and comp["items"] == 21
    assert comp["metrics"]["accuracy"]["delta"] is not None and comp["metrics"]["accuracy"]["p_value"] is not None
    project = load_project(root)
    with Store.for_project(project) as store:
        run = store.get_run(next(x for x in res["runs"] if x["candidate"] == "external:oracle")["run_id"])
    assert run["status"] == "done"
    per = {row["line"]: row for row in run["result"]["per_item"]}
    recs = eval_lines(root)
    for line, row in per.items():
        rid = recs[line - 1]["id"]
        assert row["scores"]["accuracy"] == expected.get(rid), (line, rid)
    g = invoke("gate", root, "--candidate", "external:oracle", "--json")
    assert g.exit_code == 0, g.stderr + g.stdout
    gres = json.loads(g.stdout)
    assert gres["candidate"] == "external:oracle" and gres["status"] == "pass"
    reg = next(x for x in gres["gates"] if x["kind"] == "regression")
    assert reg["baseline"] == "base:zero-shot" and reg["n"] == 21
    rep = invoke("report", root)
    assert rep.exit_code == 0, rep.stderr
    html = (root / ".advise" / "report.html").read_text()
    assert "external:oracle" in html


def test_lines_without_id_answer_the_same_eval_line(tmp_path):
    """No base model at all: only the answers produced elsewhere are scored."""
    root = copy_project(tmp_path / "ticket", None, max_items=ITEMS, gates={"accuracy": ">= 0.5"})
    recs = eval_lines(root)[:ITEMS]
    rows = [{"output": r["messages"][-1]["content"] if i < 12 else "lost_or_stolen_card"} for i, r in enumerate(recs)]
    preds = write(tmp_path / "p.jsonl", rows)
    r = invoke("eval", root, "--canary", "none", "--json", "--predictions", preds, "--name", "by-line")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert [x["candidate"] for x in res["runs"]] == ["external:by-line"] and res["comparisons"] == []
    tail = sum(r["messages"][-1]["content"] == "lost_or_stolen_card" for r in recs[12:])
    assert res["runs"][0]["metrics"]["accuracy"]["value"] == pytest.approx((12 + tail) / ITEMS)
    assert "predictions" not in r.stderr  # every item answered, nothing stray
    r2 = invoke("eval", root, "--canary", "none", "--predictions", preds, "--name", "by-line")
    assert r2.exit_code == 0 and "external:by-line" in r2.stdout
    g = invoke("gate", root, "--json")  # no tuned candidate: the external one is gated by default
    assert g.exit_code == 0, g.stdout + g.stderr
    assert json.loads(g.stdout)["candidate"] == "external:by-line"


@pytest.mark.parametrize("bad,why", [
    ('{"id": "a", "output": "x"', "not a JSON object"),
    ('["x"]', "expected a JSON object"),
    ('{"id": "a"}', "expected a string 'output'"),
    ('{"id": "a", "output": null}', "'output' is null"),
    ('{"id": "a", "output": 3}', "expected a string 'output'"),
    ('{"id": {"x": 1}, "output": "y"}', "'id' must be a string or an integer"),
    ('{"id": "ticket-1", "output": "y"}', "id 'ticket-1' repeats line 1"),
])
def test_a_bad_line_is_exit_2_with_file_and_line(tmp_path, bad, why):
    root = copy_project(tmp_path / "ticket", None)
    with_ids(root)
    preds = write(tmp_path / "bad.jsonl", [{"id": "ticket-1", "output": "card_arrival"}, "", bad])
    msg = one_line_error(invoke("eval", root, "--canary", "none", "--predictions", preds, "--name", "x"))
    assert f"{preds}:3" in msg and why in msg, msg
    if (root / ".advise").exists():  # nothing is stored from a file that fails
        with Store.for_project(load_project(root)) as store:
            assert not [x for x in store.list_runs("eval", limit=100) if x.get("name") == "external:x"]


def test_usage_errors_are_one_line(tmp_path):
    root = copy_project(tmp_path / "ticket", None)
    preds = write(tmp_path / "p.jsonl", [{"id": "nope", "output": "card_arrival"}])
    msg = one_line_error(invoke("eval", root, "--predictions", preds))
    assert "--predictions and --name go in pairs" in msg
    msg = one_line_error(invoke("eval", root, "--predictions", preds, "--name", "a b"))
    assert "--name 'a b'" in msg
    msg = one_line_error(invoke("eval", root, "--canary", "none", "--predictions", preds, "--name", "x"))
    assert "no line of the predictions file matches an eval item" in msg and "id nope" in msg
    msg = one_line_error(invoke("eval", root, "--predictions", tmp_path / "none.jsonl", "--name", "x"))
    assert "predictions file not found" in msg
    msg = one_line_error(invoke("eval", root, "--canary", "none", "--predictions", preds, "--name", "x",
                                "--predictions", preds, "--name", "external:x"))
    assert "more than one predictions file" in msg
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    assert "base_model" not in cfg  # nothing else was needed to get these errors
