"""Judge templates (jinja2, strict), verdict parsing, the shipped canary set, and the lazy vLLM backend."""

from __future__ import annotations

import importlib.util

import eval_fixtures
import pytest
from click.testing import CliRunner
from eval_fixtures import copy_project

from advisor.cli.main import main
from advisor.errors import AdviseError
from evaluators.canary import CANARY_FILE, forgetting, load_canary
from evaluators.judge import (
    PAIRWISE_TEMPLATE,
    SINGLE_TEMPLATE,
    Template,
    parse_score,
    parse_verdict,
    template_path,
)

tiny_model_dir = eval_fixtures.tiny_model_dir


def test_shipped_templates_render_strictly():
    single = Template(template_path(SINGLE_TEMPLATE))
    text = single.render(task="Route tickets.", question="Card lost?", answer="lost_or_stolen_card",
                         reference="lost_or_stolen_card")
    assert "Card lost?" in text and "[REFERENCE ANSWER]" in text and "Score: [[N]]" in text
    assert "[REFERENCE ANSWER]" not in single.render(task="t", question="q", answer="a", reference="")
    pair = Template(template_path(PAIRWISE_TEMPLATE))
    text = pair.render(task="t", question="q", answer_a="first", answer_b="second", reference="")
    assert text.index("first") < text.index("second") and "[[C]]" in text
    with pytest.raises(AdviseError) as e:
        single.render(task="t", question="q", answer="a")  # reference missing: strict
    assert str(e.value).startswith(str(template_path(SINGLE_TEMPLATE))) and "'reference' is undefined" in str(e.value)


def test_template_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "judge_single.jinja"
    bad.write_text("Grade this.\n{{ answer }}\n{% if reference %}\n{{ refrence }}\n{% endif %}\n")
    t = Template(bad)
    with pytest.raises(AdviseError) as e:
        t.render(task="t", question="q", answer="a", reference="r")
    assert e.value.file == str(bad.resolve()) and e.value.line == 4 and "'refrence' is undefined" in str(e.value)
    broken = tmp_path / "broken.jinja"
    broken.write_text("line one\n{% if x %}\nno end\n")
    with pytest.raises(AdviseError) as e:
        Template(broken)
    assert e.value.file == str(broken.resolve()) and e.value.line is not None and "syntax error" in str(e.value)
    assert "\n" not in str(e.value)


def test_project_template_error_exits_2(tmp_path):
    root = copy_project(tmp_path / "p", None)
    (root / "rubrics").mkdir()
    (root / "rubrics" / "judge_pairwise.jinja").write_text("Compare\n{{ answer_a }\n")
    r = CliRunner().invoke(main, ["eval", str(root), "--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m",
                                  "--judge-endpoint", "http://127.0.0.1:9/v1", "--judge-model", "j"])
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert "rubrics/judge_pairwise.jinja:2:" in line and "syntax error" in line


def test_verdict_and_score_parsing():
    assert parse_score("Fine answer.\nScore: [[8]]") == 8
    assert parse_score("score: 10") == 10
    assert parse_score("[[3]] then, on reflection, [[6]]") == 6
    assert parse_score("no score here") is None and parse_score(None) is None
    assert parse_verdict("B is better.\n[[B]]") == "B"
    assert parse_verdict("[[A]] ... final: [[C]]") == "C"
    assert parse_verdict("I like A") is None


def test_shipped_canary_set():
    items = load_canary()
    assert len(items) == 40 and CANARY_FILE.name == "canary.jsonl"
    for rec in items:
        refs = [rec.output] + (rec.extra or {}).get("references", [])
        assert rec.prompt[-1]["role"] == "user" and all(r.strip() for r in refs)
    with pytest.raises(AdviseError, match="canary file not found"):
        load_canary("/no/such/canary.jsonl")


def test_forgetting_flag():
    drop = {"metrics": {"contains_answer": {"delta": -0.3, "p_value": 0.001}}}
    assert forgetting(drop)["forgetting"] is True
    assert forgetting({"metrics": {"contains_answer": {"delta": -0.3, "p_value": 0.2}}})["forgetting"] is False
    assert forgetting({"metrics": {"contains_answer": {"delta": -0.02, "p_value": 0.01}}})["forgetting"] is False
    assert forgetting({"metrics": {"contains_answer": {"delta": 0.2, "p_value": 0.001}}})["forgetting"] is False


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_loads_only_with_vllm():
    from evaluators.backends.vllm import VLLMBackend

    with pytest.raises(AdviseError, match="pip install vllm"):
        VLLMBackend("some/model")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_local_backend_without_vllm_exits_2(tmp_path):
    root = copy_project(tmp_path / "p", "some-org/some-model")
    r = CliRunner().invoke(main, ["eval", str(root), "--local-backend", "vllm", "--strategy", "zero-shot",
                                  "--canary", "none", "--no-progress"])
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert "pip install vllm" in line


def test_a_judge_that_cannot_be_reached_is_reported_not_hidden(tmp_path, tiny_model_dir):
    import json

    root = copy_project(tmp_path / "p", tiny_model_dir)
    r = CliRunner().invoke(main, ["eval", str(root), "--judge-endpoint", "http://127.0.0.1:9/v1", "--judge-model", "j",
                                  "--max-items", "2", "--candidate", "base:zero-shot", "--strategy", "zero-shot",
                                  "--canary", "none", "--retries", "0", "--json"])
    assert r.exit_code == 0, r.stderr
    (w,) = json.loads(r.stdout)["warnings"]
    assert w.startswith("the judge failed on 2 of 2 items of base:zero-shot (not scored): cannot connect:")
    assert f"advise: warning: {w}" in r.stderr
