"""Training hyperparameters are defined once (advisor.training): project.yaml's train: block, every
plugin's config and the cost estimate describe the same training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import train_fixtures as fx
import yaml

from advisor.assess.assessment import assess
from advisor.assess.estimate import estimate
from advisor.errors import AdviseError
from advisor.methods import TRAINING_ROWS, plugin_for
from advisor.project import TrainSpec, load_project
from advisor.training import PLUGIN_DEFAULTS, LoraFields, TrainingFields
from trainers import FinishedRun, PluginConfig, TrainRequest, build_config, get_plugin
from trainers.plan import finished_runs

train_tiny_model = fx.train_tiny_model


def _assess_project(tmp_path: Path, train: dict) -> Path:
    p = fx.copy_project("ticket-routing-tiny", tmp_path / "p", "Qwen/Qwen2.5-0.5B-Instruct", None)
    cfg = yaml.safe_load((p / "project.yaml").read_text())
    cfg["train"] = train
    if not train:
        cfg.pop("train")
    (p / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


@pytest.mark.parametrize("train", [
    {},  # every plugin's own defaults
    {"epochs": 2, "batch_size": 4, "lora_r": 4},
    {"max_steps": 7, "max_length": 256, "grad_accum": 2, "beta": 0.2},
])
def test_each_estimate_row_prices_what_its_plugin_runs(tmp_path, train):
    project = load_project(_assess_project(tmp_path, train))
    rows = {e["method"]: e for e in assess(project, use_embeddings=False)["estimate"]["methods"]}
    assert {"lora", "full", "rlhf"} <= set(rows)
    # the qlora row, which assess does not rank, through estimate() with the same project keys
    rows["qlora"] = estimate(methods=["qlora"], base_model=project.base_model, model_dir=None,
                             train_tokens_per_epoch=1000, epochs=3, hardware=None, budget_usd=None, on_prem=False,
                             train=project.train.model_dump(exclude_unset=True), train_examples=100)["methods"][0]
    for method in sorted(TRAINING_ROWS):
        plugin = get_plugin(plugin_for(method))
        cfg = build_config(plugin, project)
        got = rows[method]["training"]
        assert got["plugin"] == plugin.name
        assert got["max_steps"] == cfg.max_steps, method
        epochs = None if cfg.max_steps is not None else (cfg.epochs if cfg.epochs is not None else cfg.DEFAULT_EPOCHS)
        assert got["epochs"] == epochs, method
        assert got["batch_size"] == cfg.batch_size and got["grad_accum"] == cfg.grad_accum, method
        assert got["max_length"] == cfg.max_length, method
        if hasattr(cfg, "lora_r"):
            assert got["lora_r"] == cfg.lora_r, method
    if not train:  # the rlhf row is the dpo plugin (1 epoch, 8 pairs a step), its SFT phase the lora plugin's
        assert rows["rlhf"]["training"]["epochs"] == 1.0 and rows["rlhf"]["training"]["batch_size"] == 8
        assert rows["lora"]["training"]["epochs"] == 3.0 and rows["lora"]["training"]["batch_size"] == 16
        per_epoch = rows["lora"]["train_tokens"] / 3
        phases = rows["rlhf"]["phases"]
        assert phases["sft"]["train_tokens"] == rows["lora"]["train_tokens"]
        assert phases["dpo"]["pair_tokens"] == pytest.approx(2 * per_epoch, abs=1)  # one pass over the pairs


def test_built_in_plugins_take_their_defaults_from_advisor_training():
    for name, overrides in PLUGIN_DEFAULTS.items():
        cfg = get_plugin(name).config_class()
        for key, value in overrides.items():
            assert (cfg.DEFAULT_EPOCHS if key == "epochs" else getattr(cfg, key)) == value, (name, key)
        for key, f in TrainingFields.model_fields.items():
            if key not in overrides:
                assert getattr(cfg, key) == f.default, (name, key)
            # the same limits as project.yaml's train: block
            assert type(cfg).model_fields[key].metadata == TrainSpec.model_fields[key].metadata, (name, key)
    assert issubclass(PluginConfig, TrainingFields) and issubclass(TrainSpec, TrainingFields)
    assert issubclass(TrainSpec, LoraFields)


def test_advise_plugins_shows_a_plugins_own_defaults():
    res = fx.cli("plugins", "--json")
    assert res.exit_code == 0
    by_name = {p["name"]: {f["name"]: f for f in p["config"]} for p in json.loads(res.stdout)["plugins"]}
    assert by_name["dpo"]["batch_size"]["default"] == 8 and by_name["lora"]["batch_size"]["default"] == 16
    assert "default 1)" in by_name["dpo"]["epochs"]["description"]
    assert "default 3)" in by_name["lora"]["epochs"]["description"]
    assert by_name["classifier"]["lora_r"]["default"] == 8 and ">= 1" in by_name["classifier"]["lora_r"]["limits"]


def test_a_bad_common_key_is_refused_by_assess_too(tmp_path):
    p = _assess_project(tmp_path, {"batch_size": 100_000})
    res = fx.cli("assess", p)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "project.yaml:" in lines[0] and "train.batch_size" in lines[0], res.stderr


def test_dpo_starts_from_a_finished_run_the_runner_hands_it(tmp_path, train_tiny_model):
    """dpo reads no store: the runner lists the finished runs (read-only) and passes them in."""
    ticket = fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model,
                             {"max_steps": 2, "batch_size": 8, "max_length": 64})
    assert finished_runs(load_project(ticket)) == [] and not (ticket / ".advise").exists()  # nothing created
    sft = fx.train(ticket, "lora", max_steps=2)
    runs = finished_runs(load_project(ticket))
    assert runs == [FinishedRun(id=sft["run_id"], plugin="lora", base_model=sft["base_model"],
                                artifact=Path(sft["artifact"]))]
    dpo = get_plugin("dpo")
    project = load_project(ticket)
    for src in ("auto", sft["run_id"]):
        cfg = dpo.config_class(sft_from=src)
        req = TrainRequest(project=project, records=[], base_model=sft["base_model"], config=cfg,
                           output_dir=tmp_path / "run", finished_runs=runs)
        facts = dpo.prepare(req)
        assert facts == {"start": "adapter", "sft_adapter": sft["artifact"], "sft_run": sft["run_id"]}, src
    other_base = TrainRequest(project=project, records=[], base_model="/elsewhere", config=dpo.config_class(),
                              output_dir=tmp_path / "run", finished_runs=runs)
    assert dpo.prepare(other_base)["start"] == "base"
    with pytest.raises(AdviseError, match="neither a directory nor a finished training run"):
        dpo.prepare(TrainRequest(project=project, records=[], base_model=sft["base_model"],
                                 config=dpo.config_class(sft_from="train-nope"), output_dir=tmp_path / "run",
                                 finished_runs=runs))
