"""``advise run`` (the whole journey) and ``advise report`` (the HTML report from the run store)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from advisor.assess.estimate.compute import duration
from advisor.cli.config_check import config_warnings
from advisor.cli.main import guard
from advisor.files import check_output_path
from advisor.lock import writing
from advisor.pipeline import STAGES, report_only, run_pipeline
from advisor.probe import ProbeOptions, run_probe
from advisor.project import load_project

EXIT_BLOCKED = 1  # the assessment found blockers: nothing was evaluated or trained (the report says why)


@click.command("run")
@click.argument("project_dir", type=click.Path(path_type=Path), default=".")
@click.option("--method", default=None, help="Override the recommended method (lora, full, rlhf, or a plugin name).")
@click.option("--until", type=click.Choice(STAGES), default=None, help="Stop after this stage.")
@click.option("--dry-run", is_flag=True, help="Show the plan and its cost estimate; run nothing.")
@click.option("--ignore-blockers", is_flag=True, help="Go on although the assessment found blockers.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the report here (default PROJECT_DIR/.advise/report.html).")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file advise did not write.")
@click.option("--probe", is_flag=True, help="First measure the choice on a dev split of train (advise probe) and "
                                          "train the measured winner when the probe decides.")
@click.option("--json", "as_json", is_flag=True, help="Print the pipeline result as JSON.")
@guard
def run_cmd(project_dir: Path, method, until, dry_run, ignore_blockers, out, force, probe, as_json):
    """Assess, evaluate the baselines, train the recommended method, evaluate the tuned model,
    compare and write the HTML report. Stages whose stored results are still valid are skipped.

    Exit status 0 when the run did what was asked, 1 when it stopped on the assessment's blockers
    (the report says why; --ignore-blockers goes on), 2 on bad input."""

    project = load_project(project_dir)
    check_output_path(out, "the report (--out)", project=project, force=force)
    if dry_run:  # typos under train: and in gates, before the plan (and any train or gate) refuses them
        for w in config_warnings(project):
            click.echo(f"advise: warning: {w}", err=True)
    with writing(project, "advise run"):
        measured = None
        if probe and not dry_run:
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries the result only
                measured = run_probe(project, ProbeOptions.defaults(project.root), say=lambda m: click.echo(m, err=True))
            method = method or _measured_method(measured)
        res = run_pipeline(project_dir, method=method, until=until, dry_run=dry_run,
                           ignore_blockers=ignore_blockers, out=out)
    if measured is not None:
        v = measured["verdict"]
        res.notes.insert(0, f"probe: measured verdict {v.get('method')} ({v.get('status')}); "
                            + (f"training {method} as measured" if method and v.get("status") == "decided"
                               else "the rule-based verdict stands"))
    if as_json:
        click.echo(json.dumps({**res.to_dict(), **({"probe": measured} if measured else {})}, indent=2, default=str))
    elif dry_run:
        p = res.plan
        e = p["estimate"]
        click.echo(f"plan: {' -> '.join(p['stages'])} (method {p['method']})")
        rented = e.get("cpu_hours") is not None  # no GPU: GPU figures are what renting the reference GPU takes
        for k, v in e.items():
            if v is not None:
                label = f"{k} (if a GPU were rented)" if rented and k in ("gpu_hours", "wall_hours") else k
                click.echo(f"  {label}: {_plan_value(k, v)}")
        for n in res.notes:
            click.echo(f"note: {n}")
        for b in res.blockers:
            click.echo(f"blocker: {b}")
    else:
        for s, what in res.stages.items():
            click.echo(f"{s:<9} {what}")
        for n in res.notes:
            click.echo(f"note: {n}")
        for b in res.blockers:
            click.echo(f"blocker: {b}")
        _print_outcome(res.outcome)
    if res.status == "blocked":
        sys.exit(EXIT_BLOCKED)


def _plan_value(key: str, v) -> str:
    """One figure of the dry-run plan with its unit and separators (not a raw float)."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if not isinstance(v, (int, float)):
        return str(v)
    if key == "train_tokens":
        return f"{v:,.0f} tokens"
    if key == "cost_usd":
        return f"${v:,.2f}" if v < 100 else f"${v:,.0f}"
    if key == "memory_gb":
        return f"{v:,.1f} GB"
    if key in ("gpu_hours", "wall_hours", "cpu_hours"):
        unit = "GPU-hours" if key == "gpu_hours" else "hours"
        if not v:
            return f"0 {unit}"
        return (f"{v:,.2f} {unit}" if v >= 0.01 else f"under 0.01 {unit}") + f" ({duration(v)})"
    return f"{v:,}"


def _measured_method(probe: dict) -> str | None:
    """What `advise run --probe` trains: the probe's plugin when fine-tuning won decisively, the measured
    prompting or RAG method when they did (no training), else None (the rule-based verdict stands)."""
    v = probe.get("verdict") or {}
    if v.get("status") != "decided" or not v.get("method"):
        return None
    if v["method"] in ("prompting", "rag"):
        return v["method"]
    return probe.get("plugin") or v["method"]


def _ci(c: dict) -> str:
    if c.get("value") is None:
        return "–"
    ci = c.get("ci")
    return f"{c['value']:,.3f}" + (f" [{ci[0]:,.3f}, {ci[1]:,.3f}]" if ci else "")


def _print_outcome(o: dict) -> None:
    """The answer, last: the verdict, each candidate's primary metric (95% interval), the gates, the
    decision and the report's path."""
    v = o["verdict"]
    click.echo("outcome:")
    conf = f", confidence {v['confidence']:.2f}" if v.get("confidence") is not None else ""
    click.echo(f"  verdict   {v['method']}{' (' + v['variant'] + ')' if v.get('variant') else ''}{conf}")
    if o["candidates"]:
        width = max(len(c["candidate"]) for c in o["candidates"])
        click.echo(f"  {o['candidates'][0]['metric']} (95% interval):")
        for c in o["candidates"]:
            click.echo(f"    {c['candidate']:<{width}}  {_ci(c)}")
    else:
        click.echo("  candidates: none evaluated")
    g = o["gates"]
    if g["gates"]:
        click.echo(f"  gates     {g['status']}: " + "; ".join(f"{x['gate']} {x['status']}" for x in g["gates"]))
    else:
        click.echo(f"  gates     {g['status']}{' (' + g['why'] + ')' if g.get('why') else ''}")
    if o.get("decision"):
        click.echo(f"  decision  {o['decision']['outcome'].upper()}: {o['decision']['sentence']}")
    click.echo(f"  report    {o['report']}")


@click.command("report")
@click.argument("project_dir", type=click.Path(path_type=Path), default=".")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the report here (default PROJECT_DIR/.advise/report.html).")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file advise did not write.")
@guard
def report_cmd(project_dir: Path, out, force):
    """Render the HTML report of PROJECT_DIR from what the run store holds (no model calls)."""

    check_output_path(out, "the report (--out)", project=load_project(project_dir), force=force)
    click.echo(report_only(project_dir, out))
