"""The project model of ``project.yaml`` (see the project contract), loaded with clear errors.

* A YAML syntax error names the file and line.
* A schema error names the key path, what was expected, and the line of the key.
* Data paths are relative to the project directory and must stay inside it.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from advisor.errors import AdviseError
from advisor.hardware import parse_hardware
from advisor.methods import METHODS
from advisor.rubric import load_rubric, value
from advisor.training import LoraFields, TrainingFields
from advisor.yamlload import MAX_ALIAS_VALUES, MAX_YAML_DEPTH, ProjectLoader, YAMLBoundError
from advisor.yamlload import key_line as _key_line
from advisor.yamlload import yaml_error_line as _yaml_error_line

__all__ = ["MAX_ALIAS_VALUES", "MAX_YAML_DEPTH", "PROJECT_FILE", "STORE_DIR", "Project", "ProjectLoader",
           "YAMLBoundError", "confined", "json_schema", "load_project", "parse_project"]

PROJECT_FILE = "project.yaml"
STORE_DIR = ".advise"


# project.yaml's method: auto, or one of advisor.methods.METHODS (the vocabulary is defined there)
Method = Enum("Method", [(m, m) for m in ("auto", *METHODS)], type=str)


class DataFormat(str, Enum):
    auto = "auto"
    chat = "chat"
    alpaca = "alpaca"
    prompt_completion = "prompt_completion"
    preference = "preference"


class _Strict(BaseModel):
    # an infinite or NaN number (YAML's .inf, .nan) is never a plan: refused in every block
    model_config = ConfigDict(extra="forbid", use_enum_values=True, allow_inf_nan=False)


class DataSpec(_Strict):
    train: str = Field(description="Training examples (JSON Lines), relative to the project directory.")
    eval: str | None = Field(None, description="Held-out eval examples; without it a seeded split is held out.")
    docs: str | None = Field(None, description="Reference documents (.md, .txt, .html) the task may need.")
    format: DataFormat = Field(DataFormat.auto, description="Record format; auto detects it per file.")


class Constraints(_Strict):
    budget_usd: float | None = Field(None, ge=0, description="What may be spent on training compute.")
    hardware: str | None = Field(
        None, description='"<count>x <gpu>" available for training, e.g. "1x A100-80GB"; "none" = no GPUs.'
    )
    data_must_stay_on_prem: bool = Field(False, description="true: no hosted (third-party) training or inference.")
    facts_change: Literal["never", "rarely", "monthly", "weekly", "daily"] | None = None
    needs_citations: bool = False
    requirements_change: Literal["rarely", "often"] | None = None

    @field_validator("budget_usd")
    @classmethod
    def _budget_bound(cls, v: float | None) -> float | None:
        top = float(value(load_rubric("limits"), "budget_usd_max"))
        if v is not None and v > top:
            raise ValueError(f"${v:,.6g} is more than any training run costs (at most ${top:,.0f}, "
                             "rubrics/limits.yaml budget_usd_max); check the number")
        return v

    @field_validator("hardware", mode="before")
    @classmethod
    def _hardware_text(cls, v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        raise ValueError('expected text like "1x A100-80GB" or "none"')


GateValue = str | float | int | dict[str, Any] | list[dict[str, Any]]  # a list: item rules (items:)


class BenchmarksSpec(_Strict):
    """``eval.benchmarks``: lm-evaluation-harness tasks run on the base and every tuned model as a
    forgetting check (the ``benchmarks`` extra; evaluators/benchmarks.py)."""

    tasks: list[str] = Field(default_factory=list, description="lm-eval task or group names, e.g. [mmlu, arc_easy].")
    include_path: str | None = Field(None, description="A directory of local lm-eval YAML tasks (relative to the project).")
    limit: int | None = Field(None, ge=1, description="Score at most this many documents per task.")
    num_fewshot: int = Field(0, ge=0, le=64)
    batch_size: int = Field(8, ge=1, le=1024)
    seed: int = Field(0, ge=0)
    metric: dict[str, str] | None = Field(None, description="task -> the metric to compare (default: the task's first).")


class EvalSpec(_Strict):
    gates: dict[str, GateValue] = Field(
        default_factory=dict, description='metric -> threshold, e.g. accuracy: ">= 0.85" or rouge_l: {min: 0.4}'
    )
    metrics: list[str] | None = Field(None, description="Metrics to compute (default: chosen from the task kind).")
    few_shot_k: int = Field(4, ge=0, le=64)
    rag_top_k: int = Field(3, ge=1, le=50)
    max_items: int | None = Field(None, ge=1, description="Evaluate at most this many held-out items.")
    max_new_tokens: int = Field(64, ge=1, le=4096)
    benchmarks: BenchmarksSpec | None = Field(None, description="Standard benchmarks (lm-eval tasks) as a forgetting check.")
    primary_metric: str | None = Field(
        None, description="The metric decided on before the eval (default: the headline, first of eval.metrics): "
                          "its tests stay unadjusted; every other metric's p-values are adjusted for many comparisons.")
    cluster_field: str | None = Field(
        None, description="Record field naming the cluster an item belongs to (e.g. doc_id or metadata.doc_id): "
                          "intervals use cluster-robust standard errors (Miller 2024).")
    candidates: dict[str, str] = Field(
        default_factory=dict, description="NAME -> a model directory (e.g. one advise export wrote), relative to the "
        "project or absolute, evaluated as candidate tuned:NAME: how a model trained elsewhere reaches CI")

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, v: dict[str, str]) -> dict[str, str]:
        for name, path in v.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
                raise ValueError(f"candidate name {name!r}: use letters, digits, '.', '-' and '_' (it becomes tuned:NAME)")
            if not str(path).strip():
                raise ValueError(f"candidate {name}: give the model directory")
        return v


class TrainSpec(TrainingFields, LoraFields):
    """project.yaml's ``train:`` block: the training hyperparameters defined once in advisor.training
    (validated here, with the line of a bad key, under the same limits the plugins apply) and any keys
    of a plugin's own, which that plugin validates when it trains."""

    model_config = ConfigDict(extra="allow")


