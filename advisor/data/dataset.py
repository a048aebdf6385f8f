"""The train and eval records of a project, as eval and training use them.

Eval items come from ``data.eval`` when the project has one; otherwise a seeded hold-out of the
train file (``HOLDOUT_SHARE``, at most ``HOLDOUT_MAX`` items) that training then leaves out, so base
and tuned models are always scored on the same unseen items.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from advisor.data.findings import CODES, ERROR, Findings
from advisor.data.records import Record, load_records
from advisor.errors import AdviseError
from advisor.files import require_regular_file
from advisor.hashing import stable_hash
from advisor.project import Project
from advisor.rubric import load_rubric, value

SKIPPED_CODES = {"record_too_long"}  # warnings of assess whose records training and eval leave out
HOLDOUT_SHARE = 0.1
HOLDOUT_MAX = 200


@dataclass
class ProjectData:
    train: list[Record]
    eval: list[Record]
    eval_source: str  # "file" | "holdout"
    format: str
    findings: Findings
    eval_skipped: int = 0  # invalid or over-long eval records left out (see skipped_note)
    eval_findings: Findings | None = None
    train_skipped: int = 0  # invalid or over-long train records left out (see train_note)
    train_file: str = ""

    def train_note(self) -> str | None:
        """One line naming the train records that training leaves out (invalid, or over the per-record
        limit: the records assess reports as errors or as record_too_long), with file:line of the first."""
        if not self.train_skipped:
            return None
        where = [f"{e['file']}:{e['line']}: {f['message']}" for f in self.findings.to_list()
                 if f["code"] in SKIPPED_CODES or CODES[f["code"]][0] == ERROR for e in f["examples"]
                 if e["file"] == self.train_file][:3]
        more = f" (and {self.train_skipped - len(where)} more)" if self.train_skipped > len(where) else ""
        return (f"{self.train_skipped} training record(s) skipped, not trained on: " + "; ".join(where) + more
                + " (advise assess lists them all)")

    def skipped_note(self) -> str | None:
        """One line naming the invalid eval records that nobody evaluates, with file:line of the first ones."""
        if not self.eval_skipped or self.eval_findings is None:
            return None

        where = [f"{e['file']}:{e['line']}: {f['message']}" for f in self.eval_findings.to_list()
                 if CODES[f["code"]][0] == ERROR or f["code"] in SKIPPED_CODES for e in f["examples"]][:3]
        more = f" (and {self.eval_skipped - len(where)} more)" if self.eval_skipped > len(where) else ""
        return (f"{self.eval_skipped} invalid eval record(s) skipped, not evaluated: " + "; ".join(where) + more
                + " (advise assess lists them all)")


def item_hash(rec: Record) -> str:
    return stable_hash({"prompt": rec.prompt, "output": rec.output, "rejected": rec.rejected,
                        "refs": references(rec)})


def references(rec: Record) -> list[str]:
    """All acceptable answers: the record's output, plus a ``references`` list when the record has one."""
    refs = [rec.output]
    extra = (rec.extra or {}).get("references")
    if isinstance(extra, list):
        refs += [r for r in extra if isinstance(r, str) and r not in refs]
    return refs


def load_project_data(project: Project, seed: int | None = None) -> ProjectData:
    """The records training and eval use: the valid ones within the per-record limit (data_checks
    records.max_chars); the others are left out and counted (``train_note``, ``skipped_note``)."""
    seed = project.train.seed if seed is None else seed
    max_chars = value(load_rubric("data_checks", project.root), "records", "max_chars")
    train_path = project.data_path("train")
    require_regular_file(train_path, "training data file", " (data.train in project.yaml)")
    train, findings, stats = load_records(train_path, project.data.format, str(train_path), max_chars)
    train, too_long = _within_limit(train)
    if not train:
        raise AdviseError("no valid training example" + (f" ({too_long} over the per-record limit of {max_chars:,} "
                          "characters, data_checks records.max_chars)" if too_long else ""), file=train_path)
    skipped = dict(train_skipped=stats.invalid + too_long, train_file=str(train_path))
    eval_path = project.data_path("eval")
    if eval_path is not None:
        require_regular_file(eval_path, "eval data file", " (data.eval in project.yaml)")
        ev, ef, estats = load_records(eval_path, project.data.format, str(eval_path), max_chars)
        ev, ev_long = _within_limit(ev)
        findings.merge(ef)
        if not ev:
            raise AdviseError("no valid eval example", file=eval_path)
        return ProjectData(train, ev, "file", stats.format, findings, eval_skipped=estats.invalid + ev_long,
                           eval_findings=ef, **skipped)
    rng = random.Random(seed)
    idx = list(range(len(train)))
    rng.shuffle(idx)
    k = min(HOLDOUT_MAX, max(1, int(len(train) * HOLDOUT_SHARE))) if len(train) > 1 else 0
    held = set(idx[:k])
    return ProjectData([r for i, r in enumerate(train) if i not in held],
                       [r for i, r in enumerate(train) if i in held], "holdout", stats.format, findings, **skipped)


def _within_limit(records: list[Record]) -> tuple[list[Record], int]:
    """The records that were not clipped to the per-record limit, and how many were."""
    kept = [r for r in records if not r.clipped]
    return kept, len(records) - len(kept)
