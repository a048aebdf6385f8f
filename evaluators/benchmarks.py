"""Standard benchmarks as a forgetting check: lm-evaluation-harness tasks on the base and the tuned models.

The canary (:mod:`evaluators.canary`) is advise's own small forgetting check; teams that track general
ability on named benchmarks (MMLU, HellaSwag, ARC, their own lm-eval YAML tasks) name them under
``eval.benchmarks`` and every local generative model of the eval (the base model and each tuned one)
runs them through lm-eval's Python API (``lm_eval.simple_evaluate`` on an ``HFLM``, an adapter through
its ``peft`` argument) with the same settings: the same tasks, shots, item limit and seeds.

Per-document scores are kept (``log_samples``), so the tuned model is compared with the base model on
the same documents by the paired test every other comparison uses (McNemar for 0/1 metrics, a paired
bootstrap otherwise), and a gate ``benchmarks.<task>: {max_drop: 0.02}`` fails when the tuned model is
significantly worse than the allowed drop, exactly like the canary gate. Each model x task result is a
``benchmark`` run in the store, keyed by the model's weights, the task files and the settings, so a
re-run computes nothing new.

lm-eval is the optional ``benchmarks`` extra (``pip install -e ".[benchmarks]"``); a task whose data is
on the Hub needs the Hub (or its datasets cache), and a local task (``include_path``: a directory of
lm-eval YAML files, e.g. ``dataset_path: json`` with ``data_files``) needs nothing but its files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import AdviseError
from advisor.hashing import file_hash, stable_hash
from advisor.hf import model_fingerprint, quiet_libraries
from advisor.project import BenchmarksSpec, Project
from advisor.store import Store
from evaluators.canary import FORGETTING_MARGIN
from evaluators.candidates import base_model_ref
from evaluators.stats.intervals import mean_ci
from evaluators.stats.paired import compare

INSTALL_HINT = 'standard benchmarks need lm-evaluation-harness: pip install -e ".[benchmarks]"'
GATE_PREFIX = "benchmarks."


@dataclass(frozen=True)
class BenchModel:
    """One model the benchmarks run on: its name stem (``base``, ``tuned:lora``), weights and adapter."""

    stem: str
    model: str
    adapter: str | None = None
    revision: str | None = None


def _lm_eval():
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as e:  # the optional extra is not installed
        raise AdviseError(INSTALL_HINT) from e
    return lm_eval, TaskManager


def _include_dir(project: Project) -> Path | None:
    spec = project.eval.benchmarks
    if spec is None or not spec.include_path:
        return None
    p = Path(spec.include_path).expanduser()
    if not p.is_absolute() and project.root is not None:
        p = project.root / p
    if not p.is_dir():
        raise AdviseError(f"eval.benchmarks.include_path: {spec.include_path} is not a directory of lm-eval task "
                          "files", file=project.project_file, line=project.key_line("eval", "benchmarks", "include_path"))
    return p


def _files_hash(d: Path | None) -> str:
    """The task definitions and the data files beside them: a change of either re-runs the benchmark."""
    if d is None:
        return ""
    return stable_hash(sorted((str(p.relative_to(d)), file_hash(p)) for p in d.rglob("*") if p.is_file()))


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Path]:
    """lm-eval writes progress bars, its logging and a ``git describe`` failure to the terminal: run it
    with file descriptor 2 (and ``sys.stderr``) sent to a temporary file, shown only when it fails."""
    fd, name = tempfile.mkstemp(prefix="advise-lm-eval-", suffix=".log")
    saved = os.dup(2)
    old = sys.stderr
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)
        sys.stderr = os.fdopen(os.dup(fd), "w", buffering=1)
        yield Path(name)
    finally:
        try:
            sys.stderr.flush()
            sys.stderr.close()
        except OSError:
            pass
        sys.stderr = old
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _tail(log: Path, n: int = 3) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    lines = [ln for ln in lines if "it/s]" not in ln and "%|" not in ln]
    return " | ".join(lines[-n:])


def _quiet_lm_eval() -> None:
    import logging

    quiet_libraries()
    for name in ("lm-eval", "lm_eval", "lm-evaluation-harness"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _task_scores(res: dict, task: str, metric: str | None) -> tuple[str, list[str], list[float]]:
    """(metric, document ids, per-document scores) of ``task``, a group's subtasks concatenated (their
    micro mean is what lm-eval reports for size-weighted groups such as MMLU)."""
    samples = res.get("samples") or {}
    subtasks = [task] if task in samples else list((res.get("group_subtasks") or {}).get(task) or [])
    expanded: list[str] = []
    while subtasks:  # groups of groups (mmlu -> mmlu_stem -> mmlu_astronomy)
        t = subtasks.pop(0)
        if t in samples:
            expanded.append(t)
        else:
            subtasks += list((res.get("group_subtasks") or {}).get(t) or [])
    if not expanded:
        raise AdviseError(f"eval.benchmarks: lm-eval returned no scored documents for task {task!r}")
    first = samples[expanded[0]][0] if samples[expanded[0]] else {}
    names = [m for m in (first.get("metrics") or []) if isinstance(first.get(m), (int, float, bool))]
    chosen = metric or (names[0] if names else None)
    if chosen is None:
        raise AdviseError(f"eval.benchmarks: task {task!r} reports no per-document numeric metric")
    ids, scores = [], []
    for t in expanded:
        for s in samples[t]:
            if chosen not in s:
                raise AdviseError(f"eval.benchmarks: task {t!r} has no metric {chosen!r} (it reports "
                                  f"{', '.join(s.get('metrics') or []) or 'none'})")
            ids.append(f"{t}/{s.get('doc_id')}")
            scores.append(float(s[chosen]))
    return chosen, ids, scores


def _task_manager(TaskManager, include: Path | None, tasks: list[str]):  # noqa: N803 - lm-eval's class
    """lm-eval's task index: the project's own tasks alone when they are all it asks for (indexing the
    harness's ~15,000 built-in task files takes seconds), else the built-in ones too."""
    with _captured_stderr():
        if include is not None:
            own = TaskManager(include_path=str(include), include_defaults=False)
            if all(t in own.all_tasks for t in tasks):
                return own
        return TaskManager(include_path=str(include) if include else None)


def _run_one(lm_eval, task_manager, bm: BenchModel, tasks: list[str], spec, trust_remote_code: bool,
             store_dir: Path, root: Path) -> dict:
    import datasets.config as dcfg
    from lm_eval.models.huggingface import HFLM

    seed = spec.seed
    old_cache, old_cwd = dcfg.HF_DATASETS_CACHE, os.getcwd()
    dcfg.HF_DATASETS_CACHE = Path(store_dir) / "cache" / "datasets"  # not the user's home
    try:
        os.chdir(root)  # a local task's data_files are relative to the project directory
        with _captured_stderr() as log:
            try:
                import torch

                kw: dict[str, Any] = {"pretrained": bm.model, "device": "cuda" if torch.cuda.is_available() else "cpu",
                                      "batch_size": spec.batch_size, "trust_remote_code": trust_remote_code}
                if bm.adapter:
                    kw["peft"] = bm.adapter
                if bm.revision:
                    kw["revision"] = bm.revision
                lm = HFLM(**kw)
                res = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=spec.num_fewshot,
                                              limit=spec.limit, task_manager=task_manager, log_samples=True,
                                              random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                              fewshot_random_seed=seed, bootstrap_iters=0)
            except AdviseError:
                raise
            except KeyError as e:
                raise AdviseError(f"eval.benchmarks: {e.args[0] if e.args else e}") from e
            except Exception as e:  # the harness, the Hub, a model it cannot load: one line with its own words
                why = _tail(log) or f"{type(e).__name__}: {e}"
                raise AdviseError(f"eval.benchmarks: lm-eval failed on {bm.stem} ({type(e).__name__}: "
                                  f"{str(e)[:300]}); {why[:400]}") from e
    finally:
        dcfg.HF_DATASETS_CACHE = old_cache
        os.chdir(old_cwd)
    return res


