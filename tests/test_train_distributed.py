"""Several processes: ``advise train --nproc 2`` runs the same plugin under torchrun (gloo on CPU) and
saves an artifact of the single-process format; ``--accelerate-config`` goes through ``accelerate launch``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import train_fixtures as fx

train_tiny_model = fx.train_tiny_model

TRAIN = {"max_steps": 6, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64, "seed": 5,
         "checkpoint_every": 3}


def _format(artifact: str) -> dict:
    from safetensors import safe_open

    art = Path(artifact)
    files = sorted(p.name for p in art.iterdir())
    with safe_open(str(art / "adapter_model.safetensors"), framework="pt") as fh:
        shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    acfg = json.loads((art / "adapter_config.json").read_text())
    return {"files": files, "shapes": shapes, "r": acfg["r"], "targets": sorted(acfg["target_modules"]),
            "base": acfg["base_model_name_or_path"]}


@pytest.mark.slow
def test_two_process_gloo_run_saves_the_single_process_format(tmp_path, train_tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    single = fx.train(fx.copy_project("ticket-routing-tiny", tmp_path / "one", train_tiny_model, TRAIN), "lora")
    p = fx.copy_project("ticket-routing-tiny", tmp_path / "two", train_tiny_model, TRAIN)
    res = fx.advise_subprocess("train", p, "--method", "lora", "--nproc", "2", "--json", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    two = json.loads(res.stdout)
    assert two["nproc"] == 2 and two["hardware"]["world_size"] == 2 and two["hardware"]["launcher"] == "torchrun"
    assert two["steps"] == single["steps"] == 6 and len(two["loss_history"]) == 6
    # each process reads its own batches: twice the tokens of one process per step
    assert two["train_tokens"] > 1.5 * single["train_tokens"]
    assert fx.loss_fell(two), fx.losses(two)
    assert _format(two["artifact"]) == _format(single["artifact"])
    assert fx.snapshot(two["artifact"])["config"] == fx.snapshot(single["artifact"])["config"]
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(train_tiny_model), two["artifact"])
    from advisor.project import load_project
    from advisor.store import Store

    store = Store.for_project(load_project(p))
    try:
        run = store.get_run(two["run_id"])
        assert run["status"] == "done" and len(store.train_log(two["run_id"])) == 6
    finally:
        store.close()


@pytest.mark.slow
def test_accelerate_config_is_passed_to_accelerate_launch(tmp_path, train_tiny_model):
    cfg = tmp_path / "accelerate.yaml"
    cfg.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\n"
                   "num_machines: 1\nmachine_rank: 0\nmixed_precision: 'no'\nuse_cpu: true\n")
    p = fx.copy_project("ticket-routing-tiny", tmp_path / "acc", train_tiny_model, TRAIN)
    res = fx.advise_subprocess("train", p, "--method", "lora", "--accelerate-config", cfg, "--json", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert (out["hardware"]["launcher"], out["hardware"]["distributed"]) == ("accelerate", "NO")
    assert out["steps"] == 6 and fx.loss_fell(out), fx.losses(out)
    assert (Path(out["artifact"]) / "adapter_model.safetensors").is_file()


def _refused(project, cfg, *extra, match):
    res = fx.cli("train", project, "--method", "lora", "--accelerate-config", cfg, *extra)
    assert res.exit_code == 2
    line = res.stderr.strip()
    assert "\n" not in line and line.startswith(f"advise: {cfg}: {match}"), line
    assert not (project / ".advise" / "runs").exists()


def test_accelerate_configs_that_would_not_run_as_written_on_cpus_are_refused(tmp_path, train_tiny_model):
    """accelerate quietly changes what runs on CPUs: FSDP / DeepSpeed become plain data parallelism, and
    several CPU processes without mpirun become one. advise refuses before any work instead."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = fx.copy_project("ticket-routing-tiny", tmp_path / "acc", train_tiny_model, TRAIN)
    for kind in ("FSDP", "DEEPSPEED"):
        cfg = tmp_path / f"{kind}.yaml"
        cfg.write_text(f"distributed_type: {kind}\nnum_processes: 2\nfsdp_config:\n  fsdp_version: 2\n")
        _refused(p, cfg, match=f"the accelerate config asks for distributed_type: {kind}, which accelerate runs "
                               "only on GPUs, and this machine has no CUDA GPU")
    cfg = tmp_path / "cpu.yaml"
    cfg.write_text("distributed_type: MULTI_CPU\nnum_processes: 2\nuse_cpu: true\n")
    _refused(p, cfg, match="2 processes on CPUs: accelerate launch starts several CPU processes only through "
                           "mpirun (mpirun_config), and the config sets use_cpu: true, so it would run one; "
                           "use --nproc 2 without --accelerate-config")
    cfg.write_text("distributed_type: 'NO'\nnum_processes: 1\nuse_cpu: true\n")
    _refused(p, cfg, "--nproc", "3", match="3 processes on CPUs")
