"""The probe's settings, defined once (defaults from rubrics/probe.yaml, each with its source)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from advisor.errors import AdviseError
from advisor.rubric import load_rubric, value


@dataclass
class ProbeOptions:
    shots: list[int] = field(default_factory=list)  # few-shot k (0: zero-shot)
    fractions: list[float] = field(default_factory=list)  # nested shares of train for fine-tuning arms
    max_items: int | None = None  # bounds the dev split
    seed: int = 0
    budget_minutes: float | None = None  # no new arm starts once spent
    method: str | None = None  # the fine-tuning plugin (default: the recommendation's)
    fine_tune: bool = True
    knowledge: bool = True

    def key(self) -> dict:
        d = asdict(self)
        d.pop("budget_minutes")  # a budget changes what runs, not what a finished arm measured
        return d

    @classmethod
    def defaults(cls, project_root: Path | None = None, **given) -> ProbeOptions:
        table = load_rubric("probe", project_root)
        opts = cls(shots=list(value(table, "defaults", "shots")), fractions=list(value(table, "defaults", "fractions")))
        for k, v in given.items():
            if v is not None:
                setattr(opts, k, v)
        opts.check()
        return opts

    def check(self) -> None:
        if any(not isinstance(k, int) or k < 0 or k > 256 for k in self.shots):
            raise AdviseError(f"shots: whole numbers from 0 to 256, got {self.shots}")
        if any(not 0 < f < 1 for f in self.fractions):
            raise AdviseError(f"fractions: shares of the training data between 0 and 1 (exclusive), got {self.fractions}")
        if self.max_items is not None and self.max_items < 1:
            raise AdviseError("max items must be at least 1")
        if self.budget_minutes is not None and not 0 < self.budget_minutes < 1e6:
            raise AdviseError(f"budget minutes must be a positive number, got {self.budget_minutes}")
