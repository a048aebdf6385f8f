"""``qlora``: LoRA on a base model quantised to 4 bits (bitsandbytes NF4), through trl's SFTTrainer.

Needs a CUDA GPU and bitsandbytes; on a machine without them it refuses with one line before any work
(``preflight``). ``allow_cpu: true`` opts in to bitsandbytes' CPU backend (bitsandbytes >= 0.48): the
same 4-bit NF4 layers, dequantised on the CPU - slow, but it checks a QLoRA setup end to end on a
laptop or in CI, and it is how this plugin's test trains for real on a machine without a GPU.
Everything else is the lora plugin: loss on the assistant reply only, the adapter in safetensors
(merge it with ``advise export``, which reloads the base in 16/32 bits).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from advisor.errors import AdviseError
from trainers import (
    DeviceInfo,
    LoraFields,
    SFTFields,
    TrainerPlugin,
    TrainRequest,
    TrainResult,
    import_optional,
    lora_config,
    model_load_kwargs,
    select_device,
    train_sft,
    with_plugin_defaults,
)


class QLoraPluginConfig(LoraFields, SFTFields):
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the frozen base weights.")
    double_quant: bool = Field(True, description="Quantise the quantisation constants too (saves ~0.4 bit/param).")
    allow_cpu: bool = Field(False, description="Without a CUDA GPU, run bitsandbytes' CPU backend (bitsandbytes "
                            ">= 0.48) instead of refusing: slow; for checking a QLoRA setup without a GPU.")


QLoraPluginConfig = with_plugin_defaults(QLoraPluginConfig, "qlora")


def preflight(config: QLoraPluginConfig, device: DeviceInfo) -> None:
    if device.type != "cuda" and not (config.allow_cpu and device.type == "cpu"):
        raise AdviseError(f"the qlora plugin loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU, "
                          f"and this machine has none ({device.type}); use --method lora (16-bit LoRA) here, or "
                          "set train.allow_cpu: true for bitsandbytes' slow CPU backend")
    bnb = import_optional("bitsandbytes")
    if bnb is None:
        raise AdviseError("the qlora plugin needs bitsandbytes (pip install bitsandbytes); or use --method lora")
    if device.type == "cpu" and not _cpu_4bit_works(bnb):
        raise AdviseError(f"train.allow_cpu: bitsandbytes {getattr(bnb, '__version__', '?')} has no CPU backend for "
                          "4-bit weights (it came with bitsandbytes 0.48); pip install -U bitsandbytes, or use "
                          "--method lora")


def _cpu_4bit_works(bnb) -> bool:
    """Quantise and dequantise one small CPU tensor: the feature itself, not a version number."""
    import torch

    try:
        w = torch.randn(64, 64)
        q, state = bnb.functional.quantize_4bit(w, quant_type="nf4")
        back = bnb.functional.dequantize_4bit(q, state)
    except Exception:  # noqa: BLE001 - any failure of the backend means "not supported here"
        return False
    return back.shape == w.shape and bool(torch.isfinite(back).all())


def train(req: TrainRequest) -> TrainResult:
    import os

    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    c = req.config
    device = select_device(c.precision)
    preflight(c, device)
    # the layers that stay unquantised and the 4-bit matmuls compute in bf16 on a capable GPU, fp16 on an older
    # one, fp32 on the CPU (CPU fp16 matmuls are slow and lossy)
    dtype = "bfloat16" if device.bf16 else "float16" if device.type == "cuda" else "float32"
    kw = model_load_kwargs(c, device, dtype=dtype)
    kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=c.quant_type,
                                                   bnb_4bit_use_double_quant=c.double_quant,
                                                   bnb_4bit_compute_dtype=getattr(torch, dtype))
    kw["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0")) if device.type == "cuda" else "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(req.base_model, **kw)
    except OSError as e:
        raise AdviseError(f"cannot load the base model '{req.base_model}': {str(e).splitlines()[0]}") from None
    # QLoRA's usual setting on a GPU; on the CPU memory is not the limit and recomputation only costs time
    gc = c.gradient_checkpointing if c.gradient_checkpointing is not None else device.type == "cuda"
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    return train_sft(req, model=model, peft_config_fn=lambda cfg, m: lora_config(cfg, m),
                     metrics={"quantization": f"4-bit {c.quant_type}"})


plugin = TrainerPlugin(
    name="qlora",
    config_class=QLoraPluginConfig,
    train=train,
    description="LoRA on a 4-bit (NF4) base model; needs bitsandbytes and a CUDA GPU (or allow_cpu).",
    data="sft",
    artifact_kind="adapter",
    preflight=preflight,
)
