"""The base model: where it comes from (a local directory or a hub id, by advisor.hf's one rule),
cheap checks that it will load before anything is written, and loading it with safetensors only
(remote code only on opt-in); the LoRA config built from the LoRA fields. transformers, peft and
safetensors are imported inside the functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.errors import AdviseError
from advisor.hashing import file_hash
from advisor.hf import check_chat_template, check_hub_reachable, first_line, is_local
from trainers.device import DeviceInfo
from trainers.plugin import PluginConfig

__all__ = ["check_model_source", "check_target_modules", "count_parameters", "load_causal_lm", "load_tokenizer",
           "lora_config", "model_load_kwargs", "resolve_base_model", "tied_embeddings"]


def resolve_base_model(project) -> str:
    if not project.base_model:
        raise AdviseError("base_model is required for training (a hub id or a local model directory)",
                          file=project.project_file)
    local = project.base_model_dir()
    return str(local.resolve()) if local is not None else project.base_model


def check_model_source(path_or_id: str, *, trust_remote_code: bool = False, revision: str | None = None,
                       causal_lm: bool = True) -> dict:
    """Cheap checks that a base model will load, before anything is written: its config, its weights
    (safetensors only) and its tokenizer. Returns facts for the run record."""
    local = is_local(path_or_id)
    p = Path(path_or_id).expanduser()
    facts: dict[str, Any] = {"base_model": path_or_id, "local": local}
    if local:
        if not p.is_dir():
            raise AdviseError("base model directory not found (base_model in project.yaml); "
                              "`advise models tiny DIR` builds a small offline model", file=p)
        if not (p / "config.json").is_file():
            raise AdviseError("is not a model directory (no config.json)", file=p)
        weights = sorted(p.glob("*.safetensors"))
        if not weights:
            bins = sorted(p.glob("*.bin")) + sorted(p.glob("*.pt"))
            what = f" (found {bins[0].name}: pickle weights are not loaded, for safety)" if bins else ""
            raise AdviseError(f"no safetensors weights in the model directory{what}", file=p)
        from safetensors import safe_open

        for w in weights:
            try:
                with safe_open(str(w), framework="pt") as fh:
                    fh.keys()
            except Exception as e:  # noqa: BLE001
                raise AdviseError(f"cannot read the weights: {first_line(e)}", file=w) from None

        facts["revision"] = "local-sha256:" + file_hash(p / "config.json")[:16]
        facts["weights"] = {w.name: w.stat().st_size for w in weights}
        facts["linear_modules"] = _linear_module_names(weights)
    from transformers import AutoConfig

    if not local:
        check_hub_reachable(path_or_id, revision)
    try:
        cfg = AutoConfig.from_pretrained(path_or_id, trust_remote_code=trust_remote_code, revision=revision)
    except Exception as e:  # noqa: BLE001
        msg = first_line(e)
        if "trust_remote_code" in msg:
            msg = ("it ships custom code; set train.trust_remote_code: true in project.yaml only if you trust it")
        raise AdviseError(f"cannot load the base model '{path_or_id}': {msg}") from None
    facts["model_type"] = cfg.model_type
    facts["revision"] = facts.get("revision") or getattr(cfg, "_commit_hash", None) or revision
    facts["tie_word_embeddings"] = bool(getattr(cfg.get_text_config(), "tie_word_embeddings", False))
    if causal_lm:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if cfg.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not getattr(cfg, "auto_map", None):
            raise AdviseError(f"the base model '{path_or_id}' ({cfg.model_type}) is not a causal language model; "
                              "the classifier plugin trains encoders")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=trust_remote_code, revision=revision)
    except Exception as e:  # noqa: BLE001
        raise AdviseError(f"cannot load the tokenizer of '{path_or_id}': {first_line(e)}") from None
    check_chat_template(tok)
    return facts


def _linear_module_names(weights: list[Path]) -> list[str]:
    """Names of the modules with a 2-D ``.weight`` in safetensors files (what LoRA's target_modules name)."""
    from safetensors import safe_open

    names: set[str] = set()
    for w in weights:
        with safe_open(str(w), framework="pt") as fh:
            for k in fh.keys():
                parts = k.split(".")
                if len(parts) >= 2 and parts[-1] == "weight" and len(fh.get_slice(k).get_shape()) == 2:
                    names.add(parts[-2])
    return sorted(names)


def check_target_modules(config, model_facts: dict, file=None, line: int | None = None) -> None:
    """train.target_modules names that match no linear layer of a local base model: refused before any work."""
    targets = getattr(config, "target_modules", None)
    known = model_facts.get("linear_modules")
    if not isinstance(targets, list) or not known:
        return
    missing = [t for t in targets if t not in known]
    if missing:
        raise AdviseError(f"train.target_modules: no layer named {', '.join(missing)} in the base model "
                          f"(its weight matrices: {', '.join(known)})", file=file, line=line)


def load_tokenizer(path_or_id: str, config: PluginConfig):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=config.trust_remote_code,
                                        revision=config.revision)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def model_load_kwargs(config: PluginConfig, device: DeviceInfo, *, dtype: str | None = None) -> dict:
    import torch

    kw: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": config.trust_remote_code,
        "dtype": getattr(torch, dtype or "float32"),
    }
    if config.revision:
        kw["revision"] = config.revision
    if config.attn_implementation != "auto":
        kw["attn_implementation"] = config.attn_implementation
    return kw


def load_causal_lm(path_or_id: str, config: PluginConfig, device: DeviceInfo, *, dtype: str | None = None):
    """A causal LM with safetensors only and remote code off unless the project opts in."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path_or_id, **model_load_kwargs(config, device, dtype=dtype))
    except OSError as e:
        raise AdviseError(f"cannot load the base model '{path_or_id}': {first_line(e)}") from None


def count_parameters(model) -> tuple[int, int]:
    total = trainable = 0
    for p in model.parameters():
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable


def tied_embeddings(model) -> bool:
    try:
        out, inp = model.get_output_embeddings(), model.get_input_embeddings()
        return out is not None and inp is not None and out.weight.data_ptr() == inp.weight.data_ptr()
    except (AttributeError, NotImplementedError):
        return False


def lora_config(config, model, *, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None):
    """A peft LoraConfig from the LoRA fields; the token embeddings are trained too when they are tied
    to the output layer (a frozen tied embedding keeps small models from becoming confident)."""
    from peft import LoraConfig

    mts = list(modules_to_save or [])
    tie = False
    train_emb = config.train_embeddings
    if train_emb is None:
        train_emb = task_type == "CAUSAL_LM" and tied_embeddings(model)
    if train_emb and task_type == "CAUSAL_LM":
        emb = model.get_input_embeddings()
        name = next((n for n, m in model.named_modules() if m is emb), "embed_tokens")
        mts.append(name.split(".")[-1])  # embed_tokens (Llama, Qwen, Mistral), wte (GPT-2) ...
        tie = tied_embeddings(model)
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_r,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        modules_to_save=mts or None,
        ensure_weight_tying=tie,
        task_type=task_type,
    )


