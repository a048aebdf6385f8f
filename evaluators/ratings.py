"""Human evaluation: blinded rating sheets of stored eval answers, filled sheets from several raters read
back, and what they say: per criterion and candidate the mean rating with its 95% interval, paired
differences between candidates, inter-rater agreement (Krippendorff's alpha through the
``krippendorff`` package: ordinal for a numeric scale, nominal for pass/fail) and, when an LLM judge
scored the same answers, how well the judge agrees with the raters (Spearman's rho).

In the run store: each exported sheet is a run of kind ``ratings_sheet`` (its key: which candidate wrote
each row, never written to the sheet); each imported file a run of kind ``ratings``. A rater's rating of
a row imported again later replaces the earlier one. See docs/human-ratings.md.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import random
import string
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from advisor.data.dataset import load_project_data
from advisor.errors import AdviseError
from advisor.project import Project
from advisor.rubric import load_rubric, value
from advisor.store import Store
from evaluators.items import make_items, question
from evaluators.ratings_sheet import columns, parse_cell, read_rows, render_sheet, sheet_format, write_new
from evaluators.results import stored_results
from evaluators.stats import compare, mean_ci

SHEET_KIND, RATINGS_KIND = "ratings_sheet", "ratings"
GATE_PREFIX = "human."
_CODE = string.ascii_uppercase + string.digits


def _sha(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:16]


def _code(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice(_CODE) for _ in range(n))


# --------------------------------------------------------------------------------------------- export


def _per_item(store: Store, run: dict) -> list[dict]:
    stored = store.get_run(run.get("run_id")) if run.get("run_id") else None
    rows = ((stored or {}).get("result") or {}).get("per_item")
    if rows is None:
        raise AdviseError(f"the stored eval run of {run['candidate']} has no per-item answers; re-run advise eval",
                          file=store.path)
    return rows


def _select(names: list[str], wanted: Sequence[str] | None) -> list[str]:
    if not wanted:
        return names
    out = [n for n in names if any(n == w or fnmatch.fnmatchcase(n, w) for w in wanted)]
    missing = [w for w in wanted if not any(n == w or fnmatch.fnmatchcase(n, w) for n in names)]
    if missing:
        raise AdviseError(f"--candidate {missing[0]}: no stored eval results for it (have: {', '.join(names)})")
    return out


def _no_eval(project: Project, store: Store, max_items: int | None) -> AdviseError:
    newest = store.latest_run("eval_summary")
    why = ""
    if newest and newest.get("result"):
        n_then = newest["result"].get("items")
        n_now = len(make_items(load_project_data(project).eval, max_items or project.eval.max_items))
        why = (f" (the newest stored eval covers {n_then} items and this export {n_now}: give the eval's "
               f"--max-items {n_then} with --export-ratings)" if n_then != n_now
               else " (the stored evals are of other eval data or another base model)")
    return AdviseError(f"no stored eval results for the current eval data{why}: run advise eval first, then "
                       "export the rating sheet", file=store.path)


def export_sheet(project: Project, store: Store, path: Path, *, n_items: int | None = None, seed: int | None = None,
                 candidates: Sequence[str] | None = None, max_items: int | None = None,
                 command: str | None = None) -> dict:
    """Write a blinded rating sheet of ``n_items`` eval items (sampled with ``seed``) x the candidates of the
    stored eval results (of an eval of ``max_items`` items, as given to it) to ``path``, and keep its key in
    the store. Returns the sheet's stored document (without the key)."""
    spec = project.ratings
    n_items = spec.items if n_items is None else n_items
    seed = spec.seed if seed is None else seed
    fmt = sheet_format(path)
    if Path(path).exists():
        raise AdviseError("--export-ratings: the file exists (a filled sheet may be in it); give a new file name",
                          file=path)
    summary = stored_results(project, store, max_items)
    if not summary or not summary.get("runs"):
        raise _no_eval(project, store, max_items)
    runs = {r["candidate"]: r for r in summary["runs"]}
    names = _select(list(runs), candidates)
    answers = {name: {row["item"]: row for row in _per_item(store, runs[name])} for name in names}
    items = make_items(load_project_data(project).eval, max_items or project.eval.max_items)
    usable = [it for it in items
              if all((answers[c].get(it.hash) or {}).get("output") is not None
                     and not (answers[c].get(it.hash) or {}).get("error") for c in names)]
    if not usable:
        raise AdviseError("no eval item has an answer from every candidate chosen; re-run advise eval",
                          file=store.path)
    picked = random.Random(seed).sample(usable, min(n_items, len(usable)))
    # the answer order and the row codes are drawn fresh (not from the seed): the seed in project.yaml
    # must not reveal which candidate is which
    rng = random.SystemRandom()
    sheet_id = f"S{_code(rng, 7)}"
    criteria = spec.criteria_map()
    rows, key, used = [], {}, set()
    for n, it in enumerate(picked, 1):
        order = list(names)
        rng.shuffle(order)
        for pos, cand in enumerate(order):
            code = _code(rng)
            while code in used:
                code = _code(rng)
            used.add(code)
            out = answers[cand][it.hash]["output"]
            rows.append({"sheet": sheet_id, "row": code, "item": n, "answer": _CODE[pos],
                         "question": question(it.record), "reference": it.references[0] if it.references else "",
                         "response": out})
            key[code] = {"item": it.hash, "line": it.line, "n": n, "candidate": cand, "output_sha": _sha(out)}
    doc = {"sheet": sheet_id, "file": str(path), "format": fmt, "scale": spec.scale, "criteria": criteria,
           "seed": seed, "items": len(picked), "candidates": names, "summary_run_id": summary.get("summary_run_id"),
           "runs": {c: runs[c].get("run_id") for c in names}, "rows": len(rows)}
    text = render_sheet(rows, columns(list(criteria), spec.show_reference), fmt)
    rid = store.start_run(SHEET_KIND, name=sheet_id, config={k: doc[k] for k in ("scale", "criteria", "seed", "items")},
                          command=command)
    try:
        write_new(Path(path), text, "--export-ratings")
    except BaseException as e:
        store.finish_run(rid, "failed", error=str(e))
        raise
    store.finish_run(rid, "done", {**doc, "key": key})
    return doc


