"""Prompt strategies: how an eval item becomes the messages a candidate reads.

* ``zero-shot``: the item's own prompt (plus the project's task as a system message when the item has
  none and the candidate asks for it: base models need to be told the task, tuned ones learnt it).
* ``few-shot``: the k training examples most similar to the item (cosine similarity of
  sentence-transformers embeddings, advisor.embeddings) as earlier user/assistant turns, the most
  similar one last, exact duplicates of the item's input left out.
* ``rag``: the project's docs cut into passages (advisor.data.docs.passages), embedded, the top-k passages
  for the item's input put in the prompt with their references; the references retrieved (and the
  ones the answer cites) are kept in the item record.

A strategy's :meth:`~Strategy.fingerprint` is cheap (hashes of the train items or the docs' bytes): the
eval cache is looked up with it before anything is embedded, so a fully cached run never loads the
embedding model. ``prepare`` (embedding the pool) happens only when some item must be computed.
``retriever="bm25"`` retrieves lexically (advisor.data.docs.BM25) instead, with no embedding model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.data.dataset import item_hash
from advisor.data.docs import BM25, doc_files, passages, read_doc
from advisor.data.records import Record
from advisor.data.textnorm import normalise
from advisor.embeddings import embed, model_path
from advisor.errors import AdviseError
from advisor.hashing import stable_hash
from advisor.rubric import load_rubric, value
from evaluators.metrics import rag as rag_metrics

STRATEGIES = ("zero-shot", "few-shot", "rag")
RETRIEVERS = ("embedding", "bm25")
FEW_SHOT_MAX_CHARS = 6000  # examples beyond this many characters are dropped (least similar first)
RAG_INSTRUCTION = ("Answer using the reference passages below. Cite each passage you use by its tag in "
                   "square brackets, e.g. [{example}].")
_CITE = re.compile(r"\[([^\[\]\n]{1,200}?#\d+)\]")


@dataclass
class Prompt:
    """The messages a candidate reads for one item, and what the strategy put in them."""

    messages: list[dict]
    meta: dict[str, Any] = field(default_factory=dict)
    # the same prompt with one example or passage fewer (the least relevant), None when it has none:
    # what :func:`evaluators.evaluator.fit_prompts` uses before a backend would cut the prompt
    shrink: Callable[[], Prompt | None] | None = field(default=None, repr=False, compare=False)


def _system_and_rest(rec: Record, instruction: str | None) -> tuple[list[dict], list[dict]]:
    system = [m for m in rec.prompt if m["role"] == "system"]
    rest = [m for m in rec.prompt if m["role"] != "system"]
    if not system and instruction:
        system = [{"role": "system", "content": instruction}]
    return system, rest


def _embedding_id() -> str:

    return Path(model_path()).name


class Strategy:
    name = "zero-shot"

    def __init__(self, instruction: str | None = None):
        self.instruction = instruction

    def fingerprint(self) -> dict[str, Any]:
        return {"strategy": self.name, "instruction": self.instruction}

    def prepare(self) -> None:
        """Heavy set-up (embeddings); called only when some item must be computed."""

    def build_all(self, records: Sequence[Record]) -> list[Prompt]:
        return [self.build(r) for r in records]

    def build(self, rec: Record) -> Prompt:
        system, rest = _system_and_rest(rec, self.instruction)
        return Prompt(system + rest)

    def annotate(self, prompt: Prompt, output: str | None) -> dict[str, Any]:
        """What to keep in the item record once the answer is known (citations for RAG)."""
        return dict(prompt.meta)

    def metric_context(self, data: dict[str, Any], references: Sequence[str]) -> dict[str, Any]:
        """Item fields the strategy's own metrics need (the RAG metrics: evaluators.metrics.rag)."""
        return {}


class ZeroShot(Strategy):
    name = "zero-shot"


def _top_k(query_emb, pool_emb, k: int):
    import numpy as np

    sims = query_emb @ pool_emb.T
    k = min(k, sims.shape[1])
    if k <= 0:
        return np.zeros((sims.shape[0], 0), dtype=int), sims
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1), sims


