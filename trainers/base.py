"""The trainer plugin interface and the helpers every plugin shares.

A plugin is a :class:`TrainerPlugin`: a ``name``, a pydantic ``config_class`` (its hyperparameters,
with defaults and limits) and a ``train`` function from a :class:`TrainRequest` to a
:class:`TrainResult`. Plugins are found through the entry-point group ``advise.trainers``; the
built-in ones register the same way as third-party ones (see pyproject.toml and docs/plugins.md)::

    [project.entry-points."advise.trainers"]
    my_method = "my_package.module:plugin"

The config is built from ``project.yaml``'s ``train:`` block: the common keys (max_steps, epochs,
learning_rate, batch_size, max_length, lora_r, seed) and any plugin-specific keys. A key that no
installed plugin knows is an error naming project.yaml and the key (it is most likely a typo); a
key that another plugin knows is ignored by this one, so one project file serves several methods.

Importing this module is cheap (pydantic only). torch, transformers, peft and trl are imported
inside the helpers that need them, so ``advise plugins`` and ``advise --help`` stay fast.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from advisor.data.records import render_plain
from advisor.errors import AdviseError
from advisor.hashing import file_hash
from advisor.hf import check_hub_reachable

ENTRY_POINT_GROUP = "advise.trainers"
CONFIG_SNAPSHOT = "advise_train.json"  # written into every artifact directory


# -- configs --------------------------------------------------------------------------------------
class PluginConfig(BaseModel):
    """Hyperparameters every plugin accepts. Subclass it and add fields (with defaults and limits)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    DEFAULT_EPOCHS: ClassVar[float] = 3.0  # when neither max_steps nor epochs is set

    max_steps: StrictInt | None = Field(None, ge=1, le=100_000_000,
                                  description="Optimizer steps to train (or set epochs).")
    epochs: float | None = Field(None, gt=0, le=1000, description="Passes over the training data (when max_steps is unset; default 3, dpo 1).")
    learning_rate: float = Field(2.0e-4, gt=0, le=1.0, description="Peak learning rate (AdamW).")
    batch_size: int = Field(16, ge=1, le=65536, description="Examples per optimizer step per process (before gradient accumulation).")
    grad_accum: int = Field(1, ge=1, le=4096, description="Gradient accumulation steps.")
    max_length: int = Field(512, ge=8, le=1_048_576, description="Tokens per example; longer examples are truncated.")
    seed: StrictInt = Field(42, ge=0, le=2**32 - 1, description="Seed of weights init, data order and dropout.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    checkpoint_every: int | None = Field(
        None, ge=1, description="Save a resumable checkpoint every N steps (default: about every 10% of the run).")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="Checkpoints kept on disk (the newest).")
    logging_steps: int = Field(1, ge=1, description="Log the loss every N steps (into the run store).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that supports it, fp32 on CPU.")
    gradient_checkpointing: bool | None = Field(
        None, description="Recompute activations to save memory (default: off on CPU, on for GPU models over 1B parameters).")
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto", description="Attention kernel (flash_attention_2 needs CUDA).")
    trust_remote_code: bool = Field(False, description="Run Python code shipped with the model (off unless you trust it).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the base model.")

    @model_validator(mode="after")
    def _steps_or_epochs(self):
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("set max_steps or epochs, not both")
        return self


class LoraFields(BaseModel):
    """LoRA hyperparameters, shared by the plugins that train a LoRA adapter."""

    lora_r: int = Field(16, ge=1, le=4096, description="LoRA rank.")
    lora_alpha: float | None = Field(None, gt=0, description="LoRA scaling alpha (default: 2 x lora_r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: str | list[str] = Field("all-linear", description="Modules that get LoRA ('all-linear' or names).")

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, v):
        if not v or (isinstance(v, list) and not all(isinstance(x, str) and x.strip() for x in v)):
            raise ValueError("expected 'all-linear' or a non-empty list of module names (e.g. [q_proj, v_proj])")
        return v
    train_embeddings: bool | None = Field(
        None, description="Also train the token embeddings (modules_to_save); default: when they are tied to the output layer.")


