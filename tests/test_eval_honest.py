"""Eval results that cannot flatter a bad model, end to end through the CLI on the ticket-routing sample
project: the tiny local model and OpenAI-compatible servers on loopback (an oracle, a model that answers
one label to everything, a model whose answers stop at the token limit).

Trivial baselines (majority class, uniform random guess) beside the candidates, in the comparisons and
the gates; the constant-output flag; confusion matrices; max_new_tokens sized from the references and
answers cut by it; few-shot examples dropped before a prompt is cut; items named by their id or
file:line; a regression gate reading a comparison stored the other way round; exit 2 still writing
the JUnit file and the step summary.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

import eval_fixtures
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from loopback_chat import serve

from advisor.cli.main import main
from advisor.project import load_project
from advisor.report.collect import collect
from advisor.report.render import render_report
from advisor.store import Store
from evaluators.metrics.normalize import normalize_label

tiny_model_dir = eval_fixtures.tiny_model_dir
ORACLE, CONSTANT, CHATTY = "endpoint:oracle:zero-shot", "endpoint:constant:zero-shot", "endpoint:chatty:zero-shot"
TAGGED = {1, 4, 7}  # eval lines (1-based) tagged "safety"; line 4 has no id (named eval.jsonl:4)


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def label(rec: dict) -> str:
    return rec["messages"][-1]["content"]


def user(rec: dict) -> str:
    return [m["content"] for m in rec["messages"] if m["role"] == "user"][-1].strip()


class Models:
    """oracle: the true label (every 10th item wrong); constant: the same label for every item;
    chatty: the true label, but every 3rd item stops at the token limit (finish_reason "length")."""

    def __init__(self, truth: dict[str, str]):
        self.truth = truth
        order = sorted(truth)
        self.wrong = {m for k, m in enumerate(order) if k % 10 == 0}
        self.cut = {m for k, m in enumerate(order) if k % 3 == 0}
        self.max_tokens: list[int] = []

    def answer(self, body: dict) -> tuple[str, str]:
        self.max_tokens.append(body.get("max_tokens"))
        u = [m["content"] for m in body["messages"] if m["role"] == "user"][-1].strip()
        right = self.truth.get(u, "unknown")
        if body["model"] == "constant":
            return "cash_withdrawal_charge", "stop"
        if body["model"] == "chatty":
            return (right, "length") if u in self.cut else (right, "stop")
        if u in self.wrong:
            return ("card_arrival" if right != "card_arrival" else "exchange_rate"), "stop"
        return right, "stop"


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    """The sample project with ids on most eval records and a few tagged ones (max_new_tokens not set)."""
    root = eval_fixtures.copy_project(tmp_path_factory.mktemp("honest") / "ticket", tiny_model_dir)
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["eval"].pop("max_new_tokens")
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    recs = records(root / "data" / "eval.jsonl")
    for n, r in enumerate(recs, 1):
        if n != 4:
            r["id"] = f"ticket-{n:03d}"
        if n in TAGGED:
            r["tags"] = ["safety"]
    (root / "data" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


@pytest.fixture(scope="module")
def server(project):
    models = Models({user(r): label(r) for r in records(project / "data" / "eval.jsonl")})

    with serve(models.answer) as url:
        yield url, models


def run_eval(root: Path, *args: str):
    r = CliRunner().invoke(main, ["eval", str(root), "--canary", "none", "--no-progress", *args],
                           env={"COLUMNS": "250"})  # the tables on one line each
    assert r.exit_code == 0, r.output + r.stderr
    return r


@pytest.fixture(scope="module")
def evaluated(project, server):
    """base:zero-shot (tiny model) and the three endpoint models, evaluated through the CLI."""
    url, _ = server
    both = ("--candidate", "base:zero-shot", "--candidate", "endpoint:*")
    first = run_eval(project, "--strategy", "zero-shot", *both, "--endpoint", url, "--endpoint-model", "oracle",
                     "--json")
    for model in ("constant", "chatty"):
        run_eval(project, "--strategy", "zero-shot", "--candidate", f"endpoint:{model}:*", "--endpoint", url,
                 "--endpoint-model", model)
    table = run_eval(project, "--strategy", "zero-shot", *both, "--endpoint", url, "--endpoint-model", "constant")
    with Store.for_project(load_project(project)) as store:
        from evaluators.results import stored_results

        summary = stored_results(load_project(project), store)
    return json.loads(first.stdout), summary, table


def test_trivial_baselines_are_computed_from_the_labels(project, evaluated):
    first, summary, _ = evaluated
    train = [label(r) for r in records(project / "data" / "train.jsonl")]
    refs = [label(r) for r in records(project / "data" / "eval.jsonl")]
    counts = Counter(normalize_label(x) for x in train)
    majority = counts.most_common(1)[0][0]
    base = {b["candidate"]: b for b in first["baselines"]}
    assert set(base) == {"baseline:majority", "baseline:random"}
    maj = base["baseline:majority"]
    assert normalize_label(maj["answer"]) == majority and maj["labels_from"] == "train"
    share = sum(normalize_label(r) == majority for r in refs) / len(refs)
    assert maj["metrics"]["accuracy"]["value"] == pytest.approx(share)
    lo, hi = maj["metrics"]["accuracy"]["ci"]
    assert lo < share < hi
    # the majority class predicted everywhere: F1 of that class alone, averaged over the gold classes
    gold = Counter(normalize_label(r) for r in refs)
    f1 = 2 * gold[majority] / (gold[majority] + len(refs))
    assert maj["metrics"]["macro_f1"]["value"] == pytest.approx(f1 / len(gold))
    rnd = base["baseline:random"]
    k = len(counts)
    assert rnd["labels"] == k
    # expected accuracy of a uniform guess is 1/k; the 95% range is that of Binomial(n, 1/k) / n
    assert rnd["metrics"]["accuracy"]["value"] == pytest.approx(1 / k, abs=0.01)
    sd = math.sqrt((1 / k) * (1 - 1 / k) / len(refs))
    lo, hi = rnd["metrics"]["accuracy"]["ci"]
    assert lo == pytest.approx(1 / k - 1.96 * sd, abs=0.03) and hi == pytest.approx(1 / k + 1.96 * sd, abs=0.03)
    # stored with the summary (what gates and the report read), and in the comparisons
    assert summary["baselines"] == first["baselines"]
    comp = next(c for c in first["comparisons"] if c["b"] == ORACLE)
    assert comp["baselines"] == {"majority": pytest.approx(share), "random": rnd["metrics"]["accuracy"]["value"]}


def test_the_eval_table_shows_baselines_flags_and_cut_answers(evaluated):
    _, _, table = evaluated
    out = " ".join(table.stdout.split())
    assert "baseline:majority" in out and "baseline:random" in out
    assert "constant output: 'cash_withdrawal_charge' for 100 of 100 items" in out
    assert "not a win: b constant output" in out
    assert "accuracy of a model that learnt nothing: majority baseline" in out
    assert "max_new_tokens" in out and "sized from the eval references" in out


def test_constant_output_is_flagged_and_never_a_win(project, evaluated):
    _, summary, _ = evaluated
    runs = {r["candidate"]: r for r in summary["runs"]}
    flag = runs[CONSTANT]["constant_output"]
    assert flag["answer"] == "cash_withdrawal_charge" and flag["count"] == flag["items"] == 100
    assert flag["text"] == "constant output: 'cash_withdrawal_charge' for 100 of 100 items"
    assert runs[ORACLE]["constant_output"] is None and runs[CHATTY]["constant_output"] is None
    # a gate on it says so, even when every threshold passes
    cfg = yaml.safe_load((project / "project.yaml").read_text())
    cfg["eval"]["gates"] = {"accuracy": ">= 0.0"}
    (project / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = CliRunner().invoke(main, ["gate", str(project), "--candidate", CONSTANT, "--json"])
    assert r.exit_code == 1, r.output
    [g] = json.loads(r.stdout)["gates"]
    assert g["status"] == "fail" and "meets >= 0" in g["message"] and "majority baseline" in g["message"]
    assert g["constant_output"] == "constant output: 'cash_withdrawal_charge' for 100 of 100 items"
    assert "gives constant output: 'cash_withdrawal_charge' for 100 of 100 items: not a win" in g["message"]
    # ...and the oracle's gate is not touched by it
    r = CliRunner().invoke(main, ["gate", str(project), "--candidate", ORACLE, "--json"])
    assert r.exit_code == 0, r.output
    [g] = json.loads(r.stdout)["gates"]
    assert g["status"] == "pass" and "constant_output" not in g


def test_confusion_matrices_count_every_answer(project, evaluated):
    _, summary, _ = evaluated
    refs = [normalize_label(label(r)) for r in records(project / "data" / "eval.jsonl")]
    runs = {r["candidate"]: r for r in summary["runs"]}
    cm = runs[CONSTANT]["confusion"]
    assert sum(map(sum, cm["matrix"])) == 100 == cm["items"]
    col = cm["labels"].index("cash_withdrawal_charge")
    for i, lab in enumerate(cm["labels"]):  # every answer in one column; each row the gold label's count
        assert cm["matrix"][i][col] == sum(1 for r in refs if r == normalize_label(lab))
    oracle = runs[ORACLE]["confusion"]
    diag = sum(oracle["matrix"][i][i] for i in range(len(oracle["labels"])))
    assert diag / 100 == pytest.approx(runs[ORACLE]["metrics"]["accuracy"]["value"])


def test_max_new_tokens_is_sized_from_the_references_and_cut_answers_counted(project, evaluated, server,
                                                                             tiny_model_dir):
    from tokenizers import Tokenizer

    first, summary, _ = evaluated
    _, models = server
    sizing = first["max_new_tokens"]
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    lengths = [len(e.ids) for e in tok.encode_batch([label(r) for r in records(project / "data" / "eval.jsonl")],
                                                    add_special_tokens=False)]
    expected = max(16, min(1024, math.ceil(float(np.percentile(lengths, 95)) * 1.5) + 8))
    assert sizing["source"] == "eval references" and sizing["counted_with"] == "tokenizer.json"
    assert sizing["reference_tokens"] == pytest.approx(float(np.percentile(lengths, 95)), abs=0.05)
    # a label never needs more than its bytes + 8 tokens (evaluators.task.label_token_cap)
    cap = max(len(x.encode()) for x in [label(r) for r in records(project / "data" / "train.jsonl")]
              + [label(r) for r in records(project / "data" / "eval.jsonl")]) + 8
    assert sizing["value"] == min(expected, cap) == first["settings"]["max_new_tokens"]
    assert set(models.max_tokens) == {sizing["value"]}  # what the endpoint was asked for
    runs = {r["candidate"]: r for r in summary["runs"]}
    length = runs[CHATTY]["length"]
    assert length["hit_limit"] == 34 and length["answered"] == 100  # every 3rd of 100 sorted messages
    assert runs[ORACLE]["length"]["hit_limit"] == 0


def test_report_shows_baselines_flags_and_confusion(project, evaluated):
    with Store.for_project(load_project(project)) as store:
        data = collect(load_project(project), store)
    names = [r["candidate"] for r in data["eval"]["runs"]]
    assert "baseline:majority" in names and "baseline:random" in names
    html = render_report(data)
    assert 'id="honesty"' in html and "baseline:majority" in html
    assert "constant output: &#39;cash_withdrawal_charge&#39; for 100 of 100 items" in html
    assert "34 of 100 answers hit the" in html
    assert html.count('class="confusion"') >= 4  # one matrix per candidate


def test_item_gate_names_items_by_id_or_file_line(project, evaluated):
    cfg = yaml.safe_load((project / "project.yaml").read_text())
    cfg["eval"]["gates"] = {"items": [{"tag": "safety", "no_worse": True, "baseline": ORACLE}]}
    (project / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    recs = records(project / "data" / "eval.jsonl")
    worse = [n for n in sorted(TAGGED) if label(recs[n - 1]) != "cash_withdrawal_charge"]
    r = CliRunner().invoke(main, ["gate", str(project), "--candidate", CONSTANT, "--json"])
    assert r.exit_code == 1, r.output
    g = json.loads(r.stdout)["gates"][0]
    want = [f"ticket-{n:03d}" if n != 4 else "eval.jsonl:4" for n in worse]
    assert sorted(g["worse_items"]) == sorted(want) and g["observed"] == len(worse)


def test_regression_gate_reads_a_comparison_stored_the_other_way(project, evaluated):
    """macro_f1 (corpus-level) was compared base -> oracle; gating base against the oracle flips it."""
    _, summary, _ = evaluated
    comp = next(c for c in summary["comparisons"] if (c["a"], c["b"]) == ("base:zero-shot", ORACLE))
    d = comp["metrics"]["macro_f1"]
    cfg = yaml.safe_load((project / "project.yaml").read_text())
    cfg["eval"]["gates"] = {"macro_f1": {"no_regression": {"baseline": ORACLE, "margin": 0.05}}}
    (project / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = CliRunner().invoke(main, ["gate", str(project), "--candidate", "base:zero-shot", "--json"])
    assert r.exit_code == 1, r.output
    g = json.loads(r.stdout)["gates"][0]
    assert g["observed"] == round(-d["delta"], 4) and g["ci"] == [round(-d["ci"][1], 4), round(-d["ci"][0], 4)]
    assert g["status"] == "fail"


def test_gate_errors_name_the_line_and_still_write_junit_and_summary(project, evaluated, tmp_path, monkeypatch):
    cfg = yaml.safe_load((project / "project.yaml").read_text())
    cfg["eval"]["gates"] = {"accuracy": {"no_regression": {"baseline": "base:rag"}}}
    (project / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    line = next(n for n, x in enumerate((project / "project.yaml").read_text().splitlines(), 1)
                if x.strip().startswith("no_regression"))
    junit, md, gh = tmp_path / "gate.xml", tmp_path / "gate.md", tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(gh))
    r = CliRunner().invoke(main, ["gate", str(project), "--candidate", ORACLE, "--junit-xml", str(junit),
                                  "--summary-md", str(md)])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert f"project.yaml:{line}: eval.gates.accuracy.no_regression: no stored eval results for baseline 'base:rag'" in err
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("errors") == "1" and suite.get("tests") == "1"
    case = suite.find("testcase")
    assert "base:rag" in case.find("error").get("message")
    assert "ERROR" in md.read_text() and "base:rag" in md.read_text() and "base:rag" in gh.read_text()
    # a project that cannot be read at all: still one errored test case
    bad = tmp_path / "nothing"
    bad.mkdir()
    junit2 = tmp_path / "g2.xml"
    r = CliRunner().invoke(main, ["gate", str(bad), "--junit-xml", str(junit2)])
    assert r.exit_code == 2 and ET.parse(junit2).getroot().get("errors") == "1"


# ------------------------------------------------------------------- prompts that do not fit the context


@pytest.fixture(scope="module")
def short_context_model(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with a 160-token context (config and tokenizer), so few-shot prompts overflow it."""
    import shutil

    out = tmp_path_factory.mktemp("short") / "tiny160"
    shutil.copytree(tiny_model_dir, out)
    for name, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        cfg = json.loads((out / name).read_text())
        cfg[key] = 160
        (out / name).write_text(json.dumps(cfg))
    return out