def _reported(res: dict, tasks: list[str]) -> dict:
    """lm-eval's own aggregate numbers of each task (kept beside ours, which come from its per-document
    scores: a check that the bridge reads the harness right)."""
    out = {}
    for t in tasks:
        row = (res.get("results") or {}).get(t) or {}
        out[t] = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return out


def benchmark_models(project: Project, specs) -> list[BenchModel]:
    """The local generative models of an eval (the base model first, then each tuned one), once each."""
    out: dict[str, BenchModel] = {}
    base = base_model_ref(project)
    if base:
        out["base"] = BenchModel("base", base, None, None)
    for s in specs:
        if s.backend != "transformers" or s.source not in ("base", "tuned"):
            continue
        stem = s.stem or s.name
        out.setdefault(stem, BenchModel(stem, s.model, s.adapter, s.revision))
    return list(out.values())


def run_benchmarks(project: Project, store: Store, specs, *, tasks: list[str] | None = None,
                   trust_remote_code: bool = False, use_cache: bool = True, on_model=None) -> dict | None:
    """Run the project's benchmark tasks on the eval's local generative models; the ``benchmarks`` block
    of the eval result (None when no task is asked for, or no tuned model is there to compare)."""
    spec = project.eval.benchmarks
    tasks = list(tasks if tasks is not None else (spec.tasks if spec else []))
    if not tasks:
        return None
    if spec is None:
        spec = BenchmarksSpec(tasks=tasks)
    models = benchmark_models(project, specs)
    if not any(m.stem.startswith("tuned:") for m in models) or not any(m.stem == "base" for m in models):
        return {"tasks": tasks, "skipped": "standard benchmarks compare the base model with a tuned one; "
                "this eval has no local tuned model (train one) or no local base model", "runs": [],
                "comparisons": []}
    lm_eval, TaskManager = _lm_eval()
    include = _include_dir(project)
    _quiet_lm_eval()
    settings = {"num_fewshot": spec.num_fewshot, "limit": spec.limit, "seed": spec.seed, "batch_size": spec.batch_size,
                "lm_eval": getattr(lm_eval, "__version__", "?")}
    task_key = stable_hash([tasks, _files_hash(include), settings, spec.metric or {}])
    manager = None
    runs: list[dict] = []
    per_model: dict[str, dict[str, tuple[str, list[str], list[float]]]] = {}
    for bm in models:
        key = stable_hash([task_key, model_fingerprint(bm.model, bm.revision), file_hash_dir(bm.adapter)])
        cached = store.latest_run("benchmark", inputs_hash=key, name=bm.stem, status="done") if use_cache else None
        if cached and (cached.get("result") or {}).get("tasks"):
            result, run_id = cached["result"], cached["id"]
        else:
            if on_model is not None:
                on_model(bm.stem, tasks)
            if manager is None:
                manager = _task_manager(TaskManager, include, tasks)
                unknown = [t for t in tasks if t not in manager.all_tasks]
                if unknown:
                    raise AdviseError(f"eval.benchmarks.tasks: unknown lm-eval task {', '.join(map(repr, unknown))}"
                                      + (f" (not a built-in task, nor defined in {spec.include_path})" if include
                                         else " (set eval.benchmarks.include_path for local YAML tasks)"),
                                      file=project.project_file, line=project.key_line("eval", "benchmarks", "tasks"))
            run_id = store.start_run("benchmark", name=bm.stem, inputs_hash=key, command="advise eval",
                                     config={"model": bm.model, "adapter": bm.adapter, "tasks": tasks, **settings})
            try:
                res = _run_one(lm_eval, manager, bm, tasks, spec, trust_remote_code, project.store_dir,
                               project.root or Path.cwd())
                result = {"tasks": {}, "reported": _reported(res, tasks)}
                for t in tasks:
                    metric, ids, scores = _task_scores(res, t, (spec.metric or {}).get(t))
                    result["tasks"][t] = {"metric": metric, "per_item": [{"item": i, "score": s}
                                                                         for i, s in zip(ids, scores, strict=True)]}
            except BaseException as e:
                store.finish_run(run_id, "failed", error=str(e)[:500])
                raise
            store.finish_run(run_id, "done", result)
        per_model[bm.stem] = {}
        for t, block in result["tasks"].items():
            ids = [row["item"] for row in block["per_item"]]
            scores = [row["score"] for row in block["per_item"]]
            per_model[bm.stem][t] = (block["metric"], ids, scores)
            ci = mean_ci(scores)
            runs.append({"candidate": bm.stem, "task": t, "metric": block["metric"], "value": ci["value"],
                         "ci": ci["ci"], "n": ci["n"], "run_id": run_id})
    comparisons = []
    base = per_model.get("base") or {}
    for stem, by_task in per_model.items():
        if stem == "base":
            continue
        for t, (metric, ids, scores) in by_task.items():
            b_metric, b_ids, b_scores = base.get(t, (metric, [], []))
            pos = {i: k for k, i in enumerate(b_ids)}
            pairs = [(b_scores[pos[i]], s) for i, s in zip(ids, scores, strict=True) if i in pos]
            c = compare(metric, [a for a, _ in pairs], [b for _, b in pairs])
            lost = (c["delta"] is not None and c["delta"] < -FORGETTING_MARGIN and c["p_value"] is not None
                    and c["p_value"] < 0.05)
            comparisons.append({"a": "base", "b": stem, "task": t, "metric": metric, "delta": c["delta"], "ci": c["ci"],
                                "p_value": c["p_value"], "test": c["test"], "n": c["n"], "forgetting": bool(lost)})
    return {"tasks": tasks, "settings": settings, "include_path": spec.include_path, "runs": runs,
            "comparisons": comparisons}


