"""GPU memory per method: weights, gradients and optimizer states, LoRA adapters, activations with
gradient checkpointing (Korthikanti et al. 2022), the LM-head logits and a fixed CUDA overhead;
several GPUs shard the model states (FSDP / ZeRO-3). Also the largest micro-batch that fits.
"""

from __future__ import annotations

import math

from advisor.assess.estimate.compute import duration
from advisor.assess.estimate.hardware import Hardware, hw_const
from advisor.assess.estimate.model_size import Arch
from advisor.methods import TRAINING_ROWS

GB = 1e9


def _adapter_params(arch: Arch, r: int) -> int:
    """LoRA parameters with adapters on every linear layer: r x (in + out) per module."""
    h, i = arch.hidden_size, arch.intermediate_size
    if arch.fused_gpt2:
        per_layer = (h + 3 * h) + (h + h) + (h + i) + (i + h)
    else:
        q_out, kv_out = arch.num_attention_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
        attn = (h + q_out) + 2 * (h + kv_out) + (q_out + h)
        per_layer = attn + arch.num_experts * 3 * (h + i)
    return r * per_layer * arch.num_layers


def _activation_bytes(arch: Arch, seq: int, micro_batch: int) -> tuple[float, float]:
    """(activations, logits) in bytes for one micro-batch, gradient checkpointing on."""
    tokens = seq * micro_batch
    keep = hw_const("memory", "activations")["checkpointed_bytes_per_token_hidden_layer"]
    one = hw_const("memory", "activations")["one_layer_bytes_per_token_hidden"]
    acts = tokens * arch.hidden_size * (keep * arch.num_layers + one)
    logits = tokens * arch.vocab_size * hw_const("memory", "logits_bytes_per_element")
    return float(acts), float(logits)


def memory_breakdown(method: str, n: int, arch: Arch, *, seq: int, micro_batch: int, lora_r: int,
            gpus: int) -> dict[str, float]:
    """Per-GPU memory breakdown in GB for one method at one micro-batch size."""
    gpus = max(1, gpus)
    parts: dict[str, float] = {}
    adapters = _adapter_params(arch, lora_r)
    seqs = micro_batch
    if method == "full":
        parts["weights_gradients_optimizer"] = hw_const("memory", "full_bytes_per_param") * n / gpus
    elif method in ("lora", "rlhf"):
        parts["frozen_weights_bf16"] = hw_const("memory", "frozen_bf16_bytes_per_param") * n / gpus
        parts["adapters_with_adamw"] = hw_const("memory", "adapter_bytes_per_param") * adapters / gpus
        if method == "rlhf":
            seqs = 2 * micro_batch  # DPO runs the chosen and the rejected sequence of each pair
    elif method == "qlora":
        parts["frozen_weights_nf4"] = hw_const("memory", "qlora_bytes_per_param") * n / gpus
        parts["adapters_with_adamw"] = hw_const("memory", "adapter_bytes_per_param") * adapters / gpus
    else:  # serving: prompting / rag
        parts["weights_bf16"] = hw_const("memory", "frozen_bf16_bytes_per_param") * n / gpus
        kv = 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * seq * 2
        parts["kv_cache"] = float(kv)
    if method in TRAINING_ROWS:
        acts, logits = _activation_bytes(arch, seq, seqs)
        parts["activations"] = acts
        parts["logits"] = logits
    parts = {k: v / GB for k, v in parts.items()}
    parts["cuda_overhead"] = float(hw_const("memory", "overhead_gb"))
    return parts


def fit_micro_batch(method: str, n: int, arch: Arch, *, seq: int, batch_size: int, lora_r: int,
                     hw: Hardware) -> tuple[int, dict[str, float], bool | None]:
    """The largest power-of-two micro-batch <= batch_size that fits, its breakdown, and whether it fits.

    Serving (prompting/rag) is checked for one sequence. With no known GPU memory the breakdown is at
    the requested batch size and ``fits`` is None (or False for a machine with no GPU).
    """
    if method not in TRAINING_ROWS:
        parts = memory_breakdown(method, n, arch, seq=seq, micro_batch=1, lora_r=lora_r, gpus=max(1, hw.count))
        if hw.kind == "cpu":
            parts.pop("cuda_overhead", None)  # no GPU: no CUDA context to hold
        fits = None if hw.kind != "gpu" else sum(parts.values()) <= (hw.memory_gb or 0)
        return 1, parts, fits
    candidates: list[int] = []
    mb = max(1, batch_size)
    while True:
        candidates.append(mb)
        if mb == 1:
            break
        mb = max(1, mb // 2)
    if hw.kind != "gpu":
        parts = memory_breakdown(method, n, arch, seq=seq, micro_batch=candidates[0], lora_r=lora_r, gpus=1)
        if hw.kind == "cpu":
            parts.pop("cuda_overhead", None)  # no GPU: no CUDA context to hold
        return candidates[0], parts, (False if hw.kind == "cpu" else None)
    for mb in candidates:
        parts = memory_breakdown(method, n, arch, seq=seq, micro_batch=mb, lora_r=lora_r, gpus=hw.count)
        if sum(parts.values()) <= (hw.memory_gb or 0):
            return mb, parts, True
    return 1, parts, False



def fits_note(method: str, hw: Hardware, fits: bool | None, mem_gb: float | None, mb: int, batch_size: int,
               cpu_hours: float | None, cpu_tflops: float) -> str:
    need = f"~{mem_gb} GB per GPU" + (f" at micro-batch {mb}" if method in TRAINING_ROWS else "")
    if hw.kind == "unknown":
        return f"hardware not stated: needs {need}"
    if hw.kind == "cpu":
        if method not in TRAINING_ROWS:
            return f"no GPU: runs on CPU if the machine has {need.replace(' per GPU', '')} of RAM"
        note = f"no GPU: {method} needs {need}"
        if cpu_hours is not None:
            note += (f"; on CPU {duration(cpu_hours)} ({cpu_hours:.3g} h) at ~{cpu_tflops:g} TFLOP/s effective "
                     "(order of magnitude)")
        if method == "qlora":
            note += "; 4-bit bitsandbytes kernels need a GPU"
        return note
    where = f"{hw.count}x {hw.gpu} ({hw.memory_gb:g} GB each)"
    if fits:
        if method in TRAINING_ROWS and mb < batch_size:
            return (f"fits {where} at micro-batch {mb} with {math.ceil(batch_size / mb)} gradient-accumulation "
                    f"steps: {need}")
        return f"fits {where}: {need}"
    return f"does not fit {where}: needs {need}, the smallest setting"
