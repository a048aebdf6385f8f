"""The training hyperparameters, defined once: their names, types, limits and defaults, and each built-in
training plugin's own defaults.

Three readers describe the same training with them:

* project.yaml's ``train:`` block (:class:`advisor.project.TrainSpec`) is validated against these
  fields when the project loads;
* every trainer plugin's config (``trainers.PluginConfig``, ``trainers.LoraFields``) subclasses them,
  and a built-in plugin's config takes its defaults from :data:`PLUGIN_DEFAULTS` through
  :func:`with_plugin_defaults`;
* the cost estimate (``advisor.assess.estimate``) reads :func:`run_settings`, so the epochs, batch
  size, sequence length, LoRA rank and steps it prices are the ones the plugin will run with.

Only pydantic is imported here: the core imports nothing of trainers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, create_model, field_validator
from pydantic.fields import FieldInfo

DEFAULT_EPOCHS = 3.0  # passes over the data when neither max_steps nor epochs is set


class TrainingFields(BaseModel):
    """Hyperparameters every training method accepts."""

    # an infinite or NaN number (YAML's .inf, .nan) is never a hyperparameter
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    DEFAULT_EPOCHS: ClassVar[float] = DEFAULT_EPOCHS

    max_steps: StrictInt | None = Field(None, ge=1, le=100_000_000,
                                        description="Optimizer steps to train (or set epochs).")
    epochs: float | None = Field(None, gt=0, le=1000, description="Passes over the training data (when max_steps "
                                 f"is unset; default {DEFAULT_EPOCHS:g}).")
    # up to 10: prompt tuning's virtual tokens train at rates far above what a weight update takes
    learning_rate: float = Field(2.0e-4, gt=0, le=10.0, description="Peak learning rate (AdamW).")
    batch_size: int = Field(16, ge=1, le=65536,
                            description="Examples per optimizer step per process (before gradient accumulation).")
    grad_accum: int = Field(1, ge=1, le=4096, description="Gradient accumulation steps.")
    max_length: int = Field(512, ge=8, le=1_048_576, description="Tokens per example; longer examples are truncated.")
    seed: StrictInt = Field(42, ge=0, le=2**32 - 1, description="Seed of weights init, data order and dropout.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    # gradient norms of fine-tuning runs are O(0.1-100); 10^4 is clipping off in effect
    max_grad_norm: float = Field(1.0, gt=0, le=10_000, description="Gradient clipping norm.")
    checkpoint_every: int | None = Field(
        None, ge=1, description="Save a resumable checkpoint every N steps (default: about every 10% of the run).")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="Checkpoints kept on disk (the newest).")
    logging_steps: int = Field(1, ge=1, description="Log the loss every N steps (into the run store).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that supports it, fp32 on CPU.")
    gradient_checkpointing: bool | None = Field(
        None, description="Recompute activations to save memory (default: off on CPU, on for GPU models over 1B "
        "parameters).")
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto", description="Attention kernel (flash_attention_2 needs CUDA).")
    trust_remote_code: bool = Field(False, description="Run Python code shipped with the model (off unless you trust "
                                    "it).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the base model.")


class LoraFields(BaseModel):
    """LoRA hyperparameters, shared by the methods that train a LoRA adapter."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lora_r: int = Field(16, ge=1, le=4096, description="LoRA rank.")
    # alpha / r scales the update: 2 x the largest rank (4096) is the most anyone sets
    lora_alpha: float | None = Field(None, gt=0, le=8192, description="LoRA scaling alpha (default: 2 x lora_r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: str | list[str] = Field("all-linear", description="Modules that get LoRA ('all-linear' or names).")
    train_embeddings: bool | None = Field(
        None, description="Also train the token embeddings (modules_to_save); default: when they are tied to the "
        "output layer.")

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, v):
        if not v or (isinstance(v, list) and not all(isinstance(x, str) and x.strip() for x in v)):
            raise ValueError("expected 'all-linear' or a non-empty list of module names (e.g. [q_proj, v_proj])")
        return v


