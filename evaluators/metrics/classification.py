"""Classification metrics: accuracy, macro precision/recall/F1 (scikit-learn's semantics, computed
here so that bootstrap blocks are fast) and ROC AUC from per-item class scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaluators.metrics.base import (
    BINARY,
    CONTINUOUS,
    CorpusFn,
    CorpusStat,
    Item,
    Metric,
    MetricError,
    as_refs,
    metric,
    register,
)
from evaluators.metrics.normalize import normalize_label


@metric("accuracy", kind=BINARY, needs_reference=True, higher_is_better=True,
        description="label match after normalisation (strip, case-fold, trailing punctuation)")
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


def batched_counts(yt: np.ndarray, yp: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row confusion counts of (rows, n) predicted label indices ``yp`` against gold ``yt`` ((rows, n)
    or (1, n), broadcast): true positives, gold counts and prediction counts per class, each (rows,
    n_classes). Index ``n_classes`` in ``yp`` is "not a known class"."""
    rows = yp.shape[0]
    k = n_classes + 1
    codes = yt * k + yp + (np.arange(rows, dtype=np.int64) * (k * k))[:, None]
    cm = np.bincount(codes.ravel(), minlength=rows * k * k).reshape(rows, k, k)[:, :n_classes]
    diag = np.arange(n_classes)
    return (cm[:, diag, diag].astype(float), cm.sum(axis=2).astype(float),
            cm[:, :, :n_classes].sum(axis=1).astype(float))


def _macro_prf_many(yt: np.ndarray, yp: np.ndarray, n_classes: int, which: str) -> np.ndarray:
    """:func:`_macro_prf` for each row of (rows, n) label arrays at once (bootstrap blocks)."""
    rows = yt.shape[0]
    if yt.size == 0:
        return np.full(rows, np.nan)
    tp, true_count, pred_count = batched_counts(yt, yp, n_classes)
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


for _which in ("f1", "precision", "recall"):
    register(Metric(name=f"macro_{_which}", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
                    description=f"macro-averaged {_which} over the gold classes (= scikit-learn with "
                                "labels=gold classes, zero_division=0)",
                    corpus_fn=_macro_corpus(_which)))


def sklearn_macro(which: str, predictions: Sequence[str], references: Sequence[Any]) -> float:
    """The same number computed by scikit-learn (used to cross-check :func:`_macro_prf`)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    refs = [as_refs(r) for r in references]
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


register(Metric(name="roc_auc", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
                description="ROC AUC from per-item class scores (item['label_scores']); binary, or one-vs-rest macro",
                corpus_fn=_roc_auc_corpus, requires=("label_scores",)))
