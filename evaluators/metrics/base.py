"""What a metric is (:class:`Metric`, :class:`CorpusStat`), the registry (:func:`register`, the
:func:`metric` decorator, :func:`get_metric`) and the two ways to use one: :func:`evaluate` (a value
with its 95% CI) and :func:`compare_metric` (a paired difference with its test).

Inputs, per item ``i``: ``predictions[i]`` (the model's text), ``references[i]`` (a string or a list
of acceptable strings; the first one is the gold label for classification metrics) and ``items[i]``
(a dict with anything else a metric needs, e.g. ``schema``, ``label_scores``, ``mean_logprob``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from evaluators import stats

BINARY, CONTINUOUS = "binary", "continuous"

Item = Mapping[str, Any]
ScoreFn = Callable[[str, list[str], Item, Mapping[str, Any]], "float | None"]
BatchFn = Callable[[list[str], list[list[str]], list[Item], Mapping[str, Any]], "list[float | None]"]
CorpusFn = Callable[[list[str], list[list[str]], list[Item], Mapping[str, Any]], "CorpusStat"]


class MetricError(ValueError):
    """A metric was asked for that does not exist, or was configured or fed wrongly."""


# ------------------------------------------------------------------------------------------ types


@dataclass(frozen=True)
class CorpusStat:
    """A corpus-level statistic over ``n`` items: ``stat(indices) -> float | None``.

    ``indices`` index the items the statistic was built on (with repeats when bootstrapping);
    ``stat.value()`` is the statistic on all of them.
    """

    n: int
    fn: Callable[[np.ndarray], float | None]
    # optional vectorised form for bootstrapping: a (rows, n) block of index rows -> (rows,) values
    # (NaN where undefined); must agree with ``fn`` row by row
    many: Callable[[np.ndarray], np.ndarray] | None = None

    def __call__(self, indices: np.ndarray) -> float | None:
        return self.fn(np.asarray(indices, dtype=int))

    def value(self) -> float | None:
        return self.fn(np.arange(self.n)) if self.n else None


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One metric. Build variants with :meth:`with_config` (e.g. a JSON schema, ROUGE stemming)."""

    name: str
    kind: str  # "binary" | "continuous"
    needs_reference: bool
    higher_is_better: bool
    description: str
    score_fn: ScoreFn | None = None
    batch_fn: BatchFn | None = None
    corpus_fn: CorpusFn | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    requires: tuple[str, ...] = ()  # item fields that must be present (not None)
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def per_item(self) -> bool:
        """Whether a per-item score is defined (macro-F1, ROC AUC: no)."""
        return self.score_fn is not None or self.batch_fn is not None

    @property
    def corpus_level(self) -> bool:
        """Whether the headline value is a corpus statistic rather than the mean of item scores."""
        return self.corpus_fn is not None

    def with_config(self, **config: Any) -> Metric:
        return replace(self, config={**self.config, **config})

    def applies_to(self, references: Any, item: Item | None) -> bool:
        """Whether this item can be scored (has a reference if needed, and the required fields)."""
        item = item or {}
        if self.needs_reference and not as_refs(references):
            return False
        return all(item.get(k) is not None for k in self.requires)

    def score(self, prediction: str, references: Any = None, item: Item | None = None) -> float | None:
        """Per-item score, or ``None`` when not defined for this item / this metric."""
        refs, item = as_refs(references), item or {}
        if not self.per_item or not self.applies_to(refs, item):
            return None
        pred = as_text(prediction)
        if self.score_fn is not None:
            return self.score_fn(pred, refs, item, self.config)
        return self.batch_fn([pred], [refs], [item], self.config)[0]  # type: ignore[misc]

    def score_all(
        self,
        predictions: Sequence[str],
        references: Sequence[Any] | None = None,
        items: Sequence[Item] | None = None,
    ) -> list[float | None]:
        """Per-item scores aligned with ``predictions`` (``None`` where not defined)."""
        preds, refs, its = align(predictions, references, items)
        if not self.per_item:
            return [None] * len(preds)
        keep = [i for i in range(len(preds)) if self.applies_to(refs[i], its[i])]
        out: list[float | None] = [None] * len(preds)
        if self.batch_fn is not None:
            if keep:
                got = self.batch_fn(
                    [preds[i] for i in keep], [refs[i] for i in keep], [its[i] for i in keep], self.config
                )
                for i, v in zip(keep, got, strict=True):
                    out[i] = v
        else:
            for i in keep:
                out[i] = self.score_fn(preds[i], refs[i], its[i], self.config)  # type: ignore[misc]
        return out

    def corpus(
        self,
        predictions: Sequence[str],
        references: Sequence[Any] | None = None,
        items: Sequence[Item] | None = None,
    ) -> CorpusStat:
        """Corpus statistic over the items this metric applies to (the mean of item scores for
        metrics without a corpus form)."""
        preds, refs, its = align(predictions, references, items)
        keep = [i for i in range(len(preds)) if self.applies_to(refs[i], its[i])]
        preds, refs, its = [preds[i] for i in keep], [refs[i] for i in keep], [its[i] for i in keep]
        if self.corpus_fn is not None:
            return self.corpus_fn(preds, refs, its, self.config)
        scores = as_array(self.score_all(preds, refs, its))
        return mean_stat(scores)

    def aggregate(
        self,
        predictions: Sequence[str],
        references: Sequence[Any] | None = None,
        items: Sequence[Item] | None = None,
    ) -> float | None:
        """Headline value: the corpus statistic, or the mean of the defined item scores."""
        return self.corpus(predictions, references, items).value()


