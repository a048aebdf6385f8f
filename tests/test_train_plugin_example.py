"""The worked third-party plugin (examples/advise-plugin-example): pip-installed from its local folder
into this environment, found through the ``advise.trainers`` entry point, listed, and trained with;
uninstalled afterwards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import train_fixtures as fx

train_tiny_model = fx.train_tiny_model
EXAMPLE = fx.REPO / "examples" / "advise-plugin-example"


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