# -- requests and results -------------------------------------------------------------------------
@dataclass
class ProgressEvent:
    step: int
    max_steps: int
    loss: float | None
    tokens_per_second: float | None
    eta_seconds: float | None
    tokens: int = 0
    learning_rate: float | None = None
    epoch: float | None = None


@dataclass
class TrainRequest:
    """Everything a plugin needs. ``records`` already leave out the eval hold-out."""

    project: Any  # advisor.project.Project
    records: list  # advisor.data.records.Record
    base_model: str  # hub id or local directory (resolved against the project directory)
    config: PluginConfig
    output_dir: Path  # the run directory: checkpoints/ and artifact/ go inside
    resume: bool = False
    progress: Callable[[ProgressEvent], None] | None = None
    run_id: str | None = None
    options: dict = field(default_factory=dict)  # runner extras (e.g. the store to log into)

    @property
    def artifact_dir(self) -> Path:
        return self.output_dir / "artifact"

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"


@dataclass
class TrainResult:
    artifact: Path
    artifact_kind: Literal["adapter", "model"]
    loss_history: list[tuple[int, float]]
    train_tokens: int
    wall_seconds: float  # time spent in the training loop
    hardware: dict
    peak_memory_mb: float
    steps: int = 0
    resumed_from_step: int | None = None
    session_tokens: int | None = None  # tokens trained in this session (less than train_tokens after a resume)
    metrics: dict = field(default_factory=dict)  # plugin extras (e.g. reward accuracy, labels)

    @property
    def final_loss(self) -> float | None:
        return self.loss_history[-1][1] if self.loss_history else None

    @property
    def tokens_per_second(self) -> float:
        tokens = self.train_tokens if self.session_tokens is None else self.session_tokens
        return tokens / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["artifact"] = str(self.artifact)
        d["final_loss"] = self.final_loss
        tail = [v for _, v in self.loss_history[-10:]]
        d["final_loss_smoothed"] = sum(tail) / len(tail) if tail else None
        d["first_loss"] = self.loss_history[0][1] if self.loss_history else None
        d["tokens_per_second"] = round(self.tokens_per_second, 2)
        d["loss_history"] = [[s, v] for s, v in self.loss_history]
        return d


@dataclass(frozen=True)
class TrainerPlugin:
    """A training method. ``data`` says which records it trains on:

    * ``sft``: one target reply per prompt (chat, alpaca, prompt_completion);
    * ``preference``: chosen/rejected pairs;
    * ``label``: short label outputs (a classification task).

    ``preflight(config, device)`` runs before anything is written (raise AdviseError to refuse,
    e.g. for hardware the method needs); ``check_records(records, config)`` likewise for the data.
    ``prepare(project, config, base_model)`` also runs before anything is written and returns facts
    recorded with the run and handed to ``train`` as ``request.options["plugin_facts"]``; a
    ``"base_model"`` key there replaces the project's base model (e.g. an encoder for a classifier,
    or the SFT artifact DPO starts from).
    """

    name: str
    config_class: type[PluginConfig]
    train: Callable[[TrainRequest], TrainResult]
    description: str = ""
    data: Literal["sft", "preference", "label"] = "sft"
    artifact_kind: Literal["adapter", "model"] = "adapter"
    preflight: Callable[[PluginConfig, DeviceInfo], None] | None = None
    check_records: Callable[[list, PluginConfig], None] | None = None
    prepare: Callable[[Any, PluginConfig, str], dict] | None = None
    needs_causal_lm: bool = True  # the base model must be a causal LM (classifier: any encoder)


# -- discovery ------------------------------------------------------------------------------------
def _entry_points():
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def plugin_names() -> list[str]:
    return [e.name for e in _entry_points()]


