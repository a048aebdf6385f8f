"""Cost, time and memory of each customisation method, before any money is spent.

``estimate()`` answers, for one project and a list of methods ("prompting", "rag", "lora", "qlora",
"full", "rlhf"): how many training tokens and FLOPs, how many GPU-hours on the stated hardware, what
that costs at dated on-demand prices, how much GPU memory it needs and whether that fits, and what a
hosted fine-tuning service would charge instead. Every constant comes from ``rubrics/hardware.yaml``,
``rubrics/prices.yaml`` or ``rubrics/models.yaml`` with its source, and the result repeats the
assumptions it used, so a reader can check each number by hand.

The model:

* FLOPs: 6·N·D for full fine-tuning (Kaplan et al. 2020), 4·N·D for LoRA/QLoRA (the weight-gradient
  matmuls of frozen weights are skipped), SFT + DPO for "rlhf" (DPO: policy forward + backward and a
  reference forward per token of the chosen and rejected sequences).
* Time: FLOPs / (peak dense bf16 FLOP/s x model-FLOP utilisation), times a dequantisation overhead for
  QLoRA; wall time divides by the GPU count with a scaling efficiency.
* Memory per GPU: bytes per parameter for weights/gradients/optimizer (ZeRO accounting), LoRA adapters
  with AdamW, activations with gradient checkpointing (Korthikanti et al. 2022), the LM-head logits,
  and a fixed CUDA overhead. Several GPUs shard the model states (FSDP / ZeRO-3).

Only the standard library, pydantic and PyYAML are imported: ``advise assess`` must stay fast.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import struct
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from advisor.hf import cached_snapshot
from advisor.methods import ESTIMATE_ROWS, TRAINING_ROWS, plugin_for
from advisor.rubric import load_rubric, value
from advisor.training import run_settings

__all__ = ["METHODS", "Hardware", "estimate", "model_parameters", "parse_hardware"]

METHODS = ESTIMATE_ROWS
TRAINING_METHODS = TRAINING_ROWS


# ---------------------------------------------------------------------------------------------
# Rubric tables


@cache
def _rubric(name: str) -> dict[str, Any]:
    """One YAML table from the ``rubrics`` package (cached: the tables are read-only data)."""
    text = files("rubrics").joinpath(name).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):  # pragma: no cover - a broken install, not user input
        raise RuntimeError(f"rubrics/{name} is not a mapping")
    return data


def _hw_table() -> dict[str, Any]:
    return _rubric("hardware.yaml")


def _const(*path: str) -> Any:
    """A constant from hardware.yaml's compute/memory sections: its ``value`` when it has one."""
    node: Any = _hw_table()
    for key in path:
        node = node[key]
    return node["value"] if isinstance(node, dict) and "value" in node else node


def _source(*path: str) -> str:
    node: Any = _hw_table()
    for key in path:
        node = node[key]
    return str(node.get("source", "")) if isinstance(node, dict) else ""


# ---------------------------------------------------------------------------------------------
# Hardware


class Hardware(BaseModel):
    """The GPUs available for training, as parsed from ``constraints.hardware``.

    ``kind`` is "gpu" (a known GPU, ``count`` >= 1), "cpu" (the project said "none"/"cpu": no GPU) or
    "unknown" (nothing stated). ``memory_gb`` is per GPU; ``bf16_tflops`` is the peak dense bf16
    tensor throughput per GPU (fp16 for GPUs without bf16, see ``bf16_supported``).
    """

    text: str | None
    kind: Literal["gpu", "cpu", "unknown"]
    count: int
    gpu: str | None
    memory_gb: float | None
    bf16_tflops: float | None
    bf16_supported: bool | None
    source: str


_NO_GPU = {"none", "no", "nogpu", "cpu", "cpuonly", "0", "na", "n/a"}
_VENDOR_WORDS = re.compile(r"\b(nvidia|geforce|tesla)\b")


def _norm_gpu(text: str) -> str:
    """Lower-case, drop vendor words and every non-alphanumeric character: 'NVIDIA A100 80GB' -> 'a10080gb'."""
    return re.sub(r"[^a-z0-9]", "", _VENDOR_WORDS.sub("", text.lower()))


@lru_cache(maxsize=1)
def _gpu_index() -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for gpu in _hw_table()["gpus"]:
        for alias in [gpu["name"], *gpu.get("aliases", [])]:
            index.setdefault(_norm_gpu(str(alias)), gpu)
    return index


def _gpu_entry(name: str) -> dict[str, Any]:
    for gpu in _hw_table()["gpus"]:
        if gpu["name"] == name:
            return gpu
    raise KeyError(name)  # pragma: no cover - the rubric names its own reference GPU


_MEMORY_WORD = re.compile(r"\b\d+\s*gb?\b", re.IGNORECASE)
_FORM_WORD = re.compile(r"\b(pcie|sxm\d?)\b", re.IGNORECASE)


def _lookup_gpu(name: str) -> dict[str, Any] | None:
    """Exact alias first; then the same name without its memory size, its form factor, or both."""
    index = _gpu_index()
    if (gpu := index.get(_norm_gpu(name))) is not None:
        return gpu
    stated = [int(re.sub(r"\D", "", m)) for m in _MEMORY_WORD.findall(name)]
    no_mem = _MEMORY_WORD.sub(" ", name)
    for candidate in (no_mem, _FORM_WORD.sub(" ", name), _FORM_WORD.sub(" ", no_mem)):
        gpu = index.get(_norm_gpu(candidate))
        if gpu is not None and (not stated or stated[0] == gpu["memory_gb"]):
            return gpu
    return None


def _known_gpu_names() -> str:
    return ", ".join(g["name"] for g in _hw_table()["gpus"])


