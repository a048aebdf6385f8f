"""One arm of the probe = one derived project evaluated (and, for fine-tuning arms, trained first) through
the same code as `advise eval` and `advise train`. An arm's result: the primary metric with its 95%
interval, the per-item scores (aligned by item hash across arms, for paired comparisons and the
learning curve's bootstrap), the measured seconds and the training steps it spent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from advisor.errors import AdviseError
from advisor.project import load_project
from advisor.store import Store
from evaluators.runner import run_eval
from trainers.runner import execute, plan_new, plan_resume


@dataclass
class ArmResult:
    name: str
    kind: str  # prompting | rag | oracle | fine-tuning | knowledge
    value: float | None
    ci: list[float] | None
    n: int
    seconds: float
    per_item: dict[str, float | None] = field(default_factory=dict)  # item hash -> primary metric score
    metric: str | None = None
    higher_is_better: bool = True
    shots: int | None = None
    fraction: float | None = None
    train_examples: int | None = None
    steps: int = 0
    note: str = ""
    run_ids: list[str] = field(default_factory=list)

    def to_dict(self, with_items: bool = True) -> dict:
        d = dict(self.__dict__)
        if not with_items:
            d.pop("per_item")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ArmResult:
        return cls(**d)


def _per_item(project_dir: Path, run_id: str, metric: str) -> dict[str, float | None]:
    project = load_project(project_dir)
    with Store.for_project(project, read_only=True) as store:
        run = store.get_run(run_id) if store is not None else None
    rows = ((run or {}).get("result") or {}).get("per_item") or []
    return {r["item"]: (r.get("scores") or {}).get(metric) for r in rows}


def evaluate_arm(name: str, kind: str, project_dir: Path, candidate: str, *, seed: int, **meta) -> ArmResult:
    """Evaluate ``candidate`` of the derived project (its eval cache makes a rerun after a kill cheap)."""
    t0 = time.perf_counter()
    project = load_project(project_dir)
    res = run_eval(project, candidates=[candidate], canary=None, seed=seed, progress=False)
    run = next((r for r in res["runs"] if r["candidate"] == candidate), None) or (res["runs"] or [None])[0]
    if run is None:
        raise AdviseError(f"the probe's {name} arm produced no eval run", file=project.project_file)
    metric = res["primary_metric"]
    m = (run.get("metrics") or {}).get(metric) or {}
    return ArmResult(name, kind, m.get("value"), m.get("ci"), m.get("n") or 0, round(time.perf_counter() - t0, 3),
                     _per_item(project_dir, run["run_id"], metric), metric,
                     bool(m.get("higher_is_better", True)), run_ids=[run["run_id"]], **meta)


def _unfinished_train_run(project_dir: Path) -> str | None:
    project = load_project(project_dir)
    with Store.for_project(project, read_only=True) as store:
        if store is None:
            return None
        runs = store.find_runs("train", status=None)
    for r in runs:
        if r.get("status") != "done":
            return r["id"]
    return None


def _finished_train_run(project_dir: Path) -> dict | None:
    project = load_project(project_dir)
    with Store.for_project(project, read_only=True) as store:
        if store is None:
            return None
        run = store.latest_run("train")
    return run if run and run.get("status") == "done" else None


def train_arm(name: str, project_dir: Path, *, plugin: str, steps: int, seed: int, **meta) -> ArmResult:
    """Train the plugin on the arm's fraction (resuming an interrupted run of it), then evaluate it."""
    t0 = time.perf_counter()
    if _finished_train_run(project_dir) is None:
        pending = _unfinished_train_run(project_dir)
        plan = None
        if pending:
            try:
                plan = plan_resume(project_dir, pending)
            except AdviseError:
                plan = None  # killed before its first checkpoint: nothing to resume, train again
        plan = plan or plan_new(project_dir, method=plugin, max_steps=steps)
        execute(plan, command=f"advise probe ({name})")
    trained = round(time.perf_counter() - t0, 3)
    arm = evaluate_arm(name, "fine-tuning", project_dir, "tuned:*", seed=seed, **meta)
    arm.seconds = round(arm.seconds + trained, 3)
    arm.steps = steps
    return arm
