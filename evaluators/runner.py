"""An eval run (:func:`run_eval`): candidates x held-out items -> per-item outputs and scores -> runs
with confidence intervals -> paired comparisons and the canary, stored for gates and reports.

The pieces: :mod:`evaluators.items` (the eval items), :mod:`evaluators.task` (task kind, metrics),
:mod:`evaluators.candidates` (what is evaluated, by which backend), :mod:`evaluators.evaluator`
(scoring one candidate with the cache), :mod:`evaluators.compare` (paired comparisons),
:mod:`evaluators.results` (the stored summaries), :mod:`evaluators.options` (the settings).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from advisor.data.dataset import ProjectData, load_project_data
from advisor.data.docs import doc_files
from advisor.errors import AdviseError
from advisor.hashing import stable_hash
from advisor.project import Project
from advisor.rubric import load_rubric
from advisor.store import Store
from evaluators import stats
from evaluators.backends.base import GenerationSettings
from evaluators.baselines import trivial_baselines
from evaluators.benchmarks import run_benchmarks
from evaluators.canary import CANARY_METRICS, CANARY_SYSTEM, forgetting, load_canary
from evaluators.candidates import CandidateSpec, base_model_ref, candidate_order, plan_candidates
from evaluators.clusters import cluster_block
from evaluators.compare import compare_runs, comparison_pairs
from evaluators.evaluator import BatchHook, CandidateRun, Evaluator
from evaluators.honesty import mark_comparisons, run_honesty
from evaluators.items import EvalItem, duplicate_lines, item_name, make_items
from evaluators.length import size_max_new_tokens, tokenizer_file
from evaluators.metrics import get_metric
from evaluators.metrics.rag import CITATION_METRIC, JUDGE_FAITHFULNESS, RAG_METRICS
from evaluators.options import EvalOptions
from evaluators.predictions import read_predictions, score_predictions
from evaluators.results import summary_key
from evaluators.sampling import extra_samples, sample_block
from evaluators.slices import slice_block
from evaluators.strategies import Strategy, ZeroShot, make_strategy
from evaluators.task import choose_metrics, detect_task_kind, headline_metric, label_token_cap

CANARY_MAX_NEW_TOKENS = 32
JUDGE_METRICS = {"judge_score", "judge_pairwise", "faithfulness_judge"}
LOCAL_GENERATIVE = ("transformers", "vllm")  # backends that answer the canary (and openai)


def run_eval(project: Project, options: EvalOptions | None = None, *, judge=None, on_batch: BatchHook | None = None,
             store: Store | None = None, console=None, predictions: list[tuple[str, str]] | None = None,
             samples: int = 1, **settings: Any) -> dict[str, Any]:
    """Evaluate the project's candidates on its held-out items; returns the ``advise eval --json`` object.

    ``options``: the settings (:class:`~evaluators.options.EvalOptions`); keyword ``settings`` (its field
    names, e.g. ``candidates=["tuned:*"], canary=None``) override them. ``judge``: a
    :class:`~evaluators.judge.Judge` (:func:`evaluators.candidates.make_judge`) adds ``judge_score`` to
    every run and ``judge_pairwise`` to every comparison. ``on_batch(candidate, batches, items)`` is
    called after each batch is written to the cache (tests interrupt runs with it). ``predictions``:
    ``(name, file)`` pairs of answers produced elsewhere, scored as candidates ``external:<name>``
    (:mod:`evaluators.predictions`). ``samples``: answers per item and generative candidate (K > 1 needs a
    temperature above 0): pass@k, pass^k, the variance and the flaky items (:mod:`evaluators.sampling`).
    """
    opts = options or EvalOptions()
    if settings:
        opts = replace(opts, **settings)
    if samples > 1 and opts.temperature <= 0:
        raise AdviseError(f"--samples {samples} needs --temperature above 0 (greedy decoding gives the same answer "
                          "every time)")
    t_all = time.perf_counter()
    own_store = store is None
    store = store or Store.for_project(project)
    warnings: list[str] = []
    try:
        data = load_project_data(project)
        if data.skipped_note():
            warnings.append(data.skipped_note())
        items = _eval_items(project, data, opts.max_items, warnings)
        docs_dir = project.data_path("docs")
        # documents that the docs rule admits (a link out of the project is no document)
        has_docs = docs_dir is not None and docs_dir.is_dir() and bool(doc_files(docs_dir, project.root))
        external = _external(predictions)
        if external and not opts.candidates and not opts.endpoint and not base_model_ref(project):
            specs = []  # only the answers produced elsewhere
        else:
            specs = plan_candidates(project, store, strategies=opts.strategies, names=opts.candidates,
                                    endpoint=opts.endpoint_config(), has_docs=has_docs, has_train=bool(data.train),
                                    warnings=warnings, local_backend=opts.local_backend)
        specs.sort(key=candidate_order)
        kind = detect_task_kind(list(data.train) + [it.record for it in items], project.root)
        metrics = _metrics(project, kind, items, specs, judge)
        max_new, sizing = _max_new_tokens(project, items, kind, data.train, store)
        gen = GenerationSettings(max_new_tokens=max_new, temperature=opts.temperature, top_p=opts.top_p,
                                 seed=opts.seed)
        ev = Evaluator(project, store, settings=gen, use_cache=opts.use_cache, progress=opts.progress,
                       on_batch=on_batch, trust_remote_code=opts.trust_remote_code, batch_size=opts.batch_size,
                       console=console, judge=judge)
        strategy_cache: dict[tuple, Strategy] = {}

        def strategy_for(spec: CandidateSpec) -> Strategy:
            instruction = project.task if spec.instruction else None
            key = (spec.strategy, instruction)
            if key not in strategy_cache:
                strategy_cache[key] = make_strategy(
                    spec.strategy, train=data.train, docs_dir=docs_dir if has_docs else None,
                    k=project.eval.few_shot_k, top_k=project.eval.rag_top_k, instruction=instruction,
                    retriever=opts.retriever, cache_dir=project.store_dir / "cache", root=project.root)
            return strategy_cache[key]

        canary_items = make_items(load_canary(None if opts.canary == "shipped" else opts.canary)) if opts.canary else []
        canary_gen = GenerationSettings(max_new_tokens=min(CANARY_MAX_NEW_TOKENS, project.eval.max_new_tokens),
                                        temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed)
        try:
            runs, canary_runs = _run_all(project, ev, specs, items, metrics, strategy_for, canary_items, canary_gen,
                                         opts.local_backend)
            runs += [score_predictions(ev, store, p, items, metrics, warnings) for p in external]
            extra = extra_samples(ev, specs, strategy_for, items, metrics, gen, samples) if samples > 1 else {}
        except BaseException:
            ev.close(failed=True)
            raise
        ev.close()
        runs.sort(key=lambda r: candidate_order(r.spec))
        t0 = time.perf_counter()
        for r in runs:
            r.honesty = run_honesty(r, kind, gen.max_new_tokens, project.root)
        baselines = _stored(store, "baselines", {"items": [it.hash for it in items], "metrics": metrics,
                                                 "train": stable_hash([r.output for r in data.train]),
                                                 "rubric": load_rubric("eval", project.root).get("baselines")},
                            lambda: trivial_baselines(items, data.train, metrics, project.root)) \
            if kind == "classification" else []
        comparisons = [compare_runs(a, b, metrics, judge=judge, store=store) for a, b in comparison_pairs(runs)]
        mark_comparisons(comparisons, runs, baselines)
        primary = _primary(project, metrics)
        multiplicity = stats.adjust_comparisons(comparisons, primary, declared=bool(project.eval.primary_metric))
        run_summaries = [r.summary() for r in runs]
        clusters = cluster_block(project.eval.cluster_field, runs, items, run_summaries, comparisons)
        warnings += _cluster_warnings(project, clusters)
        per_item_metric = primary if primary not in (None, "judge_pairwise") and get_metric(primary).per_item \
            else headline_metric(metrics)
        slices = slice_block(runs, items, per_item_metric, kind)
        sampled = sample_block(runs, extra, per_item_metric, samples, gen)
        canary_block = _canary_block(canary_runs, canary_items, opts.canary)
        ev.timing["metrics"] += time.perf_counter() - t0
        benchmarks = run_benchmarks(project, store, specs, tasks=opts.benchmarks, trust_remote_code=opts.trust_remote_code,
                                    use_cache=opts.use_cache, on_model=_bench_progress(console, opts.progress))
        warnings += _metric_warnings(ev, runs, metrics)
        data_hash = stable_hash([it.hash for it in items])
        total = time.perf_counter() - t_all
        result = {
            "project": project.name,
            "task_kind": kind,
            "primary_metric": primary,
            "metrics": metrics,
            "items": len(items),
            "data": {"eval_source": data.eval_source, "eval_items": len(items), "hash": data_hash,
                     "train_items": len(data.train)},
            "settings": {**gen.key(), "batch_size": opts.batch_size, "retriever": opts.retriever,
                         "few_shot_k": project.eval.few_shot_k, "rag_top_k": project.eval.rag_top_k,
                         **({"samples": samples} if samples > 1 else {})},
            "max_new_tokens": sizing,
            "runs": run_summaries,
            "baselines": baselines,
            "comparisons": comparisons,
            "multiplicity": multiplicity,
            "clusters": clusters,
            "slices": slices,
            "samples": sampled,
            "canary": canary_block,
            "benchmarks": benchmarks,
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


def _external(predictions: list[tuple[str, str]] | None) -> list:
    """The predictions files read (a bad line is an error before any model loads), each name once."""
    out = [read_predictions(path, name) for name, path in predictions or []]
    names = [p.name for p in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AdviseError(f"--name {dup[0]} is given to more than one predictions file")
    return out


def _primary(project: Project, metrics: list[str]) -> str | None:
    """The declared primary metric (eval.primary_metric, one of the metrics computed), else the headline."""
    declared = project.eval.primary_metric
    if declared is None:
        return headline_metric(metrics)
    if declared not in metrics:
        raise AdviseError(f"eval.primary_metric: {declared} is not among the metrics computed ({', '.join(metrics)}); "
                          "add it to eval.metrics", file=project.project_file,
                          line=project.key_line("eval", "primary_metric"))
    return declared


def _cluster_warnings(project: Project, clusters: dict | None) -> list[str]:
    if not clusters or not clusters["missing"]:
        return []
    if clusters["missing"] == clusters["items"]:
        raise AdviseError(f"eval.cluster_field: no eval record has the field {clusters['field']!r} (a top-level key "
                          "of the record, or a dotted path such as metadata.doc_id)", file=project.project_file,
                          line=project.key_line("eval", "cluster_field"))
    return [f"{clusters['missing']} of {clusters['items']} eval items have no {clusters['field']}: each is a cluster "
            "of its own"]


def _eval_items(project: Project, data: ProjectData, max_items: int | None, warnings: list[str]) -> list[EvalItem]:
    """The eval items (at most ``max_items``, else ``eval.max_items``), exact duplicates once (warned)."""
    limit = max_items or project.eval.max_items
    items = make_items(data.eval, limit)
    considered = min(len(data.eval), limit or len(data.eval))
    src = project.data_path("eval") or project.data_path("train")
    if len(items) < considered:
        dup = duplicate_lines(data.eval[:considered])
        warnings.append(f"{considered - len(items)} exact duplicate eval record(s) scored once, not twice: "
                        + ", ".join(f"{src}:{n}" for n in dup[:5]) + (" ..." if len(dup) > 5 else "")
                        + " repeat earlier records")
    if not items:
        raise AdviseError("no eval item", file=src)
    for it in items:
        it.name = item_name(it.record, src.name if src is not None else "eval")
    return items


def _stored(store: Store, kind: str, key: dict, compute):
    """``compute()``'s result (JSON), kept in the store's item cache under ``kind`` and a hash of ``key``:
    what an eval derives from its items alone is computed once (a cached re-run stays fast)."""
    h = stable_hash(key)
    row = store.get_items(kind, h, ["all"]).get("all")
    if row and isinstance(row.get("data"), dict) and "value" in row["data"]:
        return row["data"]["value"]
    value = compute()
    store.put_items(kind, h, [("all", None, {"value": value}, None)])
    return value


def _max_new_tokens(project: Project, items: list[EvalItem], kind: str, train, store: Store) -> tuple[int, dict]:
    """(max_new_tokens, how it was chosen): eval.max_new_tokens when project.yaml sets it, else sized from
    the eval references (:func:`evaluators.length.size_max_new_tokens`); a label never needs more than
    :func:`~evaluators.task.label_token_cap`."""
    if "max_new_tokens" in project.eval.model_fields_set:
        sizing: dict[str, Any] = {"value": project.eval.max_new_tokens, "source": "project.yaml eval.max_new_tokens"}
    else:
        base = base_model_ref(project)
        tok = tokenizer_file(base)
        tok_id = {"file": str(tok), "size": tok.stat().st_size} if tok is not None else None
        sizing = _stored(store, "max_new_tokens", {"items": [it.hash for it in items], "tokenizer": tok_id,
                                                   "rubric": load_rubric("eval", project.root).get("length")},
                         lambda: size_max_new_tokens(items, base, project.root))
    if kind == "classification":
        cap = label_token_cap(items, train)
        if cap < sizing["value"]:
            sizing = {**sizing, "value": cap, "capped_by": "the longest label"}
    return int(sizing["value"]), sizing


def _metrics(project: Project, kind: str, items: list[EvalItem], specs: list[CandidateSpec], judge) -> list[str]:
    no_schema = [it for it in items if not (it.fields.get("schema") or it.fields.get("json_schema"))]
    metrics = choose_metrics(project, kind, has_schema=bool(items) and not no_schema,
                             has_label_scores=any(s.backend == "classifier" for s in specs),
                             has_logprobs=any(s.backend == "transformers" for s in specs), judge=judge is not None)
    if not project.eval.metrics and kind != "classification" and any(s.strategy == "rag" for s in specs):
        # how the RAG candidates retrieved and used their passages (lexical; evaluators.metrics.rag)
        metrics += [*RAG_METRICS, *([CITATION_METRIC] if project.constraints.needs_citations else []),
                    *([JUDGE_FAITHFULNESS] if judge is not None else [])]
    if "json_schema" in metrics and no_schema:
        raise AdviseError(f"eval.metrics: json_schema checks each reply against the JSON schema of its item, and "
                          f"{len(no_schema)} of {len(items)} eval items have none (add a 'schema' key to each "
                          "record, or use json_valid)", file=project.project_file)
    if judge is None and JUDGE_METRICS & set(metrics):
        raise AdviseError("eval.metrics asks for an LLM judge (judge_score, judge_pairwise) and none was given",
                          file=project.project_file)
    return metrics


def _run_all(project: Project, ev: Evaluator, specs: list[CandidateSpec], items: list[EvalItem], metrics: list[str],
             strategy_for, canary_items: list[EvalItem], canary_gen: GenerationSettings,
             local_backend: str) -> tuple[list[CandidateRun], list[CandidateRun]]:
    """Every candidate, one model at a time: every candidate (and the canary) on a model, then release it."""
    runs: list[CandidateRun] = []
    canary_runs: list[CandidateRun] = []
    groups: dict[tuple, list[CandidateSpec]] = {}
    base = base_model_ref(project)
    tuned_generative = any(s.source == "tuned" and s.backend in LOCAL_GENERATIVE for s in specs)
    if canary_items and base and tuned_generative and not any(s.source == "base" for s in specs):
        # the forgetting check needs the base model's canary score even when only tuned models are
        # evaluated (cached after the first time)
        bspec = CandidateSpec("base:zero-shot", "base", local_backend, base, stem="base")
        groups[bspec.backend_key] = [bspec]
    for s in specs:
        groups.setdefault(s.backend_key, []).append(s)
    for group in groups.values():
        for spec in group:
            if spec in specs:  # else only here for the canary
                runs.append(ev.run(spec, strategy_for(spec), items, metrics))
        head = group[0]
        if canary_items and head.backend in (*LOCAL_GENERATIVE, "openai"):
            cspec = CandidateSpec(**{**head.__dict__, "strategy": "zero-shot"})
            canary_runs.append(ev.run(cspec, ZeroShot(CANARY_SYSTEM), canary_items, list(CANARY_METRICS),
                                      suite="canary", settings=canary_gen, display_name=head.stem or head.name))
        ev.release()
    return runs, canary_runs



def _canary_block(canary_runs: list[CandidateRun], canary_items: list[EvalItem], canary: str | None) -> dict | None:
    """The forgetting check: each tuned model's canary run against the base model's."""
    if not canary_runs:
        return None
    comps = []
    base_c = [r for r in canary_runs if r.spec.source != "tuned"]
    for t in [r for r in canary_runs if r.spec.source == "tuned"]:
        for bc in base_c[:1]:
            c = compare_runs(bc, t, list(CANARY_METRICS))
            c["forgetting"] = forgetting(c)["forgetting"]
            comps.append(c)
    return {"source": "shipped" if canary == "shipped" else str(canary), "items": len(canary_items),
            "metrics": list(CANARY_METRICS), "runs": [r.summary() for r in canary_runs], "comparisons": comps}


def _bench_progress(console, progress: bool):
    """One line on stderr as each model starts its benchmarks (lm-eval's own bars are not shown)."""
    if console is None or not progress:
        return None

    def show(stem: str, tasks: list[str]) -> None:
        console.print(f"benchmarks {', '.join(tasks)} on {stem} (lm-eval) ...", markup=False, highlight=False)

    return show


def _metric_warnings(ev: Evaluator, runs: list[CandidateRun], metrics: list[str]) -> list[str]:
    out = [f"the judge failed on {n_failed} of {n_asked} items of {name} (not scored): {first}"
           for name, (n_failed, n_asked, first) in ev.judge_failures.items()]
    for m in metrics:
        if m == "judge_score" and ev.judge_failures:
            continue  # said above, with the judge's own error
        if m != "judge_pairwise" and runs and all((r.metrics.get(m) or {}).get("n", 0) == 0 for r in runs):
            needs = "references" if m in ("accuracy", "exact_match") else "inputs the items or the backends do not have"
            out.append(f"metric {m} could not score any item (it needs {needs})")
    return out