_COUNT_FIRST = re.compile(r"^\s*(\d+)\s*[x×*]\s*(.+?)\s*$", re.IGNORECASE)
_COUNT_LAST = re.compile(r"^\s*(.+?)\s+[x×*]\s*(\d+)\s*$", re.IGNORECASE)


def parse_hardware(text: str | None) -> Hardware:
    """Parse ``constraints.hardware``: "1x A100-80GB", "2x H100", "8xA10G", "RTX 4090", "none", "cpu", None.

    A bare count-less GPU name means one GPU. "none"/"cpu" means no GPU; ``None`` or an empty string
    means the project did not say. An unknown GPU name raises ``ValueError`` with a one-line message
    listing the known names.
    """
    if text is None or not str(text).strip():
        return Hardware(text=text, kind="unknown", count=0, gpu=None, memory_gb=None, bf16_tflops=None,
                        bf16_supported=None, source="no hardware stated in the project")
    raw = str(text).strip()
    if _norm_gpu(raw) in _NO_GPU or raw.lower() in _NO_GPU:
        return Hardware(text=raw, kind="cpu", count=0, gpu=None, memory_gb=None, bf16_tflops=None,
                        bf16_supported=None, source=f"'{raw}': no GPU available")
    count, name = 1, raw
    if m := _COUNT_FIRST.match(raw):
        count, name = int(m.group(1)), m.group(2)
    elif m := _COUNT_LAST.match(raw):
        name, count = m.group(1), int(m.group(2))
    if count < 1:
        raise ValueError(f"hardware '{raw}': the GPU count must be at least 1 (write 'none' for no GPU)")
    gpu = _lookup_gpu(name)
    if gpu is None:
        raise ValueError(f"unknown GPU '{name}' in hardware '{raw}'; known GPUs: {_known_gpu_names()} "
                         f"(or 'none')")
    return Hardware(
        text=raw, kind="gpu", count=count, gpu=gpu["name"], memory_gb=float(gpu["memory_gb"]),
        bf16_tflops=float(gpu["bf16_dense_tflops"]), bf16_supported=bool(gpu.get("bf16", True)),
        source=f"'{raw}' read as {count}x {gpu['name']}; rubrics/hardware.yaml: {gpu['source']}",
    )


# ---------------------------------------------------------------------------------------------
# Model size and shape


