"""The train / plugins / export / models commands: their output, method choice, and bad input (one
line, exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import train_fixtures as fx
import yaml

train_tiny_model = fx.train_tiny_model

TRAIN = {"max_steps": 3, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64}
CONTRACT_KEYS = ("run_id", "method", "artifact", "train_tokens", "tokens_per_second", "final_loss", "peak_memory_mb")


@pytest.fixture
def ticket(tmp_path, train_tiny_model):
    return fx.copy_project("ticket-routing-tiny", tmp_path / "ticket", train_tiny_model, TRAIN)


def _edit(project: Path, **keys) -> Path:
    cfg = yaml.safe_load((project / "project.yaml").read_text())
    for k, v in keys.items():
        if k == "train":
            cfg.setdefault("train", {}).update(v)
        else:
            cfg[k] = v
    (project / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


# -- the happy path --------------------------------------------------------------------------------
def test_train_json_prints_the_contract_object_only(ticket):
    res = fx.cli("train", ticket, "--method", "lora", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)  # nothing but the object on stdout
    for k in CONTRACT_KEYS:
        assert out[k] is not None, k
    assert out["method"] == "lora" and out["steps"] == 3 and Path(out["artifact"]).is_dir()
    assert out["artifact"].startswith(str(ticket / ".advise" / "runs" / out["run_id"]))
    assert "step 3/3" in res.stderr and "tok/s" in res.stderr and "ETA" in res.stderr


def test_train_text_output_and_max_steps_override(ticket):
    _edit(ticket, train={"epochs": 2, "max_steps": None})
    cfg = yaml.safe_load((ticket / "project.yaml").read_text())
    cfg["train"].pop("max_steps")
    (ticket / "project.yaml").write_text(yaml.safe_dump(cfg))
    res = fx.cli("train", ticket, "--method", "full", "--max-steps", "2")
    assert res.exit_code == 0, res.stderr
    assert "done: 2 steps" in res.stdout and "artifact (model)" in res.stdout


def test_plugins_lists_the_builtins_with_their_configs():
    res = fx.cli("plugins", "--json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert {"lora", "qlora", "full", "dpo", "prompt_tuning", "classifier"} <= set(by_name)
    lora = {f["name"]: f for f in by_name["lora"]["config"]}
    assert lora["lora_r"]["default"] == 16 and ">= 1" in lora["lora_r"]["limits"]
    assert {f["name"] for f in by_name["dpo"]["config"]} >= {"beta", "sft_weight", "sft_from"}
    text = fx.cli("plugins").stdout
    assert "qlora" in text and "learning_rate" in text


def test_plugin_config_from_project_yaml():
    from advisor.project import parse_project
    from trainers import build_config, get_plugin

    proj = parse_project(yaml.safe_dump({"name": "p", "task": "t", "data": {"train": "d.jsonl"},
                                         "train": {"epochs": 2, "lora_r": 4, "beta": 0.3}}), Path("."),
                         Path("project.yaml"))
    c = build_config(get_plugin("lora"), proj)
    assert c.epochs == 2 and c.lora_r == 4 and c.learning_rate == 2.0e-4  # beta belongs to dpo: ignored
    assert build_config(get_plugin("dpo"), proj).beta == 0.3
    assert build_config(get_plugin("full"), proj).learning_rate == 2.0e-5  # the plugin's own default
    c = build_config(get_plugin("lora"), proj, {"max_steps": 5})
    assert c.max_steps == 5 and c.epochs is None


def test_method_choice_follows_assess(monkeypatch, ticket):
    import advisor.pipeline
    from advisor.errors import AdviseError
    from advisor.project import load_project
    from trainers.runner import resolve_method as resolve

    project = load_project(ticket)
    rec = {}
    monkeypatch.setattr(advisor.pipeline, "assess", lambda p, use_embeddings=True: {"recommendation": rec})

    def resolve_method(project, method):
        """What `advise train` does: the pipeline turns the verdict into a choice, trainers the plugin."""
        recommendation, method = advisor.pipeline.choose_plugin(project, method)
        return resolve(project, method, recommendation)
    for method, variant, plugin in (("lora", None, "lora"), ("lora", "qlora", "qlora"), ("full", None, "full"),
                                    ("rlhf", "dpo", "dpo")):
        rec.update(method=method, variant=variant)
        assert resolve_method(project, None)[0] == plugin
    for method in ("prompting", "rag"):
        rec.update(method=method, variant=None)
        with pytest.raises(AdviseError, match=f"assess recommends {method}.*no training is recommended"):
            resolve_method(project, None)
        assert resolve_method(project, "lora")[0] == "lora"  # --method overrides
    assert resolve_method(project, "rlhf")[0] == "dpo"
    project.method = "full"
    assert resolve_method(project, None) == ("full", "project.yaml method")


# -- bad input: one line, exit 2, nothing written ---------------------------------------------------
def _refused(project: Path, *args, match: str):
    res = fx.cli("train", project, *args)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advise: "), res.stderr
    assert match in lines[0], lines[0]
    assert res.stdout == ""
    assert not (project / ".advise").exists(), "something was written"
    return lines[0]


def test_unknown_plugin(ticket):
    _refused(ticket, "--method", "nope", match="unknown training plugin 'nope' (installed: ")


def test_invalid_hyperparameters_name_project_yaml_and_the_key(ticket):
    # a common key (advisor.training) is checked when the project loads, under the plugins' own limits
    _edit(ticket, train={"lora_dropout": 1.5})
    line = _refused(ticket, "--method", "lora", match="train.lora_dropout expected less than 1")
    assert "project.yaml:" in line
    _edit(ticket, train={"lora_dropout": 0.0, "batch_size": 65537})
    _refused(ticket, "--method", "lora", match="train.batch_size expected less than or equal to 65536")
    # a plugin's own key, when that plugin trains
    _edit(ticket, train={"batch_size": 8, "beta": 0})
    line = _refused(ticket, "--method", "dpo", match="train.beta: expected greater than 0 (for the dpo plugin)")
    assert "project.yaml:" in line
    cfg = yaml.safe_load((ticket / "project.yaml").read_text())
    cfg["train"].pop("beta")
    (ticket / "project.yaml").write_text(yaml.safe_dump(cfg))
    _edit(ticket, train={"lora_dropout": 0.0, "learnin_rate": 0.1})
    _refused(ticket, "--method", "lora", match="train.learnin_rate is not a hyperparameter of any installed")
    _edit(ticket, train={"learnin_rate": None})
    cfg = yaml.safe_load((ticket / "project.yaml").read_text())
    cfg["train"].pop("learnin_rate")
    cfg["train"]["epochs"] = 2
    (ticket / "project.yaml").write_text(yaml.safe_dump(cfg))
    _refused(ticket, "--method", "lora", match="set max_steps or epochs, not both")


@pytest.mark.parametrize("train,match", [
    ({"seed": -1}, "train.seed expected greater than or equal to 0"),
    ({"seed": 2**32}, "train.seed expected less than or equal to 4294967295"),
    ({"max_steps": 10**20}, "train.max_steps expected less than or equal to 100000000"),
    ({"max_steps": True}, "train.max_steps expected a valid integer"),
    ({"target_modules": []}, "train.target_modules"),
    ({"target_modules": ["nope_proj", "q_proj"]},
     "train.target_modules: no layer named nope_proj in the base model (its weight matrices: down_proj, embed_tokens, gate_proj,"),
])
def test_settings_that_would_fail_mid_run_are_refused_first(ticket, train, match):
    _edit(ticket, train=train)
    _refused(ticket, "--method", "lora", match=match)


def test_missing_or_unloadable_model_directory(ticket, tmp_path, train_tiny_model):
    _edit(ticket, base_model=str(tmp_path / "missing"))
    _refused(ticket, "--method", "lora", match="base model directory not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    _edit(ticket, base_model=str(empty))
    _refused(ticket, "--method", "lora", match="not a model directory (no config.json)")
    pickled = tmp_path / "pickled"
    shutil.copytree(train_tiny_model, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    _edit(ticket, base_model=str(pickled))
    _refused(ticket, "--method", "lora", match="no safetensors weights in the model directory (found pytorch_model.bin")
    broken = tmp_path / "broken"
    shutil.copytree(train_tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    _edit(ticket, base_model=str(broken))
    _refused(ticket, "--method", "lora", match="cannot read the weights")
    badcfg = tmp_path / "badcfg"
    shutil.copytree(train_tiny_model, badcfg)
    (badcfg / "config.json").write_text("{not json")
    _edit(ticket, base_model=str(badcfg))
    _refused(ticket, "--method", "lora", match="cannot load the base model")
    # a hub id that is not cached (and, here, not reachable): one line, quickly
    _edit(ticket, base_model="advise-tests/no-such-model-7f3a")
    _refused(ticket, "--method", "lora", match="base model 'advise-tests/no-such-model-7f3a'")
    cfg = yaml.safe_load((ticket / "project.yaml").read_text())
    cfg.pop("base_model")
    (ticket / "project.yaml").write_text(yaml.safe_dump(cfg))
    _refused(ticket, "--method", "lora", match="base_model is required for training")


def test_preference_data_to_an_sft_plugin(tmp_path, train_tiny_model):
    p = fx.copy_project("hh-harmless-prefs", tmp_path / "prefs", train_tiny_model, TRAIN)
    for plugin in ("lora", "full", "prompt_tuning"):
        line = _refused(p, "--method", plugin, match=f"the {plugin} plugin trains on one reply per prompt")
        assert "data/train.jsonl: holds preference pairs (chosen/rejected, 1196 of 1196 training records)" in line


def test_supervised_data_to_dpo_and_free_text_to_the_classifier(ticket, tmp_path, train_tiny_model):
    _refused(ticket, "--method", "dpo", match="the dpo plugin trains on preference pairs")
    e2e = fx.copy_project("e2e-restaurants", tmp_path / "e2e", train_tiny_model, TRAIN)
    _refused(e2e, "--method", "classifier", match="the classifier plugin trains label tasks")


def test_cuda_only_options_on_a_cpu_machine(ticket):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _refused(ticket, "--method", "qlora", match="the qlora plugin loads the base model in 4 bits with bitsandbytes, "
                                                "which needs a CUDA GPU")
    _edit(ticket, train={"precision": "fp16"})
    _refused(ticket, "--method", "lora", match="train.precision: fp16 needs a CUDA GPU")
    _edit(ticket, train={"precision": "auto", "attn_implementation": "flash_attention_2"})
    _refused(ticket, "--method", "lora", match="flash_attention_2 needs a CUDA GPU")


def test_no_training_recommended(ticket):
    _edit(ticket, method="rag")
    _refused(ticket, match="method: rag needs no training")
    _refused(ticket, "--method", "prompting", match="--method prompting needs no training")


def test_bad_launch_options(ticket, tmp_path):
    _refused(ticket, "--method", "lora", "--accelerate-config", tmp_path / "nope.yaml",
             match="accelerate config file not found")
    res = fx.cli("train", ticket, "--nproc", "0")
    assert res.exit_code == 2 and not (ticket / ".advise").exists()
    res = fx.cli("train", ticket, "--resume", "--method", "lora")
    assert res.exit_code == 2 and not (ticket / ".advise").exists()


# -- export and models --------------------------------------------------------------------------------
def test_export_merges_the_adapter_into_a_standalone_model(ticket, train_tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    r = fx.train(ticket, "lora")
    out = tmp_path / "merged"
    res = fx.cli("export", r["run_id"], out, "--project", ticket)
    assert res.exit_code == 0, res.stderr
    merged = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).eval()
    assert not (out / "adapter_config.json").exists()
    tok = AutoTokenizer.from_pretrained(out)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(train_tiny_model),
                                           r["artifact"]).eval()
    enc = tok(["Where is my new card?", "top up failed"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(merged(**enc).logits, peft_model(**enc).logits, rtol=1e-4, atol=1e-4)
    # an artifact directory works too; a non-empty destination is refused
    res = fx.cli("export", r["artifact"], out)
    assert res.exit_code == 2 and "not empty" in res.stderr
    assert fx.cli("export", r["artifact"], tmp_path / "m2").exit_code == 0
    assert fx.cli("export", "no-such-run", tmp_path / "m3", "--project", ticket).exit_code == 2
    (tmp_path / "a-file").write_text("mine")
    res = fx.cli("export", r["artifact"], tmp_path / "a-file")
    assert res.exit_code == 2 and "the export destination must be a directory, and this is a file" in res.stderr
    assert (tmp_path / "a-file").read_text() == "mine"
    res = fx.cli("export", r["artifact"], tmp_path / "a-file" / "below")
    assert res.exit_code == 2 and "is a file, so the directory cannot be created under it" in res.stderr


def test_export_refuses_prompt_tuning(ticket, tmp_path):
    r = fx.train(ticket, "prompt_tuning")
    res = fx.cli("export", r["artifact"], tmp_path / "x")
    assert res.exit_code == 2 and "PROMPT_TUNING adapter cannot be merged" in res.stderr


def test_models_tiny_builds_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = tmp_path / "tiny"
    res = fx.cli("models", "tiny", d, "--steps", "2")
    assert res.exit_code == 0, res.stderr
    assert "wrote a" in res.stdout
    AutoModelForCausalLM.from_pretrained(d, use_safetensors=True)
    assert AutoTokenizer.from_pretrained(d).chat_template
    res = fx.cli("models", "tiny", d)
    assert res.exit_code == 2 and "--force" in res.stderr
    (tmp_path / "a-file").write_text("mine")
    for bad, msg in ((tmp_path / "a-file", "must be a directory, and this is a file"),
                     (tmp_path / "a-file" / "tiny", "is a file, so the directory cannot be created under it")):
        res = fx.cli("models", "tiny", bad)
        assert res.exit_code == 2 and msg in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_moved_project_keeps_its_tuned_model(tmp_path, train_tiny_model):
    """Runs record absolute paths; after the project directory moves (with its .advise/), eval still finds
    the artifact and knows the base model (the demo's layout: the base model inside .advise/models/)."""
    import shutil

    from advisor.project import load_project
    from evaluators.runner import run_eval

    p = fx.copy_project("ticket-routing-tiny", tmp_path / "before", ".advise/models/tiny", TRAIN)
    shutil.copytree(train_tiny_model, p / ".advise" / "models" / "tiny")
    r = fx.train(p, "lora", max_steps=2)
    moved = tmp_path / "elsewhere" / "after"
    moved.parent.mkdir()
    shutil.move(str(p), str(moved))
    assert not Path(r["artifact"]).exists()
    out = run_eval(load_project(moved), candidates=["tuned:*"], strategies=["zero-shot"], max_items=4, canary=None)
    assert out["warnings"] == []
    assert [x["candidate"] for x in out["runs"]] == ["tuned:lora"]


def test_the_last_step_is_logged_whatever_logging_steps(ticket):
    _edit(ticket, train={"logging_steps": 1000, "max_steps": 2})
    r = fx.train(ticket, "lora")
    assert r["final_loss"] is not None and [s for s, _ in r["loss_history"]] == [2]
