"""A base model's size and shape: parameter count, active parameters and the transformer dimensions.

Read, in order, from a local directory's config.json (a Llama/Qwen/Mistral/Gemma/Phi-3/Mixtral/GPT-2
formula), its safetensors headers or index, the local Hugging Face cache, ``rubrics/models.yaml``, or
a size written in the name. Only the standard library is used: no model is loaded.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from advisor.hf import cached_snapshot
from advisor.rubric import load_rubric


@dataclass
class Arch:
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
class ModelInfo:
    id: str | None
    parameters: int | None
    source: str
    active_parameters: int | None = None
    arch: Arch | None = None
    arch_source: str | None = None


_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text", "gpt2"}
_FOUR_NORMS = {"gemma2", "gemma3", "gemma3_text"}
_QKV_BIAS = {"qwen2", "qwen2_moe"}
_QK_NORM = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text"}


def _count_from_config(cfg: dict[str, Any]) -> tuple[int, int, Arch] | None:
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
        return n, n, Arch(h, L, i, V, nh, nh, h // nh, fused_gpt2=True)
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
    return total, active, Arch(h, L, i, V, nh, nkv, hd, num_experts=experts)


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


def _from_directory(directory: Path, model_id: str | None) -> ModelInfo | None:
    cfg = _read_config(directory)
    cfg_path = directory / "config.json"
    if cfg is not None:
        text_cfg = cfg.get("text_config") if "hidden_size" not in cfg else None
        counted = _count_from_config(cfg) or (
            _count_from_config(text_cfg) if isinstance(text_cfg, dict) else None)
        if counted:
            n, active, arch = counted
            where = f"config.json at {cfg_path}" + (" (text_config: language model only)" if text_cfg else "")
            return ModelInfo(model_id, n, where, active if active != n else None, arch, where)
    for found in (_safetensors_params(directory), _index_params(directory, cfg or {})):
        if found:
            n, path = found
            kind = "safetensors index" if path.name.endswith(".json") else "safetensors headers"
            return ModelInfo(model_id, n, f"{kind} at {path}")
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
    for entry in load_rubric("models")["models"]:
        for name in [entry["id"], *entry.get("aliases", [])]:
            index.setdefault(_model_key(str(name)), entry)
    return index


def _from_table(base_model: str) -> ModelInfo | None:
    entry = _model_index().get(_model_key(base_model))
    if entry is None:
        return None
    arch = Arch(
        hidden_size=entry["hidden_size"], num_layers=entry["num_layers"],
        intermediate_size=entry["intermediate_size"], vocab_size=entry["vocab_size"],
        num_attention_heads=entry["num_attention_heads"], num_kv_heads=entry["num_kv_heads"],
        head_dim=entry["head_dim"], num_experts=int(entry.get("num_experts", 1)),
        fused_gpt2="gpt2" in entry["id"],
    )
    where = f"table: {entry['id']}"
    return ModelInfo(base_model, int(entry["parameters"]), where, entry.get("active_parameters"), arch,
                      f"rubrics/models.yaml ({entry['source']})")


_MOE_SIZE = re.compile(r"(?<![a-z0-9.])(\d+)\s*x\s*(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def _from_name(base_model: str) -> ModelInfo | None:
    """A size written in the name: '7b', '0.5B', '135M'; '8x7B' (mixture of experts) -> 8 x 7B total."""
    last = base_model.strip().rstrip("/").split("/")[-1]
    if m := _MOE_SIZE.search(last):
        experts, size, unit = int(m.group(1)), float(m.group(2)), m.group(3).lower()
        n = round(experts * size * (1e9 if unit == "b" else 1e6))
        return ModelInfo(base_model, n, f"name: '{m.group(0)}' (experts x size: an upper bound, "
                          "the experts share attention and embeddings)")
    if m := _SIZE.search(last):
        size, unit = float(m.group(1)), m.group(2).lower()
        n = round(size * (1e9 if unit == "b" else 1e6))
        return ModelInfo(base_model, n, f"name: '{m.group(0)}'")
    return None


def resolve_model(base_model: str | None, model_dir: Path | None) -> ModelInfo:
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
    return ModelInfo(model_id, None, "unknown")


def model_parameters(base_model: str | None, model_dir: Path | None = None) -> tuple[int | None, str]:
    """(parameter count, how it was known) for a hub id or a local model directory.

    Tried in order: ``model_dir`` (or ``base_model`` when it is a local directory) - its config.json
    through a Llama/Qwen/Mistral/Gemma/Phi-3/Mixtral/GPT-2 formula, else the exact count in its
    safetensors headers, else the safetensors index's total size; the local Hugging Face cache; the
    table in rubrics/models.yaml; a size in the name ("7b", "0.5B", "135M", "8x7B"). The second item
    reads "config.json at <path>", "safetensors headers at <path>", "table: <id>", "name: '0.5B'" or
    "unknown".
    """
    info = resolve_model(base_model, model_dir)
    return info.parameters, info.source


def arch_for(info: ModelInfo) -> tuple[Arch | None, str | None]:
    """The model's shape, or one guessed from its size when only the count is known."""
    if info.arch is not None:
        return info.arch, info.arch_source
    if info.parameters is None:
        return None, None
    # Kaplan et al. 2020: N ~ 12 * L * h^2 for the non-embedding part; typical LLMs keep h/L near 100.
    h = max(64, int(round((100 * info.parameters / 12) ** (1 / 3) / 64)) * 64)
    layers = max(1, round(h / 100))
    heads = max(1, h // 128)
    arch = Arch(h, layers, 4 * h, 128_000, heads, heads, h // heads, derived=True)
    return arch, ("guessed from the parameter count (N ~ 12*L*h^2 with h/L ~ 100, Kaplan et al. 2020; "
                  "vocabulary assumed 128,000): activation and adapter memory are rough")

