"""The eval runner: candidates x held-out items -> per-item outputs and scores -> runs with confidence
intervals -> paired comparisons, with a resumable cache in the run store.

Candidates (names are what ``advise eval --json`` prints):

* ``base:zero-shot``, ``base:few-shot``, ``base:rag`` -- the project's ``base_model`` with each prompt
  strategy (RAG only when the project has docs). Base models get the project's task as a system
  message when an item has none.
* ``tuned:<method>`` -- the base model plus the artifact of a finished ``train`` run (a peft adapter, a full
  model directory, or a sequence classifier), prompted as it was trained (zero-shot, no added
  instruction); ``tuned:<method>:<strategy>`` with another strategy; older runs of the same method are
  ``tuned:<method>@<run id>``.
* ``endpoint:<model>:<strategy>`` -- an OpenAI-compatible server.

Cache and resume: every answered item is written to the store (``Store.put_items``) keyed by the
candidate's fingerprint (model identity from its files' names, sizes and sampled contents, adapter,
strategy and its data), the item's hash and the generation settings hash, one batch at a time. The
cache is read before any model or embedding model is loaded: an unchanged re-run makes no model call,
and an interrupted one computes only the items it had not finished. Items that failed (an endpoint
error) are not cached and are tried again next time.

Every aggregate carries a 95% CI (:func:`evaluators.metrics.evaluate`); runs on the same items are
compared paired (:mod:`evaluators.stats`: McNemar / Newcombe for binary metrics, paired bootstrap
otherwise) with wins/losses/ties and the list of items that got worse. Each candidate's run is stored
(``kind="eval"``, ``name=<candidate>``) with its per-item outputs and scores, and the whole result as
``kind="eval_summary"``, so a gate or a report reads them without any model call.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from advisor.data.dataset import item_hash, load_project_data, references
from advisor.data.records import Record
from advisor.errors import AdviseError
from advisor.hashing import file_hash, stable_hash
from advisor.hf import model_fingerprint
from advisor.project import Project
from advisor.rubric import load_rubric, value
from advisor.store import Store
from evaluators import stats
from evaluators.backends.base import Backend, GenerationSettings
from evaluators.backends.classifier import SequenceClassifierBackend, is_classifier_dir
from evaluators.backends.openai import OpenAIBackend, chat_url
from evaluators.backends.transformers import TransformersBackend
from evaluators.backends.vllm import VLLMBackend
from evaluators.canary import CANARY_METRICS, CANARY_SYSTEM, forgetting, load_canary
from evaluators.judge import Judge
from evaluators.metrics import MetricError, compare_metric, default_metrics, evaluate, get_metric
from evaluators.strategies import STRATEGIES, Strategy, ZeroShot, make_strategy

PROMPT_VERSION = 1  # bump when prompt building changes: cached answers of older prompts are not reused
REGRESSIONS_MAX = 200  # items listed per comparison (the count is always complete)
JSON_SHARE = 0.9
SHORT_ANSWER_WORDS = 8
CANARY_MAX_NEW_TOKENS = 32

BatchHook = Callable[[str, int, int], None]  # (candidate, batches done, items done)


# ------------------------------------------------------------------------------------------ items


@dataclass
class EvalItem:
    hash: str
    line: int
    record: Record
    references: list[str]

    @property
    def fields(self) -> dict[str, Any]:
        extra = self.record.extra or {}
        return {"schema": extra.get("schema")} if extra.get("schema") is not None else {}


def make_items(records: Sequence[Record], max_items: int | None = None) -> list[EvalItem]:
    recs = list(records)[:max_items] if max_items else list(records)
    items, seen = [], set()
    for r in recs:
        h = item_hash(r)
        if h in seen:
            continue  # an exact duplicate item would be scored twice
        seen.add(h)
        items.append(EvalItem(h, r.line, r, references(r)))
    return items


def _duplicate_lines(records: Sequence[Record]) -> list:
    seen, out = set(), []
    for r in records:
        h = item_hash(r)
        if h in seen:
            out.append(r.line)
        seen.add(h)
    return out


# -------------------------------------------------------------------------------------- task kind


def detect_task_kind(records: Sequence[Record], project_root: Path | None = None) -> str:
    """classification (label-like outputs: a small closed set of short answers), extraction_json (JSON
    outputs), qa (short free answers) or generation, from the reference outputs."""

    outs = [r.output.strip() for r in records if r.output and r.output.strip()]
    if not outs:
        return "generation"
    parsed = 0
    for o in outs:
        if o[:1] in "{[":
            try:
                json.loads(o)
                parsed += 1
            except ValueError:
                pass
    if parsed / len(outs) >= JSON_SHARE:
        return "extraction_json"
    rubric = load_rubric("data_checks", project_root)
    labels = {o.casefold() for o in outs}
    mean_words = sum(len(o.split()) for o in outs) / len(outs)
    if (len(outs) >= 10 and len(labels) <= value(rubric, "outputs", "label_max_classes")
            and mean_words <= value(rubric, "outputs", "label_max_words")
            and len(labels) / len(outs) <= value(rubric, "outputs", "label_max_distinct_share")):
        return "classification"
    return "qa" if mean_words <= SHORT_ANSWER_WORDS else "generation"


def choose_metrics(project: Project, kind: str, *, has_schema: bool = False, has_label_scores: bool = False,
                   has_logprobs: bool = False, judge: bool = False) -> list[str]:
    """project.eval.metrics when set (validated), else the defaults of the task kind; the first
    per-item-or-corpus metric is the headline."""

    if project.eval.metrics:
        names = []
        for n in project.eval.metrics:
            if n == "judge_pairwise":
                names.append(n)
                continue
            try:
                names.append(get_metric(n).name)
            except MetricError as e:
                raise AdviseError(f"eval.metrics: {e}", file=project.project_file) from None
        if judge and "judge_score" not in names:
            names.append("judge_score")
        return list(dict.fromkeys(names))
    names = default_metrics(kind, has_schema=has_schema, has_label_scores=has_label_scores,
                            has_logprobs=has_logprobs and kind in ("generation", "qa"))
    if judge:
        names.append("judge_score")
    return names


def _label_token_cap(items: Sequence[EvalItem], train: Sequence[Record]) -> int:
    """A generous bound on the tokens of any label (UTF-8 bytes + 8): byte-level tokenizers never need
    more tokens than bytes, so a longer reply cannot be a label."""
    longest = max([len(r.encode()) for it in items for r in it.references] +
                  [len(r.output.strip().encode()) for r in train] + [1])
    return longest + 8


# ------------------------------------------------------------------------------------- candidates


@dataclass
class CandidateSpec:
    name: str
    source: str  # base | tuned | endpoint
    backend: str  # transformers | classifier | openai | vllm
    model: str  # hub id or directory (the base model under an adapter); the endpoint's model name
    strategy: str = "zero-shot"
    adapter: str | None = None
    instruction: bool = True
    train_run: str | None = None
    method: str | None = None
    endpoint: dict | None = None
    revision: str | None = None
    stem: str = ""  # the model part of the name: base, tuned:<method>, endpoint:<model>

    @property
    def backend_key(self) -> tuple:
        ep = (self.endpoint or {}).get("url")
        return (self.backend, self.model, self.adapter, ep)

    def describe(self) -> dict[str, Any]:
        d = {"source": self.source, "backend": self.backend, "model": self.model, "strategy": self.strategy}
        if self.adapter:
            d["adapter"] = self.adapter
        if self.train_run:
            d["train_run"], d["method"] = self.train_run, self.method
        if self.endpoint:
            d["endpoint"] = {k: v for k, v in self.endpoint.items() if k in ("url", "model", "api_key_env")}
        return d


def _same_model(a: str | None, b: str | None, root: Path | None) -> bool:
    if not a or not b:
        return True
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if root is not None:
        pa = pa if pa.is_absolute() else root / pa
        pb = pb if pb.is_absolute() else root / pb
    try:
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    except OSError:
        return False


def _inside_store(model: str | None, project: Project) -> bool:
    """A model this project made (e.g. the SFT model a DPO run started from) lives under ``.advise/``."""
    if not model:
        return False
    try:
        p = Path(model).expanduser()
        if not p.is_absolute() and project.root is not None:
            p = project.root / p
        p.resolve().relative_to(project.store_dir.resolve())
        return True
    except (ValueError, OSError):
        return False


def _relocated(path: str | None, project: Project) -> str | None:
    """A path recorded under the project's ``.advise/`` before the project directory moved, where it is now."""
    if not path or Path(path).expanduser().exists() or "/.advise/" not in str(path).replace("\\", "/"):
        return path
    moved = project.store_dir / str(path).replace("\\", "/").split("/.advise/", 1)[1]
    return str(moved) if moved.exists() else path


