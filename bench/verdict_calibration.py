"""Fit and check the confidence mapping of `advise assess` on the labelled scenario set.

    PYTHONPATH=. .venv/bin/python bench/verdict_calibration.py [--shared DIR]

Builds the 42+ scenarios of tests/scenarios/scenarios.yaml from the shared datasets, assesses each
(--no-embeddings), and reads the raw confidence of each verdict (``recommendation.confidence_raw``:
0.5 + 0.08 per point of margin, less the penalties for blockers, thresholds, disagreeing signals, no
eval file). It then fits Platt scaling, p = sigmoid(slope * raw + intercept), by logistic regression
of top-1 agreement (the verdict is the expert's first choice) on the raw confidence, with Platt's
smoothed targets ((N+ + 1)/(N+ + 2) and 1/(N- + 2)) so that a set with few misses does not give an
infinite slope. Top-1 is the event fitted because no verdict of the set is unacceptable: a fit on
"acceptable" would have no negative case and map everything to the maximum; top-1 is the stricter
event, so the fitted confidence is a lower bound on the chance that the verdict is acceptable.

Overfitting guard: leave-one-out (each scenario predicted by the mapping fitted on the others) and
5-fold Brier scores, against both events. Prints top-1 and acceptable agreement, the Brier scores
before (the shipped rubric's mapping, or the raw score when the rubric has none) and after, the
reliability tables, and the YAML for rubrics/decision.yaml. Not a test: asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "scenarios"))
SHARED = Path(os.environ.get("ADVISE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x > -50 else 0.0


def fit_platt(x: list[float], y: list[int], iters: int = 100) -> tuple[float, float]:
    """(slope, intercept) of Platt scaling by Newton's method on the smoothed cross-entropy."""
    pos = sum(y)
    neg = len(y) - pos
    t = [(pos + 1) / (pos + 2) if yi else 1 / (neg + 2) for yi in y]
    a, b = 0.0, math.log((pos + 1) / (neg + 1))
    for _ in range(iters):
        ga = gb = haa = hab = hbb = 0.0
        for xi, ti in zip(x, t, strict=True):
            p = _sigmoid(a * xi + b)
            d = p - ti
            w = max(p * (1 - p), 1e-12)
            ga += d * xi
            gb += d
            haa += w * xi * xi
            hab += w * xi
            hbb += w
        det = haa * hbb - hab * hab
        if abs(det) < 1e-15:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) < 1e-10 and abs(db) < 1e-10:
            break
    return a, b


def brier(p: list[float], y: list[int]) -> float:
    return sum((pi - yi) ** 2 for pi, yi in zip(p, y, strict=True)) / len(p)


def clamp(p: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, p))


def cross_validated(x: list[float], y: list[int], folds: int, lo: float, hi: float) -> list[float]:
    """Each scenario's confidence from the mapping fitted on the other folds (folds = len(x): leave-one-out)."""
    out = [0.0] * len(x)
    for k in range(folds):
        test = [i for i in range(len(x)) if i % folds == k]
        train = [i for i in range(len(x)) if i % folds != k]
        a, b = fit_platt([x[i] for i in train], [y[i] for i in train])
        for i in test:
            out[i] = clamp(_sigmoid(a * x[i] + b), lo, hi)
    return out


def reliability(p: list[float], y: list[int], bins) -> list[dict]:
    rows = []
    for lo, hi in bins:
        idx = [i for i, pi in enumerate(p) if lo <= pi < hi]
        rows.append({"bin": f"{lo:.2f}-{min(hi, 1):.2f}", "n": len(idx),
                     "mean_confidence": round(sum(p[i] for i in idx) / len(idx), 3) if idx else None,
                     "rate": round(sum(y[i] for i in idx) / len(idx), 3) if idx else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared datasets folder")
    a = ap.parse_args(argv)

    from build import BINS, evaluate

    from advisor.rubric import load_rubric, value

    rubric = load_rubric("decision")
    lo, hi = value(rubric, "confidence", "min"), value(rubric, "confidence", "max")
    with tempfile.TemporaryDirectory() as tmp:
        res = evaluate(a.shared, Path(tmp))
    rows = res["rows"]
    x = [r["confidence_raw"] for r in rows]
    top1 = [int(r["top1"]) for r in rows]
    acc = [int(r["acceptable"]) for r in rows]
    shipped = [r["confidence"] for r in rows]
    raw = [clamp(v, lo, hi) for v in x]
    slope, intercept = fit_platt(x, top1)
    fitted = [clamp(_sigmoid(slope * v + intercept), lo, hi) for v in x]
    loo = cross_validated(x, top1, len(x), lo, hi)
    k5 = cross_validated(x, top1, 5, lo, hi)

    n = len(rows)
    print(f"{n} scenarios: top-1 agreement {sum(top1) / n:.1%}, acceptable {sum(acc) / n:.1%}")
    print(f"fit: Platt scaling of top-1 on the raw confidence: slope {slope:.4f}, intercept {intercept:.4f}")
    print()
    print("| confidence mapping | mean | Brier vs acceptable | Brier vs top-1 |")
    print("| --- | --- | --- | --- |")
    for name, p in (("raw score (clamped), no calibration", raw), ("shipped rubric (this run)", shipped),
                    ("fitted, in-sample", fitted), ("fitted, leave-one-out", loo), ("fitted, 5-fold", k5)):
        print(f"| {name} | {sum(p) / n:.3f} | {brier(p, acc):.4f} | {brier(p, top1):.4f} |")
    for title, p in (("raw score (clamped)", raw), ("shipped rubric", shipped), ("fitted, leave-one-out", loo)):
        print(f"\nreliability, {title}:\n")
        print("| confidence | scenarios | mean confidence | top-1 rate | acceptable rate |")
        print("| --- | --- | --- | --- | --- |")
        for t1, ta in zip(reliability(p, top1, BINS), reliability(p, acc, BINS), strict=True):
            print(f"| {t1['bin']} | {t1['n']} | {t1['mean_confidence']} | {t1['rate']} | {ta['rate']} |")
    print("\n| scenario | expected | verdict | raw | shipped | leave-one-out |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r, s, lv in zip(rows, shipped, loo, strict=True):
        mark = "" if r["top1"] else (" (acceptable)" if r["acceptable"] else " **(disagrees)**")
        print(f"| {r['id']} | {', '.join(r['expected'])} | {r['method']}{mark} | {r['confidence_raw']:.3f} | "
              f"{s:.2f} | {lv:.2f} |")
    today = datetime.date.today().isoformat()
    print(f"""
rubrics/decision.yaml, under confidence:
  calibration:
    value: {{slope: {slope:.4f}, intercept: {intercept:.4f}}}
    source: "fitted {today} by bench/verdict_calibration.py on tests/scenarios/scenarios.yaml ({n} scenarios,
      assess --no-embeddings): Platt scaling, logistic regression of top-1 agreement on the raw confidence
      with Platt's smoothed targets; Brier vs acceptable {brier(raw, acc):.3f} raw -> {brier(fitted, acc):.3f}
      fitted ({brier(loo, acc):.3f} leave-one-out)"
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
