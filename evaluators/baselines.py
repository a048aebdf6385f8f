"""Trivial baselines of a classification-like eval: what a model that learnt nothing would score.

* ``baseline:majority`` answers every item with the most common label of the train outputs (of the
  eval references when the project has no train set): its score, with the metric's own 95% CI, is
  the bar on skewed data (a 90/10 set gives it 0.90 accuracy);
* ``baseline:random`` guesses uniformly over the label set: its expected score and the range (2.5th
  to 97.5th percentile) a guesser's score falls in over these items, from seeded draws
  (``rubrics/eval.yaml``).

They are stored with the eval summary (``baselines``), shown beside the candidates in ``advise eval``,
the comparisons, the gates' detail and the report, and never call a model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advisor.data.records import Record
from advisor.rubric import load_rubric, value
from evaluators.items import EvalItem
from evaluators.metrics import evaluate, get_metric
from evaluators.metrics.classification import _per_class, batched_counts
from evaluators.metrics.normalize import normalize_label

MAJORITY, RANDOM = "baseline:majority", "baseline:random"
MACRO = {"macro_f1": "f1", "macro_precision": "precision", "macro_recall": "recall"}
# metrics a constant label can be scored with (per-item label matches and the macro averages)
SCORABLE = {"accuracy", "exact_match", *MACRO}


def label_set(items: Sequence[EvalItem], train: Sequence[Record]) -> tuple[list[str], str]:
    """(labels most common first, where they come from: "train" or "eval"), one spelling per normalised label."""
    outs = [r.output.strip() for r in train if r.output and r.output.strip()]
    source = "train"
    if not outs:
        outs = [it.references[0].strip() for it in items if it.references and it.references[0].strip()]
        source = "eval"
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for o in outs:
        k = normalize_label(o)
        counts[k] += 1
        spelling.setdefault(k, o)
    return [spelling[k] for k, _ in counts.most_common()], source


def trivial_baselines(items: Sequence[EvalItem], train: Sequence[Record], metrics: Sequence[str],
                      project_root: Path | None = None) -> list[dict[str, Any]]:
    """The majority and uniform-random baselines on ``metrics`` (those a label can be scored with), as
    rows like the runs' summaries (``candidate``, ``items``, ``metrics``) plus how each was made."""
    names = [m for m in metrics if m in SCORABLE]
    labels, source = label_set(items, train)
    if not names or not labels or not items:
        return []
    rubric = load_rubric("eval", project_root)
    draws = int(value(rubric, "baselines", "random_draws"))
    rng = np.random.default_rng(int(value(rubric, "baselines", "seed")))
    refs = [it.references for it in items]
    fields = [it.fields for it in items]
    n, k = len(items), len(labels)
    block = max(1, min(draws, 2_000_000 // max(1, n)))  # draws at a time: a bounded (block, n) array
    picks = [rng.integers(0, k, size=(min(block, draws - s), n), dtype=np.int32) for s in range(0, draws, block)]
    majority: dict[str, dict] = {}
    random: dict[str, dict] = {}
    macro = None
    for m in names:
        res = evaluate(m, [labels[0]] * n, refs, fields)
        if res.n == 0:
            continue
        majority[m] = {kk: v for kk, v in res.to_dict().items() if kk in ("value", "ci", "n", "method",
                                                                        "higher_is_better")}
        if m in MACRO:
            if macro is None:
                macro = _random_macro(refs, labels, picks)
            vals = macro[MACRO[m]]
        else:  # a per-item score: the score of every label on every distinct reference set, then the draws' means
            groups: dict[tuple, int] = {}
            of_item = np.array([groups.setdefault(tuple(r), len(groups)) for r in refs])
            firsts = {g: i for i, g in reversed(list(enumerate(of_item.tolist())))}
            uniq = [refs[firsts[g]] for g in range(len(groups))]
            ufields = [fields[firsts[g]] for g in range(len(groups))]
            table = np.array([[s if s is not None else np.nan
                               for s in evaluate(m, [lab] * len(uniq), uniq, ufields).scores]
                              for lab in labels]).T[of_item]  # (items, labels)
            vals = np.concatenate([np.nanmean(table[np.arange(n)[None, :], p], axis=1) for p in picks])
        vals = vals[~np.isnan(vals)]
        if vals.size:
            random[m] = {"value": float(vals.mean()), "ci": [float(np.percentile(vals, 2.5)),
                                                             float(np.percentile(vals, 97.5))],
                         "n": n, "method": f"{draws} seeded uniform draws (2.5-97.5 percentile)",
                         "higher_is_better": get_metric(m).higher_is_better}
    out = []
    if majority:
        out.append({"candidate": MAJORITY, "items": n, "metrics": majority, "answer": labels[0],
                    "labels_from": source,
                    "what": f"'{labels[0][:60]}' for every item (the most common label of the {source} outputs)"})
    if random:
        out.append({"candidate": RANDOM, "items": n, "metrics": random, "labels": k, "labels_from": source,
                    "what": f"a uniform guess over the {k} labels of the {source} outputs (expected score)"})
    return out


def _random_macro(refs: list[list[str]], labels: list[str], picks: list) -> dict[str, np.ndarray]:
    """Macro precision, recall and F1 of every seeded draw (one confusion count per draw for all three)."""
    gold = [normalize_label(r[0]) for r in refs]
    classes = sorted(set(gold))
    index = {c: i for i, c in enumerate(classes)}
    c = len(classes)
    yt = np.array([index[g] for g in gold], dtype=np.int64)
    lab = np.array([index.get(normalize_label(x), c) for x in labels], dtype=np.int64)
    out: dict[str, list] = {"precision": [], "recall": [], "f1": []}
    for p in picks:
        tp, true_count, pred_count = batched_counts(yt[None, :], lab[p], c)
        present = true_count > 0
        count = np.maximum(present.sum(axis=1), 1)
        for which in out:
            per = _per_class(tp, true_count, pred_count, which)
            out[which].append(np.where(present, per, 0.0).sum(axis=1) / count)
    return {w: np.concatenate(v) for w, v in out.items()}


def baseline_values(baselines: Sequence[dict] | None, metric: str | None) -> dict[str, float]:
    """{"majority": x, "random": y}: the baselines' scores on ``metric`` (those stored)."""
    out = {}
    for b in baselines or []:
        v = ((b.get("metrics") or {}).get(metric) or {}).get("value")
        if v is not None:
            out[b["candidate"].split(":", 1)[1]] = v
    return out


def baseline_text(baselines: Sequence[dict] | None, metric: str | None) -> str | None:
    """``majority baseline 0.420, random baseline 0.200`` (None when there are none on ``metric``)."""
    vals = baseline_values(baselines, metric)
    if not vals:
        return None
    return ", ".join(f"{k} baseline {v:.3f}" for k, v in vals.items())
