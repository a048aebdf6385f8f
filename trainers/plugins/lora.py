"""``lora``: a LoRA adapter trained with peft through trl's SFTTrainer, the loss on the assistant reply only.

The token embeddings are trained too (peft ``modules_to_save``, weights kept tied) when the model ties
them to its output layer; ``train_embeddings: false`` turns that off. The artifact is the adapter
(safetensors) with the tokenizer; ``advise export`` merges it into a standalone model.
"""

from __future__ import annotations

from trainers import (
    LoraFields,
    SFTFields,
    TrainerPlugin,
    TrainRequest,
    TrainResult,
    lora_config,
    select_device,
    train_sft,
    with_plugin_defaults,
)


class LoraPluginConfig(LoraFields, SFTFields):
    """The common, SFT and LoRA fields (defaults: advisor.training, PLUGIN_DEFAULTS["lora"])."""


LoraPluginConfig = with_plugin_defaults(LoraPluginConfig, "lora")


def train(req: TrainRequest) -> TrainResult:
    device = select_device(req.config.precision)
    # the frozen base in bf16 on a GPU that supports it; fp32 on CPU
    return train_sft(req, peft_config_fn=lambda c, m: lora_config(c, m),
                     load_dtype="bfloat16" if device.bf16 else None)


plugin = TrainerPlugin(
    name="lora",
    config_class=LoraPluginConfig,
    train=train,
    description="LoRA adapter (peft) through trl's SFTTrainer; loss on the assistant reply only.",
    data="sft",
    artifact_kind="adapter",
)