def _same_local_weights(run_config: dict, project: Project) -> bool:
    """The run's base model has the config.json of the project's local base model (local-sha256 revision):
    the same model, wherever the directory lives now."""

    rev = str(run_config.get("base_model_revision") or "")
    d = project.base_model_dir()
    if not rev.startswith("local-sha256:") or d is None or not (d / "config.json").is_file():
        return False
    return rev == "local-sha256:" + file_hash(d / "config.json")[:16]


def base_model_ref(project: Project) -> str | None:
    if not project.base_model:
        return None
    d = project.base_model_dir()
    return str(d) if d is not None else project.base_model


def tuned_runs(project: Project, store: Store, warnings: list[str]) -> list[dict]:
    """Finished train runs with a usable artifact for the project's base model, newest first, each with
    its candidate name stem (``tuned:<method>`` or ``tuned:<method>@<run id>`` for older ones)."""
    out, seen_methods = [], set()
    base = base_model_ref(project)
    for run in store.list_runs("train", limit=1000):
        if run.get("status") != "done":
            continue
        result = run.get("result") or {}
        config = run.get("config") or {}
        artifact = result.get("artifact")
        method = str(result.get("method") or run.get("name") or "model")
        if not artifact:
            continue
        art = Path(_relocated(artifact, project)).expanduser()
        if not art.is_absolute() and project.root is not None:
            art = project.root / art
        if not art.is_dir():
            warnings.append(f"train run {run['id']}: artifact {artifact} no longer exists; not evaluated")
            continue
        run_base = _relocated(result.get("base_model") or config.get("base_model"), project)
        if method != "classifier" and not _same_model(run_base, project.base_model, project.root) \
                and not _same_model(run_base, base, project.root) and not _inside_store(run_base, project) \
                and not _same_local_weights(config, project):
            warnings.append(f"train run {run['id']} tuned {run_base}, not the project's base model "
                            f"{project.base_model}; not evaluated")
            continue
        stem = f"tuned:{method}" if method not in seen_methods else f"tuned:{method}@{run['id']}"
        seen_methods.add(method)
        out.append({"run": run, "artifact": str(art), "method": method, "stem": stem,
                    "base_model": run_base or base})
    return out


