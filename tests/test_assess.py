"""advise assess end to end through the CLI on real files: the contract and the verdicts."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO, SAMPLES, chat

from advisor.cli.main import main


def assess(root, *extra):
    r = CliRunner().invoke(main, ["assess", str(root), "--json", *extra])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def check_contract(out):
    rec = out["recommendation"]
    assert rec["method"] in ("prompting", "rag", "lora", "full", "rlhf")
    assert isinstance(rec["also"], list) and all(m in ("prompting", "rag", "lora", "full", "rlhf") for m in rec["also"])
    assert 0 <= rec["confidence"] <= 1
    assert rec["reasons"] and all(isinstance(r, str) for r in rec["reasons"])
    assert all(set(a) >= {"method", "why_not"} for a in rec["alternatives"])
    assert isinstance(rec["blockers"], list)
    t = out["data"]["train"]
    assert {"examples", "invalid", "format"} <= set(t)
    assert "eval" in out["data"]
    assert isinstance(out["estimate"], dict)


def test_hook_project_300_valid_1_invalid(make_project):
    recs = [chat(f"my card {i} was declined at shop {i * 7}", "card_declined", system=None) for i in range(1, 301)]
    root = make_project(recs + ["not json"], task="Reply with the queue name only.", base_model="some/model")
    out = assess(root)
    check_contract(out)
    assert out["data"]["train"]["examples"] == 300 and out["data"]["train"]["invalid"] == 1
    assert out["data"]["eval"] is None


@pytest.mark.parametrize("name,method,also", [
    ("banking77-intents", "lora", []),
    ("covid-qa-docs", "rag", []),
    ("hh-harmless-prefs", "rlhf", []),
    ("toy-chat", "prompting", []),
    ("policy-faq-rag", "rag", []),
    ("e2e-restaurants", "lora", []),
    ("scitldr-summaries", "lora", []),
])
def test_sample_project_verdicts(name, method, also):
    out = assess(SAMPLES / name, "--no-embeddings")
    check_contract(out)
    assert out["recommendation"]["method"] == method
    assert out["recommendation"]["also"] == also


def test_banking_leakage_is_a_warning_within_the_ci_with_locations():
    """11 of 308 leaked eval records (3.6%) cannot move accuracy by more than the 95% CI half-width on
    308 records (5.6%): a warning with its remedy (fix train, keep eval), not a blocker."""
    out = assess(SAMPLES / "banking77-intents", "--no-embeddings")
    leak = out["data"]["leakage"]
    assert leak["normalised"] == 11 and leak["eval_items_leaked"] == 11 and leak["distinct_texts_leaked"] == 11
    assert leak["severity"] == "warning" and leak["blocker_share"] == 0.0558
    rec = out["recommendation"]
    assert not any("also appear in train" in b for b in rec["blockers"])
    w = next(w for w in rec["warnings"] if "11 of 308 eval records also appear in train" in w)
    assert "within the 5.6% half-width" in w and "remove the matching 11 records from train" in w
    f = next(f for f in out["findings"] if f["code"] == "leakage_normalised")
    assert f["examples"][0]["file"].endswith("eval.jsonl") and f["examples"][0]["detail"].startswith("train line")


def test_rag_verdict_keeps_embedding_evidence():
    out = assess(SAMPLES / "covid-qa-docs")
    sig = {s["name"]: s for s in out["signals"]["signals"]}
    assert sig["answers_in_docs"]["points_to"] == "knowledge" and sig["answers_in_docs"]["value"] >= 0.9
    assert "of answers are found in docs/" in sig["answers_in_docs"]["evidence"]
    assert "answers_supported_by_docs_embedding" in sig
    assert out["recommendation"]["method"] == "rag"


def test_reasons_name_signal_value_and_threshold():
    out = assess(SAMPLES / "banking77-intents", "--no-embeddings")
    reasons = " ".join(out["recommendation"]["reasons"])
    assert "train examples: 1498 >= 200" in reasons
    assert "knowledge score: 0.00 <= 0.4" in reasons


def test_method_override_is_respected_and_flagged(make_project):
    recs = [chat(f"message {i} about topic {i % 7}", f"label_{i % 4}") for i in range(50)]
    root = make_project(recs, method="full")
    out = assess(root)
    rec = out["recommendation"]
    assert rec["method"] == "full" and rec["confidence"] <= 0.5
    assert "method set in project.yaml: full" in rec["reasons"][0]
    assert any("too few for full" in b for b in rec["blockers"])


def test_terminal_summary_prints_verdict_first():
    r = CliRunner().invoke(main, ["assess", str(SAMPLES / "toy-chat")])
    assert r.exit_code == 0
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert "PROMPTING" in "".join(lines[:3])
    assert "Data health" in r.stdout and "Cost estimate" in r.stdout


def test_assess_without_docs_imports_neither_torch_nor_transformers():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom advisor.cli.main import main\n"
        f"r = CliRunner().invoke(main, ['assess', {str(SAMPLES / 'banking77-intents')!r}, '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'trl', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom advisor.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'pydantic', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_assessment_is_stored_and_reused_until_inputs_change(make_project):
    from advisor.store import Store

    recs = [chat(f"message {i} about topic {i % 7}", f"label_{i % 4}") for i in range(250)]
    root = make_project(recs)
    first = assess(root)
    store = Store(root / ".advise" / "store.sqlite")
    runs = store.list_runs("assess")
    assert len(runs) == 1 and runs[0]["status"] == "done" and runs[0]["result"]["recommendation"] == first["recommendation"]
    assess(root)
    assert len(store.list_runs("assess")) == 1  # unchanged inputs: the stored assessment is reused
    with open(root / "data" / "train.jsonl", "a") as fh:
        fh.write('{"messages": [}\n')
    again = assess(root)
    assert again["data"]["train"]["invalid"] == 1 and len(store.list_runs("assess")) == 2


def test_parallel_reading_gives_the_same_assessment(make_project, monkeypatch):
    """Large files are read by several worker processes; the result must equal one sequential pass."""
    recs = [chat(f"message {i} about topic {i % 97} " + "word " * (i % 30), f"label_{i % 5}") for i in range(52000)]
    recs[100] = '{"messages": [}'
    recs[51000] = recs[7]  # a duplicate far away from its twin
    root = make_project(recs, eval_records=recs[20:30] + [chat("fresh eval message", "label_1")])

    def run_with(workers):
        import shutil

        shutil.rmtree(root / ".advise", ignore_errors=True)
        monkeypatch.setenv("ADVISE_WORKERS", str(workers))
        out = assess(root)
        for k in ("seconds",):
            out.pop(k)
        return out

    one, three = run_with(1), run_with(3)
    assert one["data"] == three["data"] and one["findings"] == three["findings"]
    assert one["recommendation"] == three["recommendation"]
    assert one["data"]["train"]["invalid"] == 1 and one["data"]["train"]["duplicates"]["exact"] >= 1
    assert one["data"]["leakage"]["exact"] == 10


def test_project_rubric_overrides_merge_and_bad_ones_name_file_and_line(make_project):
    recs = [chat(f"message {i} about topic {i % 7}", f"label_{i % 4}") for i in range(50)]
    root = make_project(recs)
    reasons = " ".join(assess(root, "--no-embeddings")["recommendation"]["reasons"])
    assert "train examples: 50 < 200" in reasons
    (root / "rubrics").mkdir()
    over = root / "rubrics" / "decision.yaml"
    over.write_text("thresholds:\n  min_examples_finetune: 20\npoints:\n  label_outputs: {lora: 2, rag: 0.5}\n")
    rec = assess(root, "--no-embeddings")["recommendation"]
    assert "train examples: 50 >= 20 (project override)" in " ".join(rec["reasons"])
    for text, line, msg in [
        ("thresholds:\n  min_examples_finetune: abc\n", 2,
         "thresholds.min_examples_finetune expected a number (shipped: 200), got 'abc'"),
        ("points:\n  few_examples: 3\n", 2, "points.few_examples expected a mapping like the shipped rubric's, got 3"),
        ("thresholds: [1, 2]\n", 1, "thresholds expected a mapping like the shipped rubric's, got [1, 2]"),
        ("thresholds:\n  min_exampels_finetune: 20\n", 2,
         "thresholds.min_exampels_finetune is not a key of the shipped rubric (known here: min_examples_absolute"),
        ("thresholds: {\n", 2, "YAML syntax error"),
    ]:
        over.write_text(text)
        r = CliRunner().invoke(main, ["assess", str(root), "--no-embeddings"])
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"advise: {over}:{line}: {msg}"), lines


def test_assess_with_docs_prints_nothing_but_its_result(tmp_path):
    """The embedding signal loads MiniLM through sentence-transformers: no library chatter on stderr."""
    import shutil

    root = tmp_path / "cq"
    shutil.copytree(SAMPLES / "covid-qa-docs", root, ignore=shutil.ignore_patterns(".advise"))
    res = subprocess.run([sys.executable, "-c", "import sys; from advisor.cli.main import main; sys.exit(main())",
                          "assess", str(root), "--json"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert json.loads(res.stdout)["recommendation"]["method"] == "rag"


def _stuck_worker(span):
    import os
    import signal
    import time

    # what a real stuck worker has: a SIGTERM that kills it only when its action is the default (a
    # Python handler, such as the CLI's, never runs in a worker stuck in C on an inherited lock)
    with open(os.environ["ADVISE_TEST_SIGTERM_FILE"], "a", encoding="utf-8") as fh:
        fh.write(f"{signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}\n")
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)  # a forked worker that never finishes (as one stuck on an inherited lock would)


def test_a_stuck_parallel_worker_falls_back_to_one_process(make_project, monkeypatch):
    import shutil

    import advisor.assess.profile as profile

    recs = [chat(f"message {i} about topic {i % 13}", f"label_{i % 4}") for i in range(400)]
    root = make_project(recs)
    monkeypatch.setenv("ADVISE_WORKERS", "1")
    one = assess(root)
    monkeypatch.setenv("ADVISE_WORKERS", "2")
    monkeypatch.setattr(profile, "_scan_worker", _stuck_worker)
    seen = root / "sigterm.txt"
    monkeypatch.setenv("ADVISE_TEST_SIGTERM_FILE", str(seen))
    monkeypatch.setattr(profile, "PARALLEL_DEADLINE_S", 2.0)
    monkeypatch.setattr(profile, "PARALLEL_DEADLINE_PER_LINE_S", 0.0)
    shutil.rmtree(root / ".advise")  # no stored assessment to reuse: read the file again
    r = CliRunner().invoke(main, ["assess", str(root), "--json"])
    assert r.exit_code == 0, r.stderr
    assert "did not finish within 2 s; reading it in one process instead" in r.stderr
    # the workers were forked with SIGTERM's default action, so terminating the pool ended them
    assert seen.read_text().split() == ["True", "True"]
    two = json.loads(r.stdout)
    assert one["data"] == two["data"] and one["findings"] == two["findings"]
