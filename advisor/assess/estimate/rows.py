"""``estimate()``: one row per method (tokens, FLOPs, hours, dollars, memory, fit, budget, hosted price).

The pieces live next door: hardware (parsing), model_size (parameter counting), compute (FLOPs and
GPU time), memory (per-GPU memory and micro-batch fit), prices (rental and hosted fine-tuning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.assess.estimate.compute import (
    Clock,
    clock,
    duration,
    gpu_hours,
    parameter_count,
    sig,
    training_work,
    whole_tokens,
)
from advisor.assess.estimate.hardware import Hardware, hw_const, hw_source, hw_table, parse_hardware
from advisor.assess.estimate.memory import GB, fit_micro_batch, fits_note, memory_breakdown
from advisor.assess.estimate.model_size import Arch, ModelInfo, arch_for, resolve_model
from advisor.assess.estimate.prices import hosted_offers, price_summary, prices_as_of
from advisor.hf import looks_like_path
from advisor.methods import ESTIMATE_ROWS, TRAINING_ROWS, plugin_for
from advisor.rubric import load_rubric, value
from advisor.training import run_settings

METHODS = ESTIMATE_ROWS


@dataclass(frozen=True)
class TrainingSettings:
    """The training a row is estimated for: what the plugin that trains the row will run with."""

    plugin: str
    max_steps: int | None
    epochs: float | None  # None when max_steps is set
    passes: float  # passes over the training examples the run makes (what tokens are counted with)
    max_length: int
    batch_size: int
    grad_accum: int
    lora_r: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _training_settings(method: str, *, epochs: float, max_length: int, batch_size: int, lora_r: int,
                       train: dict | None = None, train_examples: int = 0) -> TrainingSettings:
    """The one place where a row's training settings are resolved.

    With the project's ``train`` keys (only those the user wrote): what the plugin that trains the row
    will run with (advisor.training: the plugin's defaults overridden by those keys; rlhf is the dpo
    plugin), so the estimate and the run describe the same training. Without them: the arguments given
    to :func:`estimate`, the same for every row."""
    if train is None:
        return TrainingSettings(plugin=plugin_for(method), max_steps=None, epochs=epochs, passes=epochs,
                                max_length=max_length, batch_size=batch_size, grad_accum=1, lora_r=lora_r)
    return TrainingSettings(**run_settings(plugin_for(method), train, train_examples))


Fit = tuple[int, dict[str, float], bool | None]  # micro-batch, memory breakdown in GB, fits


@dataclass
class _Context:
    """What every row shares: the inputs, the hardware, the model and the clock."""

    hw: Hardware
    info: ModelInfo
    arch: Arch | None
    clk: Clock
    train_tokens_per_epoch: int
    preference_tokens_per_epoch: int | None
    docs_tokens: int
    budget_usd: float | None
    on_prem: bool
    settings: dict[str, Any]
    base_model: str | None = None
    local_model: bool = False
    _fits: dict[tuple[str, TrainingSettings], Fit] = field(default_factory=dict)

    @property
    def hub_id(self) -> str | None:
        """The base model's hub id, None for a local directory (no hosted provider has it)."""
        bm = self.base_model
        return None if not bm or looks_like_path(bm) or self.local_model else bm

    @property
    def n_compute(self) -> int | None:
        return self.info.active_parameters or self.info.parameters  # MoE: FLOPs follow active parameters

    def settings_for(self, method: str) -> TrainingSettings:
        return _training_settings(method, **self.settings)

    def fit(self, method: str) -> Fit | None:
        if self.info.parameters is None or self.arch is None:
            return None
        s = self.settings_for(method)
        if (method, s) not in self._fits:
            self._fits[(method, s)] = fit_micro_batch(method, self.info.parameters, self.arch, seq=s.max_length,
                                                      batch_size=s.batch_size, lora_r=s.lora_r, hw=self.hw)
        return self._fits[(method, s)]

    def tokens(self, method: str) -> tuple[float, float]:
        """(SFT training tokens, DPO pair tokens) over the run's passes; rlhf's SFT phase is the lora
        plugin's run, its DPO phase the dpo plugin's."""
        s = self.settings_for(method)
        sft = self.settings_for("lora") if method == "rlhf" else s
        per_epoch = (2 * self.train_tokens_per_epoch if self.preference_tokens_per_epoch is None
                     else self.preference_tokens_per_epoch)
        return self.train_tokens_per_epoch * sft.passes, per_epoch * s.passes