def test_few_shot_examples_are_dropped_before_a_prompt_is_cut(tmp_path, short_context_model):
    root = eval_fixtures.copy_project(tmp_path / "ticket", short_context_model, few_shot_k=16, max_items=12)
    system = "Route the banking message. Reply with its label only."
    long_item = {"messages": [{"role": "system", "content": system},
                              {"role": "user", "content": "my card " * 400 + "has not arrived"},
                              {"role": "assistant", "content": "card_arrival"}]}
    lines = (root / "data" / "eval.jsonl").read_text().splitlines()
    (root / "data" / "eval.jsonl").write_text("\n".join([json.dumps(long_item)] + lines[:11]) + "\n")
    r = run_eval(root, "--strategy", "few-shot", "--retriever", "bm25", "--json")
    run = json.loads(r.stdout)["runs"][0]
    length = run["length"]
    # every prompt with 16 examples overflows 160 tokens: examples went first, the long item is still cut
    assert length["prompts_reduced"] >= 11 and length["dropped"] > 11
    assert length["prompts_cut"] == 1
    with Store.for_project(load_project(root)) as store:
        per_item = store.get_run(run["run_id"])["result"]["per_item"]
    shots = {row["line"]: len(row.get("few_shot") or []) for row in per_item}
    assert shots[1] == 0 and all(n < 16 for n in shots.values())
    table = " ".join(run_eval(root, "--strategy", "few-shot", "--retriever", "bm25").stdout.split())
    assert f"{length['prompts_reduced']} of 12 prompts had {length['dropped']} few-shot examples left out" in table
    assert "1 of 12 prompts were cut to fit the context" in table


