"""Token counting: the base model's own tokenizer when it is on this machine, else a stated estimate.

Only the Rust ``tokenizers`` library is used (no transformers import): a ``tokenizer.json`` in a
local model directory, or in the Hugging Face cache for a hub id. Texts are encoded in batches, each
distinct text once; the counts of texts that repeat (system prompts, labels, stock replies) are cached.
"""

from __future__ import annotations

import json
from pathlib import Path

from advisor.hf import cached_snapshot


class TokenCounter:
    # counts of texts kept, since system prompts (often long), labels and stock replies repeat
    CACHE_TEXTS = 100_000
    CACHE_TEXT_CHARS = 16_384  # longer texts are not kept
    CACHE_CHARS = 8_000_000  # all kept texts together (they are held in memory)

    def __init__(self, tokenizer=None, source: str = "", chars_per_token: float = 4.0,
                 per_message: int = 4):
        if tokenizer is not None:
            # count every text whole and on its own: no padding to the batch, no truncation
            for off in ("no_padding", "no_truncation"):
                if hasattr(tokenizer, off):
                    getattr(tokenizer, off)()
        self._tok = tokenizer
        self._encode = getattr(tokenizer, "encode_batch_fast", None) or getattr(tokenizer, "encode_batch", None)
        self._cache: dict[str, int] = {}
        self._cached_chars = 0
        self.source = source
        self.chars_per_token = chars_per_token
        self.per_message = per_message

    @property
    def exact(self) -> bool:
        return self._tok is not None

    def describe(self) -> str:
        if self.exact:
            return f"tokenizer of the base model ({self.source}), +{self.per_message} tokens a message for the chat template"
        return (f"estimate: {self.chars_per_token:g} characters a token (no local tokenizer for the base model), "
                f"+{self.per_message} tokens a message")

    def count(self, texts: list[str]) -> list[int]:
        if self._tok is None:
            cpt = self.chars_per_token
            return [max(1, round(len(t) / cpt)) if t else 0 for t in texts]
        cache = self._cache
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if not todo:
            return [cache[t] for t in texts]
        new = {t: len(e) for t, e in zip(todo, self._encode(todo, add_special_tokens=False), strict=True)}
        out = [new[t] if t in new else cache[t] for t in texts]
        keep = {t: c for t, c in new.items() if len(t) <= self.CACHE_TEXT_CHARS}
        chars = sum(map(len, keep))
        if len(cache) + len(keep) > self.CACHE_TEXTS or self._cached_chars + chars > self.CACHE_CHARS:
            cache.clear()
            self._cached_chars = 0
        cache.update(keep)
        self._cached_chars += chars
        return out


def _tokenizer_file(base_model: str | None, model_dir: Path | None) -> Path | None:
    if model_dir is not None:
        f = model_dir / "tokenizer.json"
        return f if f.is_file() else None
    if not base_model:
        return None
    snap = cached_snapshot(base_model)
    if snap is not None and (snap / "tokenizer.json").is_file():
        return snap / "tokenizer.json"
    return None


def context_window(model_dir: Path | None) -> int | None:
    if model_dir is None or not (model_dir / "config.json").is_file():
        return None
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None


def make_counter(base_model: str | None, model_dir: Path | None, chars_per_token: float, per_message: int) -> TokenCounter:
    f = _tokenizer_file(base_model, model_dir)
    if f is not None:
        try:
            from tokenizers import Tokenizer

            return TokenCounter(Tokenizer.from_file(str(f)), str(f.parent), chars_per_token, per_message)
        except Exception:  # noqa: BLE001 - an unreadable tokenizer falls back to the estimate
            pass
    return TokenCounter(None, "", chars_per_token, per_message)
