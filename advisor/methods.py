"""The method vocabulary, defined once: what a project may ask for, what assess ranks and estimates,
which of them train, and the maps between methods, training plugins and estimate rows.

* A *method* is what `advise assess` recommends and what ``method:`` in project.yaml names:
  prompting, rag, lora, full, rlhf (``auto`` lets assess choose).
* An *estimate row* is one line of the cost table: the methods plus ``qlora`` (LoRA on a 4-bit base).
* A *plugin* is what `advise train` runs (``advise.trainers`` entry points): lora, qlora, full, dpo,
  prompt_tuning, classifier and any third-party one.
"""

from __future__ import annotations

METHODS: tuple[str, ...] = ("prompting", "rag", "lora", "full", "rlhf")
ESTIMATE_ROWS: tuple[str, ...] = ("prompting", "rag", "lora", "qlora", "full", "rlhf")
NO_TRAINING: tuple[str, ...] = ("prompting", "rag")
TRAINING_ROWS = frozenset({"lora", "qlora", "full", "rlhf"})

# method (or estimate row, or the plugin's own name) -> the built-in plugin that trains it
METHOD_TO_PLUGIN: dict[str, str] = {"lora": "lora", "qlora": "qlora", "full": "full", "rlhf": "dpo", "dpo": "dpo"}

# built-in plugin -> the estimate row that describes what it runs (a third-party plugin: its own name)
PLUGIN_TO_ESTIMATE: dict[str, str] = {"lora": "lora", "qlora": "lora", "full": "full", "dpo": "rlhf",
                                      "prompt_tuning": "lora", "classifier": "lora"}


def plugin_for(method: str, variant: str | None = None) -> str:
    """The plugin that trains ``method`` (a recommendation's ``variant`` such as qlora wins)."""
    if method == "lora" and variant == "qlora":
        return "qlora"
    return METHOD_TO_PLUGIN.get(method, method)


def estimate_row(plugin_or_method: str) -> str:
    """The cost-table row for a plugin or a method."""
    return PLUGIN_TO_ESTIMATE.get(plugin_or_method, plugin_or_method)


def trains(method: str) -> bool:
    return method not in NO_TRAINING