def test_a_cut_prompt_keeps_its_system_instruction(short_context_model):
    from evaluators.backends.transformers import TransformersBackend

    b = TransformersBackend(short_context_model)
    system = "Route the banking message. Reply with its label only."
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": "word " * 500 + "THE END"}]
    ids = b.encode_prompt(msgs)
    assert b.overflow(msgs, 4) == len(ids) - (160 - 4) > 0
    head = b._system_tokens(msgs, ids)
    kept, cut = b._fit(ids, 4, head)
    assert cut and len(kept) == 156 and head > 10
    assert kept[:head] == ids[:head] and kept[-20:] == ids[-20:]  # the instruction and the item's end
    assert system in b.tokenizer.decode(kept) and "THE END" in b.tokenizer.decode(kept)
    b.close()


def test_rag_passages_are_dropped_before_a_prompt_is_cut(tmp_path, short_context_model):
    root = eval_fixtures.copy_project(tmp_path / "ticket", short_context_model, rag_top_k=6, max_items=6)
    docs = root / "docs"
    docs.mkdir()
    for n in range(4):  # long passages (120 words each): six of them never fit 160 tokens
        (docs / f"guide{n}.md").write_text(" ".join(f"card top-up exchange rate cash withdrawal word{n}{k}"
                                                    for k in range(80)), encoding="utf-8")
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["data"]["docs"] = "docs"
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run_eval(root, "--strategy", "rag", "--retriever", "bm25", "--json")
    run = json.loads(r.stdout)["runs"][0]
    assert run["strategy"] == "rag" and run["length"]["prompts_reduced"] == 6 and run["length"]["dropped"] >= 6
    with Store.for_project(load_project(root)) as store:
        per_item = store.get_run(run["run_id"])["result"]["per_item"]
    assert all(len(row["retrieved"]) < 6 for row in per_item)
    table = " ".join(run_eval(root, "--strategy", "rag", "--retriever", "bm25").stdout.split())
    assert "RAG passages left out to fit the context" in table
