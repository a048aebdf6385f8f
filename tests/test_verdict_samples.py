"""Each sample project's README says which verdict `advise assess` gives it and why; the verdict it
states is the one assess gives (re-checked by hand, issue 12)."""

import re
import shutil

import eval_fixtures
import pytest
from conftest import SAMPLES, assess_json, codes

tiny_model_dir = eval_fixtures.tiny_model_dir
NAMES = {"lora": "LoRA", "rag": "RAG", "prompting": "Prompting", "rlhf": "RLHF (DPO)", "full": "Full fine-tuning"}


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.iterdir() if (p / "project.yaml").is_file()))
def test_the_readme_states_the_verdict_assess_gives(name, tmp_path, tiny_model_dir):
    root = tmp_path / name
    shutil.copytree(SAMPLES / name, root, ignore=shutil.ignore_patterns(".advise"))
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## What `advise assess` says", 1)[1]
    stated = re.search(r"\*\*(.+?)\*\*, confidence about (0\.\d+)", section)
    if name == "ticket-routing-tiny":
        assert "base_model_missing" in codes(assess_json(root))  # before the model is built, as the README says
        shutil.copytree(tiny_model_dir, root / ".advise" / "models" / "tiny")
    rec = assess_json(root)["recommendation"]
    assert stated.group(1) == NAMES[rec["method"]], (name, rec["method"], rec["reasons"])
    assert abs(float(stated.group(2)) - rec["confidence"]) <= 0.1, (name, rec["confidence"])
    assert not rec["blockers"], rec["blockers"]  # none of the samples has a blocker, as the READMEs say
