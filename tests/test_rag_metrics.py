"""RAG metrics (context recall and precision, faithfulness, citation correctness; lexical) end to end on
the real policy-faq-rag project (COVID-QA FAQ documents) through `advise eval` with a loopback
OpenAI-compatible endpoint that either answers from the retrieved passage or makes something up."""

from __future__ import annotations

import json
import re
import shutil
import string
from pathlib import Path

import pytest
from click.testing import CliRunner
from loopback_chat import serve

from advisor.cli.main import main

REPO = Path(__file__).resolve().parents[1]
PASSAGE = re.compile(r"\[([^\[\]\n]+#\d+)\]\n(.*?)(?=\n\n\[[^\[\]\n]+#\d+\]\n|\n\nQuestion:\n)", re.S)


def _block(text: str, name: str) -> str:
    m = re.search(rf"\[{name}\]\n(.*?)\n\[END {name}\]", text, re.S)
    return m.group(1) if m else ""


def _reply(body: dict) -> str:
    last = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    if body["model"] == "judge":  # a judge: faithful when the answer (less its citation) is in the passages
        if "[PASSAGES]" in last:
            answer = re.sub(r"\s*\[[^\[\]\n]+\]$", "", _block(last, "ANSWER").strip())
            return "Checked.\nScore: [[10]]" if answer and answer in _block(last, "PASSAGES") else "No.\nScore: [[1]]"
        return "Fine.\nScore: [[5]]"
    found = PASSAGE.findall(last)
    if body["model"] == "echo" and found:  # quotes the top passage and cites it
        ref, text = found[0]
        return f"{text.strip()} [{ref}]"
    if body["model"] == "liar":  # an answer beyond its context, with a made-up citation
        return "Purple elephants migrate across Saturn every Tuesday. [invented.md#7]"
    return "I do not know."


@pytest.fixture
def served():
    with serve(_reply) as url:
        yield url


