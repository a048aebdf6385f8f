"""Look-alike labels: one label spelt two ways that render alike, a finding with file:line.

A homoglyph ("cаncel" with a Cyrillic 'а'), a zero-width space, a right-to-left override or a
byte-order mark inside a label makes the model learn two classes where the team sees one, and an
exact-match metric score the eval item wrong although it looks right. Labels whose TR39-style
skeletons (:func:`skeleton`, with the table of ``rubrics/confusables.yaml``) are equal are reported:
each odd spelling at its first line in each file, both spellings shown escaped
(``"cancel" vs "c\\u0430ncel"``).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from functools import cache
from pathlib import Path

from advisor.data.findings import Findings
from advisor.data.records import FileStats, iter_records
from advisor.rubric import load_rubric, value

__all__ = ["escaped", "lookalike_groups", "report_lookalike_labels", "skeleton"]


@cache
def _tables() -> tuple[dict[int, None], dict[int, str]]:
    table = load_rubric("confusables")
    drop = {ord(c): None for c in value(table, "invisible")}
    letters = {ord(k): v for k, v in value(table, "letters").items()}
    return drop, letters


def skeleton(text: str) -> str:
    """What ``text`` looks like: NFKC then NFD, invisible and direction characters removed, case-folded,
    confusable letters mapped to the Latin letter they resemble, NFC (Unicode TR39 section 4, simplified)."""
    drop, letters = _tables()
    s = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text)).translate(drop).casefold()
    return unicodedata.normalize("NFC", s.translate(letters)).strip()


def escaped(text: str) -> str:
    """``text`` with every character outside printable ASCII written as \\uXXXX: the difference shows."""
    return "".join(ch if 32 <= ord(ch) < 127 else (f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
                   for ch in text)


def lookalike_groups(counts: dict[str, int]) -> list[list[str]]:
    """The spellings of ``counts`` (label -> examples) that share a skeleton, in groups of two or more;
    each group's first spelling is the one to keep (the plain one, else the most frequent)."""
    by_skel: dict[str, list[str]] = defaultdict(list)
    for lab in counts:
        by_skel[skeleton(lab)].append(lab)
    groups = []
    for skel, labs in by_skel.items():
        if len(labs) > 1 and skel:
            labs.sort(key=lambda lab: (lab != skel, -counts[lab], lab))
            groups.append(labs)
    return sorted(groups)


def _first_lines(path: Path, wanted: set[str], declared: str, display: str) -> dict[str, int]:
    """The first line of ``path`` whose output (stripped, case-folded, as labels are counted) is each of
    ``wanted``: a second read of the file, done only when look-alikes were found."""
    found: dict[str, int] = {}
    for rec in iter_records(path, Findings(), FileStats(display), declared, display):
        lab = rec.output.strip().casefold()
        if lab in wanted and lab not in found:
            found[lab] = rec.line
            if len(found) == len(wanted):
                break
    return found


def report_lookalike_labels(files: list[tuple[str, Path, dict[str, int] | None]], findings: Findings,
                            declared: str = "auto") -> int:
    """Add a ``lookalike_labels`` finding for each odd spelling of a label in each file of ``files``
    ((display name, path, label counts or None when the outputs are not labels)); the spellings are
    compared across the files (train and eval). Returns the number of groups found."""
    total: dict[str, int] = defaultdict(int)
    for _, _, counts in files:
        for lab, c in (counts or {}).items():
            total[lab] += c
    groups = lookalike_groups(total)
    for display, path, counts in files:
        here = {lab for g in groups for lab in g[1:] if lab in (counts or {})}
        if not here:
            continue
        lines = _first_lines(path, here, declared, display)
        for g in groups:
            keep = g[0]
            for odd in g[1:]:
                if odd in here:
                    findings.add("lookalike_labels", display, lines.get(odd),
                                 f'"{escaped(keep)}" vs "{escaped(odd)}" (x{counts[odd]} here, x{total[keep]} '
                                 f"spelt plainly)")
    return len(groups)
