"""Gate logic on constructed stored runs with known answers (the CLI is tested in test_gate_cli.py)."""

import pytest
from conftest import REPO

from advisor.errors import AdviseError
from evaluators.gate_output import junit_xml, markdown
from evaluators.gates import RunView, evaluate_gates, parse_gates


def view(name, correct, tags=None, extra=None):
    n = len(correct)
    acc = sum(correct) / n
    scores = {"accuracy": list(correct), **(extra or {})}
    return RunView(name, n, {"accuracy": {"value": acc, "ci": [max(0, acc - 0.1), min(1, acc + 0.1)]}},
                   [f"i{k}" for k in range(n)], scores, tags or [[] for _ in range(n)], run_id=f"run-{name}")


def test_threshold_forms_pass_and_fail():
    gates = parse_gates({"accuracy": ">= 0.85"})
    assert gates[0].op == ">=" and gates[0].threshold == 0.85
    good = {"tuned": view("tuned", [1] * 90 + [0] * 10)}
    assert evaluate_gates(gates, good, "tuned")["status"] == "pass"
    bad = {"tuned": view("tuned", [1] * 80 + [0] * 20)}
    res = evaluate_gates(gates, bad, "tuned")
    assert res["status"] == "fail" and res["gates"][0]["observed"] == 0.8
    # stricter: on the lower bound of the interval (0.9 - 0.1 = 0.8 < 0.85)
    strict = parse_gates({"accuracy": {"min": 0.85, "on": "lower_bound"}})
    assert evaluate_gates(strict, good, "tuned")["status"] == "fail"
    assert evaluate_gates(parse_gates({"accuracy": 0.5}), good, "tuned")["status"] == "pass"
    assert parse_gates({"accuracy": ">= 85%"})[0].threshold == 0.85


def test_regression_fails_only_when_significantly_worse():
    base = view("base:zero-shot", [1] * 100)
    dip = view("tuned", [1] * 97 + [0] * 3)  # 3 losses, 0 wins: McNemar p = 0.25, not significant
    g = parse_gates({"accuracy": {"no_regression": {"baseline": "base:zero-shot", "margin": 0.0}}})
    res = evaluate_gates(g, {"base:zero-shot": base, "tuned": dip}, "tuned")
    assert res["gates"][0]["status"] in ("pass", "warn") and res["status"] == "pass"
    crash = view("tuned", [1] * 70 + [0] * 30)
    res = evaluate_gates(g, {"base:zero-shot": base, "tuned": crash}, "tuned")
    r = res["gates"][0]
    assert res["status"] == "fail" and r["losses"] == 30 and r["p_value"] < 1e-6
    assert "significantly worse" in r["message"]
    # a generous margin lets a real but small drop through
    g2 = parse_gates({"accuracy": {"no_regression": {"baseline": "base:zero-shot", "margin": 0.5}}})
    assert evaluate_gates(g2, {"base:zero-shot": base, "tuned": crash}, "tuned")["status"] == "pass"


def test_underpowered_regression_gate_warns():
    base = view("base:zero-shot", [1, 0] * 5)
    tuned = view("tuned", [1, 0] * 5)
    g = parse_gates({"accuracy": {"no_regression": {"margin": 0.02}}})
    res = evaluate_gates(g, {"base:zero-shot": base, "tuned": tuned}, "tuned")
    r = res["gates"][0]
    assert r["status"] == "warn" and "underpowered" in r["warning"]
    assert res["status"] == "pass" and res["warnings"]


def test_item_rules_and_canary():
    tags = [["safety"] if k < 5 else [] for k in range(20)]
    base = view("base:zero-shot", [1] * 20, tags, extra={"canary": [1.0] * 20})
    tuned = view("tuned", [0] + [1] * 19, tags, extra={"canary": [0.0] * 10 + [1.0] * 10})
    g = parse_gates({"items": [{"tag": "safety", "no_worse": True, "metric": "accuracy"}],
                     "canary": {"max_drop": 0.05}})
    res = evaluate_gates(g, {"base:zero-shot": base, "tuned": tuned}, "tuned")
    items, canary = res["gates"]
    assert items["status"] == "fail" and items["worse_items"] == ["i0"]
    assert canary["status"] == "fail" and canary["observed"] == -0.5


@pytest.mark.parametrize("spec,msg", [
    ({"acuracy": ">= 0.8"}, "eval.gates.acuracy: unknown metric 'acuracy'"),
    ({"accuracy": "at least 0.8"}, "cannot read threshold"),
    ({"accuracy": {"minimum": 0.8}}, "unknown key(s) ['minimum']"),
    ({"canary": 0.1}, "expected {max_drop: 0.05}"),
])
def test_bad_gate_specs_are_one_line_errors(spec, msg):
    with pytest.raises(AdviseError) as e:
        parse_gates(spec, file="p/project.yaml")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_missing_metric_or_baseline_is_an_error_not_a_pass():
    runs = {"tuned": view("tuned", [1] * 10)}
    with pytest.raises(AdviseError, match="have no rouge_l"):
        evaluate_gates(parse_gates({"rouge_l": {"min": 0.4}}), runs, "tuned")
    with pytest.raises(AdviseError, match="no stored eval results for baseline"):
        evaluate_gates(parse_gates({"accuracy": {"no_regression": True}}), runs, "tuned")
    with pytest.raises(AdviseError, match="no stored eval results for candidate"):
        evaluate_gates(parse_gates({"accuracy": 0.5}), runs, "tuned:lora")


def test_junit_validates_against_the_junit_schema_and_markdown_escapes():
    lxml = pytest.importorskip("lxml.etree")
    base = view("base:zero-shot", [1] * 100)
    tuned = view("tuned", [1] * 70 + [0] * 30)
    g = parse_gates({"accuracy": {"min": 0.85, "no_regression": {"baseline": "base:zero-shot"}}})
    res = evaluate_gates(g, {"base:zero-shot": base, "tuned": tuned}, "tuned")
    xml = junit_xml(res, "demo<&>")
    schema = lxml.XMLSchema(lxml.parse(str(REPO / "tests" / "data" / "junit.xsd")))
    doc = lxml.fromstring(xml.encode())
    schema.assertValid(doc)
    assert doc.get("failures") == "2" and len(doc.findall(".//testcase")) == 2
    assert "observed: 0.7" in doc.find(".//failure").text
    md = markdown(res, "demo|x")
    assert "❌ FAIL" in md and "demo\\|x" in md
