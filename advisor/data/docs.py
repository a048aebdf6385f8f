"""Reference documents of a project (``docs/``): reading .md/.txt/.html and cutting them into passages.

Passages keep their source file and position so that retrieval (RAG) can cite them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from advisor.data.textnorm import words
from advisor.errors import AdviseError

DOC_SUFFIXES = {".md", ".txt", ".html", ".htm", ".markdown", ".rst"}


@dataclass(frozen=True)
class Passage:
    source: str  # path relative to the docs directory
    index: int  # passage number within the source
    text: str

    @property
    def ref(self) -> str:
        return f"{self.source}#{self.index}"


class _TextOnly(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("p", "br", "div", "li", "h1", "h2", "h3", "h4", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def read_doc(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AdviseError("is not UTF-8 text", file=path) from None
    if path.suffix.lower() in (".html", ".htm"):
        p = _TextOnly()
        p.feed(text)
        text = "".join(p.parts)
    return text


def doc_files(docs_dir: Path) -> list[Path]:
    if not docs_dir.is_dir():
        raise AdviseError("data.docs is not a directory", file=docs_dir)
    return sorted(p for p in docs_dir.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)


def load_docs(docs_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(docs_dir)): read_doc(p) for p in doc_files(docs_dir)}


def chunk(text: str, words: int = 120, overlap: int = 30) -> list[str]:
    """Windows of about ``words`` words, ``overlap`` words shared between neighbours."""
    toks = re.findall(r"\S+", text)
    if not toks:
        return []
    step = max(1, words - overlap)
    return [" ".join(toks[i : i + words]) for i in range(0, max(1, len(toks) - overlap), step)]


def passages(docs: dict[str, str], words: int = 120, overlap: int = 30) -> list[Passage]:
    return [Passage(src, i, t) for src, text in docs.items() for i, t in enumerate(chunk(text, words, overlap))]


class BM25:
    """Okapi BM25 over passages (k1=1.5, b=0.75, Robertson & Zaragoza 2009): cheap lexical retrieval,
    used to pick candidate passages before any embedding is computed."""

    def __init__(self, texts: list[str], k1: float = 1.5, b: float = 0.75):
        import math
        from collections import Counter


        self.k1, self.b = k1, b
        self.docs = [Counter(words(t)) for t in texts]
        self.lens = [sum(d.values()) for d in self.docs]
        self.avg = (sum(self.lens) / len(self.lens)) if self.lens else 0.0
        df: Counter = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}
        self.postings: dict[str, list[int]] = {}
        for i, d in enumerate(self.docs):
            for w in d:
                self.postings.setdefault(w, []).append(i)

    def top(self, query: str, k: int = 3) -> list[tuple[int, float]]:

        scores: dict[int, float] = {}
        for w in set(words(query)):
            idf = self.idf.get(w)
            if idf is None:
                continue
            for i in self.postings[w]:
                tf = self.docs[i][w]
                denom = tf + self.k1 * (1 - self.b + self.b * self.lens[i] / (self.avg or 1))
                scores[i] = scores.get(i, 0.0) + idf * tf * (self.k1 + 1) / denom
        return sorted(scores.items(), key=lambda t: (-t[1], t[0]))[:k]