def plan_candidates(project: Project, store: Store, *, strategies: Sequence[str] | None = None,
                    names: Sequence[str] | None = None, endpoint: dict | None = None,
                    has_docs: bool = False, has_train: bool = True,
                    warnings: list[str] | None = None, local_backend: str = "transformers") -> list[CandidateSpec]:
    """Every candidate this project can evaluate, then the selection: ``names`` (fnmatch patterns)
    when given, else the defaults (base with every applicable strategy, or the endpoint's instead when
    one is given, plus every tuned run zero-shot); ``strategies`` restricts the strategies."""
    warnings = warnings if warnings is not None else []
    applicable = ["zero-shot"] + (["few-shot"] if has_train and project.eval.few_shot_k > 0 else []) + \
        (["rag"] if has_docs else [])
    for s in strategies or []:
        if s not in STRATEGIES:
            raise AdviseError(f"unknown strategy {s!r} ({', '.join(STRATEGIES)})")
        if s == "rag" and not has_docs:
            raise AdviseError("the rag strategy needs documents: set data.docs in project.yaml",
                              file=project.project_file)
    wanted = list(strategies) if strategies else applicable
    universe: list[tuple[CandidateSpec, bool]] = []  # (spec, selected by default)
    base = base_model_ref(project)
    if base:
        for s in applicable:
            universe.append((CandidateSpec(f"base:{s}", "base", local_backend, base, s, stem="base"),
                             s in wanted and endpoint is None))
    if endpoint:
        for s in applicable:
            universe.append((CandidateSpec(f"endpoint:{endpoint['model']}:{s}", "endpoint", "openai",
                                           endpoint["model"], s, endpoint=endpoint,
                                           stem=f"endpoint:{endpoint['model']}"), s in wanted))
    if True:  # tuned runs (a classifier needs no base model)
        for t in tuned_runs(project, store, warnings):
            art = Path(t["artifact"])
            if t["method"] == "classifier" or is_classifier_dir(art):
                spec = CandidateSpec(t["stem"], "tuned", "classifier", str(art), "zero-shot", instruction=False,
                                     train_run=t["run"]["id"], method=t["method"], stem=t["stem"])
                universe.append((spec, endpoint is None and "zero-shot" in wanted))
                continue
            adapter = str(art) if (art / "adapter_config.json").is_file() else None
            model = (t["base_model"] or base) if adapter else str(art)
            if adapter and model and not Path(model).is_absolute() and project.root is not None \
                    and (project.root / model).exists():
                model = str(project.root / model)
            for s in applicable:
                name = t["stem"] if s == "zero-shot" else f"{t['stem']}:{s}"
                if "@" in t["stem"] and s != "zero-shot":
                    name = t["stem"].replace("@", f":{s}@", 1)
                spec = CandidateSpec(name, "tuned", local_backend, model, s, adapter=adapter, instruction=False,
                                     train_run=t["run"]["id"], method=t["method"], stem=t["stem"])
                default = endpoint is None and (s == "zero-shot" if not strategies else s in wanted)
                universe.append((spec, default))
    if names:
        chosen, unknown = [], []
        for pat in names:
            hits = [sp for sp, _ in universe if fnmatchcase(sp.name, pat)]
            if not hits:
                unknown.append(pat)
            chosen += [h for h in hits if h not in chosen]
        if unknown:
            known = ", ".join(sp.name for sp, _ in universe) or "none"
            raise AdviseError(f"no candidate named {', '.join(map(repr, unknown))}; candidates: {known}")
        if strategies:
            chosen = [c for c in chosen if c.strategy in wanted]
        return chosen
    chosen = [sp for sp, default in universe if default]
    if not chosen:
        if not base and not endpoint:
            raise AdviseError("base_model is required for eval (a hub id or a local model directory), "
                              "or give --endpoint URL --endpoint-model NAME", file=project.project_file)
        raise AdviseError("no candidate to evaluate with the strategies asked for")
    return chosen


def candidate_order(spec: CandidateSpec) -> tuple:
    src = {"base": 0, "endpoint": 1, "tuned": 2}.get(spec.source, 3)
    return (src, STRATEGIES.index(spec.strategy) if spec.strategy in STRATEGIES else 9)


# ---------------------------------------------------------------------------------------- results


@dataclass
class CandidateRun:
    spec: CandidateSpec
    suite: str
    fingerprint: str
    settings_hash: str
    items: list[EvalItem]
    outputs: list[str | None]
    data: list[dict]
    errors: list[str | None]
    cached: int = 0
    computed: int = 0
    model_calls: dict = field(default_factory=dict)
    loaded: bool = False
    run_id: str | None = None
    metrics: dict[str, dict] = field(default_factory=dict)
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    display_name: str | None = None

    @property
    def name(self) -> str:
        return self.display_name or self.spec.name

    @property
    def ok(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e is None]

    def metric_fields(self, i: int) -> dict[str, Any]:
        d = self.data[i] or {}
        f = dict(self.items[i].fields)
        for k in ("label_scores", "mean_logprob", "judge_score"):
            if d.get(k) is not None:
                f[k] = d[k]
        if d.get("ref_tokens"):
            f["n_tokens"] = d["ref_tokens"]
        return f

    def error_items(self) -> list[dict]:
        return [{"item": it.hash, "line": it.line, "error": e} for it, e in zip(self.items, self.errors, strict=True)
                if e is not None]

    def summary(self) -> dict[str, Any]:
        """The run as ``advise eval --json`` prints it (the contract's keys first)."""
        errs = self.error_items()
        return {
            "candidate": self.name,
            "items": len(self.items),
            "metrics": self.metrics,
            "errors": len(errs),
            "error_items": errs[:REGRESSIONS_MAX],
            **self.spec.describe(),
            "run_id": self.run_id,
            "fingerprint": self.fingerprint,
            "settings": self.settings_hash,
            "cached": self.cached,
            "computed": self.computed,
            "model_calls": self.model_calls,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }

    def stored_result(self, extra: dict) -> dict[str, Any]:
        per_item = []
        for i, it in enumerate(self.items):
            d = self.data[i] or {}
            row = {"item": it.hash, "line": it.line, "output": self.outputs[i], "error": self.errors[i],
                   "scores": {m: s[i] for m, s in self.scores.items()}}
            for k in ("retrieved", "cited", "few_shot", "label_scores"):
                if d.get(k) is not None:
                    row[k] = d[k]
            per_item.append(row)
        return {**self.summary(), **extra, "suite": self.suite, "per_item": per_item}


# --------------------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress bar on stderr with items/s (items computed, not read from the cache)."""

    def __init__(self, enabled: bool, console=None):
        self.enabled = enabled
        self._p = None
        self._speed: dict[Any, list] = {}
        self.console = console
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.console = console or Console(stderr=True)
            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=self.console,
                               transient=False)
            self._p.start()

    def task(self, name: str, total: int, cached: int):
        if not self._p:
            return None
        tid = self._p.add_task(name, total=total, completed=cached, rate="cached" if cached == total else "")
        self._speed[tid] = [time.perf_counter(), 0]
        return tid

    def advance(self, task, n: int) -> None:
        if not self._p or task is None:
            return
        t0, done = self._speed[task]
        done += n
        self._speed[task] = [t0, done]
        rate = done / max(1e-9, time.perf_counter() - t0)
        self._p.update(task, advance=n, rate=f"{rate:.1f} items/s")

    def finish(self, task) -> None:
        if self._p and task is not None:
            self._p.stop_task(task)

    def stop(self, failed: bool = False) -> None:
        if self._p:
            if failed:  # the error line says what happened; no half-drawn bars, not even an empty line
                for tid in list(self._p.task_ids):
                    self._p.remove_task(tid)
                self._p.live.transient = True
                self._p.live.stop()  # Progress.stop() would add a blank line on a non-terminal stderr
            else:
                self._p.stop()
            self._p = None