def get_plugin(name: str) -> TrainerPlugin:
    eps = {e.name: e for e in _entry_points()}
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise AdviseError(f"unknown training plugin '{name}' (installed: {known}); `advise plugins` lists them")
    try:
        obj = eps[name].load()
    except Exception as e:  # noqa: BLE001 - a broken third-party plugin: one line
        raise AdviseError(f"training plugin '{name}' ({eps[name].value}) failed to load: {type(e).__name__}: {e}") from None
    if callable(obj) and not isinstance(obj, TrainerPlugin):
        obj = obj()  # a factory
    if not isinstance(obj, TrainerPlugin):
        raise AdviseError(f"training plugin '{name}' ({eps[name].value}) is not a trainers.base.TrainerPlugin")
    if obj.name != name:
        obj = dataclasses.replace(obj, name=name)
    return obj


def all_plugins() -> dict[str, TrainerPlugin | AdviseError]:
    out: dict[str, TrainerPlugin | AdviseError] = {}
    for name in plugin_names():
        try:
            out[name] = get_plugin(name)
        except AdviseError as e:
            out[name] = e
    return out


def config_fields(config_class: type[BaseModel]) -> list[dict]:
    """Name, type, default and limits of each hyperparameter (for `advise plugins`)."""
    rows = []
    for name, f in config_class.model_fields.items():
        limits = []
        for m in f.metadata:
            for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                v = getattr(m, attr, None)
                if v is not None:
                    limits.append(f"{sym} {v}")
        ann = f.annotation
        typ = re.sub(r"typing\.|<class '([^']+)'>", r"\1", str(ann)).replace("NoneType", "None")
        rows.append({"name": name, "type": typ, "default": f.default if not f.is_required() else None,
                     "limits": ", ".join(limits), "description": f.description or ""})
    return rows


# -- building a config from project.yaml ----------------------------------------------------------
def _yaml_line(project, key: str) -> int | None:
    return project.key_line("train", key)


def build_config(plugin: TrainerPlugin, project, overrides: dict | None = None,
                 known_keys: set[str] | None = None) -> PluginConfig:
    """The plugin's config from ``project.train`` (only the keys the user wrote) plus ``overrides``.

    Invalid values raise AdviseError naming project.yaml, the key and its line. Keys no installed
    plugin knows are errors; keys only other plugins know are ignored.
    """
    raw = dict(project.train.model_dump(exclude_unset=True)) if project is not None else {}  # extras included
    fields = set(plugin.config_class.model_fields)
    if known_keys is None:
        known_keys = set()
        for p in all_plugins().values():
            if isinstance(p, TrainerPlugin):
                known_keys |= set(p.config_class.model_fields)
    pfile = project.project_file if project is not None else "project.yaml"
    for key in raw:
        if key not in fields and key not in known_keys:
            raise AdviseError(f"train.{key} is not a hyperparameter of any installed training plugin "
                              f"(`advise plugins` lists them)", file=pfile, line=_yaml_line(project, key))
    values = {k: v for k, v in raw.items() if k in fields}
    cli_keys = set()
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in fields:
            raise AdviseError(f"the {plugin.name} plugin has no setting '{k}'")
        values[k] = v
        cli_keys.add(k)
        if k == "max_steps":
            values.pop("epochs", None)
        if k == "epochs":
            values.pop("max_steps", None)
    try:
        return plugin.config_class.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or None
        msg = err.get("msg", "invalid").removeprefix("Value error, ").replace("Input should be", "expected")
        if key is None:  # a model-level rule (e.g. max_steps with epochs)
            raise AdviseError(f"train: {msg}", file=pfile) from None
        if key in cli_keys:
            raise AdviseError(f"--{key.replace('_', '-')}: {msg}") from None
        raise AdviseError(f"train.{key}: {msg} (for the {plugin.name} plugin)", file=pfile,
                          line=_yaml_line(project, key)) from None


