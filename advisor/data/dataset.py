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

HOLDOUT_SHARE = 0.1
HOLDOUT_MAX = 200


@dataclass
class ProjectData:
    train: list[Record]
    eval: list[Record]
    eval_source: str  # "file" | "holdout"
    format: str
    findings: Findings
    eval_skipped: int = 0  # invalid eval records left out (see skipped_note)
    eval_findings: Findings | None = None

    def skipped_note(self) -> str | None:
        """One line naming the invalid eval records that nobody evaluates, with file:line of the first ones."""
        if not self.eval_skipped or self.eval_findings is None:
            return None

        where = [f"{e['file']}:{e['line']}: {f['message']}" for f in self.eval_findings.to_list()
                 if CODES[f["code"]][0] == ERROR for e in f["examples"]][:3]
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
    seed = project.train.seed if seed is None else seed
    train_path = project.data_path("train")
    require_regular_file(train_path, "training data file", " (data.train in project.yaml)")
    train, findings, stats = load_records(train_path, project.data.format, str(train_path))
    if not train:
        raise AdviseError("no valid training example", file=train_path)
    eval_path = project.data_path("eval")
    if eval_path is not None:
        require_regular_file(eval_path, "eval data file", " (data.eval in project.yaml)")
        ev, ef, estats = load_records(eval_path, project.data.format, str(eval_path))
        findings.merge(ef)
        if not ev:
            raise AdviseError("no valid eval example", file=eval_path)
        return ProjectData(train, ev, "file", stats.format, findings, eval_skipped=estats.invalid, eval_findings=ef)
    rng = random.Random(seed)
    idx = list(range(len(train)))
    rng.shuffle(idx)
    k = min(HOLDOUT_MAX, max(1, int(len(train) * HOLDOUT_SHARE))) if len(train) > 1 else 0
    held = set(idx[:k])
    return ProjectData([r for i, r in enumerate(train) if i not in held],
                       [r for i, r in enumerate(train) if i in held], "holdout", stats.format, findings)