# ------------------------------------------------------------------------------------------ runner


class Evaluator:
    """Runs candidates on items with the cache; holds loaded backends so strategies share a model."""

    def __init__(self, project: Project, store: Store, *, settings: GenerationSettings, use_cache: bool = True,
                 progress: bool = False, on_batch: BatchHook | None = None, trust_remote_code: bool = False,
                 batch_size: int = 16, console=None, judge=None):
        self.project, self.store, self.settings = project, store, settings
        self.use_cache, self.on_batch = use_cache, on_batch
        self.trust_remote_code, self.batch_size = trust_remote_code, batch_size
        self.progress = _Progress(progress, console)
        self.judge_failures: dict[str, tuple[int, int, str]] = {}  # candidate -> (failed, asked, first error)
        self.backends: dict[tuple, Backend] = {}
        self._fps: dict[tuple, dict] = {}
        self.judge = judge
        self.timing = {"load": 0.0, "generate": 0.0, "metrics": 0.0, "judge": 0.0}

    # -- backends --------------------------------------------------------------------------------
    def backend(self, spec: CandidateSpec) -> Backend:
        key = spec.backend_key
        if key in self.backends:
            return self.backends[key]
        t0 = time.perf_counter()
        if spec.backend == "transformers":

            b = TransformersBackend(spec.model, adapter=spec.adapter, revision=spec.revision,
                                    trust_remote_code=self.trust_remote_code, batch_size=self.batch_size)
        elif spec.backend == "classifier":

            b = SequenceClassifierBackend(spec.model, trust_remote_code=self.trust_remote_code,
                                          batch_size=max(self.batch_size, 32))
        elif spec.backend == "openai":

            ep = dict(spec.endpoint or {})
            b = OpenAIBackend(ep.pop("url"), ep.pop("model"), **ep)
        elif spec.backend == "vllm":

            b = VLLMBackend(spec.model, adapter=spec.adapter, trust_remote_code=self.trust_remote_code)
        else:
            raise AdviseError(f"unknown backend {spec.backend!r}")
        self.timing["load"] += time.perf_counter() - t0
        self.backends[key] = b
        return b

    def release(self, keep: set[tuple] = frozenset()) -> None:
        for key in [k for k in self.backends if k not in keep]:
            self.backends.pop(key).close()

    def close(self, failed: bool = False) -> None:
        self.progress.stop(failed)
        self.release()

    def _model_fp(self, model: str, revision: str | None = None) -> dict:
        key = (model, revision)
        if key not in self._fps:
            self._fps[key] = model_fingerprint(model, revision)
        return self._fps[key]

    def fingerprint(self, spec: CandidateSpec, strategy: Strategy) -> str:
        d: dict[str, Any] = {"backend": spec.backend, "strategy": strategy.fingerprint()}
        if spec.backend in ("transformers", "vllm", "classifier"):
            d["model"] = self._model_fp(spec.model, spec.revision)
            if spec.adapter:
                d["adapter"] = self._model_fp(spec.adapter)
        else:

            d["endpoint"] = {"url": chat_url(spec.endpoint["url"]), "model": spec.endpoint["model"]}
        return stable_hash(d)

    # -- one candidate ---------------------------------------------------------------------------
    def run(self, spec: CandidateSpec, strategy: Strategy, items: list[EvalItem], metrics: list[str], *,
            suite: str = "task", settings: GenerationSettings | None = None, task_kind: str = "",
            display_name: str | None = None) -> CandidateRun:
        settings = settings or self.settings
        fp = self.fingerprint(spec, strategy)
        sh = stable_hash({"generation": settings.key(), "prompt_version": PROMPT_VERSION,
                          "backend": spec.backend})
        name = display_name or spec.name
        n = len(items)
        run = CandidateRun(spec, suite, fp, sh, items, [None] * n, [{} for _ in range(n)], [None] * n,
                           display_name=display_name)
        t_start = time.perf_counter()
        need_ll = spec.backend == "transformers" and bool({"mean_logprob", "perplexity"} & set(metrics))
        cached = self.store.get_items(fp, sh, [it.hash for it in items]) if self.use_cache else {}
        index = {it.hash: i for i, it in enumerate(items)}
        for h, row in cached.items():
            if row.get("error") is None and row.get("output") is not None:
                i = index[h]
                run.outputs[i], run.data[i] = row["output"], row.get("data") or {}
        todo = [i for i in range(n) if run.outputs[i] is None]
        todo_ll = [i for i in range(n) if need_ll and run.outputs[i] is not None
                   and "mean_logprob" not in run.data[i]] if need_ll else []
        run.cached = n - len(todo)
        run_id = self.store.start_run(
            "eval", name=name, inputs_hash=stable_hash({"fp": fp, "settings": sh, "items": [it.hash for it in items],
                                                        "metrics": metrics}),
            config={"suite": suite, "candidate": spec.describe(), "fingerprint": fp, "settings": settings.key(),
                    "settings_hash": sh, "metrics": metrics, "items": n, "strategy": strategy.fingerprint()},
            command="advise eval")
        run.run_id = run_id
        task = self.progress.task(f"{name}" + (" (canary)" if suite == "canary" else ""), n, run.cached)
        try:
            if todo or todo_ll:
                backend = self.backend(spec)
                run.loaded = True
                before = dict(backend.calls)
                strategy.prepare()
                self._generate(run, backend, strategy, todo, settings, need_ll, task)
                if todo_ll:
                    self._loglik(run, backend, strategy, todo_ll)
                run.model_calls = {k: v - before.get(k, 0) for k, v in backend.calls.items() if v - before.get(k, 0)}
                if run.computed and all(run.errors[i] is not None for i in todo) and run.cached == 0:
                    first = next(e for e in run.errors if e)
                    raise AdviseError(f"{name}: no item could be answered: {first}")
            if self.judge is not None and suite == "task" and "judge_score" in metrics:
                self._judge_scores(run)
            run.seconds["answer"] = time.perf_counter() - t_start
            t0 = time.perf_counter()
            self._score(run, metrics)
            run.seconds["metrics"] = time.perf_counter() - t0
            self.timing["metrics"] += run.seconds["metrics"]
            self.progress.finish(task)
        except KeyboardInterrupt:
            self.store.finish_run(run_id, "interrupted", error="interrupted")
            raise
        except AdviseError as e:
            self.store.finish_run(run_id, "failed", error=e.render())
            raise
        except BaseException as e:
            self.store.finish_run(run_id, "interrupted" if not isinstance(e, Exception) else "failed",
                                  error=f"{type(e).__name__}: {e}")
            raise
        return run

    def _generate(self, run: CandidateRun, backend: Backend, strategy: Strategy, todo: list[int],
                  settings: GenerationSettings, need_ll: bool, task) -> None:
        items = run.items
        # similar lengths together: less padding in a local batch
        order = sorted(todo, key=lambda i: -sum(len(m["content"]) for m in items[i].record.prompt))
        chunk = max(1, getattr(backend, "batch_size", 16))
        batches = 0
        for start in range(0, len(order), chunk):
            idx = order[start : start + chunk]
            prompts = strategy.build_all([items[i].record for i in idx])
            t0 = time.perf_counter()
            gens = backend.generate([p.messages for p in prompts], settings)
            lls = None
            if need_ll:
                lls = backend.loglik([p.messages for p in prompts], [items[i].references[0] for i in idx])
            self.timing["generate"] += time.perf_counter() - t0
            rows = []
            for k, (i, p, g) in enumerate(zip(idx, prompts, gens, strict=True)):
                data = strategy.annotate(p, g.text)
                data.update({"seconds": round(g.seconds, 4) if g.seconds is not None else None,
                             "gen_tokens": g.n_tokens, **g.extra})
                if lls is not None and lls[k][0] is not None:
                    data["mean_logprob"], data["ref_tokens"] = lls[k]
                run.outputs[i], run.data[i], run.errors[i] = g.text, data, g.error
                if g.error is None and g.text is not None:
                    rows.append((items[i].hash, g.text, data, None))
            self.store.put_items(run.fingerprint, run.settings_hash, rows)
            run.computed += len(idx)
            batches += 1
            self.progress.advance(task, len(idx))
            if getattr(backend, "unreachable", None):
                for i in order[start + chunk:]:
                    run.errors[i] = backend.unreachable
                if run.cached == 0 and not any(e is None for e in (run.errors[i] for i in order[: start + chunk])):
                    raise AdviseError(f"{run.name}: {backend.unreachable}")
                break
            if self.on_batch is not None:
                self.on_batch(run.name, batches, run.computed)

    def _loglik(self, run: CandidateRun, backend: Backend, strategy: Strategy, todo: list[int]) -> None:
        chunk = max(1, getattr(backend, "batch_size", 16))
        for start in range(0, len(todo), chunk):
            idx = todo[start : start + chunk]
            prompts = strategy.build_all([run.items[i].record for i in idx])
            lls = backend.loglik([p.messages for p in prompts], [run.items[i].references[0] for i in idx])
            rows = []
            for i, (lp, nt) in zip(idx, lls, strict=True):
                if lp is not None:
                    run.data[i].update(mean_logprob=lp, ref_tokens=nt)
                rows.append((run.items[i].hash, run.outputs[i], run.data[i], None))
            self.store.put_items(run.fingerprint, run.settings_hash, rows)

    def _judge_scores(self, run: CandidateRun) -> None:
        jfp = self.judge.fingerprint()
        todo = [i for i in run.ok if (run.data[i].get("judge") or {}).get(jfp) is None]
        failed: list[str] = []
        t0 = time.perf_counter()
        for start in range(0, len(todo), 32):
            idx = todo[start : start + 32]
            res = self.judge.score([_question(run.items[i].record) for i in idx], [run.outputs[i] for i in idx],
                                   [run.items[i].references[0] for i in idx])
            rows = []
            for i, r in zip(idx, res, strict=True):
                if r.score is not None:
                    run.data[i].setdefault("judge", {})[jfp] = r.score
                    rows.append((run.items[i].hash, run.outputs[i], run.data[i], None))
                else:
                    run.data[i].setdefault("judge_errors", {})[jfp] = r.error
                    failed.append(str(r.error or "no score"))
            self.store.put_items(run.fingerprint, run.settings_hash, rows)
        if failed:
            self.judge_failures[run.name] = (len(failed), len(todo), failed[0])
        for i in run.ok:
            s = (run.data[i].get("judge") or {}).get(jfp)
            if s is not None:
                run.data[i]["judge_score"] = s
        self.timing["judge"] += time.perf_counter() - t0

    def _score(self, run: CandidateRun, metrics: list[str]) -> None:

        ok = run.ok
        preds = [run.outputs[i] for i in ok]
        refs = [run.items[i].references for i in ok]
        fields = [run.metric_fields(i) for i in ok]
        for m in metrics:
            if m == "judge_pairwise":
                continue
            res = evaluate(m, preds, refs, fields)
            d = res.to_dict()
            d["errors"] = len(run.items) - len(ok)
            run.metrics[m] = d
            full: list[float | None] = [None] * len(run.items)
            for j, i in enumerate(ok):
                s = res.scores[j] if res.scores else None
                full[i] = None if s is None or (isinstance(s, float) and math.isnan(s)) else s
            run.scores[m] = full


