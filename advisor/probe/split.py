"""The probe's development split: carved from the training data, never from the held-out eval set, so
that choosing a method never looks at the items that will judge it.

Seeded, and by group when records share one: a record field that names a document, a conversation or a
group (``GROUP_FIELDS``), else the whole-prompt context (records asked under one template or system
prompt with another key stay apart only when that context differs, so a group is never split across
the two sides).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from advisor.data.records import Record

GROUP_FIELDS = ("group", "group_id", "doc_id", "document_id", "document", "conversation_id", "thread_id",
                "source_id")


@dataclass
class DevSplit:
    train: list[Record]
    dev: list[Record]
    seed: int
    group_field: str | None  # the record field the split kept together, None: records are independent
    groups: int  # distinct groups (records when group_field is None)

    def describe(self) -> dict:
        return {"dev_items": len(self.dev), "train_items": len(self.train), "seed": self.seed,
                "grouped_by": self.group_field, "groups": self.groups}


def group_field(records: Sequence[Record]) -> str | None:
    """The first of GROUP_FIELDS that most records carry and that groups at least two records somewhere."""
    for name in GROUP_FIELDS:
        values = [(r.extra or {}).get(name) for r in records]
        present = [v for v in values if isinstance(v, (str, int)) and not isinstance(v, bool)]
        if len(present) >= 0.9 * len(records) and len(set(map(str, present))) < len(present):
            return name
    return None


def dev_split(records: Sequence[Record], *, size: int, seed: int, field: str | None = None) -> DevSplit:
    """About ``size`` dev records (whole groups), the rest for training; the same inputs give the same split."""
    field = field if field is not None else group_field(records)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        key = str((r.extra or {}).get(field)) if field else f"#{i}"
        groups[key].append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    dev_idx: list[int] = []
    for k in keys:
        if len(dev_idx) >= size:
            break
        if dev_idx and len(dev_idx) + len(groups[k]) > size * 1.5:
            continue  # a large group would overshoot: try the next
        dev_idx += groups[k]
    chosen = set(dev_idx)
    return DevSplit([r for i, r in enumerate(records) if i not in chosen], [records[i] for i in sorted(chosen)],
                    seed, field, len(groups))


def nested_fractions(records: Sequence[Record], fractions: Sequence[float], *, seed: int,
                     min_examples: int) -> list[tuple[float, list[Record]]]:
    """Nested subsets: each larger fraction holds every record of the smaller ones (one seeded order).
    The smallest is raised to ``min_examples`` records and each next one to at least twice the one
    before (on a small data set the fractions would otherwise collapse into one arm and no curve);
    none exceeds the data, and sizes that end up equal are merged."""
    order = list(range(len(records)))
    random.Random(seed + 1).shuffle(order)
    out: list[tuple[float, list[Record]]] = []
    prev = 0
    for f in sorted(fractions):
        n = min(len(records), max(min_examples, round(f * len(records)), 2 * prev))
        if n <= prev:
            continue
        out.append((n / len(records), [records[i] for i in sorted(order[:n])]))
        prev = n
    return out