# -- device and precision -------------------------------------------------------------------------
@dataclass
class DeviceInfo:
    type: Literal["cuda", "mps", "cpu"]
    name: str
    count: int
    bf16: bool = False  # train in bf16 (mixed precision)
    fp16: bool = False
    world_size: int = 1
    rank: int = 0

    @property
    def load_dtype(self) -> str:
        return "bfloat16" if self.bf16 else "float16" if self.fp16 else "float32"

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["dtype"] = self.load_dtype
        d["cpu_cores"] = os.cpu_count()
        d["launcher"] = ("accelerate" if any(k.startswith("ACCELERATE_") for k in os.environ)
                         else "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else "single process")
        try:
            import torch

            d["torch_threads"] = torch.get_num_threads()
        except ImportError:
            pass
        return d


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def select_device(precision: str = "auto") -> DeviceInfo:
    """bf16 on a CUDA GPU that supports it, fp32 elsewhere; the same code on every machine."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        bf16_ok = torch.cuda.is_bf16_supported()
        bf16 = precision == "bf16" or (precision == "auto" and bf16_ok)
        fp16 = precision == "fp16" or (precision == "auto" and not bf16_ok)
        return DeviceInfo("cuda", torch.cuda.get_device_name(0), torch.cuda.device_count(), bf16, fp16, world, rank)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return DeviceInfo("mps", "Apple MPS", 1, False, False, world, rank)
    # bf16 autocast on CPU is correct but several times slower than fp32 on most CPUs: only on request
    return DeviceInfo("cpu", _cpu_name(), 1, precision == "bf16", False, world, rank)


def check_common_options(config: PluginConfig, device: DeviceInfo) -> None:
    """Options that only work on CUDA, refused before any work on a machine without it."""
    if device.type != "cuda":
        if config.precision == "fp16":
            raise AdviseError(f"train.precision: fp16 needs a CUDA GPU and this machine has none ({device.type}); "
                              "use precision: auto (fp32 on CPU)")
        if config.attn_implementation == "flash_attention_2":
            raise AdviseError("train.attn_implementation: flash_attention_2 needs a CUDA GPU and this machine has "
                              f"none ({device.type}); use auto")


# -- peak memory ----------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory of this process: torch.cuda.max_memory_allocated on a GPU, peak RSS on CPU."""

    def __init__(self, device: DeviceInfo | None = None):
        self.device = device
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def mb(self) -> float:
        if self.device is not None and self.device.type == "cuda":
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mb()


def peak_rss_mb() -> float:
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024 if sys.platform != "darwin" else kb / 2**20
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20


# -- models ---------------------------------------------------------------------------------------
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
    p = Path(path_or_id)
    is_local = p.is_absolute() or p.exists()
    facts: dict[str, Any] = {"base_model": path_or_id, "local": is_local}
    if is_local:
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
                raise AdviseError(f"cannot read the weights: {e}", file=w) from None

        facts["revision"] = "local-sha256:" + file_hash(p / "config.json")[:16]
        facts["weights"] = {w.name: w.stat().st_size for w in weights}
        facts["linear_modules"] = _linear_module_names(weights)
    from transformers import AutoConfig

    if not is_local:

        check_hub_reachable(path_or_id, revision)
    try:
        cfg = AutoConfig.from_pretrained(path_or_id, trust_remote_code=trust_remote_code, revision=revision)
    except Exception as e:  # noqa: BLE001
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
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
        AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=trust_remote_code, revision=revision)
    except Exception as e:  # noqa: BLE001
        raise AdviseError(f"cannot load the tokenizer of '{path_or_id}': {str(e).splitlines()[0] if str(e) else e}") from None
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
        raise AdviseError(f"cannot load the base model '{path_or_id}': {str(e).splitlines()[0]}") from None


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