class FewShot(Strategy):
    """k nearest training examples (by embedding of the input text) as demonstrations."""

    name = "few-shot"

    def __init__(self, train: Sequence[Record], k: int = 4, *, instruction: str | None = None,
                 retriever: str = "embedding"):
        super().__init__(instruction)
        if retriever not in RETRIEVERS:
            raise AdviseError(f"unknown retriever {retriever!r} ({', '.join(RETRIEVERS)})")
        self.pool = [r for r in train if r.output and r.output.strip()]
        self.k, self.retriever = int(k), retriever
        self._emb = None
        self._bm25 = None
        self._pool_hash: str | None = None

    def fingerprint(self) -> dict[str, Any]:

        if self._pool_hash is None:
            self._pool_hash = hashlib.sha256("\n".join(item_hash(r) for r in self.pool).encode()).hexdigest()[:16]
        pool = self._pool_hash
        fp = {"strategy": self.name, "k": self.k, "pool": pool, "instruction": self.instruction,
              "retriever": self.retriever}
        if self.retriever == "embedding":
            fp["embedder"] = _embedding_id()
        return fp

    def prepare(self) -> None:
        if not self.pool or self.k <= 0:
            return
        if self.retriever == "bm25":
            if self._bm25 is None:

                self._bm25 = BM25([r.key for r in self.pool])
        elif self._emb is None:

            self._emb = embed([r.key for r in self.pool])

    def _neighbours(self, records: Sequence[Record]) -> list[list[tuple[int, float]]]:
        want = self.k + 3  # room for dropped duplicates of the item itself
        if self.retriever == "bm25":
            return [self._bm25.top(r.key, want) for r in records]

        q = embed([r.key for r in records])
        idx, sims = _top_k(q, self._emb, want)
        return [[(int(j), float(sims[i, j])) for j in idx[i]] for i in range(len(records))]

    def build_all(self, records: Sequence[Record]) -> list[Prompt]:
        if not self.pool or self.k <= 0:
            return [Strategy.build(self, r) for r in records]
        self.prepare()
        out = []
        for rec, cands in zip(records, self._neighbours(records), strict=True):
            key = normalise(rec.key)
            chosen: list[tuple[int, float]] = []
            chars = 0
            for j, s in cands:
                ex = self.pool[j]
                if normalise(ex.key) == key:
                    continue  # never show the item itself (a duplicate of it) as its own example
                size = sum(len(m["content"]) for m in ex.prompt if m["role"] != "system") + len(ex.output)
                if chosen and chars + size > FEW_SHOT_MAX_CHARS:
                    break
                chosen.append((j, s))
                chars += size
                if len(chosen) == self.k:
                    break
            out.append(self._compose(rec, chosen))
        return out

    def _compose(self, rec: Record, chosen: list[tuple[int, float]]) -> Prompt:
        system, rest = _system_and_rest(rec, self.instruction)
        shots: list[dict] = []
        for j, _ in reversed(chosen):  # most similar last, next to the question
            ex = self.pool[j]
            shots += [dict(m) for m in ex.prompt if m["role"] != "system"]
            shots.append({"role": "assistant", "content": ex.output})
        meta = {"few_shot": [{"line": self.pool[j].line, "score": round(s, 4)} for j, s in chosen]}
        return Prompt(system + shots + rest, meta,
                      shrink=(lambda: self._compose(rec, chosen[:-1])) if chosen else None)

    def build(self, rec: Record) -> Prompt:
        return self.build_all([rec])[0]


