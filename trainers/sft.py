"""Supervised fine-tuning through trl's SFTTrainer, shared by the lora, qlora, full and prompt_tuning plugins
(and open to third-party plugins: see docs/plugins.md).

Rows are prompt/completion pairs (conversational when the tokenizer has a chat template), so the loss
falls on the assistant reply only. The trainer settings are chosen for the hardware rather than taken
from trl's defaults: no gradient checkpointing and fp32 on a CPU (trl's defaults, checkpointing and
bf16 autocast, cost 3.5x there), bf16 on a GPU that supports it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from advisor.hf import quiet_libraries
from trainers.data import sft_rows
from trainers.device import DeviceInfo, PeakMemory, select_device
from trainers.loop import run_trainer, training_arguments
from trainers.models import count_parameters, load_causal_lm, load_tokenizer
from trainers.plugin import PluginConfig, TrainRequest, TrainResult


class SFTFields(PluginConfig):
    batching: Literal["auto", "padded", "padding_free", "packed"] = Field(
        "auto", description="padded: pad each batch to its longest example; padding_free: concatenate a batch "
        "into one row (no pad tokens); packed: pack examples into max_length rows (changes the batch "
        "composition). auto: padding_free on CUDA with flash attention, padded elsewhere.")


def score_labelled_positions_only_on_cpu() -> None:
    """trl's fused LM head scores every position on devices without Triton, to keep tile shapes fixed for
    compiled backends (Neuron); on a CPU in eager mode that spends most of the LM-head work on prompt and
    padding positions, whose loss and metrics are zero anyway. Score only the labelled positions there (what
    trl does on CUDA): the same loss, far less work for completion-only SFT and DPO. Touches one private
    name of trl (``trl.trainer.utils._use_triton``, used only for that choice) and does nothing when it is
    missing."""
    try:
        import trl.trainer.utils as tu
    except ImportError:
        return
    orig = getattr(tu, "_use_triton", None)
    if orig is None or getattr(orig, "_advise_cpu_compact", False):
        return

    def _compact(device) -> bool:
        return getattr(device, "type", None) == "cpu" or orig(device)

    _compact._advise_cpu_compact = True
    tu._use_triton = _compact


def sft_batching(config, device: DeviceInfo) -> dict:
    mode = getattr(config, "batching", "auto")
    if mode == "auto":
        mode = "padding_free" if device.type == "cuda" and config.attn_implementation == "flash_attention_2" else "padded"
    if mode == "packed":
        return {"packing": True, "packing_strategy": "bfd", "padding_free": True}
    if mode == "padding_free":
        return {"packing": False, "padding_free": True}
    return {"packing": False, "padding_free": False}


def train_sft(req: TrainRequest, *, peft_config_fn=None, load_dtype: str | None = None,
              model=None, artifact_kind: str = "adapter", metrics: dict | None = None) -> TrainResult:
    """Train with SFTTrainer. ``peft_config_fn(config, model)`` returns a peft config (None: full fine-tuning)."""
    quiet_libraries()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    c = req.config
    device = select_device(c.precision)
    if device.type == "cpu":
        score_labelled_positions_only_on_cpu()
    peak = PeakMemory(device)
    tok = load_tokenizer(req.base_model, c)
    if model is None:
        model = load_causal_lm(req.base_model, c, device, dtype=load_dtype)
    peft_cfg = peft_config_fn(c, model) if peft_config_fn is not None else None
    total, _ = count_parameters(model)
    rows = sft_rows(req.records, tok)
    ds = Dataset.from_list(rows)
    kw = training_arguments(req, device, len(rows), model_params=total)
    args = SFTConfig(**kw, max_length=c.max_length, completion_only_loss=True, **sft_batching(c, device),
                     model_init_kwargs=None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_cfg)
    _, trainable = count_parameters(trainer.model)
    m = {"parameters": total, "trainable_parameters": trainable, "examples": len(rows), **(metrics or {})}

    def save(out_dir):
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        unwrapped.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)

    return run_trainer(trainer, req, device, peak, artifact_kind=artifact_kind, save=save, metrics=m)
