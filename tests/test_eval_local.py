"""advise eval with a real tiny local model on the ticket-routing sample project: the contract JSON,
the cache (an unchanged re-run makes no model call), resume after an interrupted run, tuned candidates
(LoRA adapter, full model, sequence classifier), the canary, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import eval_fixtures as fx
import pytest
import yaml
from click.testing import CliRunner
from eval_fixtures import (
    LABELS,
    REPO,
    copy_project,
    make_classifier_artifact,
    make_full_artifact,
    make_lora_artifact,
    register_train_run,
)

from advisor.cli.main import main
from advisor.errors import AdviseError
from advisor.project import load_project
from advisor.store import Store

tiny_model_dir = fx.tiny_model_dir
tiny_project = fx.tiny_project


def invoke(*args: str):
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def one_line_error(r) -> str:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()  # a blank line before the error is a defect too
    assert len(lines) == 1 and lines[0].startswith("advise: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# ------------------------------------------------------------------------- contract, cache, store


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir):
    """The tiny project evaluated once through the CLI (base zero-shot and few-shot, embedding
    retrieval), then re-run unchanged."""
    root = copy_project(tmp_path_factory.mktemp("evaluated") / "ticket", tiny_model_dir)
    first = invoke(root, "--json", "--max-items", "24", "--no-progress")
    assert first.exit_code == 0, first.stderr
    second = invoke(root, "--json", "--max-items", "24", "--no-progress")
    assert second.exit_code == 0, second.stderr
    return root, json.loads(first.stdout), json.loads(second.stdout)


def test_eval_json_follows_the_contract(evaluated):
    root, out, _ = evaluated
    assert [r["candidate"] for r in out["runs"]] == ["base:zero-shot", "base:few-shot"]
    assert out["task_kind"] == "classification" and out["primary_metric"] == "accuracy"
    for run in out["runs"]:
        assert run["items"] == 24 and run["errors"] == 0 and run["computed"] == 24
        assert set(run["metrics"]) == {"accuracy", "macro_f1", "macro_precision", "macro_recall"}
        for m in run["metrics"].values():
            assert 0.0 <= m["value"] <= 1.0
            lo, hi = m["ci"]
            assert lo <= m["value"] <= hi
    (comp,) = out["comparisons"]
    assert (comp["a"], comp["b"]) == ("base:zero-shot", "base:few-shot")
    acc = comp["metrics"]["accuracy"]
    assert set(acc) >= {"delta", "ci", "p_value", "wins", "losses", "ties"} and len(acc["ci"]) == 2
    assert acc["wins"] + acc["losses"] + acc["ties"] == 24
    assert comp["regressions_total"] == acc["losses"] and len(comp["regressions"]) == acc["losses"]
    # generation stopped early: a label is at most its bytes + 8 tokens, and the project asks for 4
    assert out["settings"]["max_new_tokens"] == 4
    canary = out["canary"]
    assert canary["items"] == 40 and [r["candidate"] for r in canary["runs"]] == ["base"]
    assert set(canary["runs"][0]["metrics"]) == {"contains_answer", "exact_match"}


def test_unchanged_rerun_makes_no_model_call(evaluated):
    _, first, second = evaluated
    for a, b in zip(first["runs"], second["runs"], strict=True):
        assert b["cached"] == 24 and b["computed"] == 0 and b["model_calls"] == {}
        assert a["metrics"] == b["metrics"]
    assert second["canary"]["runs"][0]["computed"] == 0
    assert second["comparisons"] == first["comparisons"]


def test_cached_rerun_imports_no_model_library(evaluated):
    root, _, _ = evaluated
    code = (
        "import sys, json\n"
        "from advisor.project import load_project\n"
        "from evaluators.runner import run_eval\n"
        f"r = run_eval(load_project({str(root)!r}), max_items=24)\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'computed': [x['computed'] for x in r['runs']]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"heavy": [], "computed": [0, 0]}


def test_runs_are_stored_with_per_item_scores(evaluated):
    from evaluators.results import stored_results

    root, out, second = evaluated
    project = load_project(root)
    store = Store.for_project(project)
    try:
        run = store.latest_run("eval", name="base:few-shot")
        assert run["status"] == "done"
        res = run["result"]
        assert res["items"] == 24 and len(res["per_item"]) == 24
        row = res["per_item"][0]
        assert set(row) >= {"item", "line", "output", "error", "scores"} and "accuracy" in row["scores"]
        assert row["few_shot"] and all("line" in s for s in row["few_shot"])
        assert sum(r["scores"]["accuracy"] for r in res["per_item"]) / 24 == pytest.approx(
            res["metrics"]["accuracy"]["value"])
        assert store.latest_run("eval", name="base", status="done")["result"]["suite"] == "canary"
    finally:
        store.close()
    # the latest summary for the current data and model, without any model call
    summary = stored_results(load_project(root), max_items=24)
    assert summary is not None and [r["candidate"] for r in summary["runs"]] == ["base:zero-shot", "base:few-shot"]
    assert stored_results(load_project(root)) is None  # all 100 items were never evaluated


def test_table_output(evaluated):
    root, _, _ = evaluated
    r = invoke(root, "--max-items", "24", "--no-progress")
    assert r.exit_code == 0, r.stderr
    for text in ("base:zero-shot", "base:few-shot", "accuracy", "canary", "paired comparisons"):
        assert text in r.stdout


# ------------------------------------------------------------------------------- resume


class Stop(Exception):
    pass


def test_interrupted_eval_resumes_without_recomputing(tiny_project):
    from dataclasses import replace

    from evaluators.options import EvalOptions
    from evaluators.runner import run_eval

    project = load_project(tiny_project)
    opts = EvalOptions(candidates=["base:zero-shot"], max_items=32, batch_size=8, canary=None)

    def stop_after_two(candidate, batches, items):
        if batches == 2:
            raise Stop

    with pytest.raises(Stop):
        run_eval(project, opts, on_batch=stop_after_two)
    store = Store.for_project(project)
    try:
        assert store.latest_run("eval", name="base:zero-shot", status=None)["status"] == "failed"
    finally:
        store.close()
    resumed = run_eval(project, opts)
    (run,) = resumed["runs"]
    assert (run["cached"], run["computed"]) == (16, 16)
    assert run["model_calls"]["items"] == 16 and run["model_calls"]["generate"] == 2
    again = run_eval(project, opts)
    assert again["runs"][0]["computed"] == 0 and again["runs"][0]["model_calls"] == {}
    assert again["runs"][0]["metrics"] == run["metrics"]
    # without the cache everything is answered again (a keyword setting overrides the options)
    fresh = run_eval(project, replace(opts, batch_size=16), use_cache=False)
    assert fresh["runs"][0]["computed"] == 32


def test_eval_options_are_checked_when_made():
    from evaluators.options import EvalOptions, default, help_of

    with pytest.raises(AdviseError, match="an endpoint needs the name of the model it serves"):
        EvalOptions(endpoint="http://127.0.0.1:9/v1")
    with pytest.raises(AdviseError, match="unknown local backend 'onnx'"):
        EvalOptions(local_backend="onnx")
    assert EvalOptions().batch_size == default("batch_size") == 16 and "batch" in help_of("batch_size")


def test_keyboard_interrupt_marks_the_run_interrupted(tiny_project):
    from evaluators.runner import run_eval

    project = load_project(tiny_project)

    def ctrl_c(candidate, batches, items):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(project, candidates=["base:zero-shot"], max_items=16, batch_size=8, canary=None, on_batch=ctrl_c)
    store = Store.for_project(project)
    try:
        assert store.latest_run("eval", name="base:zero-shot", status=None)["status"] == "interrupted"
    finally:
        store.close()
    resumed = run_eval(project, candidates=["base:zero-shot"], max_items=16, batch_size=8, canary=None)
    assert (resumed["runs"][0]["cached"], resumed["runs"][0]["computed"]) == (8, 8)


# ---------------------------------------------------------------------------- tuned candidates


def test_tuned_runs_are_candidates(tmp_path, tiny_model_dir):
    from evaluators.runner import run_eval

    root = copy_project(tmp_path / "ticket", tiny_model_dir)
    arts = tmp_path / "artifacts"
    register_train_run(root, "classifier", make_classifier_artifact(tiny_model_dir, arts / "clf"), tiny_model_dir)
    register_train_run(root, "full", make_full_artifact(tiny_model_dir, arts / "full"), tiny_model_dir)
    register_train_run(root, "lora", make_lora_artifact(tiny_model_dir, arts / "lora-old"), tiny_model_dir)
    newest = register_train_run(root, "lora", make_lora_artifact(tiny_model_dir, arts / "lora"), tiny_model_dir)
    register_train_run(root, "lora", arts / "deleted", tiny_model_dir)  # artifact gone: skipped
    register_train_run(root, "lora", arts / "lora", "someone/other-model")  # another base model: skipped
    out = run_eval(load_project(root), strategies=["zero-shot"], max_items=16)
    names = [r["candidate"] for r in out["runs"]]
    assert names[0] == "base:zero-shot"
    assert set(names[1:]) == {"tuned:lora", "tuned:full", "tuned:classifier"} | {
        n for n in names if n.startswith("tuned:lora@")}
    assert len(names) == 5
    by = {r["candidate"]: r for r in out["runs"]}
    assert by["tuned:lora"]["train_run"] == newest and by["tuned:lora"]["adapter"].endswith("lora")
    assert by["tuned:full"]["model"].endswith("full") and "adapter" not in by["tuned:full"]
    clf = by["tuned:classifier"]
    assert clf["backend"] == "classifier"
    store = Store.for_project(load_project(root))
    try:
        rows = store.latest_run("eval", name="tuned:classifier")["result"]["per_item"]
    finally:
        store.close()
    assert all(r["output"] in LABELS and set(r["label_scores"]) == set(LABELS) for r in rows)
    assert clf["metrics"]["roc_auc"]["value"] is not None  # label scores from the classifier
    assert by["base:zero-shot"]["metrics"]["roc_auc"]["n"] == 0  # a generative model has none
    assert any("no longer exists" in w for w in out["warnings"])
    assert any("not the project's base model" in w for w in out["warnings"])
    pairs = {(c["a"], c["b"]) for c in out["comparisons"]}
    assert {("base:zero-shot", n) for n in names[1:]} <= pairs
    # the forgetting check: base and every generative tuned model, compared to the base
    canary = out["canary"]
    assert {r["candidate"] for r in canary["runs"]} == {"base", "tuned:lora", "tuned:full"} | {
        n for n in names if n.startswith("tuned:lora@")}
    assert all(c["a"] == "base" and "forgetting" in c for c in canary["comparisons"])
    # only tuned candidates, by pattern
    only = run_eval(load_project(root), candidates=["tuned:classifier"], max_items=16, canary=None)
    assert [r["candidate"] for r in only["runs"]] == ["tuned:classifier"] and only["runs"][0]["computed"] == 0
    # a run tuned from a model this project made (DPO from its SFT model, under .advise/) is a candidate
    import shutil

    from evaluators.candidates import tuned_runs

    sft_dir = root / ".advise" / "runs" / "sft-1" / "artifact"
    shutil.copytree(tiny_model_dir, sft_dir)
    register_train_run(root, "dpo", arts / "lora", sft_dir)
    store = Store.for_project(load_project(root))
    try:
        warnings: list[str] = []
        found = {t["stem"]: t for t in tuned_runs(load_project(root), store, warnings)}
    finally:
        store.close()
    assert found["tuned:dpo"]["base_model"] == str(sft_dir)
    # a tuned model alone still gets its forgetting check against the base model (cached canary runs)
    full = run_eval(load_project(root), candidates=["tuned:full"], max_items=16)
    assert [r["candidate"] for r in full["runs"]] == ["tuned:full"]
    assert [r["candidate"] for r in full["canary"]["runs"]] == ["base", "tuned:full"]
    assert all(r["computed"] == 0 for r in full["canary"]["runs"])
    assert [(c["a"], c["b"]) for c in full["canary"]["comparisons"]] == [("base", "tuned:full")]


# ----------------------------------------------------------------------------------- bad input


def test_no_base_model_and_no_endpoint_exits_2(tmp_path):
    root = copy_project(tmp_path / "p", None)
    line = one_line_error(invoke(root, "--json"))
    assert "base_model is required" in line and "project.yaml" in line


def test_missing_model_directory_exits_2(tmp_path):
    root = copy_project(tmp_path / "p", tmp_path / "no-such-model")
    line = one_line_error(invoke(root, "--json", "--canary", "none"))
    assert "no-such-model" in line and "not found" in line
    # a real process with stderr to a pipe (as in CI): the progress display adds nothing, not even a blank line
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", "import sys; from advisor.cli.main import main; sys.exit(main())", "eval",
                          str(root), "--canary", "none"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.splitlines() == [line], res.stderr


def test_hub_model_that_is_not_cached_fails_at_once(tmp_path, monkeypatch):
    """No retries of the hub client (a warning line each, ~50 s here): one line before any model work."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    root = copy_project(tmp_path / "p", "someorg/not-cached-model")
    line = one_line_error(invoke(root, "--json", "--canary", "none"))
    assert line == ("advise: the model 'someorg/not-cached-model' is not in the local Hugging Face cache and "
                    "HF_HUB_OFFLINE is set; download it first or point base_model at a local directory")


