"""Human rating sheets as files: the blinded sheet written for raters (CSV, or JSON Lines for a name ending
``.jsonl``) and the filled sheets read back, every bad cell one error naming the file and its line.

A sheet has one row per (item, answer): ``sheet`` (its id in the run store), ``row`` (an opaque code),
``item`` (1..N on this sheet), ``answer`` (A, B, ... in an order drawn per item), ``question``,
``reference`` (unless ``ratings.show_reference: false``), ``response``, an empty column per criterion,
``rater`` and ``comment``. Which candidate wrote a response is only in the store (the sheet's key).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import AdviseError

FIXED_BEFORE = ("sheet", "row", "item", "answer", "question", "reference", "response")
FIXED_AFTER = ("rater", "comment")
PASS_WORDS = {"pass": 1, "p": 1, "yes": 1, "y": 1, "1": 1, "true": 1, "fail": 0, "f": 0, "no": 0, "n": 0, "0": 0,
              "false": 0}
# a spreadsheet runs a cell that starts with one of these as a formula: model text never may
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def sheet_format(path: Path) -> str:
    """"jsonl" for a name ending .jsonl, "csv" for .csv; anything else is refused."""
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise AdviseError("a rating sheet is a .csv or a .jsonl file; give a name ending in one of them", file=path)


def columns(criteria: list[str], show_reference: bool) -> list[str]:
    fixed = [c for c in FIXED_BEFORE if show_reference or c != "reference"]
    return [*fixed, *criteria, *FIXED_AFTER]


def _cell(text) -> str:
    """Text safe to open in a spreadsheet: a leading formula character is quoted with an apostrophe."""
    text = "" if text is None else str(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_sheet(rows: list[dict], cols: list[str], fmt: str) -> str:
    """The sheet's text: rows of the fixed columns; criterion, rater and comment cells empty."""
    if fmt == "jsonl":
        return "".join(json.dumps({c: row.get(c) for c in cols}, ensure_ascii=False) + "\n" for row in rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in rows:
        w.writerow([_cell(row.get(c)) if c in ("question", "reference", "response") else
                    ("" if row.get(c) is None else row.get(c)) for c in cols])
    return buf.getvalue()


def write_new(path: Path, text: str, option: str) -> None:
    """Write ``text`` to a file that must not exist yet (a filled sheet is never overwritten), atomically."""
    path = Path(path)
    if path.exists():
        raise AdviseError(f"{option}: the file exists (a filled sheet may be in it); give a new file name", file=path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        raise AdviseError(f"cannot write {option}: {e.strerror or e}", file=path) from None
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- reading back


@dataclass
class SheetRow:
    line: int
    values: dict[str, str | int | float | None]


def _csv_rows(path: Path, text: str) -> Iterator[SheetRow]:
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise AdviseError("the sheet is empty", file=path) from None
    except csv.Error as e:
        raise AdviseError(f"not a readable CSV sheet: {e}", file=path, line=1) from None
    header = [h.strip() for h in header]
    end = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise AdviseError(f"not a readable CSV row: {e}", file=path, line=end + 1) from None
        start, end = end + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            raise AdviseError(f"the row has {len(cells)} cells and the header {len(header)} (a stray separator?)",
                              file=path, line=start)
        yield SheetRow(start, dict(zip(header, cells, strict=False)))


def _jsonl_rows(path: Path, text: str) -> Iterator[SheetRow]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AdviseError(f"not a JSON object: {e.msg}", file=path, line=n) from None
        if not isinstance(obj, dict):
            raise AdviseError("expected a JSON object per line", file=path, line=n)
        yield SheetRow(n, obj)


def read_rows(path: Path) -> list[SheetRow]:
    """The non-empty rows of a filled sheet with their first line."""
    path = Path(path)
    fmt = sheet_format(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AdviseError("rating sheet not found", file=path) from None
    except UnicodeDecodeError as e:
        raise AdviseError(f"is not UTF-8 text ({e.reason}); save the sheet as UTF-8", file=path) from None
    except OSError as e:
        raise AdviseError(f"cannot be read: {e.strerror}", file=path) from None
    return list(_jsonl_rows(path, text) if fmt == "jsonl" else _csv_rows(path, text))


def scale_values(scale: str) -> list[int]:
    """The values a cell may hold: [0, 1] for pass/fail, LOW..HIGH otherwise."""
    if scale == "pass/fail":
        return [0, 1]
    lo, hi = (int(x) for x in scale.split("-"))
    return list(range(lo, hi + 1))


def parse_cell(value, scale: str) -> int | None:
    """A rating cell on ``scale``: an int, None when empty; ValueError for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if scale == "pass/fail":
        if isinstance(value, bool):
            return int(value)
        key = str(value).strip().lower()
        if isinstance(value, (int, float)) and value in (0, 1):
            return int(value)
        if key in PASS_WORDS:
            return PASS_WORDS[key]
        raise ValueError("expected pass or fail (or 1/0), or empty")
    allowed = scale_values(scale)
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+(?:\.0*)?", text) or int(float(text)) not in allowed:
        raise ValueError(f"expected a whole number from {allowed[0]} to {allowed[-1]}, or empty")
    return int(float(text))