@dataclass
class MetricResult:
    """What :func:`evaluate` returns. ``to_dict()`` is the contract's ``{"value", "ci", ...}``."""

    metric: str
    value: float | None
    ci: list[float] | None
    n: int
    skipped: int
    method: str
    level: float
    higher_is_better: bool
    scores: list[float | None] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "ci": self.ci,
            "n": self.n,
            "skipped": self.skipped,
            "method": self.method,
            "higher_is_better": self.higher_is_better,
        }


# -------------------------------------------------------------------------------------- plumbing


def as_text(x: Any) -> str:
    return "" if x is None else x if isinstance(x, str) else str(x)


def as_refs(references: Any) -> list[str]:
    if references is None:
        return []
    if isinstance(references, str):
        return [references]
    if isinstance(references, Mapping):
        return [json.dumps(references, ensure_ascii=False)]
    return [
        r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in references if r is not None
    ]


def align(
    predictions: Sequence[str], references: Sequence[Any] | None, items: Sequence[Item] | None
) -> tuple[list[str], list[list[str]], list[Item]]:
    preds = [as_text(p) for p in predictions]
    n = len(preds)
    refs = [as_refs(r) for r in references] if references is not None else [[] for _ in range(n)]
    its = [dict(i) if i is not None else {} for i in items] if items is not None else [{} for _ in range(n)]
    if len(refs) != n or len(its) != n:
        raise MetricError(
            f"predictions ({n}), references ({len(refs)}) and items ({len(its)}) differ in length"
        )
    return preds, refs, its


def as_array(scores: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if s is None else float(s) for s in scores], dtype=float)


def mean_stat(scores: np.ndarray) -> CorpusStat:
    def fn(idx: np.ndarray) -> float | None:
        sub = scores[idx]
        sub = sub[np.isfinite(sub)]
        return float(sub.mean()) if sub.size else None

    def many(block: np.ndarray) -> np.ndarray:
        sub = scores[block]
        ok = np.isfinite(sub)
        cnt = ok.sum(axis=1)
        tot = np.where(ok, sub, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)

    return CorpusStat(int(scores.size), fn, many)


def sum_stat(rows: np.ndarray, from_stats: Callable[[np.ndarray], float | None]) -> CorpusStat:
    """A decomposable corpus statistic: per-item rows of sufficient statistics, summed."""
    rows = np.asarray(rows, dtype=float).reshape(len(rows), -1)

    def fn(idx: np.ndarray) -> float | None:
        if idx.size == 0:
            return None
        return from_stats(rows[idx].sum(axis=0))

    return CorpusStat(int(rows.shape[0]), fn)


# ---------------------------------------------------------------------------------------- registry

METRICS: dict[str, Metric] = {}

_ALIASES = {
    "em": "exact_match",
    "f1": "token_f1",
    "rougel": "rouge_l",
    "rouge-l": "rouge_l",
    "rouge-1": "rouge1",
    "rouge-2": "rouge2",
    "f1_macro": "macro_f1",
    "precision_macro": "macro_precision",
    "recall_macro": "macro_recall",
    "auc": "roc_auc",
    "ppl": "perplexity",
    "sacrebleu": "bleu",
}


def register(metric: Metric) -> Metric:
    """Add (or replace) a metric in the registry."""
    if metric.kind not in {"binary", "continuous"}:
        raise MetricError(f"metric {metric.name!r}: kind must be 'binary' or 'continuous'")
    if not (metric.per_item or metric.corpus_level):
        raise MetricError(f"metric {metric.name!r} defines neither a per-item score nor a corpus statistic")
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str | Metric, **config: Any) -> Metric:
    """The registered metric called ``name`` (case-insensitive; a few aliases such as ``rougeL``,
    ``em``, ``auc``), configured with ``config``. Raises :class:`MetricError` for unknown names."""
    if isinstance(name, Metric):
        return name.with_config(**config) if config else name
    key = str(name).strip()
    key = key if key in METRICS else _ALIASES.get(key.lower(), key.lower())
    if key not in METRICS:
        raise MetricError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    metric = METRICS[key]
    return metric.with_config(**config) if config else metric


def list_metrics() -> list[str]:
    return sorted(METRICS)



def metric(name: str, *, kind: str, needs_reference: bool, higher_is_better: bool, description: str,
           value_range: tuple[float, float] = (0.0, 1.0), requires: tuple[str, ...] = ()) -> Callable[[ScoreFn], ScoreFn]:
    """Register the decorated per-item score function ``fn(prediction, references, item, config)`` as
    the metric ``name``."""

    def decorate(fn: ScoreFn) -> ScoreFn:
        register(Metric(name=name, kind=kind, needs_reference=needs_reference, higher_is_better=higher_is_better,
                        description=description, score_fn=fn, value_range=value_range, requires=requires))
        return fn

    return decorate


