"""The forgetting check: a small general-capability canary set scored before and after tuning.

The shipped set (``evaluators/data/canary.jsonl``, 40 short general-knowledge, arithmetic, unit and
language questions with reference answers, written for advise, Apache-2.0) is answered zero-shot by
the base model and by every tuned model; a tuned model whose canary score drops against the base
model's (a paired comparison on the same questions) has lost general ability. A project may give its
own canary file in any record format of the contract (``references`` lists extra accepted answers).

Scores: ``contains_answer`` (a reference occurs in the answer as whole words, so a chatty correct answer
counts) and ``exact_match``. The set is far too small to rank models; only a drop means something.
"""

from __future__ import annotations

from pathlib import Path

from advisor.data.records import Record, load_records
from advisor.errors import AdviseError

CANARY_FILE = Path(__file__).parent / "data" / "canary.jsonl"
CANARY_METRICS = ["contains_answer", "exact_match"]
CANARY_SYSTEM = "Answer the question briefly, with the answer only."
# A drop of the canary's headline score larger than this (and significant) is flagged as forgetting.
FORGETTING_MARGIN = 0.05


def load_canary(path: str | Path | None = None) -> list[Record]:
    """The canary records (the shipped set unless ``path`` names another file)."""
    file = Path(path) if path else CANARY_FILE
    if not file.is_file():
        raise AdviseError("canary file not found", file=file)
    records, findings, stats = load_records(file, "auto", str(file))
    if not records:
        raise AdviseError("no valid canary item", file=file)
    return records


def forgetting(comparison: dict, metric: str = CANARY_METRICS[0], alpha: float = 0.05) -> dict:
    """Whether a canary comparison (base -> tuned) shows lost general ability: a drop of more than
    ``FORGETTING_MARGIN`` that is significant at ``alpha``."""
    m = (comparison.get("metrics") or {}).get(metric) or {}
    delta, p = m.get("delta"), m.get("p_value")
    lost = delta is not None and delta < -FORGETTING_MARGIN and p is not None and p < alpha
    return {"metric": metric, "delta": delta, "p_value": p, "forgetting": bool(lost)}
