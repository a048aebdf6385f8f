"""Text normalisation and n-grams shared by duplicate, leakage and overlap checks."""

from __future__ import annotations

import re
import string

_PUNCT_CHARS = string.punctuation + "“”‘’«»–—…¿¡"
_WORD = re.compile(r"\w+", re.UNICODE)
_ASCII_PUNCT = bytes.maketrans(string.punctuation.encode(), b" " * len(string.punctuation))
_OTHER_PUNCT = re.compile("[" + re.escape(_PUNCT_CHARS[len(string.punctuation):]) + "]")
# ASCII text: lower case and punctuation to spaces in one bytes.translate; \x1c-\x1f are whitespace
# to str.split (and to \s) but not to bytes.split, so they become spaces too.
_ASCII = bytes.maketrans(
    string.ascii_uppercase.encode() + string.punctuation.encode() + b"\x1c\x1d\x1e\x1f",
    string.ascii_lowercase.encode() + b" " * (len(string.punctuation) + 4),
)


def normalise(text: str) -> str:
    """Case-folded, punctuation removed, whitespace collapsed: 'I'm  HERE!' -> 'i m here'."""
    if text.isascii():
        return b" ".join(text.encode().translate(_ASCII).split()).decode()
    # ASCII punctuation through bytes.translate (UTF-8 multi-byte sequences hold no ASCII bytes)
    folded = text.casefold().encode("utf-8", "surrogatepass").translate(_ASCII_PUNCT)
    return " ".join(_OTHER_PUNCT.sub(" ", folded.decode("utf-8", "surrogatepass")).split())


# ASCII text: \w is [A-Za-z0-9_]; everything else separates words
_ASCII_WORDS = bytes.maketrans(
    bytes(range(128)),
    bytes(c if chr(c).isalnum() or c == 95 else 32 for c in range(128)).lower(),
)


def words(text: str) -> list[str]:
    """The case-folded word tokens (runs of word characters, as the regex ``\\w+``) of a text."""
    if text.isascii():
        return text.encode().translate(_ASCII_WORDS).decode().split()
    return _WORD.findall(text.casefold())


def ngram_hashes(tokens: list[str], n: int) -> set[int]:
    """Hashes of the word n-grams of a token list (within one process: for set membership only)."""
    if len(tokens) < n:
        return set()
    return set(map(hash, zip(*[tokens[i:] for i in range(n)], strict=False)))