def file_hash_dir(d: str | None) -> str:
    """The files of an adapter directory (its weights change with every training run)."""
    if not d:
        return ""
    p = Path(d)
    if not p.is_dir():
        return str(d)
    return stable_hash(sorted((str(f.relative_to(p)), file_hash(f)) for f in p.rglob("*")
                              if f.is_file() and f.suffix in (".safetensors", ".bin", ".json")))


def attach_to_views(views: dict, store: Store, block: dict | None, stem) -> None:
    """Give the gates each benchmark's per-document scores, as metric ``benchmarks.<task>`` of every
    candidate of the model (``stem(candidate)``: ``base:few-shot`` -> ``base``, ``tuned:lora:rag`` -> ``tuned:lora``)."""
    if not block:
        return

    by_run: dict[str, dict] = {}
    for r in block.get("runs") or []:
        if r["run_id"] not in by_run:
            run = store.get_run(r["run_id"]) or {}
            by_run[r["run_id"]] = (run.get("result") or {}).get("tasks") or {}
        rows = (by_run[r["run_id"]].get(r["task"]) or {}).get("per_item") or []
        name = GATE_PREFIX + r["task"]
        for cand, v in views.items():
            if stem(cand) == r["candidate"]:
                v.scores[name] = [row["score"] for row in rows]
                v.metric_ids[name] = [row["item"] for row in rows]
                v.metrics.setdefault(name, {"value": r["value"], "ci": r["ci"], "n": r["n"]})