# -- data -----------------------------------------------------------------------------------------
def sft_rows(records: list, tokenizer) -> list[dict]:
    """Prompt/completion rows: the loss falls on the completion (the assistant reply) only.

    Conversational rows when the tokenizer has a chat template (trl applies it), plain text otherwise.
    """
    if getattr(tokenizer, "chat_template", None):
        return [{"prompt": [{"role": m["role"], "content": m["content"]} for m in r.prompt],
                 "completion": [{"role": "assistant", "content": r.output}]} for r in records]
    return [{"prompt": render_plain(r.prompt), "completion": " " + r.output} for r in records]


def preference_rows(records: list, tokenizer) -> list[dict]:
    if getattr(tokenizer, "chat_template", None):
        return [{"prompt": [{"role": m["role"], "content": m["content"]} for m in r.prompt],
                 "chosen": [{"role": "assistant", "content": r.output}],
                 "rejected": [{"role": "assistant", "content": r.rejected}]} for r in records]
    return [{"prompt": render_plain(r.prompt), "chosen": " " + r.output, "rejected": " " + r.rejected}
            for r in records]


def require_sft_records(records: list, plugin_name: str, file=None) -> None:
    n = sum(1 for r in records if r.rejected is not None)
    if n:
        raise AdviseError(f"holds preference pairs (chosen/rejected, {n} of {len(records)} training records); the "
                          f"{plugin_name} plugin trains on one reply per prompt: use --method dpo, or give it chat, "
                          "alpaca or prompt_completion data", file=file or "data.train")


def require_preference_records(records: list, plugin_name: str, file=None) -> None:
    n = sum(1 for r in records if r.rejected is None)
    if n:
        raise AdviseError(f"the {plugin_name} plugin trains on preference pairs (prompt, chosen, rejected) and "
                          f"{n} of {len(records)} training records have no rejected reply; use --method lora for "
                          "supervised data", file=file)


# -- the Hugging Face Trainer loop, shared by the built-in plugins ---------------------------------
def total_steps(config: PluginConfig, n_examples: int, world_size: int = 1) -> int:
    """Optimizer steps of the run: max_steps, or epochs (default 3) over the data."""
    if config.max_steps is not None:
        return config.max_steps
    import math

    batches = math.ceil(n_examples / (config.batch_size * max(1, world_size)))
    per_epoch = max(1, math.ceil(batches / config.grad_accum))
    return max(1, math.ceil(per_epoch * (config.epochs if config.epochs is not None else config.DEFAULT_EPOCHS)))