def _question(rec: Record) -> str:
    return "\n\n".join(m["content"] for m in rec.prompt if m["role"] != "system")


# ------------------------------------------------------------------------------------- comparisons


def _primary(metrics: list[str]) -> str | None:

    for m in metrics:
        if m != "judge_pairwise" and get_metric(m).per_item:
            return m
    return None


def compare_runs(a: CandidateRun, b: CandidateRun, metrics: list[str], *, judge=None, store: Store | None = None,
                 regressions_max: int = REGRESSIONS_MAX) -> dict[str, Any]:
    """Paired comparison of run b against run a on the items both answered (``delta = b - a``)."""

    common = [i for i in range(len(a.items)) if a.errors[i] is None and b.errors[i] is None]
    out: dict[str, Any] = {"a": a.name, "b": b.name, "items": len(common), "metrics": {}}
    refs = [a.items[i].references for i in common]
    for name in metrics:
        if name == "judge_pairwise":
            continue
        m = get_metric(name)
        if m.corpus_level:
            r = compare_metric(m, [a.outputs[i] for i in common], [b.outputs[i] for i in common], refs,
                               [a.metric_fields(i) for i in common], items_b=[b.metric_fields(i) for i in common])
        else:
            r = stats.compare(m.name, [a.scores[name][i] for i in common], [b.scores[name][i] for i in common],
                              kind=m.kind, higher_is_better=m.higher_is_better)
            r["a_value"], r["b_value"] = r.get("a_mean"), r.get("b_mean")
        out["metrics"][name] = {k: r.get(k) for k in ("delta", "ci", "p_value", "test", "n", "a_value", "b_value",
                                                      "wins", "losses", "ties", "higher_is_better")
                                if k in r or k == "higher_is_better"}
        out["metrics"][name]["higher_is_better"] = m.higher_is_better
    if judge is not None and ("judge_pairwise" in metrics or "judge_score" in metrics):
        out["metrics"]["judge_pairwise"] = _judge_pairwise(a, b, common, judge, store)
    primary = _primary(metrics)
    out["primary_metric"] = primary
    worse = []
    if primary is not None:
        pm = out["metrics"][primary]
        out.update(wins=pm.get("wins"), losses=pm.get("losses"), ties=pm.get("ties"))
        hib = get_metric(primary).higher_is_better
        for i in common:
            sa, sb = a.scores[primary][i], b.scores[primary][i]
            if sa is None or sb is None:
                continue
            if (sb < sa) if hib else (sb > sa):
                rec = a.items[i].record
                worse.append({"item": a.items[i].hash, "line": a.items[i].line, "input": rec.key[:300],
                              "reference": a.items[i].references[0][:300], "a_output": (a.outputs[i] or "")[:500],
                              "b_output": (b.outputs[i] or "")[:500], "a_score": sa, "b_score": sb})
    out["regressions_total"] = len(worse)
    out["regressions"] = worse[:regressions_max]
    return out


