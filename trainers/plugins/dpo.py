"""``dpo``: direct preference optimisation (trl DPOTrainer) on prompt / chosen / rejected pairs.

Starts from ``sft_from``: ``auto`` (the project's latest finished lora/full run on the same base
model, else the base model), ``none`` (the base model), a run id, or a directory (a LoRA adapter or a
full model). From a LoRA adapter the same adapter keeps training, against a frozen copy of itself as
the reference; from a model, a new LoRA adapter trains with the adapter-free model as the reference.

The loss adds the SFT term on the chosen reply (``loss_type=["sigmoid", "sft"]``): DPO alone raised
the reward margin but wrecked greedy outputs in our measurements; with the SFT term it kept them.
``sft_weight: 0`` drops it.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    load_causal_lm,
    load_tokenizer,
    lora_config,
    preference_rows,
    quiet_libraries,
    run_trainer,
    score_labelled_positions_only_on_cpu,
    select_device,
    training_arguments,
    with_plugin_defaults,
)

SFT_PLUGINS = ("lora", "full", "qlora")


class DPOPluginConfig(LoraFields, PluginConfig):
    """The common and LoRA fields (defaults: advisor.training.PLUGIN_DEFAULTS["dpo"]: one epoch, batch 8
    pairs, a lower learning rate) and these."""

    beta: float = Field(0.1, gt=0, le=100, description="DPO temperature: how far the policy may move from the reference.")
    sft_weight: float = Field(1.0, ge=0, le=100, description="Weight of the SFT term on the chosen reply (0: DPO alone).")
    sft_from: str = Field("auto", description="auto | none | a run id | a directory (LoRA adapter or model) to start from.")
    use_lora: bool = Field(True, description="Train a LoRA adapter (false: every weight, with a frozen reference copy).")


DPOPluginConfig = with_plugin_defaults(DPOPluginConfig, "dpo")


def prepare(req: TrainRequest) -> dict:
    """Resolve where DPO starts, before anything is written (from the finished runs the runner read)."""
    config, project = req.config, req.project
    src = config.sft_from
    if src == "none":
        return {"start": "base"}
    if src == "auto" or not Path(src).exists():
        if src == "auto":
            run = next((r for r in req.finished_runs if r.plugin in SFT_PLUGINS and r.base_model == req.base_model),
                       None)
        else:
            run = next((r for r in req.finished_runs if r.id == src), None)
        start, run_id = (run.artifact, run.id) if run is not None else (None, None)
        if src == "auto" and start is None:
            return {"start": "base", "note": "no finished SFT run on this base model: DPO starts from the base model"}
        if start is None:
            raise AdviseError(f"train.sft_from: '{src}' is neither a directory nor a finished training run of this "
                              "project", file=project.project_file)
    else:
        start, run_id = Path(src).resolve(), None
    if (start / "adapter_config.json").is_file():
        acfg = json.loads((start / "adapter_config.json").read_text(encoding="utf-8"))
        if acfg.get("peft_type") != "LORA":
            raise AdviseError(f"train.sft_from: {start} is a {acfg.get('peft_type')} adapter; DPO continues LoRA "
                              "adapters or full models", file=project.project_file)
        return {"start": "adapter", "sft_adapter": str(start), "sft_run": run_id}
    if (start / "config.json").is_file():
        return {"start": "model", "base_model": str(start), "sft_run": run_id}
    raise AdviseError(f"train.sft_from: {start} holds neither a LoRA adapter nor a model", file=project.project_file)


def train(req: TrainRequest) -> TrainResult:
    quiet_libraries()
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    c = req.config
    facts = req.options.get("plugin_facts") or {}
    device = select_device(c.precision)
    if device.type == "cpu":
        score_labelled_positions_only_on_cpu()
    peak = PeakMemory(device)
    tok = load_tokenizer(req.base_model, c)
    model = load_causal_lm(req.base_model, c, device, dtype="bfloat16" if device.bf16 and c.use_lora else None)
    peft_cfg = None
    if facts.get("start") == "adapter":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, facts["sft_adapter"], is_trainable=True)
    elif c.use_lora:
        peft_cfg = lora_config(c, model)
    total, _ = count_parameters(model)
    rows = preference_rows(req.records, tok)
    ds = Dataset.from_list(rows)
    losses = ["sigmoid", "sft"] if c.sft_weight > 0 else ["sigmoid"]
    weights = [1.0, c.sft_weight] if c.sft_weight > 0 else [1.0]
    args = DPOConfig(**training_arguments(req, device, len(rows), model_params=total), beta=c.beta,
                     loss_type=losses, loss_weights=weights, max_length=c.max_length, model_init_kwargs=None)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_cfg)
    _, trainable = count_parameters(trainer.model)
    metrics = {"parameters": total, "trainable_parameters": trainable, "pairs": len(rows), "start": facts,
               "loss_type": losses, "loss_weights": weights}

    def save(out_dir):
        m = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(m, "peft_config"):
            m.save_pretrained(out_dir, selected_adapters=["default"])
            sub = Path(out_dir) / "default"  # peft nests non-default adapter names only
            if sub.is_dir():
                for f in sub.iterdir():
                    f.rename(Path(out_dir) / f.name)
                sub.rmdir()
        else:
            m.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)

    result = run_trainer(trainer, req, device, peak, artifact_kind="adapter" if (c.use_lora or facts.get("start") ==
                                                                                 "adapter") else "model",
                         save=save, metrics=metrics)
    logs = [h for h in trainer.state.log_history if "rewards/accuracies" in h or "rewards/margins" in h]
    if logs:
        result.metrics["reward_accuracy_last"] = logs[-1].get("rewards/accuracies")
        result.metrics["reward_margin_last"] = logs[-1].get("rewards/margins")
        result.metrics["reward_margin_first"] = logs[0].get("rewards/margins")
    return result


plugin = TrainerPlugin(
    name="dpo",
    config_class=DPOPluginConfig,
    train=train,
    description="DPO (trl DPOTrainer) with the SFT term, on preference pairs; from the base model or an SFT run.",
    data="preference",
    artifact_kind="adapter",
    prepare=prepare,
)