class RAG(Strategy):
    """Top-k passages of the project's docs in the prompt, with their references."""

    name = "rag"

    def __init__(self, docs_dir: Path, top_k: int = 3, *, instruction: str | None = None,
                 retriever: str = "embedding", words: int = 120, overlap: int = 30, cache_dir: Path | None = None,
                 root: Path | None = None):
        super().__init__(instruction)
        if retriever not in RETRIEVERS:
            raise AdviseError(f"unknown retriever {retriever!r} ({', '.join(RETRIEVERS)})")

        self.docs_dir = Path(docs_dir)
        # the files the project's docs rule admits (advisor.data.docs: confined to the project ``root``,
        # or to docs_dir itself without one); read once, these and no others are hashed and retrieved
        self.files = doc_files(self.docs_dir, root)
        if not self.files:
            raise AdviseError("data.docs has no documents (.md, .txt, .html)", file=self.docs_dir)
        self.top_k, self.retriever, self.words, self.overlap = int(top_k), retriever, words, overlap
        self.cache_dir = cache_dir
        self._docs_hash: str | None = None
        self.passages = None
        self._emb = None
        self._bm25 = None
        # the RAG metrics' lexical support rule (rubrics/eval.yaml rag.support_share)
        self.support_share = float(value(load_rubric("eval", root), "rag", "support_share"))
        self._words: list[tuple[str, set[str]]] | None = None
        self._by_ref: dict[str, str] = {}
        self._support: dict[str, list[str]] = {}

    def fingerprint(self) -> dict[str, Any]:
        if self._docs_hash is None:
            h = hashlib.sha256()
            for p in self.files:
                h.update(str(p.relative_to(self.docs_dir)).encode() + b"\0")
                h.update(p.read_bytes())
                h.update(b"\0")
            self._docs_hash = h.hexdigest()[:16]
        fp = {"strategy": self.name, "top_k": self.top_k, "docs": self._docs_hash, "words": self.words,
              "overlap": self.overlap, "instruction": self.instruction, "retriever": self.retriever}
        if self.retriever == "embedding":
            fp["embedder"] = _embedding_id()
        return fp

    def _load_passages(self) -> None:
        if self.passages is None:
            docs = {str(p.relative_to(self.docs_dir)): read_doc(p) for p in self.files}
            self.passages = passages(docs, self.words, self.overlap)
            if not self.passages:
                raise AdviseError("data.docs has no text to retrieve from", file=self.docs_dir)

    def prepare(self) -> None:
        self._load_passages()
        if self.retriever == "bm25":
            if self._bm25 is None:

                self._bm25 = BM25([p.text for p in self.passages])
        elif self._emb is None:
            self._emb = self._passage_embeddings()

    def _passage_embeddings(self):
        """Embeddings of every passage, cached on disk (``.advise/cache``) by passage text and model."""
        import numpy as np


        key = stable_hash({"model": _embedding_id(), "texts": hashlib.sha256(
            "\0".join(p.text for p in self.passages).encode()).hexdigest()})
        path = self.cache_dir / f"passages-{key}.npy" if self.cache_dir else None
        if path is not None and path.is_file():
            try:
                arr = np.load(path)
                if arr.shape[0] == len(self.passages):
                    return arr
            except (OSError, ValueError):
                pass
        arr = embed([p.text for p in self.passages])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, arr)
            tmp.replace(path)
        return arr

    def _retrieve(self, records: Sequence[Record]) -> list[list[tuple[int, float]]]:
        if self.retriever == "bm25":
            return [self._bm25.top(r.key, self.top_k) for r in records]

        q = embed([r.key for r in records])
        idx, sims = _top_k(q, self._emb, self.top_k)
        return [[(int(j), float(sims[i, j])) for j in idx[i]] for i in range(len(records))]

    def build_all(self, records: Sequence[Record]) -> list[Prompt]:
        self.prepare()
        out = []
        for rec, hits in zip(records, self._retrieve(records), strict=True):
            out.append(self._compose(rec, hits))
        return out

    def _compose(self, rec: Record, hits: list[tuple[int, float]]) -> Prompt:
        system, rest = _system_and_rest(rec, self.instruction)
        found = [self.passages[j] for j, _ in hits]
        context = "\n\n".join(f"[{p.ref}]\n{p.text}" for p in found)
        example = found[0].ref if found else "doc.md#0"
        head = RAG_INSTRUCTION.format(example=example) + "\n\n" + context + "\n\nQuestion:\n"
        rest = [dict(m) for m in rest]
        users = [i for i, m in enumerate(rest) if m["role"] == "user"]
        if users:
            rest[users[-1]]["content"] = head + rest[users[-1]]["content"]
        else:
            rest.append({"role": "user", "content": head.rstrip()})
        meta = {"retrieved": [{"ref": self.passages[j].ref, "score": round(s, 4)} for j, s in hits]}
        return Prompt(system + rest, meta, shrink=(lambda: self._compose(rec, hits[:-1])) if hits else None)

    def build(self, rec: Record) -> Prompt:
        return self.build_all([rec])[0]

    def annotate(self, prompt: Prompt, output: str | None) -> dict[str, Any]:
        meta = dict(prompt.meta)
        meta["cited"] = citations(output or "", [r["ref"] for r in meta.get("retrieved", [])])
        return meta

    def metric_context(self, data: dict[str, Any], references: Sequence[str]) -> dict[str, Any]:
        """The retrieved passages of an answered item and the docs' passages that support its reference
        answer (lexically: evaluators.metrics.rag), for context recall/precision, faithfulness and
        citation correctness."""
        if "retrieved" not in data:
            return {}
        self._load_passages()
        if self._words is None:
            self._by_ref = {p.ref: p.text for p in self.passages}
            self._words = [(p.ref, rag_metrics.content_words(p.text)) for p in self.passages]
        retrieved = [r["ref"] for r in data["retrieved"] if r["ref"] in self._by_ref]
        reference = references[0] if references else ""
        if reference not in self._support:
            self._support[reference] = rag_metrics.supporting_refs(reference, self._words, self.support_share)
        return {"passages": [self._by_ref[r] for r in retrieved], "retrieved_refs": retrieved,
                "supporting_refs": self._support[reference], "cited": list(data.get("cited") or []),
                "passage_by_ref": {r: self._by_ref[r] for r in retrieved}, "support_share": self.support_share}


def citations(text: str, retrieved: Sequence[str]) -> list[str]:
    """Passage tags ``[source#n]`` the answer cites, in order, first mention only; a tag that was not
    retrieved is kept with a ``?`` prefix (a made-up citation)."""
    seen: list[str] = []
    known = set(retrieved)
    for m in _CITE.finditer(text):
        ref = m.group(1).strip()
        tag = ref if ref in known else "?" + ref
        if tag not in seen:
            seen.append(tag)
    return seen


def make_strategy(name: str, *, train: Sequence[Record] = (), docs_dir: Path | None = None, k: int = 4,
                  top_k: int = 3, instruction: str | None = None, retriever: str = "embedding",
                  cache_dir: Path | None = None, root: Path | None = None) -> Strategy:
    if name == "zero-shot":
        return ZeroShot(instruction)
    if name == "few-shot":
        return FewShot(train, k, instruction=instruction, retriever=retriever)
    if name == "rag":
        if docs_dir is None:
            raise AdviseError("the rag strategy needs documents: set data.docs in project.yaml")
        return RAG(docs_dir, top_k, instruction=instruction, retriever=retriever, cache_dir=cache_dir, root=root)
    raise AdviseError(f"unknown strategy {name!r} ({', '.join(STRATEGIES)})")
