"""advise probe: the dev split, the learning curve, the measured verdict, and the command end to end on
the ticket demo with a tiny local model (resumable after kill -9)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest
import train_fixtures as fx

from advisor.data.records import Record
from advisor.probe.curve import fit_curve
from advisor.probe.split import dev_split, nested_fractions
from advisor.probe.verdict import measured_verdict

train_tiny_model = fx.train_tiny_model
PROBE_TRAIN = {"max_steps": 24, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64, "seed": 7}


def rec(i: int, group: str | None = None) -> Record:
    return Record(line=i + 1, fmt="chat", prompt=[{"role": "user", "content": f"q{i}"}], output=f"a{i}",
                  key=f"q{i}", extra={"doc_id": group} if group else None)


def test_dev_split_is_seeded_and_keeps_groups_together():
    records = [rec(i, f"doc{i // 4}") for i in range(200)]  # 4 records per document
    a = dev_split(records, size=40, seed=3)
    b = dev_split(records, size=40, seed=3)
    assert [r.line for r in a.dev] == [r.line for r in b.dev]
    assert a.group_field == "doc_id" and a.groups == 50
    dev_docs = {r.extra["doc_id"] for r in a.dev}
    assert not dev_docs & {r.extra["doc_id"] for r in a.train}  # no document on both sides
    assert 36 <= len(a.dev) <= 60 and len(a.dev) + len(a.train) == 200
    assert [r.line for r in dev_split(records, size=40, seed=4).dev] != [r.line for r in a.dev]
    plain = dev_split([rec(i) for i in range(100)], size=20, seed=0)
    assert plain.group_field is None and len(plain.dev) == 20


def test_nested_fractions_are_nested_and_never_collapse():
    records = [rec(i) for i in range(300)]
    subsets = nested_fractions(records, [0.025, 0.05, 0.1], seed=0, min_examples=32)
    sizes = [len(s) for _, s in subsets]
    assert sizes == [32, 64, 128]  # raised to the minimum, then doubled: three arms, a curve
    for (_, small), (_, big) in zip(subsets, subsets[1:], strict=False):
        assert {r.line for r in small} <= {r.line for r in big}
    big = nested_fractions([rec(i) for i in range(4000)], [0.025, 0.05, 0.1], seed=0, min_examples=32)
    assert [len(s) for _, s in big] == [100, 200, 400]


def _bernoulli(p: float, n: int, rng) -> list[float]:
    return list((rng.random(n) < p).astype(float))


def test_the_curve_recovers_a_known_power_law_and_says_inconclusive_without_a_trend():
    rng = np.random.default_rng(0)
    law = lambda n: 0.9 - 2.0 * n ** -0.5  # noqa: E731
    sizes = [50, 100, 200, 400]
    # the same items for every arm: a latent difficulty per item, thresholded per arm (paired scores)
    u = rng.random(600)
    per_item = [list((u < law(n)).astype(float)) for n in sizes]
    fit = fit_curve(sizes, per_item, 1600, multiples=[1.0, 4.0], resamples=200)
    assert fit.status == "fitted", fit.why
    pred = fit.predictions["1x"]
    assert pred["ci"][0] <= law(1600) <= pred["ci"][1] + 0.02, (pred, law(1600))
    assert fit.trend == "more data would help"
    flat = [_bernoulli(0.5, 80, rng) for _ in sizes]
    assert fit_curve(sizes, flat, 1600, resamples=200).status == "inconclusive"
    assert fit_curve(sizes[:2], per_item[:2], 1600).why.startswith("2 fine-tuning fraction(s)")


def _arm(name, kind, scores, **kw):
    return {"name": name, "kind": kind, "value": float(np.mean(scores)), "ci": [0.0, 1.0], "n": len(scores),
            "per_item": {f"i{j}": s for j, s in enumerate(scores)}, "higher_is_better": True, **kw}


def test_measured_verdict_names_the_winner_with_a_paired_interval_and_disagreement():
    rng = np.random.default_rng(1)
    weak, strong = _bernoulli(0.2, 100, rng), _bernoulli(0.9, 100, rng)
    arms = [_arm("zero-shot", "prompting", weak), _arm("rag", "rag", strong)]
    v = measured_verdict(arms, None, None, {"method": "lora", "reasons": ["300 labelled examples"]})
    assert v["method"] == "rag" and v["status"] == "decided" and v["margin"]["ci"][0] > 0
    assert not v["agrees_with_rules"] and "the rules chose lora" in v["disagreement"]
    close = [_arm("zero-shot", "prompting", weak), _arm("few-shot k=1", "prompting", weak[:99] + [1.0]),
             _arm("rag", "rag", weak[1:] + [0.0])]
    v = measured_verdict(close, None, None, {"method": "prompting"})
    assert v["status"] == "inconclusive" and "cannot separate" in v["why"]
    assert v["min_detectable_difference"] and v["min_detectable_difference"] > 0.05


def _runs(store_path) -> list[tuple[str, str]]:
    db = sqlite3.connect(store_path)
    try:
        return db.execute("SELECT kind, status FROM runs").fetchall()
    finally:
        db.close()


def _probe_args(project):
    return ["probe", str(project), "--max-items", "20", "--shots", "0,1", "--fractions", "0.1,0.2,0.4",
            "--seed", "1"]


def test_probe_runs_every_arm_through_eval_and_train_and_a_rerun_recomputes_nothing(tmp_path, train_tiny_model):
    project = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, PROBE_TRAIN)
    res = fx.cli(*_probe_args(project), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    names = [a["name"] for a in out["arms"]]
    assert names[:3] == ["zero-shot", "few-shot k=1", "knowledge (closed book)"]
    ft = [a for a in out["arms"] if a["kind"] == "fine-tuning"]
    # 10%, 20%, 40% of the 376 records left beside the dev split (each at least twice the one before)
    assert [a["train_examples"] for a in ft] == [38, 76, 152] and [a["steps"] for a in ft] == [3, 5, 10]
    assert out["dev"]["dev_items"] == 20 and out["dev"]["train_items"] == 396 - 20
    assert out["curve"]["status"] in ("fitted", "inconclusive")
    assert out["compute"]["full_run_steps"] == 24 and out["compute"]["share"] > 0
    assert out["verdict"]["rule_method"] == "lora"
    assert out["knowledge"]["items"] > 0
    # the dev split is carved from train: no eval item is among the probe's items
    ev = {json.loads(x)["messages"][1]["content"] for x in (project / "data" / "eval.jsonl").read_text().splitlines()}
    probe_dir = next((project / ".advise" / "probe").iterdir())
    dev = {json.loads(x)["messages"][-2]["content"] for x in (probe_dir / "prompt" / "data" / "dev.jsonl").read_text().splitlines()}
    assert not dev & ev
    # every arm went through the eval and train code: their runs are in the arms' own stores
    arm_runs = {d.name: _runs(d / ".advise" / "store.sqlite") for d in probe_dir.iterdir() if (d / ".advise").is_dir()}
    assert ("train", "done") in arm_runs["ft-38"] and ("eval", "done") in arm_runs["ft-38"]
    before = {k: len(v) for k, v in arm_runs.items()}
    again = fx.cli(*_probe_args(project))
    assert again.exit_code == 0, again.output
    assert again.stderr.count("done earlier") == len(out["arms"])
    after = {d.name: len(_runs(d / ".advise" / "store.sqlite")) for d in probe_dir.iterdir() if (d / ".advise").is_dir()}
    assert after == before  # nothing evaluated or trained again
    assert "Measured verdict:" in again.stdout and "Rule-based verdict: lora" in again.stdout
    assert ("probe", "done") in _runs(project / ".advise" / "store.sqlite")
    # the report shows the probe beside the rule-based verdict
    rep = fx.cli("report", project)
    assert rep.exit_code == 0, rep.output
    html = (project / ".advise" / "report.html").read_text(encoding="utf-8")
    assert "Probe: the choice measured on a dev split" in html and "Rule-based verdict: lora" in html
    assert "lora on 152 examples" in html and "20 dev items carved from train" in html


@pytest.mark.slow
def test_probe_resumes_after_kill_9_without_recomputing_finished_arms(tmp_path, train_tiny_model):
    project = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, PROBE_TRAIN)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*fx.ADVISE, *_probe_args(project)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = None
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            states = list((project / ".advise" / "probe").glob("*/state.json")) if (project / ".advise").exists() else []
            if states:
                try:
                    arms = json.loads(states[0].read_text())["arms"]
                except (OSError, ValueError):
                    arms = {}
                if len(arms) >= 3:  # the prompting and knowledge arms are done; training is next
                    os.kill(proc.pid, signal.SIGKILL)
                    state = arms
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert state is not None, "the probe finished or stalled before it could be killed"
    res = fx.cli(*_probe_args(project))
    assert res.exit_code == 0, res.output
    for name in state:
        assert f"probe: {name}: done earlier" in res.stderr
    assert "probe: lora on 152 examples:" in res.stderr


def _demo(tmp_path):
    import shutil

    from click.testing import CliRunner
    from conftest import SAMPLES

    from advisor.cli.main import main

    root = tmp_path / "ticket-routing-tiny"
    shutil.copytree(SAMPLES / "ticket-routing-tiny", root, ignore=shutil.ignore_patterns(".advise"))
    r = CliRunner().invoke(main, ["models", "tiny", str(root / ".advise" / "models" / "tiny")])
    assert r.exit_code == 0, r.output
    return root


@pytest.mark.slow
def test_probe_on_the_ticket_demo_measures_lora_as_the_winner(tmp_path):
    """The README's demo project with its pretrained tiny model: the fine-tuning arms' curve rises and the
    measured verdict is LoRA, beside the rule-based LoRA."""
    root = _demo(tmp_path)
    res = fx.cli("probe", root, "--json", "--fractions", "0.125,0.25,0.5")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    ft = [a for a in out["arms"] if a["kind"] == "fine-tuning"]
    assert len(ft) == 3 and ft[-1]["value"] > ft[0]["value"], [(a["train_examples"], a["value"]) for a in ft]
    assert out["verdict"]["method"] == "lora", out["verdict"]
    assert out["verdict"]["agrees_with_rules"]
    best_prompt = max(a["value"] for a in out["arms"] if a["kind"] == "prompting")
    assert ft[-1]["value"] > best_prompt


@pytest.mark.slow
def test_the_extrapolation_is_checked_against_a_full_run(tmp_path):
    """Fit on fractions up to 1/2, then train on all the data and evaluate on the same dev split: the
    measured score is compared with the predicted interval (BENCHMARKS.md reports the outcome)."""
    root = _demo(tmp_path)
    res = fx.cli("probe", root, "--json", "--fractions", "0.125,0.25,0.5", "--shots", "0", "--seed", "0")
    assert res.exit_code == 0, res.output
    assert res.stdout.lstrip().startswith("{"), res.stdout[:500]  # stdout carries the JSON only
    out = json.loads(res.stdout)
    probe_dir = root / ".advise" / "probe" / out["key"]
    full = probe_dir / "full"
    import shutil

    shutil.copytree(probe_dir / "prompt", full, ignore=shutil.ignore_patterns(".advise"))
    # train on every training record the probe's arms drew from (dev excluded) for the full step budget
    r = fx.cli("train", full, "--method", out["plugin"], "--max-steps", str(out["compute"]["full_run_steps"]))
    assert r.exit_code == 0, r.output
    r = fx.cli("eval", full, "--json", "--candidate", "tuned:*", "--canary", "none")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    measured = ev["runs"][0]["metrics"][out["metric"]]["value"]
    pred = out["curve"]["predictions"]["1x"]
    record = {"measured_full": measured, "predicted": pred, "curve": out["curve"]["status"],
              "inside": bool(pred["ci"] and pred["ci"][0] <= measured <= pred["ci"][1])}
    (tmp_path / "extrapolation.json").write_text(json.dumps(record))
    print("EXTRAPOLATION", json.dumps(record))
    assert out["curve"]["status"] in ("fitted", "inconclusive")
    assert 0.0 <= measured <= 1.0


def test_a_project_whose_docs_hold_the_answers_exercises_the_rag_and_oracle_arms(tmp_path, train_tiny_model):
    """policy-faq-rag: FAQ answers quoted from docs/. The oracle context finds the passage holding each
    answer; RAG and oracle are measured on the same dev items, and the reading says which fails."""
    project = fx.copy_project("policy-faq-rag", tmp_path / "faq", train_tiny_model, {"max_steps": 2})
    res = fx.cli("probe", project, "--json", "--shots", "0", "--no-fine-tune", "--max-items", "20")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    arms = {a["name"]: a for a in out["arms"]}
    assert {"zero-shot", "rag", "oracle context"} <= set(arms)
    assert arms["rag"]["kind"] == "rag" and arms["oracle context"]["kind"] == "oracle"
    found = int(arms["oracle context"]["note"].split("found for ")[1].split(" of ")[0])
    assert found >= 15, arms["oracle context"]["note"]  # the answers are quoted from the FAQ
    assert out["rag"] is not None and out["rag"]["reading"]
    assert out["verdict"]["rule_method"] == "rag"
    assert not [a for a in out["arms"] if a["kind"] == "fine-tuning"]


def test_assess_probe_extends_the_contract_only(tmp_path, train_tiny_model):
    """`advise assess --probe --json` adds a "probe" key; every other key is what `assess --json` prints.
    The probe's defaults come from the project's rubrics/probe.yaml override here (one shot, one arm)."""
    project = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, PROBE_TRAIN)
    (project / "rubrics").mkdir()
    (project / "rubrics" / "probe.yaml").write_text("defaults:\n  shots: [0]\n  fractions: [0.1]\n  dev_max: 20\n")
    plain = json.loads(fx.cli("assess", project, "--json", "--no-embeddings").stdout)
    res = fx.cli("assess", project, "--json", "--no-embeddings", "--probe")
    assert res.exit_code == 0, res.output
    probed = json.loads(res.stdout)
    assert set(probed) == set(plain) | {"probe"}
    for k in plain:
        if k not in ("seconds",):
            assert probed[k] == plain[k], k
    assert [a["name"] for a in probed["probe"]["arms"]][:1] == ["zero-shot"]
    assert probed["probe"]["dev"]["dev_items"] == 20


def test_run_probe_trains_the_measured_winner_only_when_the_probe_decides():
    from advisor.cli.run import _measured_method

    assert _measured_method({"plugin": "lora", "verdict": {"status": "decided", "method": "lora"}}) == "lora"
    assert _measured_method({"plugin": "dpo", "verdict": {"status": "decided", "method": "rlhf"}}) == "dpo"
    assert _measured_method({"plugin": "lora", "verdict": {"status": "decided", "method": "rag"}}) == "rag"
    assert _measured_method({"plugin": "lora", "verdict": {"status": "inconclusive", "method": "lora"}}) is None
