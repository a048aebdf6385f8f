"""``advise gate``: fail a CI build when the tuned model misses its thresholds or regresses."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from advisor.cli.main import guard
from advisor.data.dataset import item_hash, load_project_data
from advisor.errors import AdviseError
from advisor.files import check_output_path, write_output
from advisor.project import load_project
from advisor.store import Store
from evaluators.gate_output import junit_xml as to_junit
from evaluators.gate_output import markdown, print_table
from evaluators.gates import evaluate_gates, load_views, parse_gates
from evaluators.runner import make_items, run_eval, stored_results


@click.command("gate")
@click.argument("project_dir", type=click.Path(path_type=Path), default=".")
@click.option("--candidate", help="Candidate to gate (default: the newest tuned candidate in the results).")
@click.option("--baseline", help="Default baseline of regression, canary and item gates (default: base:zero-shot).")
@click.option("--eval", "run_eval_first", is_flag=True,
              help="Evaluate first where the store holds no results for the current data and model.")
@click.option("--junit-xml", type=click.Path(path_type=Path), help="Write JUnit XML (one test case per gate).")
@click.option("--summary-md", type=click.Path(path_type=Path), help="Write a Markdown summary "
              "(also appended to $GITHUB_STEP_SUMMARY when set).")
@click.option("--json", "as_json", is_flag=True, help="Print the gate results as JSON on stdout.")
@guard
def gate_cmd(project_dir: Path, candidate: str | None, baseline: str | None, run_eval_first: bool,
             junit_xml: Path | None, summary_md: Path | None, as_json: bool):
    """Check the gates of PROJECT_DIR's project.yaml against its stored eval results.

    \b
    Exit codes: 0 every gate passed, 1 a gate failed, 2 usage or input error
    (unknown metric, missing baseline or results, unreadable project or store).
    """

    check_output_path(junit_xml, "--junit-xml")
    check_output_path(summary_md, "--summary-md")
    project = load_project(project_dir)
    gates = parse_gates(project.eval.gates, file=str(project.project_file), line_of=project.key_line)
    if not gates:
        raise AdviseError("no gates: add eval.gates to project.yaml (see docs/ci.md)", file=project.project_file)
    if not project.store_dir.joinpath("store.sqlite").is_file() and not run_eval_first:
        raise AdviseError("no run store: run advise eval first, or advise gate --eval", file=project.store_dir)
    store = Store.for_project(project)
    try:

        summary = stored_results(project, store)
        if summary is None:
            if not run_eval_first:
                newest = store.latest_run("eval_summary")
                why = ""
                if newest and newest.get("result"):

                    n_now = len(make_items(load_project_data(project).eval, project.eval.max_items))
                    n_then = newest["result"].get("items")
                    why = (f" (the newest stored eval covers {n_then} items, a --max-items run, and the eval set "
                           f"has {n_now}: gates need the whole set)" if n_then != n_now else
                           " (the stored evals are of other eval data or another base model)")
                raise AdviseError(f"no stored eval results for the current eval data{why}: run advise eval, or "
                                  "advise gate --eval", file=store.path)
            summary = run_eval(project, store=store, progress=sys.stderr.isatty())
        views = load_views(store, summary, _tags(project))
        for opt, name in (("--baseline", baseline), ("--candidate", candidate)):
            if name is not None and name not in views:
                raise AdviseError(f"{opt} {name}: no stored eval results for it (have: {', '.join(sorted(views))})",
                                  file=store.path)
        if candidate is None:
            tuned = [n for n in views if n.startswith("tuned:")]
            if not tuned:
                raise AdviseError("the stored eval results have no tuned candidate: train first, or name one with "
                                  f"--candidate (have: {', '.join(sorted(views))})", file=store.path)
            candidate = tuned[0]
        result = evaluate_gates(gates, views, candidate, baseline)
        gate_run = store.start_run("gate", name=candidate, config={"gates": project.eval.gates, "baseline": baseline},
                                   inputs_hash=summary.get("data", {}).get("hash"), command=" ".join(sys.argv))
        store.finish_run(gate_run, "done", result)
    finally:
        store.close()

    suite = project.name
    if junit_xml:
        write_output(junit_xml, to_junit(result, suite), "--junit-xml")
    md = markdown(result, suite)
    if summary_md:
        write_output(summary_md, md, "--summary-md")
    gh = os.environ.get("GITHUB_STEP_SUMMARY")
    if gh:
        with open(gh, "a", encoding="utf-8") as fh:
            fh.write(md)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        print_table(result, suite)
    sys.exit(0 if result["status"] == "pass" else 1)


def _tags(project) -> dict[str, list[str]]:
    """item hash -> tags (an eval record's ``tags`` key), for item-level gates."""

    data = load_project_data(project)
    out = {}
    for rec in data.eval:
        t = (rec.extra or {}).get("tags")
        if t:
            out[item_hash(rec)] = [str(x) for x in (t if isinstance(t, list) else [t])]
    return out