def test_model_that_cannot_load_exits_2(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": "big"}')
    (broken / "model.safetensors").write_bytes(b"not weights")
    root = copy_project(tmp_path / "p", broken)
    line = one_line_error(invoke(root, "--json", "--canary", "none"))
    assert "broken-model" in line and "cannot load" in line


def test_bin_only_model_is_refused(tmp_path):
    d = tmp_path / "bin-model"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "pytorch_model.bin").write_bytes(b"x")
    root = copy_project(tmp_path / "p", d)
    line = one_line_error(invoke(root, "--canary", "none"))
    assert "safetensors" in line


def test_unknown_metric_and_candidate_exit_2(tmp_path, tiny_model_dir):
    root = copy_project(tmp_path / "p", tiny_model_dir, metrics=["accuracy", "bleurt"])
    line = one_line_error(invoke(root, "--json"))
    assert "project.yaml" in line and "bleurt" in line
    root2 = copy_project(tmp_path / "q", tiny_model_dir)
    line = one_line_error(invoke(root2, "--candidate", "tuned:*"))
    assert "no candidate named" in line and "base:zero-shot" in line
    line = one_line_error(invoke(root2, "--strategy", "rag"))
    assert "docs" in line


def test_invalid_eval_records_are_named_not_dropped_silently(tmp_path, tiny_model_dir):
    root = copy_project(tmp_path / "p", tiny_model_dir)
    f = root / "data" / "eval.jsonl"
    lines = f.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["messages"] = [m for m in rec["messages"] if m["role"] != "assistant"]
    lines[2] = json.dumps(rec)
    lines[5] = '{"messages": [{"role": "user", "content": "x"}'
    f.write_text("\n".join(lines) + "\n")
    r = invoke(root, "--json", "--canary", "none", "--candidate", "base:zero-shot", "--strategy", "zero-shot",
               "--max-items", "4")
    assert r.exit_code == 0, r.stderr
    note = (f"2 invalid eval record(s) skipped, not evaluated: {f}:3: no assistant message to learn from; "
            f"{f}:6: the line is not valid JSON (advise assess lists them all)")
    assert json.loads(r.stdout)["warnings"] == [note]
    assert f"advise: warning: {note}" in r.stderr