# Each built-in plugin's defaults where they differ from the common ones above ("epochs": the passes
# when max_steps is unset). Why each differs is in the plugin's module docstring.
PLUGIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "lora": {},
    "qlora": {},
    "full": {"learning_rate": 2.0e-5},  # every weight moves: 10x below LoRA's rate
    "dpo": {"epochs": 1.0, "batch_size": 8, "learning_rate": 5.0e-5},  # one pass over preference pairs
    "prompt_tuning": {"learning_rate": 3.0e-2},  # a few virtual tokens, the model frozen
    "classifier": {"learning_rate": 1.0e-3, "batch_size": 32, "max_length": 128, "lora_r": 8},  # short label inputs
}

M = TypeVar("M", bound=type[BaseModel])


def with_plugin_defaults(config_class: M, plugin: str) -> M:
    """``config_class`` with ``plugin``'s defaults from :data:`PLUGIN_DEFAULTS` (limits and descriptions
    kept). A name with no entry returns the class unchanged."""
    overrides = dict(PLUGIN_DEFAULTS.get(plugin) or {})
    if not overrides:
        return config_class
    epochs = overrides.pop("epochs", None)
    fields: dict[str, Any] = {}
    for name, default in overrides.items():
        info = config_class.model_fields[name]
        fields[name] = (info.annotation, FieldInfo.merge_field_infos(info, default=default))
    if epochs is not None:
        info = config_class.model_fields["epochs"]
        fields["epochs"] = (info.annotation, FieldInfo.merge_field_infos(
            info, description=f"Passes over the training data (when max_steps is unset; default {epochs:g}).")
        )
    out = create_model(config_class.__name__, __base__=config_class, __module__=config_class.__module__,
                       __doc__=config_class.__doc__, **fields)
    out.__qualname__ = config_class.__qualname__
    if epochs is not None:
        out.DEFAULT_EPOCHS = float(epochs)
    return out


def total_steps(max_steps: int | None, epochs: float | None, *, default_epochs: float, batch_size: int,
                grad_accum: int, examples: int, world_size: int = 1) -> int:
    """Optimizer steps of a run: max_steps, or epochs (else ``default_epochs``) over ``examples``."""
    if max_steps is not None:
        return max_steps
    batches = math.ceil(examples / (batch_size * max(1, world_size)))
    per_epoch = max(1, math.ceil(batches / grad_accum))
    return max(1, math.ceil(per_epoch * (epochs if epochs is not None else default_epochs)))


def run_settings(plugin: str, train: dict | None = None, examples: int = 0) -> dict[str, Any]:
    """What a run of the built-in ``plugin`` trains with, for a project whose ``train:`` block holds
    ``train`` (only the keys the user wrote): the common defaults, the plugin's own, then those keys.

    ``epochs`` is the configured value (None when max_steps is set); ``passes`` the passes over
    ``examples`` training examples that the run makes (what tokens are counted with)."""
    common = {**TrainingFields.model_fields, **LoraFields.model_fields}
    values = {name: f.default for name, f in common.items()}
    overrides = dict(PLUGIN_DEFAULTS.get(plugin) or {})
    default_epochs = float(overrides.pop("epochs", DEFAULT_EPOCHS))
    values.update(overrides)
    values.update({k: v for k, v in (train or {}).items() if k in common})
    max_steps, epochs = values["max_steps"], values["epochs"]
    if max_steps is None:
        passes = float(epochs if epochs is not None else default_epochs)
    else:
        passes = max_steps * values["batch_size"] * values["grad_accum"] / examples if examples else 0.0
    return {"plugin": plugin, "max_steps": max_steps,
            "epochs": None if max_steps is not None else float(epochs if epochs is not None else default_epochs),
            "batch_size": values["batch_size"], "grad_accum": values["grad_accum"],
            "max_length": values["max_length"], "lora_r": values["lora_r"], "passes": passes}