DEFAULT_CRITERIA = {
    "relevance": "Does the answer address what was asked?",
    "accuracy": "Is what it states factually correct? (Check it against the reference where one is shown.)",
    "tone": "Is the tone right for the task and the reader?",
    "completeness": "Does it cover everything the question needs?",
}


class RatingsSpec(_Strict):
    """project.yaml's optional ``ratings:`` block: the blinded human rating sheets of ``advise eval
    --export-ratings`` (docs/human-ratings.md)."""

    items: int = Field(20, ge=1, le=100_000, description="Eval items sampled (seeded) into a rating sheet.")
    seed: int = Field(0, description="Seed of the item sample and of the answer order per item.")
    scale: str = Field("1-5", description='"1-5" (or another "LOW-HIGH" range of integers), or "pass/fail".')
    criteria: list[str] | dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_CRITERIA),
        description="Criteria to rate: names, or name -> what the rater should judge.")
    show_reference: bool = Field(True, description="Show the reference answer on the sheet.")

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: str) -> str:
        v = v.strip().lower()
        if v in ("pass/fail", "pass_fail", "passfail"):
            return "pass/fail"
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", v)
        if not m or int(m.group(1)) >= int(m.group(2)) or int(m.group(2)) - int(m.group(1)) > 100:
            raise ValueError('expected "1-5" (a LOW-HIGH range of integers) or "pass/fail"')
        return f"{int(m.group(1))}-{int(m.group(2))}"

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, v):
        names = list(v)
        if not names:
            raise ValueError("name at least one criterion")
        for n in names:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(n)):
                raise ValueError(f"criterion {n!r}: use letters, digits and '_' (it becomes a column and a gate key)")
        if len(set(names)) != len(names):
            raise ValueError("a criterion is named twice")
        return v

    def criteria_map(self) -> dict[str, str]:
        """criterion -> what to judge ("" when only named)."""
        return dict(self.criteria) if isinstance(self.criteria, dict) else {c: DEFAULT_CRITERIA.get(c, "")
                                                                            for c in self.criteria}


