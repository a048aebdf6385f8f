"""Fixtures and helpers of the eval tests. A test module uses a fixture by binding it to a module name:
``tiny_model_dir = eval_fixtures.tiny_model_dir``.

* ``tiny_model_dir`` (session): a tiny Llama built locally by trainers.tiny_model (no download);
* ``tiny_project``: sample_projects/ticket-routing-tiny copied to tmp_path with ``base_model`` pointed at
  the tiny model and a small ``max_new_tokens`` (fast);
* artifact builders for tuned candidates (peft LoRA adapter, full model, sequence classifier) and
  :func:`register_train_run`, which records a finished ``train`` run the way a trainer plugin does.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_projects" / "ticket-routing-tiny"
LABELS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "cash_withdrawal_charge"]


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Built once per test session (several test modules share it through this cache)."""
    if "tiny" not in _BUILT:
        from trainers.tiny_model import build_tiny_model

        out = tmp_path_factory.mktemp("tiny-model") / "tiny"
        build_tiny_model(out, pretrain_steps=0, seed=0)
        _BUILT["tiny"] = out
    return _BUILT["tiny"]


def copy_project(dst: Path, base_model: str | None, **eval_keys) -> Path:
    shutil.copytree(SAMPLE, dst, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((dst / "project.yaml").read_text(encoding="utf-8"))
    if base_model is None:
        cfg.pop("base_model", None)
    else:
        cfg["base_model"] = str(base_model)
    cfg.setdefault("eval", {}).update({"max_new_tokens": 4, **eval_keys})
    (dst / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return dst


@pytest.fixture
def tiny_project(tmp_path, tiny_model_dir) -> Path:
    return copy_project(tmp_path / "ticket", tiny_model_dir)


# ------------------------------------------------------------------------------------- artifacts


def make_lora_artifact(base: Path, out: Path) -> Path:
    """A peft LoRA adapter with non-zero weights (so its answers differ from the base model's)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls a deprecated transformers alias
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out


def make_full_artifact(base: Path, out: Path) -> Path:
    """A fully fine-tuned model directory (weights perturbed), with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def make_classifier_artifact(base: Path, out: Path, labels: list[str] = LABELS) -> Path:
    """What the classifier plugin saves: an AutoModelForSequenceClassification directory with id2label."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(3)
    cfg = AutoConfig.from_pretrained(base)
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {name: i for i, name in enumerate(labels)}
    cfg.architectures = None
    model = AutoModelForSequenceClassification.from_config(cfg)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def register_train_run(project_dir: Path, method: str, artifact: Path | str, base_model: str | Path) -> str:
    from advisor.project import load_project
    from advisor.store import Store

    store = Store.for_project(load_project(project_dir))
    try:
        rid = store.start_run("train", name=method, config={"base_model": str(base_model)})
        store.finish_run(rid, "done", {"artifact": str(artifact), "method": method, "base_model": str(base_model),
                                       "run_id": rid})
        return rid
    finally:
        store.close()