# --------------------------------------------------------------------------------------------- import


def _sheet(store: Store, sheet_id: str) -> dict | None:
    run = store.latest_run(SHEET_KIND, name=sheet_id)
    return (run or {}).get("result")


def _read_one(store: Store, path: Path, sheets: dict[str, dict]) -> dict:
    """A filled sheet checked cell by cell: {"sheet", "file", "ratings": [[row, rater, {criterion: value}]]}."""
    rows = read_rows(path)
    if not rows:
        raise AdviseError("the sheet has no rows", file=path)
    first = rows[0]
    for col in ("sheet", "row", "rater"):
        if col not in first.values:
            raise AdviseError(f"the sheet has no '{col}' column (export one with advise eval --export-ratings)",
                              file=path, line=1 if sheet_format(path) == "csv" else first.line)
    sheet_id = str(first.values.get("sheet") or "").strip()
    if sheet_id not in sheets:
        doc = _sheet(store, sheet_id) if sheet_id else None
        if doc is None:
            raise AdviseError(f"sheet '{sheet_id}' is not in this project's run store (exported from another "
                              "project, or its store was removed?)", file=path, line=first.line)
        sheets[sheet_id] = doc
    doc = sheets[sheet_id]
    criteria = list(doc["criteria"])
    missing = [c for c in criteria if c not in first.values]
    if missing:
        raise AdviseError(f"the sheet has no '{missing[0]}' column (its criteria: {', '.join(criteria)})", file=path,
                          line=1 if sheet_format(path) == "csv" else first.line)
    out, seen = [], {}
    for r in rows:
        v = r.values
        if str(v.get("sheet") or "").strip() != sheet_id:
            raise AdviseError(f"row of sheet '{v.get('sheet')}' in a file of sheet '{sheet_id}' (one sheet per file)",
                              file=path, line=r.line)
        code = str(v.get("row") or "").strip()
        if code not in doc["key"]:
            raise AdviseError(f"row '{code}' is not a row of sheet {sheet_id}", file=path, line=r.line)
        values = {}
        for c in criteria:
            try:
                x = parse_cell(v.get(c), doc["scale"])
            except ValueError as e:
                raise AdviseError(f"{c}: {str(v.get(c)).strip()!r} is not on the {doc['scale']} scale ({e})",
                                  file=path, line=r.line) from None
            if x is not None:
                values[c] = x
        if not values:
            continue
        rater = str(v.get("rater") or "").strip()
        if not rater:
            raise AdviseError("the row is rated and its rater cell is empty (each rater writes a name)", file=path,
                              line=r.line)
        if (rater, code) in seen:
            raise AdviseError(f"rater '{rater}' rated row {code} twice (first at line {seen[rater, code]})", file=path,
                              line=r.line)
        seen[rater, code] = r.line
        out.append([code, rater, values])
    if not out:
        raise AdviseError(f"no rating in the sheet: fill the {', '.join(criteria)} columns and the rater column",
                          file=path)
    return {"sheet": sheet_id, "file": str(path), "ratings": out, "raters": sorted({r for _, r, _ in out})}


