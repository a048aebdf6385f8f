"""The worked third-party plugin (examples/advise-plugin-example): registered in-process with
``trainers.register`` (no pip) and trained through ``advise train --method freeze``; and pip-installed
from its local folder into this environment, found through the ``advise.trainers`` entry point,
listed, and trained with; uninstalled afterwards."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import train_fixtures as fx

train_tiny_model = fx.train_tiny_model
EXAMPLE = fx.REPO / "examples" / "advise-plugin-example"


def _load_example():
    """The example's module, imported from its source file (not installed)."""
    path = EXAMPLE / "src" / "advise_plugin_example" / "__init__.py"
    spec = importlib.util.spec_from_file_location("advise_plugin_example_inprocess", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_plugin_registered_in_process_trains_through_the_cli(tmp_path, train_tiny_model):
    from trainers import plugin_names, register

    example = _load_example()
    p = fx.copy_project("ticket-routing-tiny", tmp_path / "p", train_tiny_model,
                        {"max_steps": 3, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64,
                         "train_layers": 1})
    assert "freeze" not in plugin_names()
    with register(example.plugin):
        listed = json.loads(fx.cli("plugins", "--json").stdout)["plugins"]
        assert "freeze" in {q["name"] for q in listed}
        res = fx.cli("train", p, "--method", "freeze", "--json")
        assert res.exit_code == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["method"] == "freeze" and out["steps"] == 3 and out["metrics"]["trained_blocks"] == 1
        assert out["artifact_kind"] == "model" and (fx.Path(out["artifact"]) / "model.safetensors").is_file()
        # worker processes cannot see an in-process plugin: refused before anything is written
        runs = sorted((p / ".advise" / "runs").iterdir())
        res = fx.cli("train", p, "--method", "freeze", "--nproc", "2")
        assert res.exit_code == 2 and "registered in this process only" in res.stderr, res.stderr
        assert sorted((p / ".advise" / "runs").iterdir()) == runs
    assert "freeze" not in plugin_names()  # gone with the with-block
    res = fx.cli("train", p, "--method", "freeze")
    assert res.exit_code == 2 and "unknown training plugin 'freeze'" in res.stderr


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    src = tmp_path_factory.mktemp("plugin") / "advise-plugin-example"
    shutil.copytree(EXAMPLE, src)  # the build leaves files behind: not in the repository
    res = _pip("install", "--quiet", "--no-deps", "--no-build-isolation", str(src))
    if res.returncode != 0:
        pytest.fail(f"pip install failed: {res.stderr[-2000:]}")
    yield src
    _pip("uninstall", "--yes", "--quiet", "advise-plugin-example")


def test_example_plugin_is_listed_and_trains(installed_example, tmp_path, train_tiny_model):
    import torch
    from safetensors.torch import load_file

    res = fx.advise_subprocess("plugins", "--json")
    assert res.returncode == 0, res.stderr
    plugins = {p["name"]: p for p in json.loads(res.stdout)["plugins"]}
    assert "freeze" in plugins and "lora" in plugins  # built-ins and third-party, found the same way
    fields = {f["name"]: f for f in plugins["freeze"]["config"]}
    assert fields["train_layers"]["default"] == 2 and fields["learning_rate"]["default"] == 1.0e-4

    p = fx.copy_project("ticket-routing-tiny", tmp_path / "p", train_tiny_model,
                        {"max_steps": 4, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64,
                         "train_layers": 1})
    res = fx.advise_subprocess("train", p, "--method", "freeze", "--json", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["method"] == "freeze" and out["artifact_kind"] == "model" and fx.loss_fell(out)
    assert out["metrics"]["trained_blocks"] == 1
    before = load_file(str(train_tiny_model / "model.safetensors"))
    after = load_file(str(fx.Path(out["artifact"]) / "model.safetensors"))
    assert torch.equal(before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"])
    assert not torch.equal(before["model.layers.1.self_attn.q_proj.weight"],
                           after["model.layers.1.self_attn.q_proj.weight"])
    # the plugin's own keys are validated like the built-ins'
    (p / "project.yaml").write_text((p / "project.yaml").read_text().replace("train_layers: 1", "train_layers: 0"))
    res = fx.advise_subprocess("train", p, "--method", "freeze")
    assert res.returncode == 2 and "train.train_layers" in res.stderr and len(res.stderr.strip().splitlines()) == 1
