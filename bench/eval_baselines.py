"""The trivial baselines' cost and values on BANKING77 (77 labels, 3,080 test items; CC BY 4.0).

    python bench/eval_baselines.py [--datasets ../shared/datasets]

Prints the wall time of :func:`evaluators.baselines.trivial_baselines` (majority class of the train
labels, and 2,000 seeded uniform guesses over the label set) on accuracy and the macro averages, and
the baselines' values: the bar a model must clear on this task. No model is loaded.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

from advisor.data.records import Record
from evaluators.baselines import trivial_baselines
from evaluators.items import EvalItem

METRICS = ["accuracy", "macro_f1", "macro_precision", "macro_recall"]


def read(path: Path) -> list[Record]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [Record(line=i + 2, fmt="chat", prompt=[{"role": "user", "content": r["text"]}], output=r["category"],
                   key=r["text"]) for i, r in enumerate(rows)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = ap.parse_args()
    d = args.datasets / "banking77"
    train, test = read(d / "train.csv"), read(d / "test.csv")
    items = [EvalItem(f"h{r.line}", r.line, r, [r.output]) for r in test]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        rows = trivial_baselines(items, train, METRICS)
        times.append(time.perf_counter() - t0)
    print(f"banking77: {len(train)} train, {len(items)} test items, load average {os.getloadavg()[0]:.2f}")
    print(f"trivial_baselines: median {sorted(times)[1]:.2f} s of 3 runs ({', '.join(f'{t:.2f}' for t in times)})")
    for r in rows:
        vals = ", ".join(f"{m} {x['value']:.4f} [{x['ci'][0]:.4f}, {x['ci'][1]:.4f}]" for m, x in r["metrics"].items())
        print(f"{r['candidate']}: {vals}  ({r['what']})")


if __name__ == "__main__":
    main()