def import_sheets(project: Project, store: Store, paths: Sequence[Path], *, command: str | None = None) -> dict:
    """Read filled sheets (every file checked before anything is stored: a file with one bad cell stores
    nothing), store their ratings and return :func:`analyse` of the sheet they belong to."""
    sheets: dict[str, dict] = {}
    done, where = [], {}
    for p in paths:
        res = _read_one(store, Path(p), sheets)
        for code, rater, _ in res["ratings"]:
            prev = where.get((res["sheet"], rater, code))
            if prev:
                raise AdviseError(f"rater '{rater}' rated row {code} in {prev} too; give each rater's sheet once",
                                  file=p)
            where[res["sheet"], rater, code] = str(p)
        done.append(res)
    for res in done:
        rid = store.start_run(RATINGS_KIND, name=res["sheet"], command=command,
                              config={"file": res["file"], "raters": res["raters"]})
        store.finish_run(rid, "done", res)
    last = done[-1]["sheet"]
    return analyse(project, store, last)


# --------------------------------------------------------------------------------------------- analysis


def _ratings(store: Store, sheet_id: str) -> dict[tuple[str, str], dict]:
    """(row, rater) -> {criterion: value}; a later import of the same rater and row replaces an earlier one."""
    out: dict[tuple[str, str], dict] = {}
    for run in store.find_runs(RATINGS_KIND, name=sheet_id, limit=10_000):  # newest first
        for code, rater, values in (run.get("result") or {}).get("ratings") or []:
            out.setdefault((code, rater), values)
    return out


def latest_sheet(store: Store) -> str | None:
    """The sheet of the newest imported ratings, or None."""
    run = store.latest_run(RATINGS_KIND)
    return (run or {}).get("name")


def alpha(data: Sequence[Sequence[float]], level: str) -> float | None:
    """Krippendorff's alpha of a raters x units table (NaN: not rated), at ``level`` (nominal, ordinal,
    interval, ratio), through the ``krippendorff`` package; None when undefined (fewer than two raters
    on any unit, or a single value everywhere)."""
    import krippendorff

    arr = np.asarray(data, dtype=float)
    if arr.ndim != 2 or arr.shape[0] < 2 or not (np.isfinite(arr).sum(axis=0) >= 2).any():
        return None
    values = np.unique(arr[np.isfinite(arr)])
    if values.size < 2:
        return None
    try:
        a = float(krippendorff.alpha(reliability_data=arr, level_of_measurement=level,
                                     value_domain=None if level != "ordinal" else values))
    except (ValueError, ZeroDivisionError):
        return None
    return a if math.isfinite(a) else None


