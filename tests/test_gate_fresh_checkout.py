"""`advise gate --eval` in a fresh checkout: only project.yaml, the data and an exported model, no run
store (.advise/ is git-ignored, so CI has none). The model is trained on the tiny model, exported with
`advise export`, named as a candidate in project.yaml (eval.candidates) and gated: pass and fail as the
gates say, a bad model directory exits 2 naming project.yaml and its line."""

from __future__ import annotations

import json
import shutil

import pytest
import train_fixtures as fx
import yaml
from test_eval_http import project, server  # noqa: F401 - fixtures: the ticket project and a fake endpoint

train_tiny_model = fx.train_tiny_model
TRAIN = {"max_steps": 3, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64}


@pytest.fixture
def exported(tmp_path, train_tiny_model):
    """A trained LoRA run of ticket-routing-tiny exported as a standalone model directory."""
    ticket = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, TRAIN)
    r = fx.train(ticket, "lora")
    out = tmp_path / "exported"
    res = fx.cli("export", r["run_id"], out, "--project", ticket)
    assert res.exit_code == 0, res.stderr
    return ticket, out


def fresh_checkout(ticket, model_dir, dst, gates):
    """What a CI job checks out: project.yaml, data/ and the exported model, nothing of .advise/."""
    dst.mkdir()
    shutil.copytree(ticket / "data", dst / "data")
    shutil.copytree(model_dir, dst / "models" / "ticket-lora")
    cfg = yaml.safe_load((ticket / "project.yaml").read_text())
    cfg["eval"] = {"gates": gates, "max_items": 12, "max_new_tokens": 4, "few_shot_k": 0,
                   "candidates": {"lora": "models/ticket-lora"}}
    (dst / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # the 3-step model of a random tiny base answers one string to every item, which the constant-output
    # rule fails in every gate (tests/test_eval_honest.py); here the gates' own pass and fail are under
    # test, so this project turns the rule off through its rubric override, as any project can
    (dst / "rubrics").mkdir()
    (dst / "rubrics" / "eval.yaml").write_text(
        "constant_output:\n  share: {value: 1.01, source: engineering}\n", encoding="utf-8")
    assert not (dst / ".advise").exists()
    return dst


def test_gate_eval_gates_an_exported_model_in_a_checkout_without_a_run_store(exported, tmp_path):
    ticket, model = exported
    repo = fresh_checkout(ticket, model, tmp_path / "ci", {"accuracy": ">= 0.0"})
    res = fx.cli("gate", repo, "--eval", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["status"] == "pass" and out["candidate"] == "tuned:lora"
    (gate,) = out["gates"]
    value = gate["observed"]
    assert 0.0 <= value <= 1.0
    # the exported model, not the base, was evaluated: its run names the directory in project.yaml
    from advisor.project import load_project
    from advisor.store import Store

    with Store.for_project(load_project(repo)) as s:
        runs = {r["name"]: r for r in s.list_runs("eval", limit=20)}
    assert set(runs) >= {"base:zero-shot", "tuned:lora"}
    assert runs["tuned:lora"]["config"]["candidate"]["model"] == str(repo / "models" / "ticket-lora")

    # the report of that CI job (docs/ci.md uploads it): the decision, the plan and the exported model's provenance
    res = fx.cli("report", repo, "--out", tmp_path / "ci-report.html")
    assert res.exit_code == 0, res.stderr
    html = (tmp_path / "ci-report.html").read_text()
    assert 'id="decision"' in html and 'id="plan"' in html and 'id="provenance"' in html and "tuned:lora" in html

    # the run store restored from an artifact into another fresh checkout: gated without evaluating again
    restored = fresh_checkout(ticket, model, tmp_path / "ci-restored", {"accuracy": ">= 0.0"})
    (restored / ".advise").mkdir()
    shutil.copy2(repo / ".advise" / "store.sqlite", restored / ".advise" / "store.sqlite")
    res = fx.cli("gate", restored, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["gates"][0]["observed"] == value

    # a model named in eval.candidates after the store was restored: gate --eval evaluates it (only it:
    # the answers already stored are reused)
    cfg = yaml.safe_load((restored / "project.yaml").read_text())
    cfg["eval"]["candidates"]["again"] = "models/ticket-lora"
    (restored / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = fx.cli("gate", restored, "--eval", "--candidate", "tuned:again", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["gates"][0]["observed"] == value  # the same model, the same score

    # the same checkout with a gate the model misses: exit 1, with the numbers
    repo = fresh_checkout(ticket, model, tmp_path / "ci-fail", {"accuracy": f">= {value + 0.01:.4f}"})
    res = fx.cli("gate", repo, "--eval", "--json")
    assert res.exit_code == 1, res.stdout + res.stderr
    assert json.loads(res.stdout)["status"] == "fail"


def test_a_candidate_that_is_not_a_model_directory_exits_2_naming_the_line(tmp_path, train_tiny_model):
    ticket = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, TRAIN)
    repo = fresh_checkout(ticket, ticket / "data", tmp_path / "ci", {"accuracy": ">= 0.0"})
    res = fx.cli("gate", repo, "--eval")
    assert res.exit_code == 2
    text = " ".join(res.stderr.split())
    assert "project.yaml:" in text and "eval.candidates.lora: models/ticket-lora is not a model directory" in text
    assert "Traceback" not in res.stderr
    cfg = yaml.safe_load((repo / "project.yaml").read_text())
    cfg["eval"]["candidates"] = {"no good": "models/ticket-lora"}
    (repo / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = fx.cli("gate", repo, "--eval")
    assert res.exit_code == 2 and "candidate name 'no good'" in res.stderr


def test_an_endpoint_evaluated_then_gated_by_name(project, server):  # noqa: F811 - the fixtures above
    """A model served elsewhere: `advise eval --endpoint` stores its results, `advise gate --candidate` gates
    it (zero-shot answers half of the 24 items right, few-shot all)."""
    root, _ = project
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["eval"].update(max_items=24, gates={"accuracy": ">= 0.4"})
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = fx.cli("eval", root, "--endpoint", server.url, "--endpoint-model", "fake", "--retriever", "bm25",
               "--no-progress", "--json")
    assert r.exit_code == 0, r.stderr
    res = fx.cli("gate", root, "--candidate", "endpoint:fake:zero-shot", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["gates"][0]["observed"] == 0.5
    cfg["eval"]["gates"] = {"accuracy": {"min": 0.6, "no_regression": {"baseline": "endpoint:fake:few-shot"}}}
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = fx.cli("gate", root, "--candidate", "endpoint:fake:zero-shot", "--json")
    assert res.exit_code == 1, res.stdout + res.stderr
    assert [g["status"] for g in json.loads(res.stdout)["gates"]] == ["fail", "fail"]
