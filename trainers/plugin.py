"""The plugin contract: what a training method is (:class:`TrainerPlugin`), what it is given
(:class:`TrainRequest`) and what it returns (:class:`TrainResult`).

A plugin is a ``name``, a pydantic ``config_class`` (its hyperparameters: :class:`PluginConfig`, the
common ones defined once in ``advisor.training``, plus its own) and a ``train`` function from a
request to a result. See docs/plugins.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, model_validator

from advisor.training import LoraFields, TrainingFields
from trainers.device import DeviceInfo

__all__ = ["CONFIG_SNAPSHOT", "FinishedRun", "LoraFields", "PluginConfig", "ProgressEvent", "TrainRequest", "TrainResult",
           "TrainerPlugin"]

CONFIG_SNAPSHOT = "advise_train.json"  # written by the runner into every artifact directory


class PluginConfig(TrainingFields):
    """Hyperparameters every plugin accepts (``advisor.training.TrainingFields``). Subclass it and add
    fields (with defaults and limits); mix in :class:`LoraFields` for a LoRA method."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="after")
    def _steps_or_epochs(self):
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("set max_steps or epochs, not both")
        return self


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


@dataclass(frozen=True)
class FinishedRun:
    """A finished training run of the project, as the run store records it (newest first in
    ``TrainRequest.finished_runs``)."""

    id: str
    plugin: str
    base_model: str | None
    artifact: Path | None


@dataclass
class TrainRequest:
    """Everything a plugin needs. ``records`` already leave out the eval hold-out.

    The same request goes to ``prepare`` (before anything is written: ``output_dir`` does not exist
    yet) and to ``train``. ``finished_runs`` lists the project's finished training runs, newest first,
    read from the run store by the runner (a plugin never opens the store itself)."""

    project: Any  # advisor.project.Project
    records: list  # advisor.data.records.Record
    base_model: str  # hub id or local directory (resolved against the project directory)
    config: PluginConfig
    output_dir: Path  # the run directory: checkpoints/ and artifact/ go inside
    resume: bool = False
    progress: Callable[[ProgressEvent], None] | None = None
    run_id: str | None = None
    options: dict = field(default_factory=dict)  # runner extras (plugin_facts, prior_history, request)
    finished_runs: list[FinishedRun] = field(default_factory=list)

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
    ``prepare(request)`` also runs before anything is written (``request.output_dir`` does not exist
    yet) and returns facts recorded with the run and handed to ``train`` as
    ``request.options["plugin_facts"]``; a ``"base_model"`` key there replaces the project's base
    model (e.g. an encoder for a classifier, or the SFT artifact DPO starts from).
    """

    name: str
    config_class: type[PluginConfig]
    train: Callable[[TrainRequest], TrainResult]
    description: str = ""
    data: Literal["sft", "preference", "label"] = "sft"
    artifact_kind: Literal["adapter", "model"] = "adapter"
    preflight: Callable[[PluginConfig, DeviceInfo], None] | None = None
    check_records: Callable[[list, PluginConfig], None] | None = None
    prepare: Callable[[TrainRequest], dict] | None = None
    needs_causal_lm: bool = True  # the base model must be a causal LM (classifier: any encoder)
