"""``freeze``: train only the last N transformer blocks (and the final norm) of a causal LM.

A complete third-party advise trainer plugin in one file: a config class (hyperparameters with defaults
and limits, on top of the common ones), a train function, and the ``plugin`` object that the
``advise.trainers`` entry point in pyproject.toml names. It imports only the public plugin API
(``trainers``) and ``advisor.errors``.
"""

from __future__ import annotations

from pydantic import Field

from advisor.errors import AdviseError
from trainers import (
    SFTFields,
    TrainerPlugin,
    TrainRequest,
    TrainResult,
    load_causal_lm,
    select_device,
    train_sft,
)


class FreezeConfig(SFTFields):
    # a common key with a default of this plugin's own
    learning_rate: float = Field(1.0e-4, gt=0, le=1.0, description="Peak learning rate (AdamW).")
    # a plugin-specific key: `train_layers: 2` under `train:` in project.yaml
    train_layers: int = Field(2, ge=1, le=1000, description="Train the last N transformer blocks; freeze the rest.")


def _blocks(model):
    inner = getattr(model, "model", None) or getattr(model, "transformer", None)
    blocks = getattr(inner, "layers", None) or getattr(inner, "h", None)
    if blocks is None:
        raise AdviseError(f"the freeze plugin does not know where the blocks of a {model.config.model_type} model are")
    return inner, blocks


def train(req: TrainRequest) -> TrainResult:
    c = req.config
    device = select_device(c.precision)
    model = load_causal_lm(req.base_model, c, device)  # safetensors only, remote code only on opt-in
    inner, blocks = _blocks(model)
    if c.train_layers > len(blocks):
        raise AdviseError(f"train.train_layers is {c.train_layers} but the model has {len(blocks)} blocks")
    model.requires_grad_(False)
    for block in list(blocks)[-c.train_layers:]:
        block.requires_grad_(True)
    norm = getattr(inner, "norm", None) or getattr(inner, "ln_f", None)
    if norm is not None:
        norm.requires_grad_(True)
    return train_sft(req, model=model, artifact_kind="model", metrics={"trained_blocks": c.train_layers})


plugin = TrainerPlugin(
    name="freeze",
    config_class=FreezeConfig,
    train=train,
    description="Freeze tuning: train the last N transformer blocks, keep the rest frozen (example plugin).",
    data="sft",  # one reply per prompt; advise refuses preference data before any work
    artifact_kind="model",
)