class TrackingSpec(_Strict):
    mlflow: str | None = Field(None, description="MLflow tracking URI (e.g. sqlite:///mlflow.db, relative to the project).")


class Project(_Strict):
    name: str = Field(description="letters, digits, '-', '_'")
    task: str = Field(description="What the model must do, in plain words.")
    base_model: str | None = Field(None, description="Hub id or local model directory (required for eval/train).")
    data: DataSpec
    constraints: Constraints = Field(default_factory=Constraints)
    method: Method = Method.auto
    eval: EvalSpec = Field(default_factory=EvalSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    ratings: RatingsSpec = Field(default_factory=RatingsSpec)

    # set by load_project, not part of the file
    root: Path | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", v):
            raise ValueError("use letters, digits, '-' and '_' only")
        return v

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("describe the task in plain words")
        return v.strip()

    # -- paths -------------------------------------------------------------------------------
    @property
    def project_file(self) -> Path:
        return (self.root or Path(".")) / PROJECT_FILE

    @property
    def store_dir(self) -> Path:
        return (self.root or Path(".")) / STORE_DIR

    def key_line(self, *path: str | int) -> int | None:
        """1-based line of a key of project.yaml (e.g. ``key_line("eval", "gates", "accuracy")``), or None."""
        try:
            node = yaml.compose(self.project_file.read_text(encoding="utf-8"), Loader=ProjectLoader)
        except (OSError, yaml.YAMLError):
            return None
        return _key_line(node, tuple(path))

    def data_path(self, key: str) -> Path | None:
        rel = getattr(self.data, key)
        if rel is None:
            return None
        return _inside(self.root or Path("."), rel, f"data.{key}", self.project_file)

    def base_model_dir(self) -> Path | None:
        """The local directory of ``base_model`` when it is one, else None (a hub id)."""
        bm = self.base_model
        if not bm:
            return None
        p = _expanded(bm, "base_model", self.project_file)
        if p.is_absolute():
            return p
        local = (self.root or Path(".")) / p
        if local.exists() or bm.startswith((".", "~")) or bm.count("/") > 1:
            return local
        return None


def confined(root: Path, path: Path, *, strict: bool = False) -> Path | None:
    """``path`` with its symlinks resolved when it lies inside the project directory ``root``, else None:
    the one rule of what advise may read (data paths, and every file under data.docs). ``strict``:
    the path must exist. A symlink loop raises OSError."""
    try:
        resolved = path.resolve(strict=strict)
    except RuntimeError as e:  # Python 3.11's non-strict resolve on a loop
        raise OSError(f"symlink loop: {e}") from None
    return resolved if resolved.is_relative_to(root.resolve()) else None


def _expanded(rel: str, key: str, pfile: Path) -> Path:
    """``rel`` with a leading ``~`` or ``~user`` expanded; an unknown user (``~nobody-here/x``) is the
    user's error, not a RuntimeError (found by bench/fuzz_records.py)."""
    try:
        return Path(rel).expanduser()
    except RuntimeError:
        user = rel[1:].split("/", 1)[0].split("\\", 1)[0]
        raise AdviseError(f"{key}: '{rel}' starts with '~{user}', and there is no home directory for "
                          f"{'user ' + repr(user) if user else 'this user'} to expand it to", file=pfile) from None


def _inside(root: Path, rel: str, key: str, pfile: Path) -> Path:
    p = _expanded(rel, key, pfile)
    full = (root / p) if not p.is_absolute() else p
    try:
        inside = confined(root, full)
    except OSError:
        raise AdviseError(f"{key}: '{rel}' is a symlink loop", file=pfile) from None
    if inside is None:
        raise AdviseError(f"{key}: '{rel}' points outside the project directory; data paths must stay inside it",
                          file=pfile) from None
    return full


_UNION_HINTS = {
    ("eval", "gates"): 'expected a threshold like ">= 0.85", a number, a mapping like {min: 0.4, on: lower_bound}, '
                       "or for items: a list of {tag: NAME, no_worse: true}",
    ("ratings", "criteria"): "expected a list of criterion names, or a mapping of name: what the rater judges",
}


def _plain_loc(loc: tuple) -> tuple:
    """The key path of a pydantic error without the union member names (str, dict[str,any], ...)."""
    return tuple(p for p in loc if not (isinstance(p, str) and (p in ("str", "float", "int", "dict", "list", "bool")
                                                               or "[" in p or p.startswith("function-"))))


def _explain(err: dict) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known key (check its spelling; `advise schema` lists the keys)"
    msg = err.get("msg", "invalid value").removeprefix("Value error, ").replace("Input should be", "expected")
    return msg if msg.startswith("expected") else f"is invalid: {msg}"


def parse_project(text: str, root: Path, file: Path) -> Project:
    try:
        node = yaml.compose(text, Loader=ProjectLoader)
        raw = yaml.load(text, Loader=ProjectLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = getattr(e, "context", None)
        if context and getattr(e, "context_mark", None) is not None and context not in problem:
            problem = f"{problem} ({context} at line {e.context_mark.line + 1})"
        what = "YAML refused" if isinstance(e, YAMLBoundError) else "YAML syntax error"
        raise AdviseError(f"{what}: {problem}", file=file, line=_yaml_error_line(e, text)) from None
    if raw is None:
        raise AdviseError("is empty; `advise init DIR` writes a commented example", file=file)
    if not isinstance(raw, dict):
        raise AdviseError("expected a mapping of keys (name, task, data, ...) at the top level", file=file, line=1)
    try:
        project = Project.model_validate(raw)
    except ValidationError as e:
        errors = e.errors()
        err = errors[0]
        loc = _plain_loc(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _key_line(node, loc)
        # a value that matches none of a union's types gives one error a type: one problem, not several
        same = [x for x in errors if _plain_loc(x["loc"])[:len(loc)] == loc]
        why = _explain(err)
        if len(same) > 1:
            why = f"has the wrong form: {_UNION_HINTS.get(loc[:2], 'see `advise schema` for what it accepts')}"
        rest = len(errors) - len(same)
        more = f" (and {rest} more problem(s))" if rest > 0 else ""
        raise AdviseError(f"{key} {why}{more}", file=file, line=line) from None
    project.root = root
    # the one hardware parser: every command accepts and refuses the same constraints.hardware
    try:
        parse_hardware(project.constraints.hardware)
    except ValueError as e:
        raise AdviseError(f"constraints.hardware: {e}", file=file, line=_key_line(node, ("constraints", "hardware"))) \
            from None
    # confine data paths now, so every command fails early and the same way
    for key in ("train", "eval", "docs"):
        project.data_path(key)
    if project.base_model and project.base_model.startswith("~"):  # every command, not only assess
        _expanded(project.base_model, "base_model", file)
    return project


def load_project(project_dir: str | Path) -> Project:
    root = Path(project_dir)
    if not root.exists():
        raise AdviseError("project directory does not exist", file=root)
    if root.is_file() and root.name == PROJECT_FILE:
        root = root.parent
    if not root.is_dir():
        raise AdviseError("is not a project directory", file=root)
    pfile = root / PROJECT_FILE
    if not pfile.is_file():
        raise AdviseError("no project.yaml here; `advise init DIR` creates one", file=pfile)
    try:
        text = pfile.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AdviseError(f"is not UTF-8 text ({e.reason})", file=pfile) from None
    except OSError as e:
        raise AdviseError(f"cannot be read: {e.strerror}", file=pfile) from None
    return parse_project(text, root, pfile)


def json_schema() -> dict:
    schema = Project.model_json_schema()
    schema["properties"].pop("root", None)
    schema["title"] = "advise project.yaml"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
