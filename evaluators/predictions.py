"""Answers produced elsewhere, scored as a candidate like any other: ``advise eval --predictions FILE
--name NAME`` makes the candidate ``external:NAME``.

The file is JSON Lines, one object a line: ``{"id": "...", "output": "..."}``. A line with an ``id`` answers
the eval record with that ``id``; a line without one answers the eval record on the same line number of
the eval file. Ids that match no eval item and eval items left without an answer are named in one
warning; those items are not scored for this candidate (comparisons use the items both sides answered).
A line that cannot be read (bad JSON, no string ``output``, a repeated id) is an error naming file:line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import AdviseError
from advisor.hashing import file_hash, stable_hash
from advisor.store import Store
from evaluators.candidates import CandidateSpec
from evaluators.evaluator import CandidateRun, Evaluator
from evaluators.items import EvalItem

PREFIX = "external:"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NO_PREDICTION = "no prediction for this item in the predictions file"
NAMED_MAX = 5  # ids/lines named in the warning (the counts are complete)


@dataclass
class Predictions:
    name: str  # the candidate name, external:NAME
    path: Path
    by_id: dict[str, tuple[int, str]]  # id -> (file line, output)
    by_line: dict[int, tuple[int, str]]  # eval line -> (file line, output)

    @property
    def spec(self) -> CandidateSpec:
        return CandidateSpec(self.name, "external", "predictions", str(self.path), "zero-shot", instruction=False,
                             stem=self.name)


def candidate_name(name: str) -> str:
    """``NAME`` (or ``external:NAME``) -> ``external:NAME``; a name that is not letters, digits, '.', '-', '_'
    is an error."""
    bare = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if not NAME.fullmatch(bare):
        raise AdviseError(f"--name {name!r}: use letters, digits, '.', '-' and '_' (at most 64)")
    return PREFIX + bare


def read_predictions(path: str | Path, name: str) -> Predictions:
    """Read a predictions file; a bad line raises an :class:`AdviseError` naming file:line."""
    p = Path(path)
    if not p.is_file():
        raise AdviseError("predictions file not found", file=p)
    by_id: dict[str, tuple[int, str]] = {}
    by_line: dict[int, tuple[int, str]] = {}
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AdviseError(f"cannot read the predictions file: {e}", file=p) from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AdviseError(f"not a JSON object: {e.msg}", file=p, line=n) from None
        if not isinstance(obj, dict):
            raise AdviseError("expected a JSON object like {\"id\": \"...\", \"output\": \"...\"}", file=p, line=n)
        out = obj.get("output")
        if not isinstance(out, str):
            raise AdviseError("expected a string 'output' (the answer)" if out is not None or "output" not in obj
                              else "'output' is null: write the answer as a string (\"\" for an empty one)",
                              file=p, line=n)
        rid = obj.get("id")
        if rid is None:
            by_line[n] = (n, out)
            continue
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise AdviseError(f"'id' must be a string or an integer, got {json.dumps(rid)[:40]}", file=p, line=n)
        key = str(rid)
        if key in by_id:
            raise AdviseError(f"id {key!r} repeats line {by_id[key][0]}", file=p, line=n)
        by_id[key] = (n, out)
    if not by_id and not by_line:
        raise AdviseError("the predictions file has no line", file=p)
    return Predictions(candidate_name(name), p, by_id, by_line)


def _item_id(it: EvalItem) -> str | None:
    rid = (it.record.extra or {}).get("id")
    return None if rid is None or isinstance(rid, (dict, list)) else str(rid)


def match(preds: Predictions, items: list[EvalItem]) -> tuple[list[str | None], str | None]:
    """The answer of each item (None: none given) and the one warning naming what did not match."""
    outputs: list[str | None] = []
    used_ids, used_lines = set(), set()
    missing: list[str] = []
    for it in items:
        rid = _item_id(it)
        hit = preds.by_id.get(rid) if rid is not None else None
        if hit is not None:
            used_ids.add(rid)
        elif it.line in preds.by_line:
            hit = preds.by_line[it.line]
            used_lines.add(it.line)
        outputs.append(None if hit is None else hit[1])
        if hit is None:
            missing.append(f"id {rid}" if rid is not None else f"line {it.line}")
    stray = [f"id {k}" for k in preds.by_id if k not in used_ids] + \
            [f"line {n}" for n in preds.by_line if n not in used_lines]
    if not any(o is not None for o in outputs):
        raise AdviseError(f"no line of the predictions file matches an eval item ({len(stray)} line(s): "
                          + ", ".join(stray[:NAMED_MAX]) + (" ..." if len(stray) > NAMED_MAX else "")
                          + "); give each line the 'id' of its eval record, or put line N's answer on line N",
                          file=preds.path)
    parts = []
    if stray:
        parts.append(f"{len(stray)} prediction(s) match no eval item ("
                     + ", ".join(stray[:NAMED_MAX]) + (" ..." if len(stray) > NAMED_MAX else "") + ")")
    if missing:
        parts.append(f"{len(missing)} of {len(items)} eval items have no prediction ("
                     + ", ".join(missing[:NAMED_MAX]) + (" ..." if len(missing) > NAMED_MAX else "")
                     + f"), not scored for {preds.name}")
    warning = f"predictions {preds.path}: " + "; ".join(parts) if parts else None
    return outputs, warning


def score_predictions(ev: Evaluator, store: Store, preds: Predictions, items: list[EvalItem],
                      metrics: list[str], warnings: list[str]) -> CandidateRun:
    """The external candidate's run: its answers matched to the items, scored and stored like any run."""
    outputs, warning = match(preds, items)
    if warning:
        warnings.append(warning)
    spec = preds.spec
    fp = stable_hash({"backend": "predictions", "file": file_hash(preds.path)})
    sh = stable_hash({"predictions": True})
    n = len(items)
    run = CandidateRun(spec, "task", fp, sh, items, list(outputs), [{} for _ in range(n)],
                       [None if o is not None else NO_PREDICTION for o in outputs])
    run.run_id = store.start_run(
        "eval", name=spec.name, inputs_hash=stable_hash({"fp": fp, "items": [it.hash for it in items],
                                                         "metrics": metrics}),
        config={"suite": "task", "candidate": spec.describe(), "fingerprint": fp, "settings_hash": sh,
                "metrics": metrics, "items": n, "predictions": str(preds.path)},
        command="advise eval --predictions")
    ev._score(run, metrics)
    return run
