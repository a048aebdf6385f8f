"""Clustered vs independent-items intervals on a real eval set: sample_projects/covid-qa-docs (58 eval
questions about 12 papers, the record's ``source`` names the paper).

Two answer sets produced outside advise, scored with ``advise eval --predictions``:

* ``lexical``: the sentence of the question's own paper that shares the most words with the question;
* ``lead``: the first sentence of that paper.

The project is copied to a temporary directory without a base model and with ``eval.cluster_field:
source``. Prints each candidate's token F1 with both intervals, the paired difference with both, and the
number of comparisons the eval made. Run: ``PYTHONPATH=. python bench/eval_clustered.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_projects" / "covid-qa-docs"
WORD = re.compile(r"\w+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 20]


def words(text: str) -> set[str]:
    return {w.casefold() for w in WORD.findall(text) if len(w) > 3}


def main() -> None:
    from advisor.cli.main import main as cli

    tmp = Path(tempfile.mkdtemp())
    root = tmp / "covid"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg.pop("base_model", None)
    cfg["eval"] = {"cluster_field": "source"}
    (root / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    recs = [json.loads(x) for x in (root / "data" / "eval.jsonl").read_text().splitlines() if x.strip()]
    lexical, lead = [], []
    for r in recs:
        q = next(m["content"] for m in r["messages"] if m["role"] == "user")
        sents = sentences((root / r["source"]).read_text(encoding="utf-8"))
        best = max(sents, key=lambda s: len(words(s) & words(q)))
        lexical.append({"id": r["id"], "output": best})
        lead.append({"id": r["id"], "output": sents[0]})
    for name, rows in (("lexical", lexical), ("lead", lead)):
        (tmp / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    r = CliRunner().invoke(cli, ["eval", str(root), "--canary", "none", "--json",
                                 "--predictions", str(tmp / "lead.jsonl"), "--name", "lead",
                                 "--predictions", str(tmp / "lexical.jsonl"), "--name", "lexical"])
    if r.exit_code:
        sys.exit(r.stderr)
    res = json.loads(r.stdout)
    m = res["primary_metric"]
    cl = res["clusters"]
    print(f"{res['items']} items, clustered by {cl['field']}: {cl['clusters']} clusters; metric {m}; "
          f"{res['multiplicity']['tests']} paired tests ({res['multiplicity']['family']} adjusted)")
    for run in res["runs"]:
        x = run["metrics"][m]
        c = x["clustered"]
        print(f"  {run['candidate']}: {x['value']:.3f}  independent [{x['ci'][0]:.3f}, {x['ci'][1]:.3f}] "
              f"(width {x['ci'][1] - x['ci'][0]:.3f})  clustered [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}] "
              f"(width {c['ci'][1] - c['ci'][0]:.3f})")
    for comp in res["comparisons"]:
        d = comp["metrics"][m]
        c = d["clustered"]
        print(f"  {comp['a']} -> {comp['b']}: {d['delta']:+.3f}  independent [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] "
              f"p {d['p_value']:.3g}  clustered [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] p {c['p_value']:.3g}")
        for name, e in comp["metrics"].items():
            if e.get("adjusted"):
                print(f"    {name}: p {e['p_value']:.3g}, BH {e['p_bh']:.3g}, Holm {e['p_holm']:.3g}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
