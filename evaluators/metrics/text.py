"""Text metrics: exact match, contained answer, token F1 (SQuAD), ROUGE (rouge-score), BLEU and chrF
(sacrebleu corpus scores, not means of sentence scores; 0-100 as sacrebleu reports them).

rouge-score and sacrebleu are imported on first use.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluators.metrics.base import (
    BINARY,
    CONTINUOUS,
    BatchFn,
    CorpusFn,
    CorpusStat,
    Item,
    Metric,
    ScoreFn,
    as_text,
    metric,
    register,
    sum_stat,
)
from evaluators.metrics.normalize import normalize_answer


@metric("exact_match", kind=BINARY, needs_reference=True, higher_is_better=True,
        description="SQuAD-normalised exact match against any reference")
def _exact_match(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(r) for r in refs))


@metric("contains_answer", kind=BINARY, needs_reference=True, higher_is_better=True,
        description="a SQuAD-normalised reference occurs in the answer as whole words (lenient exact match)")
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


@metric("token_f1", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
        description="SQuAD token-overlap F1, best over references")
def _token_f1(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    return max(_token_f1_one(pred, r) for r in refs)



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
        tokens = _TOKEN_RE.findall(as_text(text).lower())
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


for _name, _type, _label in (("rouge1", "rouge1", "ROUGE-1"), ("rouge2", "rouge2", "ROUGE-2"),
                             ("rouge_l", "rougeL", "ROUGE-L")):
    register(Metric(name=_name, kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
                    description=f"{_label} F-measure (rouge-score), best over references", score_fn=_rouge(_type)))



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

        return sum_stat(rows, from_stats)

    return corpus_fn


register(Metric(name="bleu", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
                description="sacrebleu corpus BLEU (0-100); per item: sentence BLEU with effective order",
                batch_fn=_sacre_batch("bleu"), corpus_fn=_sacre_corpus("bleu"), value_range=(0.0, 100.0)))
register(Metric(name="chrf", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
                description="sacrebleu corpus chrF (0-100); per item: sentence chrF",
                batch_fn=_sacre_batch("chrf"), corpus_fn=_sacre_corpus("chrf"), value_range=(0.0, 100.0)))