def _stored_answers(store: Store, doc: dict, summary: dict | None):
    """(judge scores, current answers): (candidate, item hash, answer hash) -> judge_score from the sheet's
    eval runs and the current ones; (candidate, item hash) -> answer hash in the current stored eval."""
    judge: dict[tuple[str, str, str], float] = {}
    current: dict[tuple[str, str], str] = {}
    now = [(r["candidate"], r.get("run_id")) for r in (summary or {}).get("runs") or []]
    for cand, rid in list((doc.get("runs") or {}).items()) + now:
        run = store.get_run(rid) if rid else None
        for row in ((run or {}).get("result") or {}).get("per_item") or []:
            sha = _sha(row.get("output"))
            if (cand, rid) in now and row.get("output") is not None:
                current[cand, row["item"]] = sha
            s = (row.get("scores") or {}).get("judge_score")
            if s is not None:
                judge.setdefault((cand, row["item"], sha), float(s))
    return judge, current


def _spearman(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Spearman's rho with scipy's p-value and the Fisher-z interval with Bonett & Wright's (2000) variance
    for Spearman's rho, (1 + rho^2 / 2) / (n - 3)."""
    from scipy import stats

    n = int(x.size)
    out: dict[str, Any] = {"rho": None, "ci": None, "p_value": None, "n": n, "method": "spearman",
                           "ci_method": "fisher_z_bonett_wright"}
    if n < 4 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return out
    res = stats.spearmanr(x, y)
    rho = float(res.statistic)
    out["rho"], out["p_value"] = rho, float(res.pvalue)
    z = float(stats.norm.ppf(0.5 + level / 2))
    half = z * math.sqrt((1 + rho * rho / 2) / (n - 3))
    centre = math.atanh(max(-0.999999, min(0.999999, rho)))
    out["ci"] = [math.tanh(centre - half), math.tanh(centre + half)]
    return out


def analyse(project: Project, store: Store, sheet_id: str | None = None) -> dict | None:
    """What the ratings of a sheet (default: the newest rated one) say; None when none are stored."""
    sheet_id = sheet_id or latest_sheet(store)
    doc = _sheet(store, sheet_id) if sheet_id else None
    if doc is None:
        return None
    ratings = _ratings(store, sheet_id)
    key, criteria, scale = doc["key"], list(doc["criteria"]), doc["scale"]
    cands = list(doc["candidates"])
    raters = sorted({r for _, r in ratings})
    cand_pos = {c: i for i, c in enumerate(cands)}
    units = sorted(key, key=lambda c: (key[c]["n"], cand_pos[key[c]["candidate"]]))  # (item, candidate) rows
    unit_pos = {c: j for j, c in enumerate(units)}
    rater_pos = {r: i for i, r in enumerate(raters)}
    item_n = {key[c]["item"]: key[c]["n"] for c in units}
    items = sorted(item_n, key=item_n.get)
    try:
        summary = stored_results(project, store)
    except AdviseError:
        summary = None
    judge, current = _stored_answers(store, doc, summary)
    stale = {c: sum(1 for code in units if key[code]["candidate"] == c
                    and current.get((c, key[code]["item"]), key[code]["output_sha"]) != key[code]["output_sha"])
             for c in cands}
    level = "nominal" if scale == "pass/fail" else "ordinal"
    out: dict[str, Any] = {"sheet": sheet_id, "scale": scale, "criteria": doc["criteria"], "candidates": cands,
                           "raters": raters, "items": len(items), "rows": len(units), "ratings": len(ratings),
                           "agreement_level": level, "by_criterion": {}, "warnings": [],
                           "thresholds": {k: _threshold(k) for k in ("reliable", "tentative")}}
    out["stale"] = {c: n for c, n in stale.items() if n}
    for c, n in out["stale"].items():
        out["warnings"].append(f"{c}: {n} of the rated answers are no longer its answers in the current stored eval "
                               "(retrained, or another prompt?): its ratings are of an older model; export a new "
                               "sheet")
    if len(raters) < 2:
        out["warnings"].append("one rater only: inter-rater agreement needs at least two (each fills a copy of the "
                               "sheet)")
    for crit in criteria:
        table = np.full((len(raters), len(units)), np.nan)
        for (code, rater), values in ratings.items():
            if crit in values and code in key:
                table[rater_pos[rater], unit_pos[code]] = values[crit]
        unit_mean = _nanmean(table)  # each row's mean over its raters
        per: dict[str, dict[str, float | None]] = {c: {h: None for h in items} for c in cands}
        for j, code in enumerate(units):
            if math.isfinite(unit_mean[j]):
                per[key[code]["candidate"]][key[code]["item"]] = float(unit_mean[j])
        block: dict[str, Any] = {"candidates": {}, "comparisons": [], "agreement": None, "judge": None}
        for c in cands:
            vals = [v for v in per[c].values() if v is not None]
            m = mean_ci(vals)
            n_ratings = int(sum(np.isfinite(table[:, j]).sum() for j, code in enumerate(units)
                                if key[code]["candidate"] == c))
            block["candidates"][c] = {"value": m["value"], "ci": m["ci"], "n": m["n"], "method": m["method"],
                                      "ratings": n_ratings}
        for a, b in combinations(cands, 2):
            xa = [per[a][h] for h in items]
            xb = [per[b][h] for h in items]
            cmp = compare(crit, [np.nan if v is None else v for v in xa], [np.nan if v is None else v for v in xb])
            block["comparisons"].append({"a": a, "b": b, **{k: cmp[k] for k in ("delta", "ci", "p_value", "test", "n",
                                                                             "wins", "losses", "ties")}})
        pairable = int((np.isfinite(table).sum(axis=0) >= 2).sum())
        a = alpha(table, level)
        block["agreement"] = {"alpha": a, "level": level, "units": pairable, "raters": len(raters),
                              "reading": _reading(a)}
        if block["agreement"]["reading"] == "unreliable":
            out["warnings"].append(f"{crit}: the raters disagree (Krippendorff's alpha {a:.2f}, below "
                                   f"{_threshold('tentative'):.3f}): its mean ratings are not to be relied on")
        pairs = [(judge.get((key[code]["candidate"], key[code]["item"], key[code]["output_sha"])), unit_mean[j])
                 for j, code in enumerate(units)]
        pairs = [(j, h) for j, h in pairs if j is not None and math.isfinite(h)]
        if pairs:
            block["judge"] = _spearman(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
        out["by_criterion"][crit] = block
    return out


def _threshold(name: str) -> float:
    return float(value(load_rubric("ratings"), "agreement", name))


def _reading(a: float | None) -> str | None:
    """reliable, tentative or unreliable (rubrics/ratings.yaml); None when alpha is undefined."""
    if a is None:
        return None
    return "reliable" if a >= _threshold("reliable") else "tentative" if a >= _threshold("tentative") else "unreliable"


def _nanmean(table: np.ndarray) -> np.ndarray:
    n = np.isfinite(table).sum(axis=0)
    s = np.where(np.isfinite(table), table, 0.0).sum(axis=0)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


# --------------------------------------------------------------------------------------------- gates


def gate_metrics(project: Project, store: Store) -> dict[str, dict[str, Any]] | None:
    """For gates (``human.CRITERION``): candidate -> {"metrics": {"human.c": {value, ci, n}}, "scores":
    {"human.c": {item hash: mean rating}}}, from the newest rated sheet; None when no ratings are stored."""
    res = analyse(project, store)
    if res is None:
        return None
    sheet = _sheet(store, res["sheet"])
    key = sheet["key"]
    ratings = _ratings(store, res["sheet"])
    out: dict[str, dict[str, Any]] = {c: {"metrics": {}, "scores": {}} for c in res["candidates"]}
    for crit, block in res["by_criterion"].items():
        name = GATE_PREFIX + crit
        for c, m in block["candidates"].items():
            out[c]["metrics"][name] = {"value": m["value"], "ci": m["ci"], "n": m["n"], "sheet": res["sheet"],
                                       "agreement": block["agreement"], "stale": res["stale"].get(c, 0)}
        sums: dict[tuple[str, str], list[float]] = {}
        for (code, _), values in ratings.items():
            if crit in values and code in key:
                sums.setdefault((key[code]["candidate"], key[code]["item"]), []).append(values[crit])
        for (c, item), vs in sums.items():
            out[c]["scores"].setdefault(name, {})[item] = float(sum(vs) / len(vs))
    return out
