"""RAG metrics: did retrieval find what the answer needs, does the answer stay within what was
retrieved, and do its citations point at passages that say what it says.

The definitions follow RAGAS (Es et al. 2023, "RAGAS: Automated Evaluation of Retrieval Augmented
Generation", arXiv:2309.15217): context recall, context precision (rank-weighted) and faithfulness.
RAGAS asks an LLM to split and verify claims; these are the **lexical** versions, named as such in
every description: a passage *supports* a text when it contains at least ``support_share`` of the
text's content words (SQuAD-normalised, English stop words removed). They need no model, are exact
and reproducible, and are blind to paraphrase: read them as lower bounds of what an LLM judge would
accept. With a judge (``--judge-model``), ``faithfulness_judge`` is the model-graded faithfulness beside
them (:meth:`evaluators.judge.Judge.faithfulness`).

Inputs come from the RAG strategy (:meth:`evaluators.strategies.RAG.metric_context`), per item:
``passages`` (the retrieved passage texts, in rank order), ``retrieved_refs``, ``supporting_refs``
(every passage of the docs that supports the reference answer: where the answer's support "can be
identified"; an empty list means it cannot, and the recall/precision of that item is undefined),
``cited`` (the answer's citation tags; a made-up one starts with ``?``), ``passage_by_ref`` and
``support_share``. A candidate that is not RAG has none of these, so its score is undefined (n=0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.metrics.base import CONTINUOUS, Item, metric
from evaluators.metrics.normalize import normalize_answer

_CITE_TAG = re.compile(r"\[[^\[\]\n]{1,200}\]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
RAG_METRICS = ("context_recall", "context_precision", "faithfulness")
CITATION_METRIC = "citation_correctness"
JUDGE_FAITHFULNESS = "faithfulness_judge"


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


_STOP: frozenset[str] | None = None


def content_words(text: str) -> set[str]:
    """The content words of ``text``: SQuAD-normalised tokens that are not English stop words."""
    global _STOP
    if _STOP is None:
        _STOP = _stop_words()
    return {w for w in normalize_answer(_CITE_TAG.sub(" ", text or "")).split() if w not in _STOP}


def supports(passage_words: set[str], text_words: set[str], share: float) -> bool:
    """Whether a passage (its content words) contains at least ``share`` of a text's content words."""
    return bool(text_words) and len(text_words & passage_words) >= share * len(text_words)


def claims(answer: str) -> list[str]:
    """The answer's sentences that carry content (a lexical stand-in for RAGAS' claims)."""
    return [s for s in _SENTENCE.split(_CITE_TAG.sub(" ", answer or "")) if content_words(s)]


def supporting_refs(reference: str, passages: Sequence[tuple[str, set[str]]], share: float) -> list[str]:
    """The refs of every passage (``(ref, content words)``) that supports the reference answer."""
    ref_words = content_words(reference)
    return [ref for ref, words in passages if supports(words, ref_words, share)]


def _share(item: Item) -> float:
    return float(item.get("support_share") or 0.6)


@metric("context_recall", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
        requires=("retrieved_refs", "supporting_refs"),
        description="RAG, lexical: share of the docs' passages that support the reference answer which "
                    "retrieval put in the prompt (undefined where no passage supports it)")
def _context_recall(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    support = set(item["supporting_refs"])
    if not support:
        return None
    return len(support & set(item["retrieved_refs"])) / len(support)


@metric("context_precision", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
        requires=("retrieved_refs", "supporting_refs"),
        description="RAG, lexical: rank-weighted precision of the retrieved passages (mean precision@k at "
                    "each supporting passage's rank, RAGAS' definition; undefined where none supports the answer)")
def _context_precision(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    support = set(item["supporting_refs"])
    if not support:
        return None
    hits, total = 0, 0.0
    for k, ref in enumerate(item["retrieved_refs"], start=1):
        if ref in support:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


@metric("faithfulness", kind=CONTINUOUS, needs_reference=False, higher_is_better=True,
        requires=("passages",),
        description="RAG, lexical: share of the answer's sentences whose content words the retrieved "
                    "passages contain (support_share of them); an answer beyond its context scores low")
def _faithfulness(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    sentences = claims(pred)
    if not sentences:
        return None
    context = set().union(*(content_words(p) for p in item["passages"])) if item["passages"] else set()
    share = _share(item)
    return sum(supports(context, content_words(s), share) for s in sentences) / len(sentences)


@metric("citation_correctness", kind=CONTINUOUS, needs_reference=False, higher_is_better=True,
        requires=("passages", "cited"),
        description="RAG with constraints.needs_citations, lexical: share of the answer's citations that name a "
                    "retrieved passage supporting one of its sentences (0 for an answer that cites nothing)")
def _citation_correctness(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    cited = list(item["cited"])
    if not claims(pred):
        return None
    if not cited:
        return 0.0
    by_ref = item.get("passage_by_ref") or {}
    sentence_words = [content_words(s) for s in claims(pred)]
    share = _share(item)
    good = 0
    for tag in cited:
        text = by_ref.get(tag)
        if tag.startswith("?") or text is None:
            continue  # a made-up citation, or a passage that was not retrieved
        words = content_words(text)
        if any(supports(words, s, share) for s in sentence_words):
            good += 1
    return good / len(cited)


@metric("faithfulness_judge", kind=CONTINUOUS, needs_reference=False, higher_is_better=True,
        requires=("faithfulness_judge",),
        description="RAG, graded by the LLM judge (--judge-model, rubrics/judge_faithfulness.jinja): how far the "
                    "answer's claims are supported by its retrieved passages, in [0, 1]")
def _faithfulness_judge(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    return float(item["faithfulness_judge"])
