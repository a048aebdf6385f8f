"""``advise gate``: fail a CI build when the tuned model misses its thresholds or regresses."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from advisor.cli.main import guard
from advisor.cli.views import print_gate_table
from advisor.errors import AdviseError
from advisor.files import check_output_path, write_output
from advisor.project import load_project
from advisor.store import Store
from evaluators.gate_output import junit_error, markdown, markdown_error
from evaluators.gate_output import junit_xml as to_junit
from evaluators.gates import check_project


def _safe(path: Path | None, option: str) -> Path | None:
    try:
        check_output_path(path, option)
    except AdviseError:
        return None
    return path


def _write_error(e: AdviseError, suite: str, junit_xml: Path | None, summary_md: Path | None) -> None:
    """On exit 2: one errored JUnit test case and a Markdown summary saying why (never a blank in CI);
    an output that cannot be written is left (the error itself is what the user sees)."""
    why = e.render()
    for path, text, opt in ((junit_xml, junit_error(why, suite), "--junit-xml"),
                            (summary_md, markdown_error(why, suite), "--summary-md")):
        if path is not None:
            try:
                write_output(path, text, opt)
            except (AdviseError, OSError):
                pass
    gh = os.environ.get("GITHUB_STEP_SUMMARY")
    if gh:
        try:
            with open(gh, "a", encoding="utf-8") as fh:
                fh.write(markdown_error(why, suite))
        except OSError:
            pass


@click.command("gate")
@click.argument("project_dir", type=click.Path(path_type=Path), default=".")
@click.option("--candidate", help="Candidate to gate (default: the newest tuned candidate in the results).")
@click.option("--baseline", help="Default baseline of regression, canary and item gates (default: base:zero-shot).")
@click.option("--eval", "run_eval_first", is_flag=True,
              help="Evaluate first where the store holds no results for the current data and model.")
@click.option("--junit-xml", type=click.Path(path_type=Path), help="Write JUnit XML (one test case per gate).")
@click.option("--summary-md", type=click.Path(path_type=Path), help="Write a Markdown summary "
              "(also appended to $GITHUB_STEP_SUMMARY when set).")
@click.option("--force", is_flag=True, help="Overwrite an existing --junit-xml/--summary-md file advise did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print the gate results as JSON on stdout.")
@guard
def gate_cmd(project_dir: Path, candidate: str | None, baseline: str | None, run_eval_first: bool,
             junit_xml: Path | None, summary_md: Path | None, force: bool, as_json: bool):
    """Check the gates of PROJECT_DIR's project.yaml against its stored eval results.

    \b
    Exit codes: 0 every gate passed, 1 a gate failed, 2 usage or input error
    (unknown metric, missing baseline or results, unreadable project or store).
    """

    check_output_path(junit_xml, "--junit-xml", force=True)  # a path that can never be written: before loading
    check_output_path(summary_md, "--summary-md", force=True)
    try:
        project = load_project(project_dir)
    except AdviseError as e:  # not knowing the project's inputs: only a new file or one advise wrote, even with --force
        _write_error(e, Path(project_dir).resolve().name or "project", _safe(junit_xml, "--junit-xml"),
                     _safe(summary_md, "--summary-md"))
        raise
    check_output_path(junit_xml, "--junit-xml", project=project, force=force)
    check_output_path(summary_md, "--summary-md", project=project, force=force)
    try:
        if not project.store_dir.joinpath("store.sqlite").is_file() and not run_eval_first:
            raise AdviseError("no run store: run advise eval first, or advise gate --eval", file=project.store_dir)
        with Store.for_project(project) as store:
            result = check_project(project, store, candidate=candidate, baseline=baseline,
                                   evaluate_first=run_eval_first, progress=sys.stderr.isatty(),
                                   command=" ".join(sys.argv))
    except AdviseError as e:  # exit 2: CI still gets a test case and a summary saying why
        _write_error(e, project.name, junit_xml, summary_md)
        raise

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
        print_gate_table(result, suite)
    sys.exit(0 if result["status"] == "pass" else 1)

