"""The oracle context of the RAG arms: for each dev item, the passage of docs/ that holds its reference
answer (where one can be found by word overlap, as the docs signal finds answers), put in front of the
question. Comparing RAG with the oracle tells "the retriever misses" from "the model cannot read it".
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from advisor.data.docs import Passage, passages
from advisor.data.records import Record
from advisor.data.textnorm import words

MIN_ANSWER_COVER = 0.8  # share of the answer's words a passage must hold to count as holding it


def oracle_passage(answer: str, pool: Sequence[Passage], index: dict[str, set[int]]) -> Passage | None:
    """The passage with the most of the answer's distinct words, if it holds at least MIN_ANSWER_COVER."""
    want = set(words(answer))
    if not want:
        return None
    counts: dict[int, int] = {}
    for w in want:
        for j in index.get(w, ()):
            counts[j] = counts.get(j, 0) + 1
    if not counts:
        return None
    j, hit = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
    return pool[j] if hit / len(want) >= MIN_ANSWER_COVER else None


def with_context(line: str, fmt: str, context: str) -> str | None:
    """The record's JSON line with ``context`` put before its (last) user input; None for formats where
    that has no place (preference pairs)."""
    obj = json.loads(line)
    note = f"Context:\n{context}\n\n"
    if fmt == "chat":
        msgs = obj.get("messages") or []
        users = [i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            return None
        last = msgs[users[-1]]
        last["content"] = note + str(last.get("content") or "")
    elif fmt == "alpaca":
        obj["input"] = note + str(obj.get("input") or "")
    elif fmt == "prompt_completion":
        obj["prompt"] = note + str(obj.get("prompt") or "")
    else:
        return None
    return json.dumps(obj, ensure_ascii=False)


def oracle_lines(records: Sequence[Record], lines: Sequence[str], docs: dict[str, str]) -> tuple[list[str], int]:
    """Each record's line with its oracle passage (unchanged where none is found); and how many got one."""
    pool = passages(docs)
    index: dict[str, set[int]] = {}
    for j, p in enumerate(pool):
        for w in set(words(p.text)):
            index.setdefault(w, set()).add(j)
    out, found = [], 0
    for r in records:
        line = lines[r.line - 1]
        p = oracle_passage(r.output, pool, index)
        new = with_context(line, r.fmt, p.text) if p is not None else None
        if new is not None:
            found += 1
        out.append(new or line)
    return out, found
