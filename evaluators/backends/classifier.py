"""A sequence classifier (the classifier plugin's artifact, or any AutoModelForSequenceClassification
directory) as an eval backend: one label per item. torch and transformers load inside the functions."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.errors import AdviseError
from advisor.hf import first_line
from evaluators.backends.base import Backend, Generation, GenerationSettings
from evaluators.backends.transformers import _quiet_transformers, load_tokenizer, pick_device


def classifier_input(messages: list[dict]) -> str:
    """The text a sequence classifier reads: the user turns of the prompt (the record's key)."""
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return "\n".join(users) if users else messages[-1]["content"]


def _load_labels(path: Path, config) -> dict[int, str]:
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    for name in ("labels.json", "label_map.json"):
        f = path / name
        if f.is_file():
            data = json.loads(f.read_text(encoding="utf-8"))
            if isinstance(data, list):
                id2label = dict(enumerate(map(str, data)))
            elif isinstance(data, dict):
                data = data.get("id2label", data)
                id2label = {int(k): str(v) for k, v in data.items()}
    return id2label


class SequenceClassifierBackend(Backend):
    """A label classifier saved by the ``classifier`` training plugin: an
    ``AutoModelForSequenceClassification`` directory (or a peft adapter of one) whose ``id2label``
    names the labels. Its reply is the label; ``extra["label_scores"]`` holds every label's probability
    (for ROC AUC)."""

    kind = "classifier"

    def __init__(self, path: str | Path, *, trust_remote_code: bool = False, device: str | None = None,
                 batch_size: int = 32, max_length: int = 512):
        super().__init__()
        _quiet_transformers()
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise AdviseError("classifier directory not found", file=self.path)
        self.batch_size, self.max_length = max(1, int(batch_size)), max_length
        from transformers import AutoConfig, AutoModelForSequenceClassification

        device = pick_device(device)
        t0 = time.perf_counter()
        try:
            if (self.path / "adapter_config.json").is_file():
                from peft import AutoPeftModelForSequenceClassification

                model = AutoPeftModelForSequenceClassification.from_pretrained(str(self.path), is_trainable=False)
                config = model.config
            else:
                config = AutoConfig.from_pretrained(str(self.path), trust_remote_code=trust_remote_code)
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(self.path), use_safetensors=True, trust_remote_code=trust_remote_code)
        except Exception as e:  # noqa: BLE001
            raise AdviseError(f"cannot load classifier '{self.path}': {first_line(e)}") from None
        base = None
        acfg = self.path / "adapter_config.json"
        if acfg.is_file():
            base = json.loads(acfg.read_text(encoding="utf-8")).get("base_model_name_or_path")
        self.tokenizer = load_tokenizer(str(self.path), trust_remote_code=trust_remote_code, fallback=base)
        self.id2label = _load_labels(self.path, config)
        if not self.id2label or all(v.startswith("LABEL_") for v in self.id2label.values()):
            raise AdviseError("classifier has no label names (id2label in config.json or labels.json)", file=self.path)
        self.model = model.to(device).eval()
        self.device = device
        self.load_seconds = time.perf_counter() - t0
        self.model.requires_grad_(False)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": str(self.path), "labels": len(self.id2label), "device": self.device}

    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        import torch

        texts = [classifier_input(m) for m in prompts]
        out: list[Generation] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            t0 = time.perf_counter()
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            with torch.inference_mode():
                probs = torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu()
            dt = (time.perf_counter() - t0) / len(chunk)
            self.calls["generate"] += 1
            self.calls["items"] += len(chunk)
            for row in probs.tolist():
                best = max(range(len(row)), key=row.__getitem__)
                scores = {self.id2label.get(j, str(j)): round(p, 6) for j, p in enumerate(row)}
                out.append(Generation(self.id2label.get(best, str(best)), n_tokens=0, seconds=dt,
                                      extra={"label_scores": scores}))
        return out

    def close(self) -> None:
        self.model = None


def is_classifier_dir(path: Path) -> bool:
    """Whether a trained artifact is a sequence classifier (by its config's architectures or task)."""
    cfg = Path(path) / "config.json"
    acfg = Path(path) / "adapter_config.json"
    try:
        if acfg.is_file() and json.loads(acfg.read_text(encoding="utf-8")).get("task_type") == "SEQ_CLS":
            return True
        if cfg.is_file():
            archs = json.loads(cfg.read_text(encoding="utf-8")).get("architectures") or []
            return any(a.endswith("ForSequenceClassification") for a in archs)
    except (OSError, ValueError):
        return False
    return False


# ------------------------------------------------------------------------------------ vLLM (lazy)
