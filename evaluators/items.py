"""Eval items: the project's held-out records, each with its hash (the cache key), line and references."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advisor.data.dataset import item_hash, references
from advisor.data.records import Record


@dataclass
class EvalItem:
    hash: str
    line: int
    record: Record
    references: list[str]
    name: str | None = None  # the record's own id, else file:line (:func:`item_name`; set by the eval)

    @property
    def fields(self) -> dict[str, Any]:
        extra = self.record.extra or {}
        return {"schema": extra.get("schema")} if extra.get("schema") is not None else {}


def make_items(records: Sequence[Record], max_items: int | None = None) -> list[EvalItem]:
    recs = list(records)[:max_items] if max_items else list(records)
    items, seen = [], set()
    for r in recs:
        h = item_hash(r)
        if h in seen:
            continue  # an exact duplicate item would be scored twice
        seen.add(h)
        items.append(EvalItem(h, r.line, r, references(r)))
    return items


def duplicate_lines(records: Sequence[Record]) -> list[int]:
    """The lines of records that repeat an earlier record exactly (scored once)."""
    seen, out = set(), []
    for r in records:
        h = item_hash(r)
        if h in seen:
            out.append(r.line)
        seen.add(h)
    return out



def question(rec: Record) -> str:
    """The item's question as a judge reads it: every non-system message."""
    return "\n\n".join(m["content"] for m in rec.prompt if m["role"] != "system")


def item_name(rec: Record, file: str) -> str:
    """How gates and reports name an item: the record's own ``id`` field, else ``file:line``."""
    rid = (rec.extra or {}).get("id")
    if rid is not None and str(rid).strip():
        return str(rid).strip()[:120]
    return f"{file}:{rec.line}"
