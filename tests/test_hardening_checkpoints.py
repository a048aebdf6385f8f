"""Issue 11, checkpoints: a run killed while a checkpoint is being saved can still be resumed.

Checkpoints are written under a staging name and renamed into place when complete, so a save cut
short never leaves a ``checkpoint-N`` that looks usable; ``--resume`` skips incomplete checkpoints
(a staging directory, or a ``checkpoint-N`` without a whole trainer state, as a killed save of an
earlier version left) with one line on stderr and continues from the last complete one.
"""

from __future__ import annotations

import json
import shutil

import pytest
import train_fixtures as fx

train_tiny_model = fx.train_tiny_model

TRAIN = {"max_steps": 6, "checkpoint_every": 3, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64,
         "seed": 3}


def test_a_save_cut_short_leaves_no_checkpoint_and_resume_skips_it(tmp_path, train_tiny_model, monkeypatch):
    from transformers import Trainer

    from trainers.runner import execute, plan_new

    p = fx.copy_project("ticket-routing-tiny", tmp_path / "p", train_tiny_model, TRAIN, max_records=48)
    real = Trainer._save_rng_state

    def dies_while_saving_step_6(self, output_dir):  # after the weights and the optimizer are written
        if self.state.global_step == 6:
            raise KeyboardInterrupt
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", dies_while_saving_step_6)
    plan = plan_new(p, method="lora")
    with pytest.raises(KeyboardInterrupt):
        execute(plan, command="first")
    monkeypatch.undo()
    ckpts = plan.run_dir / "checkpoints"

    def dirs() -> list[str]:
        return sorted(x.name for x in ckpts.iterdir() if x.is_dir())

    assert dirs() == [".saving-6", "checkpoint-3"]  # no checkpoint-6
    assert (ckpts / ".saving-6" / "checkpoint-6" / "adapter_model.safetensors").is_file()  # the cut save

    # and a checkpoint-6 as a save killed half way left it before checkpoints were renamed into place
    half = ckpts / "checkpoint-6"
    shutil.copytree(ckpts / "checkpoint-3", half)
    (half / "trainer_state.json").unlink()
    weights = half / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    r = fx.cli("train", p, "--resume", "--json")
    assert r.exit_code == 0, r.output
    skipped = [line for line in r.stderr.splitlines() if "incomplete checkpoint" in line]
    assert len(skipped) == 1, r.stderr
    assert ".saving-6" in skipped[0] and "checkpoint-6" in skipped[0] and "resuming from checkpoint-3" in skipped[0]
    result = json.loads(r.stdout)
    assert result["resumed_from_step"] == 3 and result["steps"] == 6
    # the resumed run's own save of step 6 replaced the incomplete one; the staging directory is gone
    assert dirs() == ["checkpoint-3", "checkpoint-6"]
    state = json.loads((ckpts / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
