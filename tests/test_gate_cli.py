"""advise gate end to end on real stored runs: a tiny local base model and an OpenAI-compatible
"oracle" server on loopback are evaluated for real (advise eval), then every gate outcome is checked
through the CLI: pass, fail on threshold, fail on regression, underpowered warning, usage errors."""

import json
import os
import subprocess

import eval_fixtures
import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO
from loopback_chat import serve

from advisor.cli.main import main

tiny_model_dir = eval_fixtures.tiny_model_dir
ORACLE, BASE = "endpoint:oracle:zero-shot", "base:zero-shot"


class Oracle:
    """Answers each eval message with its true label, except every 10th distinct message (90% right)."""

    def __init__(self, truth: dict[str, str]):
        self.truth = truth
        self.wrong = {m for k, m in enumerate(sorted(truth)) if k % 10 == 0}
        self.wrong_few_shot = {m for k, m in enumerate(sorted(truth)) if k % 10 == 5}

    def answer(self, body: dict) -> str:
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        user = users[-1].strip()
        label = self.truth.get(user, "unknown")
        # few-shot prompts (several user turns) get a different 10% wrong: same accuracy, other items
        wrong = self.wrong_few_shot if len(users) > 1 else self.wrong
        if user not in wrong:
            return label
        return "card_arrival" if label != "card_arrival" else "exchange_rate"


@pytest.fixture(scope="module")
def oracle_url(tmp_path_factory):
    truth = {}
    for line in (eval_fixtures.SAMPLE / "data" / "eval.jsonl").read_text().splitlines():
        msgs = json.loads(line)["messages"]
        truth[[m["content"] for m in msgs if m["role"] == "user"][-1].strip()] = msgs[-1]["content"]
    oracle = Oracle(truth)

    with serve(oracle.answer) as url:
        yield url


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir, oracle_url):
    """A project with real stored eval runs: base:zero-shot (tiny model) and endpoint:oracle:zero-shot."""
    root = eval_fixtures.copy_project(tmp_path_factory.mktemp("gate") / "ticket", tiny_model_dir)
    r = CliRunner().invoke(main, ["eval", str(root), "--strategy", "zero-shot", "--strategy", "few-shot",
                                  "--endpoint", oracle_url, "--endpoint-model", "oracle", "--candidate",
                                  "base:zero-shot", "--candidate", "endpoint:*", "--canary", "none", "--json"])
    assert r.exit_code == 0, r.stderr
    runs = {x["candidate"]: x for x in json.loads(r.stdout)["runs"]}
    assert runs["endpoint:oracle:zero-shot"]["metrics"]["accuracy"]["value"] >= 0.85
    assert runs["base:zero-shot"]["metrics"]["accuracy"]["value"] <= 0.3
    return root


def with_gates(root, gates):
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["eval"]["gates"] = gates
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def gate(root, *args, env=None):
    return CliRunner(env=env).invoke(main, ["gate", str(root), *args])




def test_pass_writes_junit_markdown_and_step_summary(evaluated, tmp_path):
    with_gates(evaluated, {"accuracy": {"min": 0.8, "no_regression": {"baseline": BASE, "margin": 0.05}}})
    step = tmp_path / "step.md"
    r = gate(evaluated, "--candidate", ORACLE, "--junit-xml", str(tmp_path / "g.xml"), "--summary-md",
             str(tmp_path / "g.md"), "--json", env={"GITHUB_STEP_SUMMARY": str(step)})
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "pass" and [g["status"] for g in out["gates"]] == ["pass", "pass"]
    assert out["gates"][1]["wins"] > 50 and out["gates"][1]["test"] == "mcnemar_exact"
    assert "✅ PASS" in (tmp_path / "g.md").read_text() and "✅ PASS" in step.read_text()
    lxml = pytest.importorskip("lxml.etree")
    schema = lxml.XMLSchema(lxml.parse(str(REPO / "tests" / "data" / "junit.xsd")))
    schema.assertValid(lxml.parse(str(tmp_path / "g.xml")))


