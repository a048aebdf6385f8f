"""Text normalisation and n-grams shared by duplicate, leakage and overlap checks."""

from __future__ import annotations

import re
import string

_PUNCT = str.maketrans({c: " " for c in string.punctuation + "“”‘’«»–—…¿¡"})
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> str:
    """Case-folded, punctuation removed, whitespace collapsed: 'I'm  HERE!' -> 'i m here'."""
    return _SPACES.sub(" ", text.casefold().translate(_PUNCT)).strip()


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def ngram_hashes(tokens: list[str], n: int) -> set[int]:
    """Hashes of the word n-grams of a token list (within one process: for set membership only)."""
    if len(tokens) < n:
        return set()
    return {hash(tuple(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}
