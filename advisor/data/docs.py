"""Reference documents of a project (``docs/``): reading .md/.txt/.html and cutting them into passages.

Passages keep their source file and position so that retrieval (RAG) can cite them.

Every file is confined to the project directory by the rule of data paths
(:func:`advisor.project.confined`): a symlink under docs/ that resolves outside it (``docs/x.md ->
/etc/passwd``) is skipped, never read, retrieved or sent to an endpoint, and so is a symlink loop;
each skip is a finding naming the link when a :class:`~advisor.data.findings.Findings` is given.
Without ``root`` the files are confined to the docs directory itself (the strictest choice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from advisor.data.findings import Findings
from advisor.data.textnorm import words
from advisor.errors import AdviseError
from advisor.project import confined

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


def doc_files(docs_dir: Path, root: Path | None = None, findings: Findings | None = None) -> list[Path]:
    """The document files under ``docs_dir`` (symlinks followed while they stay inside ``root``), sorted."""
    if not docs_dir.is_dir():
        raise AdviseError("data.docs is not a directory", file=docs_dir)
    root = Path(root) if root is not None else docs_dir
    out: list[Path] = []
    seen: set[Path] = set()
    stack = [docs_dir]
    while stack:
        d = stack.pop()
        try:
            real = confined(root, d, strict=True)
        except OSError:
            real = None
        if real is None or real in seen:
            continue  # the docs dir itself is confined by data_path; a directory met twice is a cycle
        seen.add(real)
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue
        for p in entries:
            try:
                target = confined(root, p, strict=True)
            except (OSError, ValueError):
                if p.is_symlink():
                    _skip(findings, "doc_symlink_loop", p, "a symlink loop or a dangling link")
                continue
            if target is None:
                _skip(findings, "doc_outside_project", p, f"-> {_link_target(p)}")
            elif target.is_dir():
                stack.append(p)
            elif target.is_file() and p.suffix.lower() in DOC_SUFFIXES:
                out.append(p)
    return sorted(out)


def _link_target(p: Path) -> str:
    try:
        return str(p.readlink()) if p.is_symlink() else str(p.resolve())
    except OSError:
        return "?"


def _skip(findings: Findings | None, code: str, p: Path, detail: str) -> None:
    if findings is not None:
        findings.add(code, str(p), None, detail)


def load_docs(docs_dir: Path, root: Path | None = None, findings: Findings | None = None) -> dict[str, str]:
    return {str(p.relative_to(docs_dir)): read_doc(p) for p in doc_files(docs_dir, root, findings)}


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
