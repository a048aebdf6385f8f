"""Cost, time and memory of each customisation method, before any money is spent.

``estimate()`` answers, for one project and a list of methods ("prompting", "rag", "lora", "qlora",
"full", "rlhf"): how many training tokens and FLOPs, how many GPU-hours on the stated hardware, what
that costs at dated on-demand prices, how much GPU memory it needs and whether that fits, and what a
hosted fine-tuning service would charge instead. Every constant comes from ``rubrics/hardware.yaml``,
``rubrics/prices.yaml`` or ``rubrics/models.yaml`` with its source, and the result repeats the
assumptions it used, so a reader can check each number by hand.

The model, one module each:

* ``hardware``: ``constraints.hardware`` ("2x H100", "none") read against ``rubrics/hardware.yaml``.
* ``model_size``: the base model's parameter count and shape (config.json, safetensors, the table, the name).
* ``compute``: FLOPs per token (6·N·D full, 4·N·D LoRA/QLoRA, SFT + DPO for rlhf) and GPU time.
* ``memory``: per-GPU memory (ZeRO accounting, LoRA adapters, checkpointed activations, logits) and fit.
* ``prices``: dated on-demand GPU prices and hosted fine-tuning prices.
* ``rows``: :func:`estimate` itself, one row per method; ``_training_settings`` there is the one place
  where a row's epochs / batch size / max_length / LoRA rank are resolved.

Only the standard library, pydantic and PyYAML are imported: ``advise assess`` must stay fast.
"""

from __future__ import annotations

from advisor.assess.estimate.hardware import Hardware, parse_hardware
from advisor.assess.estimate.model_size import model_parameters
from advisor.assess.estimate.rows import METHODS, estimate

__all__ = ["METHODS", "Hardware", "estimate", "model_parameters", "parse_hardware"]