# ------------------------------------------------------------------------- evaluation, comparisons


def evaluate(
    metric: str | Metric,
    predictions: Sequence[str],
    references: Sequence[Any] | None = None,
    items: Sequence[Item] | None = None,
    *,
    level: float = stats.DEFAULT_LEVEL,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = stats.DEFAULT_SEED,
) -> MetricResult:
    """Score one run: value and CI of ``metric`` over the items it applies to.

    Per-item metrics: mean with a Wilson (binary) or bootstrap (continuous) interval. Corpus metrics:
    the corpus statistic with a percentile bootstrap over items. ``skipped`` counts items the metric
    could not score (no reference, missing fields).
    """
    m = get_metric(metric)
    preds, refs, its = align(predictions, references, items)
    scores = m.score_all(preds, refs, its) if m.per_item else [None] * len(preds)
    applicable = [i for i in range(len(preds)) if m.applies_to(refs[i], its[i])]
    if m.corpus_level:
        stat = m.corpus(
            [preds[i] for i in applicable], [refs[i] for i in applicable], [its[i] for i in applicable]
        )
        res = stats.bootstrap_ci(stat, stat.n, level, n_resamples=n_resamples, seed=seed)
        n, method = stat.n, "bootstrap"
    else:
        arr = as_array(scores)
        method = "wilson" if m.kind == BINARY else "bootstrap"
        res = stats.mean_ci(arr, level, method, n_resamples=n_resamples, seed=seed)
        n = res["n"]
    return MetricResult(
        metric=m.name,
        value=res["value"],
        ci=res["ci"],
        n=int(n),
        skipped=len(preds) - int(n),
        method=method,
        level=level,
        higher_is_better=m.higher_is_better,
        scores=scores,
    )


def compare_metric(
    metric: str | Metric,
    predictions_a: Sequence[str],
    predictions_b: Sequence[str],
    references: Sequence[Any] | None = None,
    items: Sequence[Item] | None = None,
    *,
    items_b: Sequence[Item] | None = None,
    level: float = stats.DEFAULT_LEVEL,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = stats.DEFAULT_SEED,
) -> dict[str, Any]:
    """Compare run ``b`` against run ``a`` on the same items (``delta = b - a``).

    ``items`` holds item fields for run a (and b, unless ``items_b`` gives b's own, e.g. its
    ``label_scores`` or ``mean_logprob``). Per-item metrics use :func:`stats.compare` (McNemar for
    binary, paired bootstrap otherwise); corpus metrics :func:`stats.paired_bootstrap_stat` on the
    items both runs can be scored on. Returns the contract's ``{"delta", "ci", "p_value"}`` plus
    ``test``, ``wins``/``losses``/``ties`` (``None`` when no per-item score exists), ``n``, and
    ``a_value``/``b_value``.
    """
    m = get_metric(metric)
    pa, refs, ia = align(predictions_a, references, items)
    pb, _, ib = align(predictions_b, references, items_b if items_b is not None else items)
    if len(pa) != len(pb):
        raise MetricError(f"runs differ in length ({len(pa)} vs {len(pb)} items)")
    if not m.corpus_level:
        out = stats.compare(
            m.name,
            m.score_all(pa, refs, ia),
            m.score_all(pb, refs, ib),
            kind=m.kind,
            higher_is_better=m.higher_is_better,
            level=level,
            n_resamples=n_resamples,
            seed=seed,
        )
        out["a_value"], out["b_value"] = out["a_mean"], out["b_mean"]
        return out
    keep = [i for i in range(len(pa)) if m.applies_to(refs[i], ia[i]) and m.applies_to(refs[i], ib[i])]
    sub_refs = [refs[i] for i in keep]
    stat_a = m.corpus([pa[i] for i in keep], sub_refs, [ia[i] for i in keep])
    stat_b = m.corpus([pb[i] for i in keep], sub_refs, [ib[i] for i in keep])
    res = stats.paired_bootstrap_stat(stat_a, stat_b, len(keep), level, n_resamples=n_resamples, seed=seed)
    out = {
        "metric": m.name,
        "delta": res["delta"],
        "ci": res["ci"],
        "p_value": res["p_value"],
        "test": "paired_bootstrap",
        "n": len(keep),
        "a_value": stat_a.value(),
        "b_value": stat_b.value(),
        "level": level,
        "ci_method": res["ci_method"],
        "p_method": res["p_method"],
        "wins": None,
        "losses": None,
        "ties": None,
    }
    if m.per_item:
        sa = m.score_all([pa[i] for i in keep], sub_refs, [ia[i] for i in keep])
        sb = m.score_all([pb[i] for i in keep], sub_refs, [ib[i] for i in keep])
        out.update(stats.wins_losses_ties(sa, sb, higher_is_better=m.higher_is_better))
    return out
