"""Repeated sampling (``advise eval --samples K --temperature T``, T > 0): every generative candidate answers
every item K times (seeds ``seed, seed+1, ..., seed+K-1``; each sample cached like any answer), and per
candidate:

* **pass@k** (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", the unbiased
  estimator): per item with ``c`` of ``n`` samples passing, ``1 - C(n-c, k) / C(n, k)``, the chance that at
  least one of k samples passes; averaged over items, for k = 1 and k = K;
* **pass^k** (Yao et al. 2024, tau-bench): ``C(c, k) / C(n, k)``, the chance that all k samples pass, the
  reliability a user who retries cannot escape; gateable as ``pass_hat_k`` (e.g. ``pass_hat_k: ">= 0.8"``);
* the **within-item** variance (mean over items of the variance of an item's scores across samples) and
  the **between-item** variance (variance over items of their mean scores), Miller 2024 section 3;
* **flaky items**: those whose answer changes between samples, listed with their distinct answers.

"Pass" is a score of 1 on the metric (the primary, or the headline when the primary is corpus-level);
pass@k and pass^k need 0/1 scores and are None for a continuous metric. Intervals over items are the
percentile bootstrap of the mean (:func:`evaluators.stats.mean_ci`).
"""

from __future__ import annotations

from dataclasses import replace
from math import comb
from typing import Any

import numpy as np

from evaluators import stats
from evaluators.backends.base import GenerationSettings
from evaluators.candidates import CandidateSpec
from evaluators.evaluator import CandidateRun, Evaluator
from evaluators.items import EvalItem

GENERATIVE = ("transformers", "vllm", "openai")
FLAKY_LISTED = 20  # flaky items listed per candidate (the count is complete)
SAMPLED_GATES = ("pass_hat_k", "pass_at_k")  # gate keys read from the samples block


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k: ``1 - C(n-c, k) / C(n, k)`` for ``c`` passing of ``n`` samples."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: ``C(c, k) / C(n, k)``, the chance that k samples drawn without replacement all pass."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass^k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    return comb(c, k) / comb(n, k)


def extra_samples(ev: Evaluator, specs: list[CandidateSpec], strategy_for, items: list[EvalItem],
                  metrics: list[str], settings: GenerationSettings, k: int) -> dict[str, list[CandidateRun]]:
    """Samples 2..k of every generative candidate (one model load each), stored and finished as eval runs
    named ``<candidate>#<seed>``; sample 1 is the eval's own run."""
    out: dict[str, list[CandidateRun]] = {}
    groups: dict[tuple, list[CandidateSpec]] = {}
    for s in specs:
        if s.backend in GENERATIVE:
            groups.setdefault(s.backend_key, []).append(s)
    for group in groups.values():
        for spec in group:
            for j in range(1, k):
                gen = replace(settings, seed=settings.seed + j)
                run = ev.run(spec, strategy_for(spec), items, metrics, settings=gen,
                             display_name=f"{spec.name}#{gen.seed}")
                ev.store.finish_run(run.run_id, "done", run.stored_result({"sample_of": spec.name, "seed": gen.seed}))
                out.setdefault(spec.name, []).append(run)
        ev.release()
    return out


def _item_id(it: EvalItem) -> Any:
    rid = (it.record.extra or {}).get("id")
    return None if isinstance(rid, (dict, list)) else rid


def sample_block(runs: list[CandidateRun], extra: dict[str, list[CandidateRun]], metric: str | None, k: int,
                 settings: GenerationSettings) -> dict | None:
    """pass@1, pass@k, pass^k with intervals, the variance decomposition and the flaky items of every
    sampled candidate; None when nothing was sampled."""
    if k < 2 or not extra or metric is None:
        return None
    block: dict[str, Any] = {"k": k, "metric": metric, "temperature": settings.temperature,
                             "seeds": [settings.seed + j for j in range(k)], "candidates": {}}
    for run in runs:
        samples = [run] + extra.get(run.name, [])
        if len(samples) < 2:
            continue
        n_items = len(run.items)
        scores = np.array([[np.nan if r.scores.get(metric, [None] * n_items)[i] is None
                            else float(r.scores[metric][i]) for r in samples] for i in range(n_items)])
        complete = ~np.isnan(scores).any(axis=1)  # items every sample answered and scored
        sc = scores[complete]
        binary = sc.size > 0 and bool(np.all((sc == 0) | (sc == 1)))
        entry: dict[str, Any] = {"samples": len(samples), "items": int(complete.sum()), "binary": binary}
        if binary:
            n = len(samples)
            c = sc.sum(axis=1).astype(int)
            for key, fn, kk in (("pass_at_1", pass_at_k, 1), ("pass_at_k", pass_at_k, n), ("pass_hat_k", pass_hat_k, n)):
                m = stats.mean_ci([fn(n, int(x), kk) for x in c], method="bootstrap")
                entry[key] = {"value": m["value"], "ci": m["ci"], "k": kk}
        else:
            entry.update(pass_at_1=None, pass_at_k=None, pass_hat_k=None)
        if sc.shape[0] >= 2:
            entry["variance"] = {"within_item": float(np.mean(np.var(sc, axis=1, ddof=1))),
                                 "between_item": float(np.var(sc.mean(axis=1), ddof=1)),
                                 "mean": float(sc.mean())}
        flaky = []
        for i, it in enumerate(run.items):
            outs = [r.outputs[i] for r in samples]
            if any(o is None for o in outs) or len(set(outs)) < 2:
                continue
            flaky.append({"item": it.hash, "line": it.line, "id": _item_id(it),
                          "answers": list(dict.fromkeys(o[:200] for o in outs)),
                          "scores": [None if np.isnan(x) else float(x) for x in scores[i]]})
        entry["flaky"] = len(flaky)
        entry["flaky_items"] = flaky[:FLAKY_LISTED]
        block["candidates"][run.name] = entry
    return block if block["candidates"] else None