def estimate(
    *,
    methods: list[str],
    base_model: str | None,
    model_dir: Path | None,
    train_tokens_per_epoch: int,
    epochs: float,
    hardware: str | None,
    budget_usd: float | None,
    on_prem: bool,
    max_length: int = 512,
    lora_r: int = 16,
    batch_size: int = 16,
    docs_tokens: int = 0,
    preference_tokens_per_epoch: int | None = None,
    train: dict | None = None,
    train_examples: int = 0,
) -> dict[str, Any]:
    """Tokens, FLOPs, GPU-hours, dollars and memory for each method in ``methods`` (in that order).

    ``train_tokens_per_epoch`` counts the tokens of the training examples (prompt + completion);
    ``docs_tokens`` the tokens of the reference documents a RAG index would embed;
    ``preference_tokens_per_epoch`` the tokens of the chosen plus the rejected sequences a DPO epoch
    processes (default: twice ``train_tokens_per_epoch``, i.e. a rejected answer as long as the chosen).
    ``train`` (project.yaml's ``train:`` keys as written) and ``train_examples`` make each training row
    use the settings its plugin will run with (see ``_training_settings``) instead of ``epochs``,
    ``max_length``, ``lora_r`` and ``batch_size``. Raises ``ValueError`` for an unknown method or GPU
    name and for negative sizes. The returned dict is JSON-serialisable.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; known: {', '.join(METHODS)}")
    if train_tokens_per_epoch < 0 or epochs < 0 or docs_tokens < 0:
        raise ValueError("train_tokens_per_epoch, epochs and docs_tokens must not be negative")
    if max_length < 1 or batch_size < 1 or lora_r < 1:
        raise ValueError("max_length, batch_size and lora_r must be at least 1")

    hw = parse_hardware(hardware)
    info = resolve_model(base_model, model_dir)
    arch, arch_source = arch_for(info)
    ctx = _Context(hw=hw, info=info, arch=arch, clk=clock(hw), train_tokens_per_epoch=train_tokens_per_epoch,
                   preference_tokens_per_epoch=preference_tokens_per_epoch, docs_tokens=docs_tokens,
                   budget_usd=budget_usd, on_prem=on_prem, base_model=base_model, local_model=model_dir is not None,
                   settings={"epochs": epochs, "max_length": max_length, "batch_size": batch_size,
                             "lora_r": lora_r, "train": train, "train_examples": train_examples})
    return {
        "assumptions": _assumptions(max_length, batch_size, lora_r),
        "model": _model_out(info, arch, arch_source),
        "hardware": _hardware_out(hw, ctx.clk),
        "inputs": {"train_tokens_per_epoch": train_tokens_per_epoch, "epochs": epochs,
                   "max_length": max_length, "batch_size": batch_size, "lora_r": lora_r,
                   "docs_tokens": docs_tokens, "budget_usd": budget_usd, "on_prem": on_prem},
        "methods": _compare_memory(ctx, [_row(ctx, method) for method in methods]),
    }


def _compare_memory(ctx: _Context, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """When a LoRA row needs more memory than full fine-tuning only because it fits a larger
    micro-batch, its notes say so (with what it needs at full fine-tuning's micro-batch)."""
    by = {r["method"]: r for r in rows}
    full = by.get("full")
    if not full or full.get("memory_gb") is None or not full.get("micro_batch"):
        return rows
    for name in ("lora", "qlora"):
        r = by.get(name)
        if (not r or r.get("memory_gb") is None or not r.get("micro_batch") or r["memory_gb"] <= full["memory_gb"]
                or r["micro_batch"] <= full["micro_batch"]):
            continue
        s = ctx.settings_for(name)
        same = memory_breakdown(name, ctx.info.parameters, ctx.arch, seq=s.max_length, micro_batch=full["micro_batch"],
                                lora_r=s.lora_r, gpus=max(1, ctx.hw.count))
        if ctx.hw.kind == "cpu":
            same.pop("cuda_overhead", None)
        r["notes"].append(f"{name} needs more memory than full fine-tuning ({r['memory_gb']:g} GB vs "
                          f"{full['memory_gb']:g} GB) because it runs a larger micro-batch ({r['micro_batch']} vs "
                          f"{full['micro_batch']}); at micro-batch {full['micro_batch']} it needs about "
                          f"{sig(sum(same.values()), 3):g} GB")
    return rows


def _row(ctx: _Context, method: str) -> dict[str, Any]:
    """One method's row: its cost, its memory and fit, the budget check and the hosted alternative."""
    entry: dict[str, Any] = {"method": method}
    notes: list[str] = []
    fitted = ctx.fit(method)
    mem_gb = sig(sum(fitted[1].values()), 4) if fitted else None
    if method in TRAINING_ROWS:
        entry.update(_training_cost(ctx, method, notes))
    else:
        entry.update(_serving_cost(ctx, method, mem_gb))
    entry.update(_fit_fields(ctx, method, fitted, mem_gb, entry.get("cpu_hours")))
    entry.update(_cpu_training(ctx, method, entry.get("cpu_hours")))
    cost = entry.get("cost_usd")
    entry["within_budget"] = None if ctx.budget_usd is None or cost is None else bool(cost <= ctx.budget_usd)
    entry.update(_hosted_fields(ctx, method))
    entry["notes"] = notes
    return entry


def _training_cost(ctx: _Context, method: str, notes: list[str]) -> dict[str, Any]:
    """Tokens, FLOPs, GPU-hours and rental dollars of a training row (CPU hours without a GPU)."""
    hw, clk = ctx.hw, ctx.clk
    s = ctx.settings_for(method)
    train_tokens, dpo_tokens = ctx.tokens(method)
    pairs_are = ("preference_tokens_per_epoch x epochs" if ctx.preference_tokens_per_epoch is not None else
                 "2 x train_tokens_per_epoch x epochs (rejected answers assumed as long as the chosen ones)")
    work = training_work(method, ctx.n_compute, train_tokens, dpo_tokens, pairs_are)
    out: dict[str, Any] = {"train_tokens": whole_tokens(work.tokens), "flops": sig(work.flops),
                           "flops_formula": work.formula, "training": s.to_dict()}
    if work.phases:
        out["phases"] = work.phases
        if "sft" in work.phases and "dpo" in work.phases:
            out["phases"]["sft"]["training"] = ctx.settings_for("lora").to_dict()
            out["phases"]["dpo"]["training"] = s.to_dict()
    if work.note:
        notes.append(work.note)
    overhead = float(hw_const("compute", "qlora_time_overhead")) if method == "qlora" else 1.0
    if method == "qlora":
        notes.append(f"QLoRA does LoRA's matmuls but dequantises NF4 weights on every pass: time x{overhead}")
    hours, hours_slow = gpu_hours(work.flops, clk, overhead)
    wall = None if hours is None else hours / (clk.count * clk.efficiency)
    billed = None if wall is None else wall * clk.count
    prices = price_summary(clk.gpu)
    if billed is not None and prices is not None:
        cost, cheapest = billed * prices["typical_usd_per_gpu_hour"], billed * float(prices["cheapest"]["usd"])
    else:
        cost = cheapest = None
        if prices is None:
            notes.append(f"no rental price listed for {clk.gpu} in rubrics/prices.yaml")
    out.update({
        "timed_on": f"{clk.count}x {clk.gpu}",
        "gpu_hours": sig(hours),
        "gpu_hours_range": None if hours is None else [sig(hours), sig(hours_slow)],
        "wall_hours": sig(wall),
        "cost_usd": sig(cost, 4),
        "cost_usd_cheapest": sig(cheapest, 4),
        "priced_on": clk.priced_on,
        "price": prices,
    })
    if hw.kind != "gpu":
        out["cpu_hours"] = None if work.flops is None else sig(work.flops / (clk.cpu_tflops * 1e12) / 3600, 3)
        if hw.kind == "cpu" and ctx.on_prem:
            notes.append("renting a cloud GPU may itself conflict with data_must_stay_on_prem")
    if hw.kind == "gpu" and hw.bf16_supported is False:
        notes.append(f"{hw.gpu} has no bf16: timed at its fp16 mixed-precision peak")
    return out


def _serving_cost(ctx: _Context, method: str, mem_gb: float | None) -> dict[str, Any]:
    """Prompting and RAG train nothing: serving memory, CPU decoding speed and RAG's index pass."""
    out: dict[str, Any] = {"train_tokens": 0, "flops": 0.0, "flops_formula": "no training", "gpu_hours": 0.0,
                           "gpu_hours_range": [0.0, 0.0], "wall_hours": 0.0, "cost_usd": 0.0,
                           "cost_usd_cheapest": 0.0, "priced_on": None, "price": None}
    n = ctx.info.parameters
    max_length = ctx.settings_for(method).max_length
    serve = (f"serving needs ~{mem_gb} GB in bf16 for one {max_length}-token sequence" if mem_gb else
             "serving memory unknown (model size unknown)")
    if ctx.hw.kind == "cpu" and n is not None:
        bw = float(hw_table()["cpu"]["memory_bandwidth_gb_s"])
        serve += f"; on CPU, decoding is memory-bound: ~{sig(bw / (2 * n / GB), 2)} tokens/s at {bw:g} GB/s"
    if method == "prompting":
        out["inference_note"] = ("no training cost; every query pays for its prompt, and few-shot examples add "
                                 "their tokens to every call; " + serve)
        return out
    emb = load_rubric("models")["embedding_model"]
    index_flops = 2 * float(emb["parameters"]) * ctx.docs_tokens
    out["index"] = {
        "embedding_model": emb["id"],
        "docs_tokens": ctx.docs_tokens,
        "flops": sig(index_flops),
        "cpu_hours": sig(ctx.docs_tokens / float(emb["cpu_tokens_per_second"]) / 3600, 3),
        "gpu_hours": sig(gpu_hours(index_flops, ctx.clk)[0], 3),
        "source": emb["source"],
    }
    out["inference_note"] = (
        "no training cost; the index needs one embedding pass over the documents (2·N_emb FLOPs per token, "
        "repeated when documents change), and each query adds its retrieved chunks (e.g. 4 x 256 = ~1,000 "
        "tokens) to the prompt; " + serve)
    return out


def _fit_fields(ctx: _Context, method: str, fitted: Fit | None, mem_gb: float | None,
                cpu_hours: float | None) -> dict[str, Any]:
    """Memory, micro-batch and fit; a cheaper LoRA/QLoRA that fits when this one does not."""
    if fitted is None:
        return {"memory_gb": None, "memory_breakdown_gb": None, "micro_batch": None,
                "gradient_accumulation": None, "fits": None,
                "fits_note": ("model size unknown: give base_model a known hub id, a size in its name, "
                              "or a local directory with config.json")}
    mb, parts, fits = fitted
    trains = method in TRAINING_ROWS
    batch_size = ctx.settings_for(method).batch_size
    out: dict[str, Any] = {
        "memory_gb": mem_gb,
        "memory_breakdown_gb": {k: sig(v, 4) for k, v in parts.items()},
        "micro_batch": mb if trains else None,
        "gradient_accumulation": math.ceil(batch_size / mb) if trains else None,
        "fits": fits,
        "fits_note": fits_note(method, ctx.hw, fits, mem_gb, mb, batch_size, cpu_hours, ctx.clk.cpu_tflops),
    }
    if method in ("lora", "full") and fits is False and ctx.hw.kind == "gpu":
        for cheaper in (("lora", "qlora") if method == "full" else ("qlora",)):
            other = ctx.fit(cheaper)
            if other is not None and other[2]:
                out["suggest"] = cheaper
                out["fits_note"] += (f"; {cheaper} fits ({sig(sum(other[1].values()), 4)} GB per GPU "
                                     f"at micro-batch {other[0]})")
                break
    return out


def _cpu_training(ctx: _Context, method: str, cpu_hours: float | None) -> dict[str, Any]:
    """A small model trains on this CPU: it fits, and costs nothing to rent."""
    limit = float(value(load_rubric("decision"), "thresholds", "cpu_training_max_hours"))
    if (ctx.hw.kind != "cpu" or method not in TRAINING_ROWS or method == "qlora" or cpu_hours is None
            or cpu_hours > limit):
        return {}
    return {"fits": True, "cost_usd": 0.0,
            "fits_note": (f"fits this CPU: {duration(cpu_hours)} ({cpu_hours:.3g} h) at ~{ctx.clk.cpu_tflops:g} TFLOP/s effective "
                          f"(<= {limit:g} h; no GPU to rent)")}


def _hosted_fields(ctx: _Context, method: str) -> dict[str, Any]:
    """What a hosted fine-tuning service would charge for this row (none without training or on premises)."""
    if method not in TRAINING_ROWS:
        return {"hosted": None, "hosted_note": "no training, so no hosted fine-tuning price applies"}
    if ctx.on_prem:
        return {"hosted": None,
                "hosted_note": "data_must_stay_on_prem is true: hosted (third-party) fine-tuning is not an option"}
    offers = hosted_offers(method, ctx.info.parameters, *ctx.tokens(ctx.settings_for(method)), model_id=ctx.hub_id)
    same = [o for o in offers if o["same_model"]]
    best = same[0] if same else None  # the hosted price is for this model; a closed model is another model
    closed = next((o for o in offers if not o["same_model"]), None)
    if best:
        note = ("billed per training token (tokens x epochs); offers with same_model false tune the provider's own "
                "closed model, comparable at the task level only")
    else:
        what = ("a local model directory" if ctx.hub_id is None else
                f"{ctx.hub_id}" + ("" if ctx.info.parameters is None else f" ({parameter_count(ctx.info.parameters)})"))
        note = f"no listed provider fine-tunes {what} (rubrics/prices.yaml, hostable)"
        if closed:
            note += (f"; {closed['provider']} tunes its own closed model ({closed['offering']}) on the same data for "
                     f"about ${closed['usd']:,.2f}, comparable at the task level only")
    return {
        "hosted": {
            "cost_usd": best["usd"] if best else None,
            "cheapest": ({k: best[k] for k in ("provider", "offering", "usd", "same_model", "approximate")}
                         if best else None),
            "offers": offers,
            "price_table_as_of": prices_as_of(),
        },
        "hosted_note": note,
    }


def _hardware_out(hw: Hardware, clk: Clock) -> dict[str, Any]:
    out = hw.model_dump()
    out["priced_on"] = clk.priced_on
    if hw.kind == "gpu":
        out["description"] = (f"{hw.count}x {hw.gpu} ({hw.memory_gb:g} GB, {hw.bf16_tflops:g} TFLOPS "
                              f"{'bf16' if hw.bf16_supported else 'fp16'} each)")
    else:
        out["description"] = "no GPU" if hw.kind == "cpu" else "not stated"
    return out


def _model_out(info: ModelInfo, arch: Arch | None, arch_source: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": info.id, "parameters": info.parameters, "source": info.source}
    if info.active_parameters:
        out["active_parameters"] = info.active_parameters
    if arch is not None:
        out["architecture"] = {
            "hidden_size": arch.hidden_size, "num_layers": arch.num_layers,
            "intermediate_size": arch.intermediate_size, "vocab_size": arch.vocab_size,
            "num_attention_heads": arch.num_attention_heads, "num_kv_heads": arch.num_kv_heads,
            "head_dim": arch.head_dim, "source": arch_source,
        }
    return out


def _assumptions(max_length: int, batch_size: int, lora_r: int) -> dict[str, Any]:
    hw = hw_table()
    return {
        "flops_per_token": {
            "full": {"value": hw_const("compute", "flops_per_token", "full"),
                     "source": hw_source("compute", "flops_per_token", "full")},
            "lora_and_qlora": {"value": hw_const("compute", "flops_per_token", "lora"),
                               "source": hw_source("compute", "flops_per_token", "lora")},
            "dpo": {"value": "policy forward 2 + policy backward 2 (LoRA) + reference forward 2 = 6 per "
                             "token of the chosen and the rejected sequences",
                    "source": hw_source("compute", "flops_per_token", "dpo_reference_forward")},
        },
        "mfu": {"value": hw_const("compute", "mfu"), "low": hw["compute"]["mfu"]["low"],
                "source": hw_source("compute", "mfu")},
        "scaling_efficiency": {"value": hw_const("compute", "scaling_efficiency"),
                               "source": hw_source("compute", "scaling_efficiency")},
        "qlora_time_overhead": {"value": hw_const("compute", "qlora_time_overhead"),
                                "source": hw_source("compute", "qlora_time_overhead")},
        "bytes_per_param": {
            "full": {"value": hw_const("memory", "full_bytes_per_param"),
                     "source": hw_source("memory", "full_bytes_per_param")},
            "frozen_bf16": {"value": hw_const("memory", "frozen_bf16_bytes_per_param"),
                            "source": hw_source("memory", "frozen_bf16_bytes_per_param")},
            "adapter": {"value": hw_const("memory", "adapter_bytes_per_param"),
                        "source": hw_source("memory", "adapter_bytes_per_param")},
            "qlora_nf4": {"value": hw_const("memory", "qlora_bytes_per_param"),
                          "source": hw_source("memory", "qlora_bytes_per_param")},
        },
        "activations": {"gradient_checkpointing": True, "sequence_length": max_length,
                        "source": hw_source("memory", "activations")},
        "logits_bytes_per_element": {"value": hw_const("memory", "logits_bytes_per_element"),
                                     "source": hw_source("memory", "logits_bytes_per_element")},
        "cuda_overhead_gb": {"value": hw_const("memory", "overhead_gb"),
                             "source": hw_source("memory", "overhead_gb")},
        "lora": {"r": lora_r, "target_modules": "all-linear", "source": hw_source("memory", "lora_target_modules")},
        "micro_batch": (f"the largest power of two <= batch_size ({batch_size}) that fits the GPU; the rest "
                        "by gradient accumulation (same tokens, same FLOPs)"),
        "multi_gpu": hw_source("memory", "sharding"),
        "gigabyte": hw["memory"]["gigabyte"],
        "rlhf": ("rlhf = LoRA SFT on the training tokens, then LoRA DPO on preference pairs; the reference "
                 "model is the base with adapters disabled (trl + peft), so it costs a forward pass but "
                 "no extra weights"),
        "cost": ("GPU-hours billed = wall hours x GPU count, priced at the median ('typical') and the "
                 "cheapest listed on-demand price; budget checks use the typical price. Owned hardware has "
                 "no rental cost: read the figure as what the GPU time is worth"),
        "cpu": {"effective_tflops": hw["cpu"]["effective_tflops"], "source": hw["cpu"]["source"]},
        "hardware_table_as_of": hw.get("as_of"),
        "price_table_as_of": prices_as_of(),
        "model_table_as_of": load_rubric("models").get("as_of"),
    }