def test_fail_on_threshold_exits_1_with_the_numbers(evaluated, tmp_path):
    with_gates(evaluated, {"accuracy": ">= 0.95"})
    r = gate(evaluated, "--candidate", ORACLE, "--junit-xml", str(tmp_path / "g.xml"))
    assert r.exit_code == 1
    assert "FAIL" in r.stdout and "misses >= 0.95" in r.stdout
    xml = (tmp_path / "g.xml").read_text()
    assert 'failures="1"' in xml and "observed: 0.9" in xml


def test_fail_on_regression_is_significant_not_a_dip(evaluated):
    with_gates(evaluated, {"accuracy": {"no_regression": {"baseline": ORACLE, "margin": 0.02}}})
    r = gate(evaluated, "--candidate", BASE, "--json")
    assert r.exit_code == 1
    g = json.loads(r.stdout)["gates"][0]
    assert g["status"] == "fail" and g["p_value"] < 0.001 and g["ci"][1] < -0.02


def test_regression_gate_on_a_corpus_level_metric_uses_the_stored_paired_bootstrap(evaluated):
    """macro_f1 has no per-item scores: the gate reads the eval's paired comparison (docs/ci.md's example)."""
    from advisor.project import load_project
    from evaluators.results import stored_results

    summary = stored_results(load_project(evaluated))
    comp = next(c for c in summary["comparisons"] if (c["a"], c["b"]) == (BASE, ORACLE))["metrics"]["macro_f1"]
    with_gates(evaluated, {"macro_f1": {"no_regression": {"baseline": BASE, "margin": 0.02}}})
    r = gate(evaluated, "--candidate", ORACLE, "--json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)["gates"][0]
    assert g["status"] == "pass" and g["observed"] == round(comp["delta"], 4) and g["test"] == comp["test"]
    # the eval compared the endpoint against the base, not the other way round: the gate reads that
    # comparison flipped (the base is far worse than the oracle: it fails)
    with_gates(evaluated, {"macro_f1": {"no_regression": {"baseline": ORACLE, "margin": 0.02}}})
    r = gate(evaluated, "--candidate", BASE, "--json")
    assert r.exit_code == 1, r.output
    g = json.loads(r.stdout)["gates"][0]
    assert g["status"] == "fail" and g["observed"] == round(-comp["delta"], 4)
    assert g["ci"] == [round(-comp["ci"][1], 4), round(-comp["ci"][0], 4)]


def test_underpowered_gate_warns_but_passes(evaluated):
    # few-shot and zero-shot oracles are both 90% right, on different items: delta 0, but 100 items
    # cannot rule out a 2-point regression
    with_gates(evaluated, {"accuracy": {"no_regression": {"baseline": ORACLE, "margin": 0.02}}})
    r = gate(evaluated, "--candidate", "endpoint:oracle:few-shot", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    g = out["gates"][0]
    assert g["status"] == "warn" and g["observed"] == 0.0 and g["losses"] == 10 and g["wins"] == 10
    assert "underpowered" in out["warnings"][0] and g["min_detectable_effect"] > 0.02


@pytest.mark.parametrize("gates,args,msg", [
    ({"acuracy": ">= 0.8"}, [], "eval.gates.acuracy: unknown metric 'acuracy'"),
    ({"accuracy": {"no_regression": True}}, ["--candidate", ORACLE, "--baseline", "base:rag"],
     "baseline base:rag: no stored eval results for it"),
    ({"accuracy": ">= 0.8"}, ["--candidate", "tuned:nothing"], "candidate tuned:nothing: no stored eval results"),
    ({"accuracy": ">= 0.8"}, ["--candidate", ORACLE, "--baseline", "nope"],
     "baseline nope: no stored eval results for it (have: base:zero-shot, endpoint:oracle:few-shot"),
    ({"accuracy": ">= 0.8"}, [], "the stored eval results have no tuned candidate"),
    ({"accuracy": {"no_regression": {"margin": "abc"}}}, ["--candidate", ORACLE],
     "eval.gates.accuracy.no_regression.margin: expected a number, got 'abc'"),
    ({"canary": {"max_drop": "lots"}}, ["--candidate", ORACLE], "eval.gates.canary.max_drop: expected a number"),
    ({"accuracy": ">= 0.8"}, ["--candidate", ORACLE, "--junit-xml", "/"],
     "advise: /: --junit-xml names a directory; give a file path"),
])
def test_usage_and_input_errors_exit_2(evaluated, gates, args, msg):
    with_gates(evaluated, gates)
    r = gate(evaluated, *args)
    assert r.exit_code == 2, r.output
    assert msg in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    if msg.startswith("eval.gates."):  # the line of the deepest key the message names
        deepest = msg.split(":")[0].split(".")[-1]
        text = (evaluated / "project.yaml").read_text().splitlines()
        line = next(i for i, t in enumerate(text, 1) if t.strip().startswith(f"{deepest}:"))
        assert f"project.yaml:{line}: {msg}" in r.stderr


def test_the_gates_example_of_the_docs_loads_from_project_yaml(evaluated, tmp_path):
    """docs/ci.md's eval.gates block, as written, is a valid project.yaml and gives the gates it describes."""
    import shutil

    from advisor.project import load_project
    from evaluators.gates import parse_gates

    block = (REPO / "docs" / "ci.md").read_text().split("```yaml")[1].split("```")[0]
    root = tmp_path / "docs-gates"
    shutil.copytree(evaluated, root)
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    del cfg["eval"]
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False) + block)  # the block verbatim
    project = load_project(root)
    assert project.eval.gates["rouge_l"] == {"min": 0.40, "on": "lower_bound"}  # `on` is a key, not YAML 1.1's True
    kinds = [g.kind for g in parse_gates(project.eval.gates)]
    assert kinds == ["threshold", "threshold", "regression", "canary", "items"]
    # through the command: the items rule runs (the sample's eval items carry no tags: nothing to compare)
    with_gates(root, {"items": [{"tag": "safety", "no_worse": True, "metric": "accuracy"}]})
    r = gate(root, "--candidate", ORACLE, "--baseline", BASE, "--json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)["gates"][0]
    assert (g["status"], g["message"]) == ("warn", "no item is tagged 'safety': this rule checked nothing")


def test_a_later_eval_of_some_candidates_keeps_the_others_in_view(evaluated, tmp_path):
    """advise eval --candidate base:zero-shot after the full eval: the gate still sees the other candidates;
    a --max-items eval is not mistaken for the whole eval set, and the error says why."""
    import shutil

    root = tmp_path / "later"
    shutil.copytree(evaluated, root)
    with_gates(root, {"accuracy": {"min": 0.8, "no_regression": {"baseline": BASE, "margin": 0.05}}})
    ev = CliRunner().invoke(main, ["eval", str(root), "--candidate", "base:zero-shot", "--strategy", "zero-shot",
                                   "--canary", "none", "--json"])
    assert ev.exit_code == 0, ev.stderr
    assert [r["candidate"] for r in json.loads(ev.stdout)["runs"]] == ["base:zero-shot"]
    r = gate(root, "--candidate", ORACLE, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "pass"
    # only a partial eval stored: no gate, and the message says it was partial
    part = tmp_path / "part"
    shutil.copytree(evaluated, part)
    shutil.rmtree(part / ".advise")
    ev = CliRunner().invoke(main, ["eval", str(part), "--candidate", "base:zero-shot", "--strategy", "zero-shot",
                                   "--canary", "none", "--max-items", "3"])
    assert ev.exit_code == 0, ev.stderr
    with_gates(part, {"accuracy": ">= 0.5"})
    r = gate(part, "--candidate", BASE)
    assert r.exit_code == 2 and "the newest stored eval covers 3 items, an eval of part of the set, and the eval set has " \
                                "100" in r.stderr, r.stderr


def test_store_from_an_older_version_is_an_error_not_a_pass(evaluated, tmp_path):
    import shutil
    import sqlite3

    old = tmp_path / "old"
    shutil.copytree(evaluated, old)
    db = sqlite3.connect(old / ".advise" / "store.sqlite")
    for rid, res in db.execute("SELECT id, result FROM runs WHERE kind='eval'").fetchall():
        d = json.loads(res)
        d.pop("per_item", None)
        db.execute("UPDATE runs SET result=? WHERE id=?", (json.dumps(d), rid))
    db.commit()
    db.close()
    with_gates(old, {"accuracy": ">= 0.5"})
    r = gate(old, "--candidate", ORACLE)
    assert r.exit_code == 2 and "older advise" in r.stderr


def test_the_any_ci_recipe_from_the_docs(evaluated, tmp_path):
    recipe = (REPO / "docs" / "ci.md").read_text().split("## Any other CI (a tested recipe)")[1]
    script = recipe.split("```bash")[1].split("```")[0]
    script = script.replace("advise gate my-project", f"advise gate {evaluated} --candidate {ORACLE}")
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    with_gates(evaluated, {"accuracy": ">= 0.8"})
    ok = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "gates passed" in ok.stdout, ok.stdout + ok.stderr
    with_gates(evaluated, {"accuracy": ">= 0.99"})
    bad = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "gates failed" in bad.stdout and (tmp_path / "gate.md").is_file()


def test_an_item_tag_gate_fails_alike_in_advise_gate_and_in_the_report(evaluated, oracle_url, tiny_model_dir,
                                                                        tmp_path):
    """One project-level gate check: `advise gate` and the report's data (collect) read the same item tags, so
    an items rule that fails the build shows failed, with the same detail, in the report."""
    import shutil

    from advisor.project import load_project
    from advisor.report.collect import collect
    from advisor.store import Store

    root = tmp_path / "tagged"
    shutil.copytree(evaluated, root)
    art = eval_fixtures.make_classifier_artifact(tiny_model_dir, tmp_path / "clf")
    eval_fixtures.register_train_run(root, "classifier", art, tiny_model_dir)
    ev = CliRunner().invoke(main, ["eval", str(root), "--strategy", "zero-shot", "--endpoint", oracle_url,
                                   "--endpoint-model", "oracle", "--candidate", ORACLE, "--candidate", "tuned:classifier",
                                   "--canary", "none", "--json"])
    assert ev.exit_code == 0, ev.stderr
    eval_file = root / "data" / "eval.jsonl"
    rows = [json.loads(line) for line in eval_file.read_text().splitlines() if line.strip()]
    eval_file.write_text("".join(json.dumps({**r, "tags": ["safety"] if k % 2 == 0 else ["billing"]}) + "\n"
                                 for k, r in enumerate(rows)))
    with_gates(root, {"items": [{"tag": "safety", "no_worse": True, "metric": "accuracy", "baseline": ORACLE}]})
    r = gate(root, "--json")
    assert r.exit_code == 1, r.output
    cli = json.loads(r.stdout)
    (g,) = cli["gates"]
    assert cli["candidate"] == "tuned:classifier" and g["status"] == "fail" and g["items"] == 50
    assert g["observed"] > 0 and g["message"].startswith(f"{g['observed']} of 50 items tagged 'safety' got worse")
    project = load_project(root)
    with Store.for_project(project, read_only=True) as store:
        report = collect(project, store)["gate"]
    assert report["status"] == "fail" and report["candidate"] == "tuned:classifier"
    (rg,) = report["gates"]
    assert {k: rg[k] for k in ("status", "message", "observed", "items", "worse_items")} == \
           {k: g[k] for k in ("status", "message", "observed", "items", "worse_items")}