def _eval(root: Path, url: str, model: str, *judge: str) -> dict:
    r = CliRunner().invoke(main, ["eval", str(root), "--endpoint", url, "--endpoint-model", model, "--json", *judge,
                                  "--retriever", "bm25", "--no-progress", "--canary", "none",
                                  "--strategy", "zero-shot", "--strategy", "rag"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


# an independent reading of the lexical rule, written from its description: SQuAD's normalisation (lower
# case, punctuation removed, articles out), whitespace tokens, scikit-learn's English stop words out;
# support = at least 60% of the text's words in the passage
def _words(text: str) -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    text = re.sub(r"\[[^\[\]\n]{1,200}\]", " ", text).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return {w for w in text.split() if w not in ENGLISH_STOP_WORDS and w not in ("a", "an", "the")}


def _supports(passage: str, text: str) -> bool:
    t = _words(text)
    return bool(t) and len(t & _words(passage)) >= 0.6 * len(t)


def test_rag_metrics_separate_an_answer_from_its_context_and_one_made_up(tmp_path, served):
    root = tmp_path / "faq"
    shutil.copytree(REPO / "sample_projects" / "policy-faq-rag", root, ignore=shutil.ignore_patterns(".advise"))
    (root / "project.yaml").write_text((root / "project.yaml").read_text().replace(
        "base_model: Qwen/Qwen2.5-0.5B-Instruct\n", "")
        + "eval:\n  max_items: 12\n  gates:\n    faithfulness: \">= 0.9\"\n", encoding="utf-8")
    echo = _eval(root, served, "echo")
    liar = _eval(root, served, "liar")
    metrics = echo["metrics"]
    assert {"context_recall", "context_precision", "faithfulness", "citation_correctness"} <= set(metrics)

    runs = {r["candidate"]: r for r in echo["runs"] + liar["runs"]}
    e, li = runs["endpoint:echo:rag"]["metrics"], runs["endpoint:liar:rag"]["metrics"]
    # the echo answers are the retrieved passage itself, cited by its tag: faithful, correctly cited
    assert e["faithfulness"]["value"] == 1.0 and e["faithfulness"]["n"] == 12
    assert e["citation_correctness"]["value"] == 1.0
    # the made-up answer is in no passage, and its citation names no retrieved passage
    assert li["faithfulness"]["value"] == 0.0 and li["citation_correctness"]["value"] == 0.0
    # retrieval does not depend on the answer: the same context recall and precision for both
    for m in ("context_recall", "context_precision"):
        assert e[m]["value"] == pytest.approx(li[m]["value"]) and e[m]["n"] == li[m]["n"] > 0
    # a candidate without retrieval has no context: undefined, not zero
    assert runs["endpoint:echo:zero-shot"]["metrics"]["faithfulness"]["n"] == 0

    # context recall and precision against a direct computation from the stored retrieval and the docs
    from advisor.project import load_project
    from advisor.store import Store
    from evaluators.strategies import RAG

    rag = RAG(root / "docs", 3, retriever="bm25", root=root)
    rag.prepare()
    texts = {p.ref: p.text for p in rag.passages}
    refs = {}
    for line in (root / "data" / "eval.jsonl").read_text(encoding="utf-8").splitlines():
        msgs = json.loads(line)["messages"]
        refs[msgs[1]["content"]] = msgs[2]["content"]
    with Store.for_project(load_project(root)) as store:
        stored = store.get_run(runs["endpoint:echo:rag"]["run_id"])["result"]["per_item"]
        items = {r["item"]: r for r in stored}
    recalls, precisions = [], []
    from advisor.data.dataset import item_hash, load_project_data

    for rec in load_project_data(load_project(root)).eval[:12]:
        row = items[item_hash(rec)]
        retrieved = [r["ref"] for r in row["retrieved"]]
        reference = rec.output
        support = {ref for ref, text in texts.items() if _supports(text, reference)}
        if not support:
            continue
        recalls.append(len(support & set(retrieved)) / len(support))
        hits, ap = 0, 0.0
        for k, ref in enumerate(retrieved, start=1):
            if ref in support:
                hits += 1
                ap += hits / k
        precisions.append(ap / hits if hits else 0.0)
    assert e["context_recall"]["n"] == len(recalls) > 0
    assert e["context_recall"]["value"] == pytest.approx(sum(recalls) / len(recalls))
    assert e["context_precision"]["value"] == pytest.approx(sum(precisions) / len(precisions))

    # gateable like any metric
    ok = CliRunner().invoke(main, ["gate", str(root), "--candidate", "endpoint:echo:rag", "--baseline",
                                   "endpoint:echo:zero-shot"])
    bad = CliRunner().invoke(main, ["gate", str(root), "--candidate", "endpoint:liar:rag", "--baseline",
                                    "endpoint:liar:zero-shot"])
    assert ok.exit_code == 0, ok.output
    assert bad.exit_code == 1 and "faithfulness" in bad.output


def test_lexical_rule_on_known_texts():
    from evaluators.metrics import evaluate

    passages = ["Wash your hands with soap and water for at least 20 seconds."]
    item = {"passages": passages, "retrieved_refs": ["a#0"], "supporting_refs": ["a#0"], "cited": ["a#0"],
            "passage_by_ref": {"a#0": passages[0]}, "support_share": 0.6}
    half = "Wash your hands with soap for 20 seconds. Masks protect the wearer against every virus."
    assert evaluate("faithfulness", [half], [[""]], [item]).value == pytest.approx(0.5)
    assert evaluate("citation_correctness", [half + " [a#0]"], [[""]], [item]).value == 1.0
    assert evaluate("citation_correctness", [half], [[""]], [dict(item, cited=[])]).value == 0.0
    assert evaluate("citation_correctness", [half], [[""]], [dict(item, cited=["?b#1"])]).value == 0.0
    none = dict(item, supporting_refs=[])
    assert evaluate("context_recall", [half], [["x"]], [none]).n == 0  # support not identifiable: undefined
    ranks = dict(item, retrieved_refs=["b#1", "a#0", "c#2"], supporting_refs=["a#0", "c#2"])
    assert evaluate("context_precision", [half], [["x"]], [ranks]).value == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert evaluate("context_recall", [half], [["x"]], [dict(ranks, retrieved_refs=["a#0"])]).value == 0.5


def test_the_judge_grades_faithfulness_beside_the_lexical_metric(tmp_path, served):
    root = tmp_path / "faq"
    shutil.copytree(REPO / "sample_projects" / "policy-faq-rag", root, ignore=shutil.ignore_patterns(".advise"))
    (root / "project.yaml").write_text((root / "project.yaml").read_text().replace(
        "base_model: Qwen/Qwen2.5-0.5B-Instruct\n", "") + "eval:\n  max_items: 6\n", encoding="utf-8")
    judge = ("--judge-endpoint", served, "--judge-model", "judge")
    runs = {}
    for model in ("echo", "liar"):
        out = _eval(root, served, model, *judge)
        assert "faithfulness_judge" in out["metrics"] and "faithfulness" in out["metrics"]
        runs.update({r["candidate"]: r["metrics"] for r in out["runs"]})
    assert runs["endpoint:echo:rag"]["faithfulness_judge"]["value"] == 1.0
    assert runs["endpoint:echo:rag"]["faithfulness_judge"]["n"] == 6
    assert runs["endpoint:liar:rag"]["faithfulness_judge"]["value"] == 0.0
    assert runs["endpoint:echo:zero-shot"]["faithfulness_judge"]["n"] == 0  # no passages: not graded

