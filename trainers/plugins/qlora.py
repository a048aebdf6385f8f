"""``qlora``: LoRA on a base model quantised to 4 bits (bitsandbytes NF4), through trl's SFTTrainer.

Needs a CUDA GPU and bitsandbytes; on a machine without them it refuses with one line before any work
(``preflight``). Everything else is the lora plugin: loss on the assistant reply only, the adapter in
safetensors (merge it with ``advise export``, which reloads the base in 16/32 bits).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from advisor.errors import AdviseError
from trainers.base import (
    DeviceInfo,
    LoraFields,
    TrainerPlugin,
    TrainRequest,
    TrainResult,
    import_optional,
    lora_config,
)
from trainers.sft import SFTFields, train_sft


class QLoraPluginConfig(LoraFields, SFTFields):
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the frozen base weights.")
    double_quant: bool = Field(True, description="Quantise the quantisation constants too (saves ~0.4 bit/param).")


def preflight(config: QLoraPluginConfig, device: DeviceInfo) -> None:
    if device.type != "cuda":
        raise AdviseError(f"the qlora plugin loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU, "
                          f"and this machine has none ({device.type}); use --method lora (16-bit LoRA) here")
    if import_optional("bitsandbytes") is None:
        raise AdviseError("the qlora plugin needs bitsandbytes (pip install bitsandbytes); or use --method lora")


def train(req: TrainRequest) -> TrainResult:
    import os

    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from trainers.base import model_load_kwargs, select_device

    c = req.config
    device = select_device(c.precision)
    preflight(c, device)
    compute = torch.bfloat16 if device.bf16 else torch.float16
    kw = model_load_kwargs(c, device, dtype="bfloat16" if device.bf16 else "float16")
    kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=c.quant_type,
                                                   bnb_4bit_use_double_quant=c.double_quant,
                                                   bnb_4bit_compute_dtype=compute)
    kw["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model = AutoModelForCausalLM.from_pretrained(req.base_model, **kw)
    gc = c.gradient_checkpointing if c.gradient_checkpointing is not None else True
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc)
    return train_sft(req, model=model, peft_config_fn=lambda cfg, m: lora_config(cfg, m),
                     metrics={"quantization": f"4-bit {c.quant_type}"})


plugin = TrainerPlugin(
    name="qlora",
    config_class=QLoraPluginConfig,
    train=train,
    description="LoRA on a 4-bit (NF4) base model; needs a CUDA GPU and bitsandbytes.",
    data="sft",
    artifact_kind="adapter",
    preflight=preflight,
)