def _judge_pairwise(a: CandidateRun, b: CandidateRun, common: list[int], judge, store: Store | None) -> dict:

    jfp = judge.fingerprint()
    key = stable_hash({"pair": [a.fingerprint, b.fingerprint], "judge": jfp})
    cached = store.get_items(key, a.settings_hash + b.settings_hash, [a.items[i].hash for i in common]) if store else {}
    outcomes: dict[int, int | None] = {}
    todo = []
    for i in common:
        row = cached.get(a.items[i].hash)
        if row and row.get("data", {}).get("outcome") is not None:
            outcomes[i] = row["data"]["outcome"]
        else:
            todo.append(i)
    consistent = []
    for start in range(0, len(todo), 16):
        idx = todo[start : start + 16]
        res = judge.pairwise([_question(a.items[i].record) for i in idx], [a.outputs[i] for i in idx],
                             [b.outputs[i] for i in idx], [a.items[i].references[0] for i in idx])
        rows = []
        for i, v in zip(idx, res, strict=True):
            outcomes[i] = v.outcome
            if v.outcome is not None:
                consistent.append(bool(v.consistent))
                rows.append((a.items[i].hash, None, {"outcome": v.outcome, "first": v.first, "second": v.second,
                                                     "consistent": v.consistent}, None))
        if store is not None and rows:
            store.put_items(key, a.settings_hash + b.settings_hash, rows)
    for i in common:
        row = cached.get(a.items[i].hash)
        if row and row.get("data", {}).get("consistent") is not None:
            consistent.append(bool(row["data"]["consistent"]))
    vals = [outcomes.get(i) for i in common]
    got = [v for v in vals if v is not None]
    pb = stats.paired_bootstrap([0.0] * len(got), [float(v) for v in got])
    return {"delta": pb["delta"], "ci": pb["ci"], "p_value": pb["p_value"], "test": "judge_pairwise_both_orders",
            "n": len(got), "wins": sum(1 for v in got if v > 0), "losses": sum(1 for v in got if v < 0),
            "ties": sum(1 for v in got if v == 0), "failed": len(vals) - len(got),
            "consistency": (sum(consistent) / len(consistent)) if consistent else None, "higher_is_better": True}


def comparison_pairs(runs: list[CandidateRun]) -> list[tuple[CandidateRun, CandidateRun]]:
    """The reference run (the first: base zero-shot when run) against every other run, and every
    untuned run against every tuned one."""
    if len(runs) < 2:
        return []
    pairs = [(runs[0], r) for r in runs[1:]]
    untuned = [r for r in runs if r.spec.source != "tuned"]
    tuned = [r for r in runs if r.spec.source == "tuned"]
    for u in untuned[1:]:
        for t in tuned:
            pairs.append((u, t))
    seen, out = set(), []
    for a, b in pairs:
        if (a.name, b.name) not in seen and a is not b:
            seen.add((a.name, b.name))
            out.append((a, b))
    return out


# ------------------------------------------------------------------------------------------ judge


def make_judge(project: Project, *, endpoint: str | None = None, model: str | None = None,
               api_key_env: str | None = None, trust_remote_code: bool = False, concurrency: int = 4,
               timeout: float = 120.0):
    """A :class:`~evaluators.judge.Judge` on an endpoint (``endpoint`` + ``model``) or a local model."""

    if not model:
        raise AdviseError("a judge needs a model: --judge-model NAME (with --judge-endpoint URL for a server)")
    if endpoint:

        backend = OpenAIBackend(endpoint, model, api_key_env=api_key_env, concurrency=concurrency, timeout=timeout)
    else:

        backend = TransformersBackend(model, trust_remote_code=trust_remote_code)
    return Judge(backend, task=project.task, project_root=project.root)


# ------------------------------------------------------------------------------------------ run_eval


