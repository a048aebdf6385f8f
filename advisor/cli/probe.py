"""`advise probe`: cheap experiments on the team's own data before the full spend."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from advisor.cli.main import guard, project_arg
from advisor.cli.views import print_probe
from advisor.lock import writing
from advisor.probe import ProbeOptions, run_probe
from advisor.project import load_project


def _numbers(text: str | None, kind: type) -> list | None:
    """A comma-separated option (--shots 0,1,4 or --fractions 0.1,0.2) as numbers of ``kind``."""
    if text is None:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise click.BadParameter(f"expected {what} separated by commas, got {text!r}") from None


def probe_options(project, *, shots, fractions, max_items, seed, budget_minutes, method, no_fine_tune) -> ProbeOptions:
    return ProbeOptions.defaults(project.root, shots=_numbers(shots, int), fractions=_numbers(fractions, float),
                                 max_items=max_items, seed=seed, budget_minutes=budget_minutes, method=method,
                                 fine_tune=False if no_fine_tune else None)


probe_flags = [
    click.option("--shots", default=None, help="Few-shot k to try, comma-separated (0 = zero-shot; default rubrics/probe.yaml: 0,1,4,16)."),
    click.option("--fractions", default=None, help="Nested shares of train for the fine-tuning arms (default 0.025,0.05,0.1)."),
    click.option("--max-items", type=click.IntRange(1), default=None, help="Bound the dev split carved from train."),
    click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the split and the subsets."),
    click.option("--budget-minutes", type=float, default=None, help="No new arm starts once this much time is spent."),
    click.option("--probe-method", "method", default=None, help="The fine-tuning plugin to probe (default: the recommendation's)."),
    click.option("--no-fine-tune", is_flag=True, help="Prompting, RAG and knowledge arms only."),
]


def with_probe_flags(fn):
    for opt in reversed(probe_flags):
        fn = opt(fn)
    return fn


@click.command("probe")
@project_arg
@with_probe_flags
@click.option("--json", "as_json", is_flag=True, help="Print the probe as one JSON object.")
@guard
def probe_cmd(project_dir: Path, shots, fractions, max_items, seed, budget_minutes, method, no_fine_tune, as_json):
    """Measure the choice on PROJECT_DIR's own data before the full spend: prompting at several k, RAG and
    an oracle context, a closed-book knowledge probe, the recommended plugin on nested fractions of train
    with a learning curve; the measured verdict beside the rule-based one. Resumable: run it again after
    an interruption and finished arms are not recomputed."""
    project = load_project(project_dir)
    opts = probe_options(project, shots=shots, fractions=fractions, max_items=max_items, seed=seed,
                         budget_minutes=budget_minutes, method=method, no_fine_tune=no_fine_tune)
    # libraries print to stdout now and then (training, generation); stdout carries the result only
    with writing(project, "advise probe"), contextlib.redirect_stdout(sys.stderr):
        result = run_probe(project, opts, say=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        print_probe(result)
    sys.exit(0)