def test_duplicate_eval_records_are_scored_once_and_named(tmp_path, tiny_model_dir):
    root = copy_project(tmp_path / "p", tiny_model_dir)
    f = root / "data" / "eval.jsonl"
    lines = f.read_text().splitlines()
    lines[3] = lines[0]
    f.write_text("\n".join(lines) + "\n")
    r = invoke(root, "--json", "--canary", "none", "--candidate", "base:zero-shot", "--strategy", "zero-shot",
               "--max-items", "5")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["items"] == 4
    assert out["warnings"] == [f"1 exact duplicate eval record(s) scored once, not twice: {f}:4 repeat earlier records"]


def test_metrics_override_and_missing_canary_file(tmp_path, tiny_model_dir):
    from evaluators.runner import run_eval

    root = copy_project(tmp_path / "p", tiny_model_dir, metrics=["exact_match", "token_f1", "rouge_l"])
    out = run_eval(load_project(root), candidates=["base:zero-shot"], max_items=8, canary=None)
    assert list(out["runs"][0]["metrics"]) == ["exact_match", "token_f1", "rouge_l"]
    assert out["primary_metric"] == "exact_match"
    line = one_line_error(invoke(root, "--canary", str(tmp_path / "nope.jsonl")))
    assert "canary file not found" in line
    judged = copy_project(tmp_path / "j", tiny_model_dir, metrics=["accuracy", "judge_score"])
    line = one_line_error(invoke(judged, "--canary", "none"))
    assert "--judge-model" in line and "project.yaml" in line
    schema = copy_project(tmp_path / "s", tiny_model_dir, metrics=["json_schema"])
    line = one_line_error(invoke(schema, "--canary", "none"))
    assert "project.yaml: eval.metrics: json_schema checks each reply against the JSON schema of its item, and " \
           "100 of 100 eval items have none" in line