def run_eval(project: Project, *, candidates: Sequence[str] | None = None, strategies: Sequence[str] | None = None,
             endpoint: str | None = None, endpoint_model: str | None = None, api_key_env: str | None = None,
             concurrency: int = 4, timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0,
             max_items: int | None = None, use_cache: bool = True, seed: int = 0, temperature: float = 0.0,
             top_p: float = 1.0, batch_size: int = 16, retriever: str = "embedding", canary: str | None = "shipped",
             judge=None, trust_remote_code: bool = False, progress: bool = False,
             on_batch: BatchHook | None = None, store: Store | None = None, console=None,
             local_backend: str = "transformers") -> dict[str, Any]:
    """Evaluate the project's candidates on its held-out items; returns the ``advise eval --json`` object.

    ``local_backend``: "transformers" (default) or "vllm" (vLLM's offline engine, when installed) for the
    base model and the tuned models (sequence classifiers always run with transformers).

    ``canary``: "shipped" (the built-in forgetting check), a path to the project's own canary file, or
    None to skip it. ``judge``: a :class:`~evaluators.judge.Judge` (see :func:`make_judge`) to add
    ``judge_score`` to every run and ``judge_pairwise`` to every comparison. ``on_batch(candidate,
    batches, items)`` is called after each batch is written to the cache (tests interrupt runs with it).
    """
    t_all = time.perf_counter()
    if local_backend not in ("transformers", "vllm"):
        raise AdviseError(f"unknown local backend {local_backend!r} (transformers, vllm)")
    own_store = store is None
    store = store or Store.for_project(project)
    warnings: list[str] = []
    try:
        data = load_project_data(project)
        if data.skipped_note():
            warnings.append(data.skipped_note())
        items = make_items(data.eval, max_items or project.eval.max_items)
        considered = min(len(data.eval), max_items or project.eval.max_items or len(data.eval))
        if len(items) < considered:
            dup_lines = _duplicate_lines(data.eval[:considered])
            src = project.data_path("eval") or project.data_path("train")
            warnings.append(f"{considered - len(items)} exact duplicate eval record(s) scored once, not twice: "
                            + ", ".join(f"{src}:{n}" for n in dup_lines[:5]) + (" ..." if len(dup_lines) > 5 else "")
                            + " repeat earlier records")
        if not items:
            raise AdviseError("no eval item", file=project.data_path("eval") or project.data_path("train"))
        docs_dir = project.data_path("docs")
        has_docs = docs_dir is not None and docs_dir.is_dir() and any(
            p.is_file() for p in docs_dir.rglob("*"))
        ep = None
        if endpoint:
            if not endpoint_model:
                raise AdviseError("--endpoint needs --endpoint-model NAME (the model name the server serves)")
            ep = {"url": endpoint, "model": endpoint_model, "api_key_env": api_key_env, "concurrency": concurrency,
                  "timeout": timeout, "max_retries": max_retries, "backoff": backoff}
        specs = plan_candidates(project, store, strategies=strategies, names=candidates, endpoint=ep,
                                has_docs=has_docs, has_train=bool(data.train), warnings=warnings,
                                local_backend=local_backend)
        specs.sort(key=candidate_order)
        kind = detect_task_kind(list(data.train) + [it.record for it in items], project.root)
        has_classifier = any(s.backend == "classifier" for s in specs)
        no_schema = [it for it in items if not (it.fields.get("schema") or it.fields.get("json_schema"))]
        metrics = choose_metrics(project, kind, has_schema=bool(items) and not no_schema,
                                 has_label_scores=has_classifier,
                                 has_logprobs=any(s.backend == "transformers" for s in specs),
                                 judge=judge is not None)
        if "json_schema" in metrics and no_schema:
            raise AdviseError(f"eval.metrics: json_schema checks each reply against the JSON schema of its item, and "
                              f"{len(no_schema)} of {len(items)} eval items have none (add a 'schema' key to each "
                              "record, or use json_valid)", file=project.project_file)
        if judge is None and ({"judge_score", "judge_pairwise"} & set(metrics)):
            raise AdviseError("eval.metrics asks for an LLM judge: give one with --judge-model NAME "
                              "(and --judge-endpoint URL for a served model)", file=project.project_file)
        max_new = project.eval.max_new_tokens
        if kind == "classification":
            max_new = min(max_new, _label_token_cap(items, data.train))
        settings = GenerationSettings(max_new_tokens=max_new, temperature=temperature, top_p=top_p, seed=seed)
        ev = Evaluator(project, store, settings=settings, use_cache=use_cache, progress=progress, on_batch=on_batch,
                       trust_remote_code=trust_remote_code, batch_size=batch_size, console=console, judge=judge)
        cache_dir = project.store_dir / "cache"
        strategy_cache: dict[tuple, Strategy] = {}

        def strategy_for(spec: CandidateSpec) -> Strategy:
            instruction = project.task if spec.instruction else None
            key = (spec.strategy, instruction)
            if key not in strategy_cache:
                strategy_cache[key] = make_strategy(spec.strategy, train=data.train, docs_dir=docs_dir if has_docs else None,
                                                    k=project.eval.few_shot_k, top_k=project.eval.rag_top_k,
                                                    instruction=instruction, retriever=retriever, cache_dir=cache_dir)
            return strategy_cache[key]

        canary_items: list[EvalItem] = []
        if canary:

            canary_items = make_items(load_canary(None if canary == "shipped" else canary))
        runs: list[CandidateRun] = []
        canary_runs: list[CandidateRun] = []
        canary_done: set[tuple] = set()
        try:
            # one model at a time: every candidate (and the canary) on a model, then release it
            groups: dict[tuple, list[CandidateSpec]] = {}
            base = base_model_ref(project)
            tuned_generative = any(s.source == "tuned" and s.backend in ("transformers", "vllm") for s in specs)
            if canary_items and base and tuned_generative and not any(s.source == "base" for s in specs):
                # the forgetting check needs the base model's canary score even when only tuned models
                # are evaluated (cached after the first time)
                bspec = CandidateSpec("base:zero-shot", "base", local_backend, base, stem="base")
                groups[bspec.backend_key] = [bspec]
            for s in specs:
                groups.setdefault(s.backend_key, []).append(s)
            for key, group in groups.items():
                for spec in group:
                    if spec not in specs:
                        continue  # only here for the canary
                    runs.append(ev.run(spec, strategy_for(spec), items, metrics, task_kind=kind))
                head = group[0]
                if canary_items and head.backend in ("transformers", "vllm", "openai") and key not in canary_done:
                    canary_done.add(key)
                    cspec = CandidateSpec(**{**head.__dict__, "strategy": "zero-shot"})
                    cname = head.stem or head.name

                    csettings = GenerationSettings(max_new_tokens=min(CANARY_MAX_NEW_TOKENS, project.eval.max_new_tokens),
                                                   temperature=temperature, top_p=top_p, seed=seed)
                    canary_runs.append(ev.run(cspec, ZeroShot(CANARY_SYSTEM), canary_items, list(CANARY_METRICS),
                                              suite="canary", settings=csettings, display_name=cname))
                ev.release()
        except BaseException:
            ev.close(failed=True)
            raise
        ev.close()
        runs.sort(key=lambda r: candidate_order(r.spec))
        t0 = time.perf_counter()
        comparisons = [compare_runs(a, b, metrics, judge=judge, store=store) for a, b in comparison_pairs(runs)]
        canary_block = None
        if canary_runs:

            ccomps = []
            base_c = [r for r in canary_runs if r.spec.source != "tuned"]
            for t in [r for r in canary_runs if r.spec.source == "tuned"]:
                for bc in base_c[:1]:
                    c = compare_runs(bc, t, list(CANARY_METRICS))
                    c["forgetting"] = forgetting(c)["forgetting"]
                    ccomps.append(c)
            canary_block = {"source": "shipped" if canary == "shipped" else str(canary), "items": len(canary_items),
                            "metrics": list(CANARY_METRICS), "runs": [r.summary() for r in canary_runs],
                            "comparisons": ccomps}
        ev.timing["metrics"] += time.perf_counter() - t0
        for name, (n_failed, n_asked, first) in ev.judge_failures.items():
            warnings.append(f"the judge failed on {n_failed} of {n_asked} items of {name} (not scored): {first}")
        for m in metrics:
            if m == "judge_score" and ev.judge_failures:
                continue  # said above, with the judge's own error
            if m != "judge_pairwise" and runs and all((r.metrics.get(m) or {}).get("n", 0) == 0 for r in runs):
                warnings.append(f"metric {m} could not score any item (it needs "
                                f"{'references' if m in ('accuracy', 'exact_match') else 'inputs the items or the backends do not have'})")
        data_hash = stable_hash([it.hash for it in items])
        total = time.perf_counter() - t_all
        result = {
            "project": project.name,
            "task_kind": kind,
            "primary_metric": _primary(metrics),
            "metrics": metrics,
            "items": len(items),
            "data": {"eval_source": data.eval_source, "eval_items": len(items), "hash": data_hash,
                     "train_items": len(data.train)},
            "settings": {**settings.key(), "batch_size": batch_size, "retriever": retriever,
                         "few_shot_k": project.eval.few_shot_k, "rag_top_k": project.eval.rag_top_k},
            "runs": [r.summary() for r in runs],
            "comparisons": comparisons,
            "canary": canary_block,
            "warnings": warnings,
            "seconds": {"total": round(total, 3), **{k: round(v, 3) for k, v in ev.timing.items()}},
            "metric_share": round(ev.timing["metrics"] / total, 4) if total > 0 else None,
        }
        extra = {"task_kind": kind, "primary_metric": result["primary_metric"], "data_hash": data_hash}
        for r in runs + canary_runs:
            store.finish_run(r.run_id, "done", r.stored_result(extra))
        sid = store.start_run("eval_summary", name=project.name, inputs_hash=summary_key(project, items),
                              config={"candidates": [r.name for r in runs], "metrics": metrics}, command="advise eval")
        result["summary_run_id"] = sid
        store.finish_run(sid, "done", result)
        return result
    finally:
        if own_store:
            store.close()


