"""The probe's compute as a share of the full training run, by project size (issue: at most 20% by
default on a project of a few thousand examples).

What is counted: the optimizer steps of the probe's fine-tuning arms against the steps of the full
run the estimate describes (the same batch size and epochs; the step budget of an arm scales with its
fraction), from the probe's own planning code (advisor.probe: dev split, nested fractions, the step
rule) on BANKING77's training set (../shared/datasets, CC BY 4.0) cut to each size. No model is
trained here: the share is a property of the plan. The eval arms' cost (generation on at most 200
dev items per arm) is reported beside it as item counts.

    .venv/bin/python bench/probe_share.py
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

from advisor.data.records import Record
from advisor.probe.options import ProbeOptions
from advisor.probe.split import dev_split, nested_fractions
from advisor.rubric import load_rubric, value
from advisor.training import run_settings, total_steps

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "banking77" / "train.csv"


def records(n: int) -> list[Record]:
    with open(DATA, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    return [Record(line=i + 2, fmt="chat", prompt=[{"role": "user", "content": r["text"]}], output=r["category"],
                   key=r["text"]) for i, r in enumerate(rows)]


def plan(n: int, plugin: str = "lora") -> dict:
    table = load_rubric("probe")
    d = lambda k: value(table, "defaults", k)  # noqa: E731
    opts = ProbeOptions.defaults()
    pool = records(n)
    size = min(int(d("dev_max")), max(int(d("dev_min")), round(float(d("dev_share")) * len(pool))))
    split = dev_split(pool, size=size, seed=0)
    s = run_settings(plugin, {}, len(pool))  # the plugin's own defaults, as the probe and the estimate use
    full_steps = total_steps(s["max_steps"], s["epochs"], default_epochs=s["epochs"], batch_size=s["batch_size"],
                             grad_accum=s["grad_accum"], examples=len(pool))
    arms = nested_fractions(split.train, opts.fractions, seed=0, min_examples=int(d("min_arm_examples")))
    steps = [max(1, math.ceil(full_steps * len(s) / len(pool))) for _, s in arms]
    evals = (len(opts.shots) + 1 + len(arms)) * len(split.dev)  # shots arms, knowledge, tuned arms
    return {"examples": n, "dev": len(split.dev), "arm_examples": [len(s) for _, s in arms], "arm_steps": steps,
            "full_steps": full_steps, "share": round(sum(steps) / full_steps, 4), "eval_items": evals}


def main() -> int:
    if not DATA.is_file():
        print(f"BANKING77 not found at {DATA}", file=sys.stderr)
        return 2
    rows = [plan(n) for n in (400, 1000, 2000, 3000, 5000, 10000)]
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
