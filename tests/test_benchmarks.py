"""Standard benchmarks (lm-evaluation-harness) as a forgetting check: a local lm-eval YAML task run on the
base model and on tuned models through `advise eval`, stored, shown, cached and gated."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import eval_fixtures as fx
import pytest
import yaml

pytest.importorskip("lm_eval")

from train_fixtures import ADVISE

tiny_model_dir = fx.tiny_model_dir

QUESTIONS = [
    ("What is two plus two?", ["three", "four", "five"]),
    ("What colour is the sky on a clear day?", ["blue", "green", "red"]),
    ("How many days are in a week?", ["five", "seven", "ten"]),
    ("Which animal barks?", ["a cat", "a dog", "a fish"]),
    ("What do bees make?", ["honey", "milk", "silk"]),
    ("Which is the largest?", ["a mouse", "an elephant", "an ant"]),
    ("What is frozen water called?", ["steam", "ice", "sand"]),
    ("Which month follows May?", ["April", "June", "July"]),
    ("What do you read?", ["a book", "a spoon", "a shoe"]),
    ("Where do fish live?", ["in water", "in trees", "in the sky"]),
]
TASK_YAML = """task: local_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: benchmarks/local_mc.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nAnswer:"
doc_to_choice: ["A", "B", "C"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def _write_task(project: Path, answers: list[int] | None = None) -> None:
    d = project / "benchmarks"
    d.mkdir(exist_ok=True)
    (d / "local_mc.yaml").write_text(TASK_YAML, encoding="utf-8")
    rows = [{"question": q, "choices": c, "answer": (answers[i] if answers else 0)}
            for i, (q, c) in enumerate(QUESTIONS * 4)]
    (d / "local_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _set_eval(project: Path, **keys) -> None:
    cfg = yaml.safe_load((project / "project.yaml").read_text(encoding="utf-8"))
    cfg.setdefault("eval", {}).update(keys)
    (project / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def _broken_model(base: Path, out: Path) -> Path:
    """A "tuned" model whose weights were wrecked: it has forgotten whatever the base model preferred."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def _register_full_run(project: Path, artifact: Path, base: Path) -> None:
    """A finished full fine-tuning run as the trainer records it (what the report's training section reads)."""
    from advisor.project import load_project
    from advisor.store import Store

    with Store.for_project(load_project(project)) as store:
        rid = store.start_run("train", name="full", config={"base_model": str(base)})
        store.finish_run(rid, "done", {"artifact": str(artifact), "method": "full", "base_model": str(base),
                                       "run_id": rid, "train_tokens": 1000, "wall_seconds": 1.0,
                                       "peak_memory_mb": None, "tokens_per_second": 1000.0, "final_loss": 1.0,
                                       "config": {"learning_rate": 1e-4}})


def _base_preferences(project: Path, base: Path) -> list[int]:
    """The choice the base model ranks first on each document, read from lm-eval's own per-sample output."""
    import os

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    cwd = os.getcwd()
    os.chdir(project)
    try:
        res = lm_eval.simple_evaluate(model=HFLM(pretrained=str(base), device="cpu", batch_size=8), tasks=["local_mc"],
                                      task_manager=TaskManager(include_path=str(project / "benchmarks")),
                                      log_samples=True, bootstrap_iters=0)
    finally:
        os.chdir(cwd)
    prefs = {}
    for s in res["samples"]["local_mc"]:
        lls = [r[0] for r in s["filtered_resps"]]
        prefs[s["doc_id"]] = max(range(len(lls)), key=lambda k: lls[k])
    return [prefs[i] for i in range(len(prefs))]


def test_benchmarks_on_base_and_tuned_models_stored_shown_cached_and_gated(tmp_path, tiny_model_dir):
    from train_fixtures import cli

    from advisor.project import load_project
    from advisor.store import Store

    project = fx.copy_project(tmp_path / "ticket", tiny_model_dir)
    _write_task(project)
    # the task's answers are what the base model prefers: the base scores 1.0 by construction (the choices
    # are single letters, so no choice is favoured for being shorter)
    _write_task(project, _base_preferences(project, tiny_model_dir))
    _register_full_run(project, _broken_model(tiny_model_dir, tmp_path / "broken"), tiny_model_dir)
    _set_eval(project, max_items=8, benchmarks={"tasks": ["local_mc"], "include_path": "benchmarks"},
              gates={"benchmarks.local_mc": {"max_drop": 0.02}})

    # a real process, so that what lm-eval (and the git it calls) writes to file descriptor 2 is seen
    res = subprocess.run([*ADVISE, "eval", str(project), "--json", "--canary", "none", "--candidate", "base:zero-shot",
                          "--candidate", "tuned:full"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    block = out["benchmarks"]
    runs = {r["candidate"]: r for r in block["runs"]}
    assert set(runs) == {"base", "tuned:full"}
    assert runs["base"]["metric"] == "acc" and runs["base"]["n"] == 40
    assert runs["base"]["value"] == 1.0
    assert runs["tuned:full"]["value"] < 0.7
    # our numbers come from lm-eval's per-document scores: they match its own aggregate
    with Store.for_project(load_project(project)) as store:
        for r in block["runs"]:
            stored = store.get_run(r["run_id"])["result"]
            assert stored["reported"]["local_mc"]["acc,none"] == pytest.approx(r["value"])
            assert len(stored["tasks"]["local_mc"]["per_item"]) == 40
    (comp,) = block["comparisons"]
    assert comp["a"] == "base" and comp["b"] == "tuned:full" and comp["n"] == 40
    assert comp["test"] == "mcnemar_exact" and comp["delta"] == pytest.approx(runs["tuned:full"]["value"] - 1.0)
    assert comp["p_value"] < 0.001 and comp["forgetting"] is True
    # lm-eval's bars, logging and git's "fatal: not a git repository" stay out of sight; our line shows
    assert "fatal:" not in res.stderr and "it/s" not in res.stderr and "%|" not in res.stderr, res.stderr
    assert "benchmarks local_mc on tuned:full (lm-eval)" in res.stderr

    # the gate: the tuned model is significantly worse than the allowed drop
    gate = cli("gate", project, "--candidate", "tuned:full", "--json")
    assert gate.exit_code == 1, gate.output
    g = json.loads(gate.stdout)
    (r,) = [x for x in g["gates"] if x["kind"] == "benchmark"]
    assert r["status"] == "fail" and r["n"] == 40 and r["observed"] == pytest.approx(comp["delta"], abs=1e-4)

    # a re-run computes nothing new: the benchmark runs come from the store
    with Store.for_project(load_project(project)) as store:
        before = len(store.find_runs("benchmark", limit=100))
    res2 = cli("eval", project, "--canary", "none", "--candidate", "base:zero-shot", "--candidate", "tuned:full",
               "--no-progress")
    assert res2.exit_code == 0, res2.output
    assert "standard benchmarks" in res2.stdout and "FORGETTING" in res2.stdout
    with Store.for_project(load_project(project)) as store:
        assert len(store.find_runs("benchmark", limit=100)) == before

    # the report shows them beside the canary
    rep = cli("report", project)
    assert rep.exit_code == 0, rep.output
    html = (project / ".advise" / "report.html").read_text(encoding="utf-8")
    assert "standard benchmarks, lm-eval" in html and "local_mc" in html and "forgetting" in html


def test_benchmark_errors_name_their_cause(tmp_path, tiny_model_dir):
    from train_fixtures import cli

    project = fx.copy_project(tmp_path / "ticket", tiny_model_dir)
    _write_task(project)
    fx.register_train_run(project, "full", fx.make_full_artifact(tiny_model_dir, tmp_path / "full"), tiny_model_dir)
    _set_eval(project, max_items=4, benchmarks={"tasks": ["no_such_task_xyz"], "include_path": "benchmarks"})
    res = cli("eval", project, "--canary", "none", "--candidate", "tuned:full", "--no-progress")
    assert res.exit_code == 2
    assert "unknown lm-eval task 'no_such_task_xyz'" in res.stderr and "project.yaml" in res.stderr

    _set_eval(project, benchmarks={"tasks": ["local_mc"], "include_path": "no_dir"})
    res = cli("eval", project, "--canary", "none", "--candidate", "tuned:full", "--no-progress")
    assert res.exit_code == 2 and "include_path" in res.stderr

    # no tuned model: nothing to compare, said, not an error; --benchmarks none runs none
    _set_eval(project, benchmarks={"tasks": ["local_mc"], "include_path": "benchmarks"})
    shutil.rmtree(tmp_path / "full")
    res = cli("eval", project, "--json", "--canary", "none", "--candidate", "base:zero-shot", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "no local tuned model" in json.loads(res.stdout)["benchmarks"]["skipped"]
    res = cli("eval", project, "--json", "--canary", "none", "--benchmarks", "none", "--candidate", "base:zero-shot")
    assert json.loads(res.stdout)["benchmarks"] is None

    # a gate on a benchmark the eval did not run says so
    _set_eval(project, benchmarks=None, gates={"benchmarks.local_mc": {"max_drop": "x"}})
    res = cli("gate", project)
    assert res.exit_code == 2 and "benchmarks.local_mc.max_drop" in res.stderr
