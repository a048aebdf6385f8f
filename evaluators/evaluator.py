"""Scoring one candidate on the eval items, with the resumable cache in the run store.

Every answered item is written to the store (``Store.put_items``) keyed by the candidate's fingerprint
(model identity from its files' names, sizes and sampled contents, adapter, strategy and its data), the
item's hash and the generation settings hash, one batch at a time. The cache is read before any model
or embedding model is loaded: an unchanged re-run makes no model call, and an interrupted one computes
only the items it had not finished. Items that failed (an endpoint error) are not cached and are tried
again next time. Every aggregate carries a 95% CI (:func:`evaluators.metrics.evaluate`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import AdviseError
from advisor.hashing import stable_hash
from advisor.hf import model_fingerprint
from advisor.project import Project
from advisor.store import Store
from evaluators.backends.base import Backend, GenerationSettings
from evaluators.backends.openai import chat_url
from evaluators.candidates import CandidateSpec, make_backend
from evaluators.items import EvalItem, question
from evaluators.metrics import evaluate
from evaluators.metrics.rag import CITATION_METRIC, JUDGE_FAITHFULNESS, RAG_METRICS
from evaluators.progress import Progress
from evaluators.strategies import Prompt, Strategy

PROMPT_VERSION = 2  # bump when prompt building changes: cached answers of older prompts are not reused
# (2: examples or passages dropped before a prompt overflows the context; a cut keeps the system part)
LISTED_MAX = 200  # items listed per run's errors and per comparison's regressions (the counts are complete)

BatchHook = Callable[[str, int, int], None]  # (candidate, batches done, items done)


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
    run_id: str | None = None
    metrics: dict[str, dict] = field(default_factory=dict)
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    display_name: str | None = None
    honesty: dict[str, Any] = field(default_factory=dict)  # constant_output, confusion, length (evaluators.runner)

    @property
    def name(self) -> str:
        return self.display_name or self.spec.name

    @property
    def ok(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e is None]

    def metric_fields(self, i: int) -> dict[str, Any]:
        d = self.data[i] or {}
        f = dict(self.items[i].fields)
        for k in ("label_scores", "mean_logprob", "judge_score", "faithfulness_judge"):
            if d.get(k) is not None:
                f[k] = d[k]
        if d.get("ref_tokens"):
            f["n_tokens"] = d["ref_tokens"]
        return f

    def error_items(self) -> list[dict]:
        return [{"item": it.hash, "line": it.line, "name": it.name, "error": e}
                for it, e in zip(self.items, self.errors, strict=True) if e is not None]

    def summary(self) -> dict[str, Any]:
        """The run as ``advise eval --json`` prints it (the contract's keys first)."""
        errs = self.error_items()
        return {
            "candidate": self.name,
            "items": len(self.items),
            "metrics": self.metrics,
            "errors": len(errs),
            "error_items": errs[:LISTED_MAX],
            **self.spec.describe(),
            "run_id": self.run_id,
            "fingerprint": self.fingerprint,
            "settings": self.settings_hash,
            "cached": self.cached,
            "computed": self.computed,
            "model_calls": self.model_calls,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            **self.honesty,
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



def fit_prompts(backend: Backend, prompts: list[Prompt], room: int) -> list[Prompt]:
    """Each prompt with its few-shot examples or RAG passages reduced (least relevant first) until it
    fits the backend's context with ``room`` tokens to answer in, before the backend would cut it
    (a backend that cannot tell, an endpoint, keeps them all). The number left out is ``dropped``."""
    out = []
    for p in prompts:
        dropped = 0
        while p.shrink is not None and (backend.overflow(p.messages, room) or 0) > 0:
            smaller = p.shrink()
            if smaller is None:
                break
            p, dropped = smaller, dropped + 1
        if dropped:
            p.meta["dropped"] = dropped
        out.append(p)
    return out


class Evaluator:
    """Runs candidates on items with the cache; holds loaded backends so strategies share a model."""

    def __init__(self, project: Project, store: Store, *, settings: GenerationSettings, use_cache: bool = True,
                 progress: bool = False, on_batch: BatchHook | None = None, trust_remote_code: bool = False,
                 batch_size: int = 16, console=None, judge=None):
        self.project, self.store, self.settings = project, store, settings
        self.use_cache, self.on_batch = use_cache, on_batch
        self.trust_remote_code, self.batch_size = trust_remote_code, batch_size
        self.progress = Progress(progress, console)
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
        b = make_backend(spec, trust_remote_code=self.trust_remote_code, batch_size=self.batch_size)
        self.timing["load"] += time.perf_counter() - t0
        self.backends[key] = b
        return b

    def release(self) -> None:
        for key in list(self.backends):
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
            suite: str = "task", settings: GenerationSettings | None = None,
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
            if self.judge is not None and suite == "task" and JUDGE_FAITHFULNESS in metrics:
                self._judge_faithfulness(run, strategy)
            run.seconds["answer"] = time.perf_counter() - t_start
            t0 = time.perf_counter()
            self._score(run, metrics, strategy)
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
            prompts = fit_prompts(backend, strategy.build_all([items[i].record for i in idx]),
                                  settings.max_new_tokens)
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
        def ask(idx: list[int]):
            return self.judge.score([question(run.items[i].record) for i in idx], [run.outputs[i] for i in idx],
                                    [run.items[i].references[0] for i in idx])

        self._judged(run, "judge", "judge_score", self.judge.fingerprint(), run.ok, ask)

    def _judge_faithfulness(self, run: CandidateRun, strategy: Strategy) -> None:
        """The judge's faithfulness grade of each answered RAG item (cached with the item, per judge)."""
        def ask(idx: list[int]):
            ctx = [strategy.metric_context(run.data[i], run.items[i].references) for i in idx]
            return self.judge.faithfulness([question(run.items[i].record) for i in idx], [run.outputs[i] for i in idx],
                                           [[{"ref": r, "text": c["passage_by_ref"][r]} for r in c["retrieved_refs"]]
                                            for c in ctx])

        self._judged(run, "judge_faithful", "faithfulness_judge", self.judge.faithfulness_fingerprint(),
                     [i for i in run.ok if "retrieved" in run.data[i]], ask)

    def _judged(self, run: CandidateRun, cache_key: str, field: str, jfp: str, eligible: list[int], ask) -> None:
        """One judge pass: ``ask(item indices)`` for the eligible items without a cached grade of this judge
        (``data[cache_key][jfp]``), stored with the items; failures counted per candidate; every grade
        then set as the item field ``field`` that its metric reads."""
        todo = [i for i in eligible if (run.data[i].get(cache_key) or {}).get(jfp) is None]
        failed: list[str] = []
        t0 = time.perf_counter()
        for start in range(0, len(todo), 32):
            idx = todo[start : start + 32]
            rows = []
            for i, r in zip(idx, ask(idx), strict=True):
                if r.score is not None:
                    run.data[i].setdefault(cache_key, {})[jfp] = r.score
                    rows.append((run.items[i].hash, run.outputs[i], run.data[i], None))
                else:
                    if cache_key == "judge":
                        run.data[i].setdefault("judge_errors", {})[jfp] = r.error
                    failed.append(str(r.error or "no score"))
            self.store.put_items(run.fingerprint, run.settings_hash, rows)
        if failed:
            n, asked, first = self.judge_failures.get(run.name, (0, 0, failed[0]))
            self.judge_failures[run.name] = (n + len(failed), asked + len(todo), first)
        for i in run.ok:
            s = (run.data[i].get(cache_key) or {}).get(jfp)
            if s is not None:
                run.data[i][field] = s
        self.timing["judge"] += time.perf_counter() - t0

    def _score(self, run: CandidateRun, metrics: list[str], strategy: Strategy | None = None) -> None:
        ok = run.ok
        preds = [run.outputs[i] for i in ok]
        refs = [run.items[i].references for i in ok]
        fields = [run.metric_fields(i) for i in ok]
        if strategy is not None and set(metrics) & {*RAG_METRICS, CITATION_METRIC}:
            for f, i in zip(fields, ok, strict=True):
                f.update(strategy.metric_context(run.data[i], run.items[i].references))
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