def summary_key(project: Project, items: Sequence[EvalItem]) -> str:
    """What a stored eval summary is valid for: the eval items and the base model's identity."""
    base = base_model_ref(project)
    return stable_hash({"items": [it.hash for it in items],
                        "base_model": model_fingerprint(base) if base else None})


def stored_results(project: Project, store: Store | None = None, max_items: int | None = None) -> dict | None:
    """The latest stored ``advise eval`` result for the project's current eval items and base model,
    without any model call or model load (for gates and reports); None when the store has none.
    ``max_items`` as given to the eval (default: ``project.eval.max_items``)."""
    own = store is None
    store = store or Store.for_project(project)
    try:
        data = load_project_data(project)
        key = summary_key(project, make_items(data.eval, max_items or project.eval.max_items))
        return merge_summaries([r["result"] for r in store.find_runs("eval_summary", inputs_hash=key, limit=50)
                                if r.get("result")])
    finally:
        if own:
            store.close()


def _comparable(a: dict, b: dict) -> bool:
    """Two summaries whose runs can stand side by side: the same metrics and generation settings."""
    def key(s: dict) -> dict:
        return {k: v for k, v in (s.get("settings") or {}).items() if k != "batch_size"}
    return a.get("metrics") == b.get("metrics") and key(a) == key(b)


def merge_summaries(summaries: list[dict]) -> dict | None:
    """The newest summary, completed with the candidates that only older ones evaluated on the same items
    and settings (``advise eval --candidate base:zero-shot`` after a tuned eval keeps the tuned results
    in view), with their comparisons. Newest first in; None for none."""
    if not summaries:
        return None
    out = dict(summaries[0])
    runs, comps = list(out.get("runs") or []), list(out.get("comparisons") or [])
    names = {r["candidate"] for r in runs}
    merged_from = []
    for older in summaries[1:]:
        if not _comparable(out, older):
            continue
        add = [r for r in older.get("runs") or [] if r["candidate"] not in names]
        if add:
            runs += add
            names |= {r["candidate"] for r in add}
            merged_from.append(older.get("summary_run_id"))
            have = {(c["a"], c["b"]) for c in comps}
            comps += [c for c in older.get("comparisons") or []
                      if (c["a"], c["b"]) not in have and {c["a"], c["b"]} <= names]
        if not out.get("canary") and older.get("canary"):
            out["canary"] = older["canary"]
    if merged_from:
        out.update(runs=runs, comparisons=comps, merged_from=merged_from)
    return out