def checkpoint_interval(config: PluginConfig, steps: int) -> int:
    """checkpoint_every, else about every 10% of the run but not more often than every 10 steps."""
    return config.checkpoint_every or max(10, -(-steps // 10))


def training_arguments(req: TrainRequest, device: DeviceInfo, n_examples: int, *, model_params: int = 0,
                       **extra) -> dict:
    """Keyword arguments for transformers.TrainingArguments (or a trl config) chosen for the hardware:
    no gradient checkpointing and fp32 on CPU (trl's defaults cost 3.5x there), bf16 on a capable GPU,
    the gloo backend for several CPU processes."""
    c = req.config
    steps = total_steps(c, n_examples, device.world_size)
    gc = c.gradient_checkpointing
    if gc is None:
        gc = device.type == "cuda" and model_params > 1_000_000_000
    kw: dict[str, Any] = dict(
        output_dir=str(req.checkpoint_dir),
        per_device_train_batch_size=c.batch_size,
        gradient_accumulation_steps=c.grad_accum,
        learning_rate=c.learning_rate,
        lr_scheduler_type=c.lr_scheduler,
        warmup_steps=c.warmup_ratio,
        weight_decay=c.weight_decay,
        max_grad_norm=c.max_grad_norm,
        seed=c.seed,
        data_seed=c.seed,
        max_steps=steps,
        logging_strategy="steps",
        logging_steps=min(c.logging_steps, steps),  # the last step's loss is always logged
        report_to="none",
        disable_tqdm=True,
        save_strategy="steps",
        save_steps=checkpoint_interval(c, steps),
        save_total_limit=c.keep_checkpoints,
        bf16=device.bf16,
        fp16=device.fp16,
        use_cpu=device.type == "cpu",
        gradient_checkpointing=bool(gc),
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        log_level="warning",
    )
    if device.world_size > 1 and device.type == "cpu":
        kw["ddp_backend"] = "gloo"
    import dataclasses as _dc

    from transformers import TrainingArguments

    if "activation_checkpointing" in {f.name for f in _dc.fields(TrainingArguments)}:
        kw["activation_checkpointing"] = kw.pop("gradient_checkpointing")  # the new name (transformers >= 5.x)
    kw.update(extra)
    return kw


def last_checkpoint(req: TrainRequest) -> str | None:
    if not req.checkpoint_dir.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(req.checkpoint_dir))


def make_callback(req: TrainRequest, max_steps: int, history: list[tuple[int, float]]):
    """A TrainerCallback that collects the loss history and reports progress (step, loss, tokens/s, ETA)."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self):
            self.t0 = None
            self.step0 = 0
            self.tokens0 = 0

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()
            self.step0 = state.global_step
            self.tokens0 = state.num_input_tokens_seen or 0

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            loss = float(logs["loss"])
            history.append((state.global_step, loss))
            dt = time.perf_counter() - (self.t0 or time.perf_counter())
            tokens = (state.num_input_tokens_seen or 0) - self.tokens0
            done = state.global_step - self.step0
            tps = tokens / dt if dt > 0 else None
            eta = dt / done * (max_steps - state.global_step) if done > 0 else None
            ev = ProgressEvent(state.global_step, max_steps, loss, tps, eta, state.num_input_tokens_seen or 0,
                               logs.get("learning_rate"), logs.get("epoch"))
            if req.progress is not None:
                req.progress(ev)

    return _Progress()


def run_trainer(trainer, req: TrainRequest, device: DeviceInfo, peak: PeakMemory, *, artifact_kind: str,
                save: Callable[[Path], None], metrics: dict | None = None) -> TrainResult:
    """Train (resuming from the last checkpoint when asked), save the artifact on rank 0, return the result."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    history: list[tuple[int, float]] = []
    max_steps = trainer.args.max_steps
    for cb in (PrinterCallback, ProgressCallback):  # our own progress line replaces them; stdout stays clean
        trainer.remove_callback(cb)
    trainer.add_callback(make_callback(req, max_steps, history))
    resume_from = last_checkpoint(req) if req.resume else None
    resumed_step = None
    if resume_from:
        resumed_step = int(Path(resume_from).name.split("-")[-1])
        prior = req.options.get("prior_history") or []
        history.extend((int(s), float(v)) for s, v in prior if int(s) <= resumed_step)
    # read now: the checkpoint resumed from may be rotated away (save_total_limit) by the end of training
    tokens_before = _checkpoint_tokens(resume_from) if resume_from else 0
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - t0
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    session_tokens = tokens - tokens_before
    if trainer.is_world_process_zero():
        req.artifact_dir.mkdir(parents=True, exist_ok=True)
        save(req.artifact_dir)
    m = dict(metrics or {})
    m["train_loss_mean"] = out.training_loss
    hardware = device.to_json()
    dist = getattr(getattr(trainer, "accelerator", None), "distributed_type", None)
    hardware["distributed"] = getattr(dist, "value", str(dist)) if dist is not None else "NO"
    return TrainResult(
        artifact=req.artifact_dir,
        artifact_kind=artifact_kind,
        loss_history=history,
        train_tokens=tokens,
        wall_seconds=wall,
        hardware=hardware,
        peak_memory_mb=round(peak.mb(), 1),
        steps=trainer.state.global_step,
        resumed_from_step=resumed_step,
        session_tokens=session_tokens,
        metrics=m,
    )


def _checkpoint_tokens(ckpt: str) -> int:
    import json

    try:
        state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
        return int(state.get("num_input_tokens_seen") or 0)
    except (OSError, ValueError):
        return 0


def import_optional(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