# ------------------------------------------------------------------------------ backend, strategies


def test_batched_generation_matches_one_at_a_time_and_sampling_is_seeded(tiny_model_dir):
    from evaluators.backends.base import GenerationSettings
    from evaluators.backends.transformers import TransformersBackend

    b = TransformersBackend(tiny_model_dir, batch_size=8)
    prompts = [[{"role": "system", "content": "Route it."}, {"role": "user", "content": text}] for text in (
        "my card has not arrived", "what is the exchange rate for euros today please", "top up failed",
        "why was I charged for a cash withdrawal at the machine near my house", "card stolen", "hi")]
    greedy = GenerationSettings(max_new_tokens=6)
    batched = b.generate(prompts, greedy)
    single = [b.generate([p], greedy)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.error is None and g.n_tokens <= 6 for g in batched)
    assert b.calls["generate"] == 1 + len(prompts)
    hot = GenerationSettings(max_new_tokens=6, temperature=1.5, seed=7)
    s1, s2 = b.generate(prompts, hot), b.generate(prompts, hot)
    assert [g.text for g in s1] == [g.text for g in s2]
    other = b.generate(prompts, GenerationSettings(max_new_tokens=6, temperature=1.5, seed=8))
    assert [g.text for g in other] != [g.text for g in s1]


