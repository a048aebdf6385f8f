"""``full``: full fine-tuning (every weight) through trl's SFTTrainer, the loss on the assistant reply only.

Weights stay in fp32 (bf16 mixed precision on a capable GPU); the artifact is a complete model directory
(safetensors) with its tokenizer, loadable with plain transformers.
"""

from __future__ import annotations

from pydantic import Field

from trainers.base import TrainerPlugin, TrainRequest, TrainResult
from trainers.sft import SFTFields, train_sft


class FullConfig(SFTFields):
    learning_rate: float = Field(2.0e-5, gt=0, le=1.0, description="Peak learning rate (AdamW).")


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
