"""Time the analysis of imported human ratings (evaluators.ratings.analyse): means with bootstrap intervals,
paired differences, Krippendorff's alpha and the judge's Spearman rho with its bootstrap interval.

A synthetic sheet of ITEMS items x CANDIDATES candidates rated by RATERS raters on 4 criteria (1-5), with
a judge score per row, is written into a fresh run store of a copy of the ticket-routing sample project;
then ``analyse`` runs REPEATS times and the median wall time is printed.

    .venv/bin/python bench/ratings_analysis.py                       # 500 x 3 x 5
    .venv/bin/python bench/ratings_analysis.py --items 100 --raters 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from advisor.project import load_project
from advisor.store import Store
from evaluators.ratings import RATINGS_KIND, SHEET_KIND, _sha, analyse

REPO = Path(__file__).resolve().parents[1]


def build(store: Store, items: int, candidates: int, raters: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    cands = [f"cand{c}" for c in range(candidates)]
    criteria = {c: "" for c in ("relevance", "accuracy", "tone", "completeness")}
    key, runs = {}, {}
    for c, cand in enumerate(cands):
        per_item = []
        for i in range(items):
            out = f"answer {i} of {cand}"
            code = f"R{c}-{i}"
            key[code] = {"item": f"h{i}", "line": i + 1, "n": i + 1, "candidate": cand, "output_sha": _sha(out)}
            per_item.append({"item": f"h{i}", "output": out, "scores": {"judge_score": float(rng.random())}})
        rid = store.start_run("eval", name=cand)
        store.finish_run(rid, "done", {"per_item": per_item})
        runs[cand] = rid
    sid = "SBENCH01"
    rid = store.start_run(SHEET_KIND, name=sid)
    store.finish_run(rid, "done", {"sheet": sid, "scale": "1-5", "criteria": criteria, "items": items,
                                   "candidates": cands, "runs": runs, "key": key, "rows": len(key)})
    quality = {code: rng.integers(1, 6) for code in key}
    for r in range(raters):
        ratings = [[code, f"rater{r}", {c: int(np.clip(quality[code] + rng.integers(-1, 2), 1, 5)) for c in criteria}]
                   for code in key]
        run = store.start_run(RATINGS_KIND, name=sid)
        store.finish_run(run, "done", {"sheet": sid, "ratings": ratings, "raters": [f"rater{r}"]})
    return sid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--raters", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        root = tmp / "ticket"
        shutil.copytree(REPO / "sample_projects" / "ticket-routing-tiny", root,
                        ignore=shutil.ignore_patterns(".advise"))
        project = load_project(root)
        with Store.for_project(project) as store:
            sid = build(store, args.items, args.candidates, args.raters)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = analyse(project, store, sid)
                times.append(time.perf_counter() - t0)
        acc = res["by_criterion"]["accuracy"]
        print(f"{args.items} items x {args.candidates} candidates x {args.raters} raters x 4 criteria "
              f"({res['ratings']} rated rows): analyse median {statistics.median(times):.2f} s over {args.repeats} "
              f"(min {min(times):.2f} s); load average {os.getloadavg()[0]:.1f}")
        print(f"  accuracy alpha {acc['agreement']['alpha']:.3f}, judge rho {acc['judge']['rho']:.3f}, "
              f"{len(acc['comparisons'])} paired comparisons")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
