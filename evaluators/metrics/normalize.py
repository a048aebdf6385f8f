"""Answer and label normalisation shared by the text and classification metrics."""

from __future__ import annotations

import re
import string
import unicodedata

from evaluators.metrics.base import as_text

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_WRAPPERS = "\"'`*_“”‘’«»"


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation, drop articles (a/an/the), squeeze spaces."""
    text = as_text(text).lower()
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
    s = " ".join(as_text(text).split()).casefold()
    while s and (s[-1].isspace() or _is_punct(s[-1])):
        s = s[:-1]
    s = s.lstrip(_WRAPPERS + " ")
    return s.strip()


