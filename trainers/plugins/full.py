"""``full``: full fine-tuning (every weight) through trl's SFTTrainer, the loss on the assistant reply only.

Weights stay in fp32 (bf16 mixed precision on a capable GPU); the artifact is a complete model directory
(safetensors) with its tokenizer, loadable with plain transformers.
"""

from __future__ import annotations

from trainers import SFTFields, TrainerPlugin, TrainRequest, TrainResult, train_sft, with_plugin_defaults


class FullConfig(SFTFields):
    """The common fields; defaults: advisor.training.PLUGIN_DEFAULTS["full"] (a lower learning rate)."""


FullConfig = with_plugin_defaults(FullConfig, "full")


def train(req: TrainRequest) -> TrainResult:
    return train_sft(req, peft_config_fn=None, artifact_kind="model")


plugin = TrainerPlugin(
    name="full",
    config_class=FullConfig,
    train=train,
    description="Full fine-tuning of every weight through trl's SFTTrainer; loss on the assistant reply only.",
    data="sft",
    artifact_kind="model",
)
