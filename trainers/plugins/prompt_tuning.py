"""``prompt_tuning``: learn a few virtual prompt tokens (peft prompt tuning); the model stays frozen.

The virtual tokens start from the project's task description (``init: text``) or at random. Tiny
artifacts (num_virtual_tokens x hidden size), a higher learning rate than LoRA. They cannot be merged
into the weights: load them with ``PeftModel.from_pretrained(base, artifact)``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainers import SFTFields, TrainerPlugin, TrainRequest, TrainResult, train_sft, with_plugin_defaults


class PromptTuningPluginConfig(SFTFields):
    num_virtual_tokens: int = Field(20, ge=1, le=1024, description="Virtual prompt tokens learned.")
    init: Literal["text", "random"] = Field("text", description="Start the virtual tokens from the task text, or at random.")
    batching: Literal["padded"] = Field("padded", description="Prompt tuning pads each batch (virtual tokens are prepended).")


PromptTuningPluginConfig = with_plugin_defaults(PromptTuningPluginConfig, "prompt_tuning")


def train(req: TrainRequest) -> TrainResult:
    def peft_cfg(c, model):
        from peft import PromptTuningConfig, PromptTuningInit

        kw = {}
        if c.init == "text":
            kw = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": req.project.task,
                  "tokenizer_name_or_path": req.base_model}
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=c.num_virtual_tokens, **kw)

    return train_sft(req, peft_config_fn=peft_cfg)


plugin = TrainerPlugin(
    name="prompt_tuning",
    config_class=PromptTuningPluginConfig,
    train=train,
    description="Prompt tuning (peft): a few learned virtual tokens, the model frozen.",
    data="sft",
    artifact_kind="adapter",
)
