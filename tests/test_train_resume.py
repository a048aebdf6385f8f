"""``advise train --resume`` continues an interrupted run from its last checkpoint and ends where an
uninterrupted run ends (same loss history, same adapter weights, within float tolerance)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import train_fixtures as fx

train_tiny_model = fx.train_tiny_model

TRAIN = {"max_steps": 9, "checkpoint_every": 3, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64,
         "seed": 11, "lora_dropout": 0.1}  # dropout: the RNG state must be restored too


def _same_result(a: dict, b: dict) -> None:
    assert a["steps"] == b["steps"]
    la, lb = fx.losses(a), fx.losses(b)
    assert len(la) == len(lb) == a["steps"]
    assert la == pytest.approx(lb, rel=1e-4, abs=1e-5)
    assert a["train_tokens"] == b["train_tokens"]
    ta, tb = fx.adapter_tensors(a["artifact"]), fx.adapter_tensors(b["artifact"])
    assert set(ta) == set(tb)
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=1e-4, atol=1e-5, msg=k)


class _Interrupt:
    def __init__(self, at: int):
        self.at = at

    def __call__(self, ev):
        if ev.step == self.at:
            raise KeyboardInterrupt


def test_resume_after_interrupt_matches_an_uninterrupted_run(tmp_path, train_tiny_model):
    from advisor.project import load_project
    from advisor.store import Store
    from trainers.runner import execute, plan_new, plan_resume

    ref = fx.train(fx.copy_project("ticket-routing-tiny", tmp_path / "ref", train_tiny_model, TRAIN), "lora")

    p = fx.copy_project("ticket-routing-tiny", tmp_path / "cut", train_tiny_model, TRAIN)
    plan = plan_new(p, method="lora")
    with pytest.raises(KeyboardInterrupt):
        execute(plan, progress=_Interrupt(7), command="first")
    store = Store.for_project(load_project(p))
    assert store.get_run(plan.run_id)["status"] == "interrupted"
    store.close()
    ckpts = sorted(x.name for x in (plan.run_dir / "checkpoints").iterdir() if x.name.startswith("checkpoint-"))
    assert ckpts == ["checkpoint-3", "checkpoint-6"]
    assert not (plan.run_dir / "artifact").exists()

    again = plan_resume(p)  # the latest unfinished run
    assert again.run_id == plan.run_id and again.resume
    resumed = execute(again, command="second")
    assert resumed["run_id"] == plan.run_id and resumed["resumed_from_step"] == 6
    _same_result(resumed, ref)
    store = Store.for_project(load_project(p))
    run = store.get_run(plan.run_id)
    store.close()
    assert run["status"] == "done" and run["command"] == "second"


def test_resumed_speed_counts_only_this_sessions_tokens(tmp_path, train_tiny_model):
    """Resumed from checkpoint-3, which is rotated away (2 kept) by the end: the session trained 6 of 9 steps."""
    from trainers.runner import execute, plan_new, plan_resume

    p = fx.copy_project("ticket-routing-tiny", tmp_path / "cut", train_tiny_model, TRAIN)
    plan = plan_new(p, method="lora")
    with pytest.raises(KeyboardInterrupt):
        execute(plan, progress=_Interrupt(4), command="first")
    resumed = execute(plan_resume(p), command="second")
    assert resumed["resumed_from_step"] == 3 and not (plan.run_dir / "checkpoints" / "checkpoint-3").exists()
    share = resumed["session_tokens"] / resumed["train_tokens"]
    assert 0.5 < share < 0.8, share  # about 6/9 (batches differ in length)
    assert resumed["tokens_per_second"] == pytest.approx(resumed["session_tokens"] / resumed["wall_seconds"], rel=0.01)


def test_resume_refuses_what_it_cannot_continue(tmp_path, train_tiny_model):
    from advisor.errors import AdviseError
    from trainers.runner import execute, plan_new, plan_resume

    p = fx.copy_project("ticket-routing-tiny", tmp_path / "p", train_tiny_model, {**TRAIN, "max_steps": 3})
    with pytest.raises(AdviseError, match="no training run to resume"):
        plan_resume(p)
    r = fx.train(p, "lora")
    with pytest.raises(AdviseError, match="every run finished"):
        plan_resume(p)
    with pytest.raises(AdviseError, match="already finished"):
        plan_resume(p, r["run_id"])
    with pytest.raises(AdviseError, match="no training run 'nope'"):
        plan_resume(p, "nope")
    # interrupted before the first checkpoint
    plan = plan_new(p, method="lora")
    with pytest.raises(KeyboardInterrupt):
        execute(plan, progress=_Interrupt(1))
    with pytest.raises(AdviseError, match="before its first checkpoint"):
        plan_resume(p)
    # a live process still holds the run
    plan = plan_new(p, method="lora", max_steps=9)
    with pytest.raises(KeyboardInterrupt):
        execute(plan, progress=_Interrupt(5))
    (plan.run_dir / "lock").write_text(json.dumps({"pids": [os.getpid()], "host": __import__("socket").gethostname()}))
    with pytest.raises(AdviseError, match="still running"):
        plan_resume(p, plan.run_id)
    (plan.run_dir / "lock").unlink()
    # the data changed since the run started
    f = p / "data" / "train.jsonl"
    f.write_text("\n".join(f.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(AdviseError, match="train data changed"):
        plan_resume(p, plan.run_id)
    with pytest.raises(AdviseError, match="--max-steps"):
        plan_resume(p, plan.run_id, max_steps=20)


@pytest.mark.slow
def test_resume_after_kill_9_matches_an_uninterrupted_run(tmp_path, train_tiny_model):
    """`advise train` in a subprocess, killed with SIGKILL after its second checkpoint, then
    `advise train --resume` in a new process: the same losses and weights as one uninterrupted run."""
    train = {**TRAIN, "max_steps": 120, "checkpoint_every": 20}
    ref = fx.train(fx.copy_project("ticket-routing-tiny", tmp_path / "ref", train_tiny_model, train), "lora")
    p = fx.copy_project("ticket-routing-tiny", tmp_path / "cut", train_tiny_model, train)
    proc = subprocess.Popen([*fx.ADVISE, "train", str(p), "--method", "lora"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=fx.REPO, start_new_session=True)
    deadline = time.time() + 300
    runs = p / ".advise" / "runs"
    killed_after = None
    while time.time() < deadline and proc.poll() is None:
        ckpts = list(runs.glob("*/checkpoints/checkpoint-40"))
        if ckpts and (ckpts[0] / "trainer_state.json").is_file():
            time.sleep(0.2)  # let it get past the checkpoint, into steps that will be lost
            os.kill(proc.pid, signal.SIGKILL)
            killed_after = ckpts[0]
            break
        time.sleep(0.02)
    proc.wait()
    if killed_after is None:
        pytest.skip(f"the run ended before it could be killed (rc {proc.returncode})")
    assert proc.returncode == -signal.SIGKILL
    run_dir = killed_after.parents[1]
    assert not (run_dir / "artifact").exists()
    res = fx.advise_subprocess("train", p, "--resume", "--json", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    resumed = json.loads(res.stdout)
    assert resumed["run_id"] == run_dir.name and resumed["resumed_from_step"] >= 40
    _same_result(resumed, ref)
    assert Path(resumed["artifact"]).is_dir()
    assert sys.executable  # the same interpreter ran both