def test_reference_loglik_matches_a_manual_forward_pass(tiny_model_dir):
    import torch

    from evaluators.backends.transformers import TransformersBackend

    b = TransformersBackend(tiny_model_dir, batch_size=4)
    prompts = [[{"role": "user", "content": "where is my card"}], [{"role": "user", "content": "rate?"}]]
    targets = ["card_arrival", "exchange_rate"]
    got = b.loglik(prompts, targets)
    for (mean, n), p, t in zip(got, prompts, targets, strict=True):
        pids = b.encode_prompt(p)
        tids = b.tokenizer(t, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([pids + tids])
        with torch.no_grad():
            logp = torch.log_softmax(b.model(input_ids=ids).logits[0], -1)
        manual = sum(float(logp[len(pids) - 1 + j, tok]) for j, tok in enumerate(tids)) / len(tids)
        assert n == len(tids) and mean == pytest.approx(manual, abs=1e-4) and mean < 0


def test_rag_retrieves_and_keeps_citations(tmp_path, tiny_model_dir):
    from evaluators.runner import run_eval
    from evaluators.strategies import citations

    root = copy_project(tmp_path / "p", tiny_model_dir)
    docs = root / "docs"
    docs.mkdir()
    (docs / "cards.md").write_text("Cards arrive within five working days after you order them. " * 8)
    (docs / "rates.md").write_text("The exchange rate is set daily by the bank at noon. " * 8)
    (docs / "topup.txt").write_text("A top-up fails when the card issuer declines the payment. " * 8)
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["data"]["docs"] = "docs/"
    cfg["eval"]["rag_top_k"] = 2
    (root / "project.yaml").write_text(yaml.safe_dump(cfg))
    project = load_project(root)
    out = run_eval(project, candidates=["base:rag"], max_items=8, canary=None, retriever="bm25")
    assert [r["candidate"] for r in out["runs"]] == ["base:rag"]
    store = Store.for_project(project)
    try:
        rows = store.latest_run("eval", name="base:rag")["result"]["per_item"]
    finally:
        store.close()
    # BM25 returns passages sharing a word with the question, at most rag_top_k of them
    assert all(len(r["retrieved"]) <= 2 and all("#" in x["ref"] for x in r["retrieved"]) for r in rows)
    assert any(len(r["retrieved"]) == 2 for r in rows)
    assert all("cited" in r for r in rows)
    # dense retrieval (sentence-transformers): another retriever is another candidate fingerprint
    emb = run_eval(project, candidates=["base:rag"], max_items=8, canary=None)
    assert emb["runs"][0]["computed"] == 8
    store = Store.for_project(project)
    try:
        rows = store.latest_run("eval", name="base:rag")["result"]["per_item"]
    finally:
        store.close()
    assert all(len(r["retrieved"]) == 2 for r in rows)
    lines = {r["line"]: r for r in rows}
    eval_lines = (root / "data" / "eval.jsonl").read_text().splitlines()
    for line, row in lines.items():
        text = json.loads(eval_lines[line - 1])["messages"][1]["content"].lower()
        if "exchange rate" in text:
            assert row["retrieved"][0]["ref"] == "rates.md#0"
    assert citations("As [rates.md#0] says, and [cards.md#3] and [made-up.md#1]. [rates.md#0]",
                     ["rates.md#0", "cards.md#3"]) == ["rates.md#0", "cards.md#3", "?made-up.md#1"]


def test_few_shot_picks_similar_examples_and_never_the_item_itself():
    from advisor.data.records import Record
    from evaluators.strategies import FewShot

    def rec(i, text, label):
        return Record(i, "chat", [{"role": "system", "content": "Route."}, {"role": "user", "content": text}],
                      label, text)

    pool = [rec(1, "my card has not arrived yet", "card_arrival"), rec(2, "what is the euro exchange rate", "exchange_rate"),
            rec(3, "my top up failed again", "top_up_failed"), rec(4, "card stolen at the station", "lost_or_stolen_card")]
    fs = FewShot(pool, k=2, retriever="bm25")
    (p,) = fs.build_all([rec(9, "my card has not arrived yet", "card_arrival")])
    lines = [s["line"] for s in p.meta["few_shot"]]
    assert 1 not in lines and len(lines) == 2  # the duplicate of the item is left out
    msgs = p.messages
    assert msgs[0] == {"role": "system", "content": "Route."} and msgs[-1]["content"] == "my card has not arrived yet"
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user", "assistant", "user"]


def test_task_kind_detection():
    from advisor.data.records import Record
    from evaluators.task import detect_task_kind

    def recs(outputs):
        return [Record(i, "chat", [{"role": "user", "content": f"q{i}"}], o, f"q{i}") for i, o in enumerate(outputs)]

    assert detect_task_kind(recs(["billing", "refund", "billing", "other"] * 10)) == "classification"
    assert detect_task_kind(recs([f'{{"a": {i}}}' for i in range(20)])) == "extraction_json"
    assert detect_task_kind(recs([f"Paris {i}" for i in range(20)])) == "qa"
    assert detect_task_kind(recs([f"A long free text answer number {i} with many words in it." for i in range(20)])) \
        == "generation"


def test_strategy_and_backend_errors_are_one_line(monkeypatch):
    from huggingface_hub import constants

    from evaluators.backends.transformers import TransformersBackend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no hub retries in the test
    from evaluators.strategies import make_strategy

    with pytest.raises(AdviseError, match="rag strategy needs documents"):
        make_strategy("rag")
    with pytest.raises(AdviseError, match="unknown strategy"):
        make_strategy("chain-of-thought")
    with pytest.raises(AdviseError, match="model directory not found"):
        TransformersBackend("./no/such/dir")
    with pytest.raises(AdviseError, match="the model 'nobody-xyz/nothing-here' is not in the local Hugging Face cache"):
        TransformersBackend("nobody-xyz/nothing-here")


def test_fingerprint_changes_with_weights_not_with_location(tmp_path, tiny_model_dir):
    import shutil

    from advisor.hf import model_fingerprint

    a = model_fingerprint(tiny_model_dir)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    b = model_fingerprint(copy)
    assert a["files"] == b["files"]
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # same size, other weights
    weights.write_bytes(bytes(data))
    assert model_fingerprint(copy)["files"] != a["files"]
    assert "dir" not in a  # identity is the content: a moved project keeps its cache
