"""Numbers as the estimate reports them, and the compute model: FLOPs per token and GPU time.

FLOPs: 6·N·D for full fine-tuning (Kaplan et al. 2020), 4·N·D for LoRA/QLoRA (the weight-gradient
matmuls of frozen weights are skipped), SFT + DPO for "rlhf" (policy forward + backward and a reference
forward per token of the chosen and rejected sequences). Time: FLOPs / (peak dense bf16 FLOP/s x
model-FLOP utilisation), times a dequantisation overhead for QLoRA; wall time divides by the GPU count
with a scaling efficiency. Constants from ``rubrics/hardware.yaml``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from advisor.assess.estimate.hardware import Hardware, hw_const, hw_table, reference_gpu


def whole_tokens(x: float) -> int:
    """Token counts are reported as whole numbers (a fractional epoch processes a whole number of tokens)."""
    return int(round(x))


def sig(x: float | None, digits: int = 6) -> float | None:
    """Round to ``digits`` significant digits (keeps JSON short without hiding the magnitude)."""
    if x is None:
        return None
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(round(x, digits - 1 - int(math.floor(math.log10(abs(x))))))


def duration(hours: float | None) -> str:
    """A time a reader takes in at a glance: "under a minute", "about 12 minutes", "about 3.4 hours",
    "about 6 days"."""
    if hours is None:
        return "-"
    if hours < 1 / 60:
        return "under a minute"
    if hours < 1.5:
        return f"about {hours * 60:.0f} minutes"
    if hours < 48:
        return f"about {hours:.1f} hours"
    return f"about {hours / 24:,.0f} days"


def parameter_count(n: int | float | None) -> str:
    """A parameter count as people write it: "1.4M parameters", "494M parameters", "7.6B parameters"."""
    if not n:
        return "unknown size"
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            v = n / scale
            return f"{v:.1f}{unit} parameters" if v < 10 else f"{v:,.0f}{unit} parameters"
    return f"{int(n)} parameters"


@dataclass(frozen=True)
class Clock:
    """What GPU time is measured on: the project's GPUs, or one reference GPU when it states none."""

    gpu: str
    count: int
    tflops: float  # peak dense bf16 per GPU
    mfu: float
    mfu_low: float
    efficiency: float  # multi-GPU scaling; 1 for one GPU
    cpu_tflops: float  # effective, on this machine's cores
    priced_on: str


def clock(hw: Hardware) -> Clock:
    table = hw_table()
    if hw.kind == "gpu":
        gpu, count, tflops = str(hw.gpu), hw.count, float(hw.bf16_tflops or 0)
        priced_on = f"{hw.count}x {hw.gpu} (the project's hardware)"
    else:
        ref = reference_gpu()
        gpu, count, tflops = ref["name"], 1, float(ref["bf16_dense_tflops"])
        why = "no GPU stated" if hw.kind == "unknown" else "the project has no GPU"
        priced_on = f"1x {ref['name']}, the reference GPU ({why}): what renting one would cost"
    cpu = table["cpu"]
    # scaled to the cores of the machine that will train (this one: training on CPU happens here)
    cores = os.cpu_count() or int(cpu["assumed_cores"])
    cpu_tflops = float(cpu["effective_tflops"]) * min(cores, int(cpu["assumed_cores"])) / int(cpu["assumed_cores"])
    return Clock(gpu=gpu, count=count, tflops=tflops, mfu=float(hw_const("compute", "mfu")),
                 mfu_low=float(table["compute"]["mfu"]["low"]),
                 efficiency=1.0 if count == 1 else float(hw_const("compute", "scaling_efficiency")),
                 cpu_tflops=cpu_tflops, priced_on=priced_on)


@dataclass
class Work:
    """The training tokens and FLOPs of one estimate row."""

    tokens: float
    flops: float | None
    formula: str
    phases: dict[str, Any] | None = None
    note: str | None = None


def training_work(method: str, n_compute: int | None, train_tokens: float, dpo_tokens: float,
                  pair_tokens_are: str) -> Work:
    """FLOPs of a training row: 6·N·D (full), 4·N·D (lora, qlora), LoRA SFT + LoRA DPO (rlhf)."""
    f_lora = hw_const("compute", "flops_per_token", "lora")

    def flops(per_token: float, tokens: float) -> float | None:
        return None if n_compute is None else per_token * n_compute * tokens

    if method == "full":
        return Work(train_tokens, flops(hw_const("compute", "flops_per_token", "full"), train_tokens),
                    "6·N·D (forward 2N + backward 4N per token)")
    if method in ("lora", "qlora"):
        return Work(train_tokens, flops(f_lora, train_tokens),
                    "4·N·D (the 2N weight-gradient matmuls of frozen weights are skipped)")
    # rlhf = LoRA SFT + LoRA DPO: policy fwd + policy bwd (LoRA) + reference fwd per pair token
    dpo_per_token = 2 + (f_lora - 2) + hw_const("compute", "flops_per_token", "dpo_reference_forward")
    sft_flops, dpo_flops = flops(f_lora, train_tokens), flops(dpo_per_token, dpo_tokens)
    phases = {
        "sft": {"train_tokens": whole_tokens(train_tokens), "flops": sig(sft_flops), "flops_formula": "4·N·D"},
        "dpo": {"pair_tokens": whole_tokens(dpo_tokens), "flops": sig(dpo_flops),
                "flops_formula": f"{dpo_per_token}·N·D_pairs", "pair_tokens_are": pair_tokens_are},
    }
    return Work(
        train_tokens + dpo_tokens,
        None if sft_flops is None or dpo_flops is None else sft_flops + dpo_flops,
        (f"SFT 4·N·D_sft + DPO {dpo_per_token}·N·D_pairs (policy forward 2N + policy backward 2N + "
         "reference forward 2N per token of chosen and rejected)"),
        phases,
        ("rlhf is estimated as LoRA SFT followed by LoRA DPO; full-parameter DPO costs 8·N per pair token "
         "and needs a separate reference copy (+2 bytes/param)"),
    )


def gpu_hours(flops: float | None, clk: Clock, overhead: float = 1.0) -> tuple[float | None, float | None]:
    """(GPU-hours at the expected MFU, GPU-hours at the low MFU)."""
    if flops is None:
        return None, None
    return (flops / (clk.tflops * 1e12 * clk.mfu) / 3600 * overhead,
            flops / (clk.tflops * 1e12 * clk.mfu_low) / 3600 * overhead)