@dataclass
class _Arch:
    """What the memory model needs to know about a transformer."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    num_experts: int = 1
    fused_gpt2: bool = False
    derived: bool = False  # guessed from the parameter count, not read


@dataclass
class _ModelInfo:
    id: str | None
    parameters: int | None
    source: str
    active_parameters: int | None = None
    arch: _Arch | None = None
    arch_source: str | None = None


_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text", "gpt2"}
_FOUR_NORMS = {"gemma2", "gemma3", "gemma3_text"}
_QKV_BIAS = {"qwen2", "qwen2_moe"}
_QK_NORM = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text"}


def _count_from_config(cfg: dict[str, Any]) -> tuple[int, int, _Arch] | None:
    """(total params, active params, shape) of a Llama/Qwen/Mistral/Gemma/Phi-3/Mixtral/GPT-2 config.

    Returns None when the config lacks the fields or describes an architecture this formula does not
    cover (then the caller falls back to safetensors headers, the table, or the name).
    """
    mt = str(cfg.get("model_type", "")).lower()
    if "n_embd" in cfg and "n_layer" in cfg:  # GPT-2 family
        h, L, V = int(cfg["n_embd"]), int(cfg["n_layer"]), int(cfg["vocab_size"])
        P = int(cfg.get("n_positions", 1024))
        i = int(cfg.get("n_inner") or 4 * h)
        nh = int(cfg.get("n_head", 12))
        per_layer = 4 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h)
        n = V * h + P * h + L * per_layer + 2 * h
        if not cfg.get("tie_word_embeddings", True):
            n += V * h
        return n, n, _Arch(h, L, i, V, nh, nh, h // nh, fused_gpt2=True)
    need = ("hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size", "num_attention_heads")
    if not all(isinstance(cfg.get(k), int) for k in need):
        return None
    if any(k in cfg for k in ("num_experts", "n_routed_experts", "moe_intermediate_size")):
        return None  # Qwen-MoE / DeepSeek-style experts: leave to the safetensors headers
    h, L, i = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    V, nh = cfg["vocab_size"], cfg["num_attention_heads"]
    nkv = int(cfg.get("num_key_value_heads") or nh)
    hd = int(cfg.get("head_dim") or h // nh)
    tie = bool(cfg.get("tie_word_embeddings", mt in _TIED_BY_DEFAULT))
    attn_bias = bool(cfg.get("attention_bias", False))
    qkv_bias = attn_bias or mt in _QKV_BIAS
    experts = int(cfg.get("num_local_experts") or 1)
    active_experts = int(cfg.get("num_experts_per_tok") or experts)

    q = h * nh * hd + (nh * hd if qkv_bias else 0)
    kv = 2 * (h * nkv * hd + (nkv * hd if qkv_bias else 0))
    o = nh * hd * h + (h if attn_bias else 0)
    one_mlp = 3 * h * i + ((2 * i + h) if cfg.get("mlp_bias") else 0)
    router = h * experts if experts > 1 else 0
    norms = (4 if mt in _FOUR_NORMS else 2) * h + (2 * hd if mt in _QK_NORM else 0)
    shared = q + kv + o + router + norms
    head = 0 if tie else V * h
    total = V * h + L * (shared + experts * one_mlp) + h + head
    active = V * h + L * (shared + active_experts * one_mlp) + h + head
    return total, active, _Arch(h, L, i, V, nh, nkv, hd, num_experts=experts)


_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1}


def _safetensors_params(directory: Path) -> tuple[int, Path] | None:
    """Exact parameter count from the JSON headers of the directory's *.safetensors files."""
    shards = sorted(p for p in directory.glob("*.safetensors") if not p.name.startswith("adapter_"))
    if not shards:
        return None
    total = 0
    try:
        for shard in shards:
            with shard.open("rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                if length <= 0 or length > 100_000_000:
                    return None
                header = json.loads(fh.read(length))
            for name, meta in header.items():
                if name != "__metadata__":
                    total += math.prod(int(d) for d in meta.get("shape", []))
    except (OSError, ValueError, struct.error, AttributeError, TypeError):
        return None
    return (total, shards[0]) if total > 0 else None


def _index_params(directory: Path, cfg: dict[str, Any]) -> tuple[int, Path] | None:
    """Parameter count from model.safetensors.index.json's total_size and the config's dtype."""
    index = directory / "model.safetensors.index.json"
    if not index.is_file():
        return None
    try:
        size = int(json.loads(index.read_text(encoding="utf-8"))["metadata"]["total_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16").replace("torch.", "")
    return size // _DTYPE_BYTES.get(dtype, 2), index


def _read_config(directory: Path) -> dict[str, Any] | None:
    path = directory / "config.json"
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _from_directory(directory: Path, model_id: str | None) -> _ModelInfo | None:
    cfg = _read_config(directory)
    cfg_path = directory / "config.json"
    if cfg is not None:
        text_cfg = cfg.get("text_config") if "hidden_size" not in cfg else None
        counted = _count_from_config(cfg) or (
            _count_from_config(text_cfg) if isinstance(text_cfg, dict) else None)
        if counted:
            n, active, arch = counted
            where = f"config.json at {cfg_path}" + (" (text_config: language model only)" if text_cfg else "")
            return _ModelInfo(model_id, n, where, active if active != n else None, arch, where)
    for found in (_safetensors_params(directory), _index_params(directory, cfg or {})):
        if found:
            n, path = found
            kind = "safetensors index" if path.name.endswith(".json") else "safetensors headers"
            return _ModelInfo(model_id, n, f"{kind} at {path}")
    return None


def _hf_cache_dir(repo_id: str) -> Path | None:
    """The cached snapshot of ``repo_id`` that the hub client would load (advisor.hf's one rule)."""
    snap = cached_snapshot(repo_id)
    return snap if snap is not None and (snap / "config.json").is_file() else None


_DROP_WORDS = {"instruct", "it", "chat", "hf", "base", "sft"}


def _model_key(name: str) -> str:
    """'Qwen/Qwen2.5-0.5B-Instruct' -> 'qwen2.5-0.5b': no org, no instruct/it/chat/hf/base words."""
    last = name.strip().rstrip("/").split("/")[-1].lower().replace("_", "-")
    return "-".join(part for part in last.split("-") if part and part not in _DROP_WORDS)


@lru_cache(maxsize=1)
def _model_index() -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for entry in _rubric("models.yaml")["models"]:
        for name in [entry["id"], *entry.get("aliases", [])]:
            index.setdefault(_model_key(str(name)), entry)
    return index


def _from_table(base_model: str) -> _ModelInfo | None:
    entry = _model_index().get(_model_key(base_model))
    if entry is None:
        return None
    arch = _Arch(
        hidden_size=entry["hidden_size"], num_layers=entry["num_layers"],
        intermediate_size=entry["intermediate_size"], vocab_size=entry["vocab_size"],
        num_attention_heads=entry["num_attention_heads"], num_kv_heads=entry["num_kv_heads"],
        head_dim=entry["head_dim"], num_experts=int(entry.get("num_experts", 1)),
        fused_gpt2="gpt2" in entry["id"],
    )
    where = f"table: {entry['id']}"
    return _ModelInfo(base_model, int(entry["parameters"]), where, entry.get("active_parameters"), arch,
                      f"rubrics/models.yaml ({entry['source']})")


_MOE_SIZE = re.compile(r"(?<![a-z0-9.])(\d+)\s*x\s*(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def _from_name(base_model: str) -> _ModelInfo | None:
    """A size written in the name: '7b', '0.5B', '135M'; '8x7B' (mixture of experts) -> 8 x 7B total."""
    last = base_model.strip().rstrip("/").split("/")[-1]
    if m := _MOE_SIZE.search(last):
        experts, size, unit = int(m.group(1)), float(m.group(2)), m.group(3).lower()
        n = round(experts * size * (1e9 if unit == "b" else 1e6))
        return _ModelInfo(base_model, n, f"name: '{m.group(0)}' (experts x size: an upper bound, "
                          "the experts share attention and embeddings)")
    if m := _SIZE.search(last):
        size, unit = float(m.group(1)), m.group(2).lower()
        n = round(size * (1e9 if unit == "b" else 1e6))
        return _ModelInfo(base_model, n, f"name: '{m.group(0)}'")
    return None


def _resolve_model(base_model: str | None, model_dir: Path | None) -> _ModelInfo:
    model_id = base_model
    directories: list[Path] = []
    if model_dir is not None:
        directories.append(Path(model_dir))
    if base_model and Path(base_model).expanduser().is_dir():
        directories.append(Path(base_model).expanduser())
    for directory in directories:
        if info := _from_directory(directory, model_id or str(directory)):
            return info
    if base_model:
        cached = _hf_cache_dir(base_model)
        if cached is not None and (info := _from_directory(cached, base_model)):
            return info
        for lookup in (_from_table, _from_name):
            if info := lookup(base_model):
                return info
    if model_id is None and directories:
        model_id = str(directories[0])
    return _ModelInfo(model_id, None, "unknown")


def model_parameters(base_model: str | None, model_dir: Path | None = None) -> tuple[int | None, str]:
    """(parameter count, how it was known) for a hub id or a local model directory.

    Tried in order: ``model_dir`` (or ``base_model`` when it is a local directory) - its config.json
    through a Llama/Qwen/Mistral/Gemma/Phi-3/Mixtral/GPT-2 formula, else the exact count in its
    safetensors headers, else the safetensors index's total size; the local Hugging Face cache; the
    table in rubrics/models.yaml; a size in the name ("7b", "0.5B", "135M", "8x7B"). The second item
    reads "config.json at <path>", "safetensors headers at <path>", "table: <id>", "name: '0.5B'" or
    "unknown".
    """
    info = _resolve_model(base_model, model_dir)
    return info.parameters, info.source


def _arch_for(info: _ModelInfo) -> tuple[_Arch | None, str | None]:
    """The model's shape, or one guessed from its size when only the count is known."""
    if info.arch is not None:
        return info.arch, info.arch_source
    if info.parameters is None:
        return None, None
    # Kaplan et al. 2020: N ~ 12 * L * h^2 for the non-embedding part; typical LLMs keep h/L near 100.
    h = max(64, int(round((100 * info.parameters / 12) ** (1 / 3) / 64)) * 64)
    layers = max(1, round(h / 100))
    heads = max(1, h // 128)
    arch = _Arch(h, layers, 4 * h, 128_000, heads, heads, h // heads, derived=True)
    return arch, ("guessed from the parameter count (N ~ 12*L*h^2 with h/L ~ 100, Kaplan et al. 2020; "
                  "vocabulary assumed 128,000): activation and adapter memory are rough")


# ---------------------------------------------------------------------------------------------
# Memory


GB = 1e9


def _adapter_params(arch: _Arch, r: int) -> int:
    """LoRA parameters with adapters on every linear layer: r x (in + out) per module."""
    h, i = arch.hidden_size, arch.intermediate_size
    if arch.fused_gpt2:
        per_layer = (h + 3 * h) + (h + h) + (h + i) + (i + h)
    else:
        q_out, kv_out = arch.num_attention_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
        attn = (h + q_out) + 2 * (h + kv_out) + (q_out + h)
        per_layer = attn + arch.num_experts * 3 * (h + i)
    return r * per_layer * arch.num_layers


def _activation_bytes(arch: _Arch, seq: int, micro_batch: int) -> tuple[float, float]:
    """(activations, logits) in bytes for one micro-batch, gradient checkpointing on."""
    tokens = seq * micro_batch
    keep = _const("memory", "activations")["checkpointed_bytes_per_token_hidden_layer"]
    one = _const("memory", "activations")["one_layer_bytes_per_token_hidden"]
    acts = tokens * arch.hidden_size * (keep * arch.num_layers + one)
    logits = tokens * arch.vocab_size * _const("memory", "logits_bytes_per_element")
    return float(acts), float(logits)


def _memory(method: str, n: int, arch: _Arch, *, seq: int, micro_batch: int, lora_r: int,
            gpus: int) -> dict[str, float]:
    """Per-GPU memory breakdown in GB for one method at one micro-batch size."""
    gpus = max(1, gpus)
    parts: dict[str, float] = {}
    adapters = _adapter_params(arch, lora_r)
    seqs = micro_batch
    if method == "full":
        parts["weights_gradients_optimizer"] = _const("memory", "full_bytes_per_param") * n / gpus
    elif method in ("lora", "rlhf"):
        parts["frozen_weights_bf16"] = _const("memory", "frozen_bf16_bytes_per_param") * n / gpus
        parts["adapters_with_adamw"] = _const("memory", "adapter_bytes_per_param") * adapters / gpus
        if method == "rlhf":
            seqs = 2 * micro_batch  # DPO runs the chosen and the rejected sequence of each pair
    elif method == "qlora":
        parts["frozen_weights_nf4"] = _const("memory", "qlora_bytes_per_param") * n / gpus
        parts["adapters_with_adamw"] = _const("memory", "adapter_bytes_per_param") * adapters / gpus
    else:  # serving: prompting / rag
        parts["weights_bf16"] = _const("memory", "frozen_bf16_bytes_per_param") * n / gpus
        kv = 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * seq * 2
        parts["kv_cache"] = float(kv)
    if method in TRAINING_METHODS:
        acts, logits = _activation_bytes(arch, seq, seqs)
        parts["activations"] = acts
        parts["logits"] = logits
    parts = {k: v / GB for k, v in parts.items()}
    parts["cuda_overhead"] = float(_const("memory", "overhead_gb"))
    return parts


def _fit_micro_batch(method: str, n: int, arch: _Arch, *, seq: int, batch_size: int, lora_r: int,
                     hw: Hardware) -> tuple[int, dict[str, float], bool | None]:
    """The largest power-of-two micro-batch <= batch_size that fits, its breakdown, and whether it fits.

    Serving (prompting/rag) is checked for one sequence. With no known GPU memory the breakdown is at
    the requested batch size and ``fits`` is None (or False for a machine with no GPU).
    """
    if method not in TRAINING_METHODS:
        parts = _memory(method, n, arch, seq=seq, micro_batch=1, lora_r=lora_r, gpus=max(1, hw.count))
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
        parts = _memory(method, n, arch, seq=seq, micro_batch=candidates[0], lora_r=lora_r, gpus=1)
        return candidates[0], parts, (False if hw.kind == "cpu" else None)
    for mb in candidates:
        parts = _memory(method, n, arch, seq=seq, micro_batch=mb, lora_r=lora_r, gpus=hw.count)
        if sum(parts.values()) <= (hw.memory_gb or 0):
            return mb, parts, True
    return 1, parts, False


# ---------------------------------------------------------------------------------------------
# Prices


def _gpu_prices(gpu: str) -> list[dict[str, Any]]:
    return [p for p in (_rubric("prices.yaml")["gpu_hour"].get(gpu) or []) if p.get("usd") is not None]


def _price_summary(gpu: str) -> dict[str, Any] | None:
    offers = _gpu_prices(gpu)
    if not offers:
        return None
    cheapest = min(offers, key=lambda p: float(p["usd"]))
    return {
        "gpu": gpu,
        "typical_usd_per_gpu_hour": round(statistics.median(float(p["usd"]) for p in offers), 4),
        "typical_is": f"median of {len(offers)} listed on-demand prices",
        "cheapest": {k: cheapest.get(k) for k in ("provider", "usd", "offering", "source", "approximate",
                                                   "as_of")},
        "listed": len(offers),
        "table_as_of": _rubric("prices.yaml").get("as_of"),
    }


def _hosted(method: str, n: int | None, train_tokens: float, dpo_tokens: float) -> list[dict[str, Any]]:
    offers = []
    size_b = None if n is None else n / 1e9
    for offer in _rubric("prices.yaml")["hosted_finetuning"]:
        if method not in offer["methods"]:
            continue
        bracket = offer.get("params_b")
        if bracket is not None and (size_b is None or not (bracket[0] < size_b <= bracket[1])):
            continue
        usd = train_tokens / 1e6 * float(offer["usd_per_1m_tokens"])
        if method == "rlhf":
            usd += dpo_tokens / 1e6 * float(offer.get("dpo_usd_per_1m_tokens", offer["usd_per_1m_tokens"]))
        offers.append({
            "provider": offer["provider"],
            "offering": offer["offering"],
            "usd_per_1m_tokens": offer["usd_per_1m_tokens"],
            **({"dpo_usd_per_1m_tokens": offer["dpo_usd_per_1m_tokens"]}
               if "dpo_usd_per_1m_tokens" in offer else {}),
            "usd": _sig(usd),
            "same_model": bool(offer.get("same_model", False)),
            "approximate": bool(offer.get("approximate", False)),
            "as_of": offer.get("as_of"),
            "source": offer["source"],
        })
    return sorted(offers, key=lambda o: o["usd"])


# ---------------------------------------------------------------------------------------------
# The estimate


def _tokens(x: float) -> int:
    """Token counts are reported as whole numbers (a fractional epoch processes a whole number of tokens)."""
    return int(round(x))


def _sig(x: float | None, digits: int = 6) -> float | None:
    """Round to ``digits`` significant digits (keeps JSON short without hiding the magnitude)."""
    if x is None:
        return None
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(round(x, digits - 1 - int(math.floor(math.log10(abs(x))))))


def _assumptions(max_length: int, batch_size: int, lora_r: int) -> dict[str, Any]:
    hw = _hw_table()
    return {
        "flops_per_token": {
            "full": {"value": _const("compute", "flops_per_token", "full"),
                     "source": _source("compute", "flops_per_token", "full")},
            "lora_and_qlora": {"value": _const("compute", "flops_per_token", "lora"),
                               "source": _source("compute", "flops_per_token", "lora")},
            "dpo": {"value": "policy forward 2 + policy backward 2 (LoRA) + reference forward 2 = 6 per "
                             "token of the chosen and the rejected sequences",
                    "source": _source("compute", "flops_per_token", "dpo_reference_forward")},
        },
        "mfu": {"value": _const("compute", "mfu"), "low": hw["compute"]["mfu"]["low"],
                "source": _source("compute", "mfu")},
        "scaling_efficiency": {"value": _const("compute", "scaling_efficiency"),
                               "source": _source("compute", "scaling_efficiency")},
        "qlora_time_overhead": {"value": _const("compute", "qlora_time_overhead"),
                                "source": _source("compute", "qlora_time_overhead")},
        "bytes_per_param": {
            "full": {"value": _const("memory", "full_bytes_per_param"),
                     "source": _source("memory", "full_bytes_per_param")},
            "frozen_bf16": {"value": _const("memory", "frozen_bf16_bytes_per_param"),
                            "source": _source("memory", "frozen_bf16_bytes_per_param")},
            "adapter": {"value": _const("memory", "adapter_bytes_per_param"),
                        "source": _source("memory", "adapter_bytes_per_param")},
            "qlora_nf4": {"value": _const("memory", "qlora_bytes_per_param"),
                          "source": _source("memory", "qlora_bytes_per_param")},
        },
        "activations": {"gradient_checkpointing": True, "sequence_length": max_length,
                        "source": _source("memory", "activations")},
        "logits_bytes_per_element": {"value": _const("memory", "logits_bytes_per_element"),
                                     "source": _source("memory", "logits_bytes_per_element")},
        "cuda_overhead_gb": {"value": _const("memory", "overhead_gb"),
                             "source": _source("memory", "overhead_gb")},
        "lora": {"r": lora_r, "target_modules": "all-linear", "source": _source("memory", "lora_target_modules")},
        "micro_batch": (f"the largest power of two <= batch_size ({batch_size}) that fits the GPU; the rest "
                        "by gradient accumulation (same tokens, same FLOPs)"),
        "multi_gpu": _source("memory", "sharding"),
        "gigabyte": hw["memory"]["gigabyte"],
        "rlhf": ("rlhf = LoRA SFT on the training tokens, then LoRA DPO on preference pairs; the reference "
                 "model is the base with adapters disabled (trl + peft), so it costs a forward pass but "
                 "no extra weights"),
        "cost": ("GPU-hours billed = wall hours x GPU count, priced at the median ('typical') and the "
                 "cheapest listed on-demand price; budget checks use the typical price. Owned hardware has "
                 "no rental cost: read the figure as what the GPU time is worth"),
        "cpu": {"effective_tflops": hw["cpu"]["effective_tflops"], "source": hw["cpu"]["source"]},
        "hardware_table_as_of": hw.get("as_of"),
        "price_table_as_of": _rubric("prices.yaml").get("as_of"),
        "model_table_as_of": _rubric("models.yaml").get("as_of"),
    }


def _training_settings(method: str, train: dict | None, train_examples: int, given: dict[str, Any]) -> dict[str, Any]:
    """The epochs, batch size, max_length, lora_r and max_steps the row of ``method`` assumes.

    With the project's ``train`` keys (only those the user wrote): what the plugin that trains the row
    will run with (advisor.training: the plugin's defaults overridden by those keys; rlhf is the dpo
    plugin), so the estimate and the run describe the same training. Without them: ``given`` (the
    arguments of estimate(), the same for every row)."""
    if train is None:
        return {**given, "plugin": plugin_for(method)}
    return run_settings(plugin_for(method), train, train_examples)


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
    name and for negative sizes. The returned dict
    is JSON-serialisable.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; known: {', '.join(METHODS)}")
    if train_tokens_per_epoch < 0 or epochs < 0 or docs_tokens < 0:
        raise ValueError("train_tokens_per_epoch, epochs and docs_tokens must not be negative")
    if max_length < 1 or batch_size < 1 or lora_r < 1:
        raise ValueError("max_length, batch_size and lora_r must be at least 1")

    hw = parse_hardware(hardware)
    info = _resolve_model(base_model, model_dir)
    arch, arch_source = _arch_for(info)
    n = info.parameters
    n_compute = info.active_parameters or n  # mixture of experts: FLOPs follow the active parameters

    if hw.kind == "gpu":
        timing_gpu, timing_count, tflops = hw.gpu, hw.count, float(hw.bf16_tflops or 0)
        priced_note = f"{hw.count}x {hw.gpu} (the project's hardware)"
    else:
        ref = _gpu_entry(_hw_table()["reference_gpu"]["name"])
        timing_gpu, timing_count, tflops = ref["name"], 1, float(ref["bf16_dense_tflops"])
        why = "no GPU stated" if hw.kind == "unknown" else "the project has no GPU"
        priced_note = f"1x {ref['name']}, the reference GPU ({why}): what renting one would cost"
    prices = _price_summary(str(timing_gpu))
    mfu = float(_const("compute", "mfu"))
    mfu_low = float(_hw_table()["compute"]["mfu"]["low"])
    eff = 1.0 if timing_count == 1 else float(_const("compute", "scaling_efficiency"))
    cpu = _hw_table()["cpu"]
    # scaled to the cores of the machine that will train (this one: training on CPU happens here)
    cores = os.cpu_count() or int(cpu["assumed_cores"])
    cpu_tflops = float(cpu["effective_tflops"]) * min(cores, int(cpu["assumed_cores"])) / int(cpu["assumed_cores"])

    cpu_max_hours = float(value(load_rubric("decision"), "thresholds", "cpu_training_max_hours"))

    pref_per_epoch = (2 * train_tokens_per_epoch if preference_tokens_per_epoch is None
                      else preference_tokens_per_epoch)
    given = {"max_steps": None, "epochs": epochs, "passes": epochs, "batch_size": batch_size, "grad_accum": 1,
             "max_length": max_length, "lora_r": lora_r}
    settings = {m: _training_settings(m, train, train_examples, given) for m in METHODS}
    f_full = _const("compute", "flops_per_token", "full")
    f_lora = _const("compute", "flops_per_token", "lora")
    f_ref = _const("compute", "flops_per_token", "dpo_reference_forward")

    # Memory of LoRA and QLoRA is needed for the "suggest" field even when not asked for.
    fit_cache: dict[str, tuple[int, dict[str, float], bool | None]] = {}

    def fit(method: str) -> tuple[int, dict[str, float], bool | None] | None:
        if n is None or arch is None:
            return None
        if method not in fit_cache:
            s = settings[method]
            fit_cache[method] = _fit_micro_batch(method, n, arch, seq=s["max_length"], batch_size=s["batch_size"],
                                                 lora_r=s["lora_r"], hw=hw)
        return fit_cache[method]

    entries = []
    for method in methods:
        entry: dict[str, Any] = {"method": method}
        notes: list[str] = []
        run = settings[method]
        # rlhf: LoRA SFT with the lora plugin's settings, then DPO with the dpo plugin's
        train_tokens = train_tokens_per_epoch * (settings["lora"] if method == "rlhf" else run)["passes"]
        dpo_tokens = pref_per_epoch * run["passes"]
        fitted = fit(method)
        mem_gb = _sig(sum(fitted[1].values()), 4) if fitted else None

        if method in TRAINING_METHODS:
            flops = phases = None
            if method == "full":
                tokens, formula = train_tokens, "6·N·D (forward 2N + backward 4N per token)"
                flops = None if n_compute is None else f_full * n_compute * train_tokens
            elif method in ("lora", "qlora"):
                tokens = train_tokens
                formula = "4·N·D (the 2N weight-gradient matmuls of frozen weights are skipped)"
                flops = None if n_compute is None else f_lora * n_compute * train_tokens
            else:  # rlhf = LoRA SFT + LoRA DPO
                tokens = train_tokens + dpo_tokens
                dpo_per_token = 2 + (f_lora - 2) + f_ref  # policy fwd + policy bwd (LoRA) + reference fwd
                formula = (f"SFT 4·N·D_sft + DPO {dpo_per_token}·N·D_pairs (policy forward 2N + policy "
                           "backward 2N + reference forward 2N per token of chosen and rejected)")
                sft_flops = None if n_compute is None else f_lora * n_compute * train_tokens
                dpo_flops = None if n_compute is None else dpo_per_token * n_compute * dpo_tokens
                flops = None if sft_flops is None or dpo_flops is None else sft_flops + dpo_flops
                phases = {
                    "sft": {"train_tokens": _tokens(train_tokens), "flops": _sig(sft_flops),
                            "flops_formula": "4·N·D"},
                    "dpo": {"pair_tokens": _tokens(dpo_tokens), "flops": _sig(dpo_flops),
                            "flops_formula": f"{dpo_per_token}·N·D_pairs",
                            "pair_tokens_are": ("preference_tokens_per_epoch x epochs" if
                                                preference_tokens_per_epoch is not None else
                                                "2 x train_tokens_per_epoch x epochs (rejected answers "
                                                "assumed as long as the chosen ones)")},
                }
                notes.append("rlhf is estimated as LoRA SFT followed by LoRA DPO; full-parameter DPO "
                             "costs 8·N per pair token and needs a separate reference copy (+2 bytes/param)")
            entry.update({"train_tokens": _tokens(tokens), "flops": _sig(flops), "flops_formula": formula,
                          "training": run})
            if phases:
                phases["sft"]["training"], phases["dpo"]["training"] = settings["lora"], run
                entry["phases"] = phases
            overhead = float(_const("compute", "qlora_time_overhead")) if method == "qlora" else 1.0
            if method == "qlora":
                notes.append(f"QLoRA does LoRA's matmuls but dequantises NF4 weights on every pass: "
                             f"time x{overhead}")
            gpu_hours = (None if flops is None else flops / (tflops * 1e12 * mfu) / 3600 * overhead)
            gpu_hours_slow = (None if flops is None else flops / (tflops * 1e12 * mfu_low) / 3600 * overhead)
            wall = None if gpu_hours is None else gpu_hours / (timing_count * eff)
            billed = None if wall is None else wall * timing_count
            entry.update({
                "timed_on": f"{timing_count}x {timing_gpu}",
                "gpu_hours": _sig(gpu_hours),
                "gpu_hours_range": (None if gpu_hours is None else [_sig(gpu_hours), _sig(gpu_hours_slow)]),
                "wall_hours": _sig(wall),
            })
            if billed is not None and prices is not None:
                cost = billed * prices["typical_usd_per_gpu_hour"]
                cheapest = billed * float(prices["cheapest"]["usd"])
            else:
                cost = cheapest = None
                if prices is None:
                    notes.append(f"no rental price listed for {timing_gpu} in rubrics/prices.yaml")
            entry.update({
                "cost_usd": _sig(cost, 4),
                "cost_usd_cheapest": _sig(cheapest, 4),
                "priced_on": priced_note,
                "price": prices,
            })
            if hw.kind != "gpu":
                cpu_hours = None if flops is None else flops / (cpu_tflops * 1e12) / 3600
                entry["cpu_hours"] = _sig(cpu_hours, 3)
                if hw.kind == "cpu" and on_prem:
                    notes.append("renting a cloud GPU may itself conflict with data_must_stay_on_prem")
            if hw.kind == "gpu" and hw.bf16_supported is False:
                notes.append(f"{hw.gpu} has no bf16: timed at its fp16 mixed-precision peak")
        else:
            entry.update({"train_tokens": 0, "flops": 0.0, "flops_formula": "no training",
                          "gpu_hours": 0.0, "gpu_hours_range": [0.0, 0.0], "wall_hours": 0.0,
                          "cost_usd": 0.0, "cost_usd_cheapest": 0.0, "priced_on": None, "price": None})
            serve = f"serving needs ~{mem_gb} GB in bf16 for one {max_length}-token sequence" if mem_gb else (
                "serving memory unknown (model size unknown)")
            if hw.kind == "cpu" and n is not None:
                bw = float(_hw_table()["cpu"]["memory_bandwidth_gb_s"])
                tps = bw / (2 * n / GB)
                serve += f"; on CPU, decoding is memory-bound: ~{_sig(tps, 2)} tokens/s at {bw:g} GB/s"
            if method == "prompting":
                entry["inference_note"] = ("no training cost; every query pays for its prompt, and few-shot "
                                           "examples add their tokens to every call; " + serve)
            else:
                emb = _rubric("models.yaml")["embedding_model"]
                index_flops = 2 * float(emb["parameters"]) * docs_tokens
                entry["index"] = {
                    "embedding_model": emb["id"],
                    "docs_tokens": docs_tokens,
                    "flops": _sig(index_flops),
                    "cpu_hours": _sig(docs_tokens / float(emb["cpu_tokens_per_second"]) / 3600, 3),
                    "gpu_hours": _sig(index_flops / (tflops * 1e12 * mfu) / 3600, 3),
                    "source": emb["source"],
                }
                entry["inference_note"] = (
                    "no training cost; the index needs one embedding pass over the documents (2·N_emb FLOPs "
                    "per token, repeated when documents change), and each query adds its retrieved chunks "
                    "(e.g. 4 x 256 = ~1,000 tokens) to the prompt; " + serve)

        # Memory and fit
        if fitted is None:
            entry.update({"memory_gb": None, "memory_breakdown_gb": None, "micro_batch": None,
                          "gradient_accumulation": None, "fits": None})
            entry["fits_note"] = ("model size unknown: give base_model a known hub id, a size in its name, "
                                  "or a local directory with config.json")
        else:
            mb, parts, fits = fitted
            entry["memory_gb"] = mem_gb
            entry["memory_breakdown_gb"] = {k: _sig(v, 4) for k, v in parts.items()}
            entry["micro_batch"] = mb if method in TRAINING_METHODS else None
            entry["gradient_accumulation"] = (math.ceil(run["batch_size"] / mb) if method in TRAINING_METHODS
                                              else None)
            entry["fits"] = fits
            entry["fits_note"] = _fits_note(method, hw, fits, mem_gb, mb, run["batch_size"], entry.get("cpu_hours"),
                                            cpu_tflops)
            if method in ("lora", "full") and fits is False and hw.kind == "gpu":
                for cheaper in (("lora", "qlora") if method == "full" else ("qlora",)):
                    other = fit(cheaper)
                    if other is not None and other[2]:
                        entry["suggest"] = cheaper
                        entry["fits_note"] += (f"; {cheaper} fits ({_sig(sum(other[1].values()), 4)} GB per GPU "
                                               f"at micro-batch {other[0]})")
                        break

        # A small model trains on this CPU: it fits, and costs nothing to rent
        cpu_h = entry.get("cpu_hours")
        if (hw.kind == "cpu" and method in TRAINING_METHODS and method != "qlora" and cpu_h is not None
                and cpu_h <= cpu_max_hours):
            entry["fits"] = True
            entry["cost_usd"] = 0.0
            entry["fits_note"] = (f"fits this CPU: roughly {cpu_h} hours at ~{cpu_tflops:g} TFLOP/s effective "
                                  f"(<= {cpu_max_hours:g} h; no GPU to rent)")

        # Budget
        if budget_usd is None or entry.get("cost_usd") is None:
            entry["within_budget"] = None
        else:
            entry["within_budget"] = bool(entry["cost_usd"] <= budget_usd)

        # Hosted fine-tuning
        if method not in TRAINING_METHODS:
            entry["hosted"] = None
            entry["hosted_note"] = "no training, so no hosted fine-tuning price applies"
        elif on_prem:
            entry["hosted"] = None
            entry["hosted_note"] = "data_must_stay_on_prem is true: hosted (third-party) fine-tuning is not an option"
        else:
            offers = _hosted(method, n, train_tokens, dpo_tokens)
            best = offers[0] if offers else None
            entry["hosted"] = {
                "cost_usd": best["usd"] if best else None,
                "cheapest": ({k: best[k] for k in ("provider", "offering", "usd", "same_model", "approximate")}
                             if best else None),
                "offers": offers,
                "price_table_as_of": _rubric("prices.yaml").get("as_of"),
            }
            entry["hosted_note"] = (
                "billed per training token (tokens x epochs); offers with same_model false tune the provider's "
                "own closed model, comparable at the task level only" if offers else
                "no listed provider fine-tunes a model of this size")
        entry["notes"] = notes
        entries.append(entry)

    hw_out = hw.model_dump()
    hw_out["priced_on"] = priced_note
    if hw.kind == "gpu":
        hw_out["description"] = (f"{hw.count}x {hw.gpu} ({hw.memory_gb:g} GB, {hw.bf16_tflops:g} TFLOPS "
                                 f"{'bf16' if hw.bf16_supported else 'fp16'} each)")
    else:
        hw_out["description"] = "no GPU" if hw.kind == "cpu" else "not stated"
    model_out: dict[str, Any] = {"id": info.id, "parameters": info.parameters, "source": info.source}
    if info.active_parameters:
        model_out["active_parameters"] = info.active_parameters
    if arch is not None:
        model_out["architecture"] = {
            "hidden_size": arch.hidden_size, "num_layers": arch.num_layers,
            "intermediate_size": arch.intermediate_size, "vocab_size": arch.vocab_size,
            "num_attention_heads": arch.num_attention_heads, "num_kv_heads": arch.num_kv_heads,
            "head_dim": arch.head_dim, "source": arch_source,
        }
    return {
        "assumptions": _assumptions(max_length, batch_size, lora_r),
        "model": model_out,
        "hardware": hw_out,
        "inputs": {"train_tokens_per_epoch": train_tokens_per_epoch, "epochs": epochs,
                   "max_length": max_length, "batch_size": batch_size, "lora_r": lora_r,
                   "docs_tokens": docs_tokens, "budget_usd": budget_usd, "on_prem": on_prem,
                   "train": train, "train_examples": train_examples},
        "methods": entries,
    }


def _fits_note(method: str, hw: Hardware, fits: bool | None, mem_gb: float | None, mb: int, batch_size: int,
               cpu_hours: float | None, cpu_tflops: float) -> str:
    need = f"~{mem_gb} GB per GPU" + (f" at micro-batch {mb}" if method in TRAINING_METHODS else "")
    if hw.kind == "unknown":
        return f"hardware not stated: needs {need}"
    if hw.kind == "cpu":
        if method not in TRAINING_METHODS:
            return f"no GPU: runs on CPU if the machine has {need.replace(' per GPU', '')} of RAM"
        note = f"no GPU: {method} needs {need}"
        if cpu_hours is not None:
            note += (f"; on CPU roughly {cpu_hours} hours at ~{cpu_tflops:g} TFLOP/s effective "
                     "(order of magnitude)")
        if method == "qlora":
            note += "; 4-bit bitsandbytes kernels need a GPU"
        return note
    where = f"{hw.count}x {hw.gpu} ({hw.memory_gb:g} GB each)"
    if fits:
        if method in TRAINING_METHODS and mb < batch_size:
            return (f"fits {where} at micro-batch {mb} with {math.ceil(batch_size / mb)} gradient-accumulation "
                    f"steps: {need}")
        return f"fits {where}: {need}"
    return f"does not fit {where}: needs {need}, the smallest setting"
