"""Merge a LoRA adapter into a standalone model directory that plain transformers loads.

``export(artifact_dir, out_dir)`` reads the adapter's ``adapter_config.json`` (and the run's
``advise_train.json`` snapshot for the base model and, for classifiers, the labels), loads the base
model with safetensors only, merges the adapter (``merge_and_unload``), and saves model + tokenizer
with ``save_pretrained``. A full-model artifact is copied as it is. Prompt-tuning adapters cannot be
merged into weights (they are extra input embeddings): load them with peft instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from advisor.errors import AdviseError
from advisor.files import check_output_dir
from advisor.hf import quiet_libraries
from advisor.project import load_project
from advisor.store import STORE_FILE, Store
from trainers.plugin import CONFIG_SNAPSHOT


def resolve_artifact(run: str, project_dir: Path | None = None) -> Path:
    """A run id (looked up in the project's run store) or an artifact / run directory."""
    p = Path(run)
    if p.is_dir():
        if (p / "artifact").is_dir():
            p = p / "artifact"
        return p
    if project_dir is None:
        raise AdviseError(f"'{run}' is neither a directory nor a run id (give --project)")

    project = load_project(project_dir)
    store_path = project.store_dir / STORE_FILE
    if not store_path.is_file():
        raise AdviseError(f"'{run}' is not a directory, and the project has no run store to look it up in",
                          file=store_path)
    store = Store(store_path)
    try:
        row = store.get_run(run)
        arts = store.artifacts(run) if row else []
    finally:
        store.close()
    if row is None or row["kind"] != "train":
        raise AdviseError(f"no training run '{run}' in this project's run store", file=store_path)
    if row["status"] != "done" or not arts:
        raise AdviseError(f"run {run} did not finish ({row['status']}); it has no artifact to export")
    return Path(arts[-1]["path"])


def _snapshot(src: Path) -> dict:
    f = src / CONFIG_SNAPSHOT
    if f.is_file():
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except ValueError:
            pass
    return {}


def export(src: Path, out_dir: Path) -> dict:
    src = Path(src)
    out_dir = Path(out_dir)

    check_output_dir(out_dir, "the export destination")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise AdviseError("already exists and is not empty; choose a new directory", file=out_dir)
    snap = _snapshot(src)
    adapter_cfg = src / "adapter_config.json"
    if not adapter_cfg.is_file():
        if (src / "config.json").is_file() and list(src.glob("*.safetensors")):
            shutil.copytree(src, out_dir, dirs_exist_ok=True)
            return {"kind": "full", "parameters": _count_safetensors(out_dir)}
        raise AdviseError("is neither a LoRA adapter (adapter_config.json) nor a model directory", file=src)
    acfg = json.loads(adapter_cfg.read_text(encoding="utf-8"))
    peft_type = acfg.get("peft_type")
    if peft_type != "LORA":
        raise AdviseError(f"a {peft_type} adapter cannot be merged into the weights; load it with peft "
                          "(PeftModel.from_pretrained) on top of its base model", file=adapter_cfg)
    base = snap.get("base_model") or acfg.get("base_model_name_or_path")
    if not base:
        raise AdviseError("the adapter does not name its base model", file=adapter_cfg)
    trust = bool((snap.get("config") or {}).get("trust_remote_code", False))
    revision = (snap.get("config") or {}).get("revision")


    quiet_libraries()  # library chatter (progress bars, deprecations) is not the user's business here
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    kw = {"use_safetensors": True, "trust_remote_code": trust, "dtype": torch.float32}
    if revision:
        kw["revision"] = revision
    task = acfg.get("task_type")
    labels = (snap.get("metrics") or {}).get("id2label")
    if task == "SEQ_CLS":
        from transformers import AutoModelForSequenceClassification

        if not labels:
            for labels_file in (src / "labels.json", src.parent / "labels.json"):
                if labels_file.is_file():
                    data = json.loads(labels_file.read_text(encoding="utf-8"))
                    labels = data.get("id2label", data) if isinstance(data, dict) else dict(enumerate(data))
                    break
        if not labels:
            raise AdviseError("a classifier adapter without its labels (labels.json)", file=src)
        id2label = {int(k): v for k, v in labels.items()}
        base_model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()}, **kw)
    else:
        from transformers import AutoModelForCausalLM

        base_model = AutoModelForCausalLM.from_pretrained(base, **kw)
    try:
        model = PeftModel.from_pretrained(base_model, str(src))
    except Exception as e:  # noqa: BLE001
        raise AdviseError(f"cannot load the adapter on top of {base}: {e}", file=src) from None
    merged = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tok_src = src if (src / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tok_src, trust_remote_code=trust).save_pretrained(out_dir)
    if snap:
        (out_dir / CONFIG_SNAPSHOT).write_text(json.dumps({**snap, "exported_from": str(src)}, indent=2) + "\n",
                                               encoding="utf-8")
    return {"kind": "merged", "parameters": sum(p.numel() for p in merged.parameters())}


def _count_safetensors(d: Path) -> int:
    from safetensors import safe_open

    n = 0
    for f in d.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                shape = fh.get_slice(k).get_shape()
                c = 1
                for s in shape:
                    c *= s
                n += c
    return n
