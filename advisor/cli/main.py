"""The ``advise`` command line. Heavy libraries are imported inside the commands that need them."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from advisor import __version__

EXIT_USAGE = 2


def guard(fn):
    """Turn user errors into one line on stderr and exit 2; never a traceback for bad input. While the
    command runs, stdout and stderr redact known secrets (advisor.redact): a key echoed by a server, a
    URL's password or a key pasted as a variable name is printed as ***."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from advisor.errors import AdviseError
        from advisor.redact import RedactingStream, redact

        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
        try:
            return fn(*args, **kwargs)
        except AdviseError as e:
            click.echo(f"advise: {redact(e.render())}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("advise: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `advise ... | head`: the reader left; say nothing more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - a bug of ours: one line, the traceback on request
            if os.environ.get("ADVISE_DEBUG"):
                raise
            click.echo(redact(f"advise: internal error: {type(e).__name__}: {e} (set ADVISE_DEBUG=1 for the "
                              "traceback)"), err=True)
            sys.exit(70)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            sys.stdout, sys.stderr = out, err

    return wrapper


project_arg = click.argument("project_dir", type=click.Path(path_type=Path), default=".")


# Commands that live in their own modules, imported only when used (keeps `advise --help` fast). Each one
# has its one-line help here so that `advise --help` describes every command without importing any.
LAZY_COMMANDS = {
    "eval": ("advisor.cli.eval:eval_cmd",
             "Evaluate baselines and tuned models on held-out items: metrics with 95% CIs, paired tests."),
    "train": ("advisor.cli.train:train_cmd", "Train the base model with a training plugin (resumable)."),
    "plugins": ("advisor.cli.train:plugins_cmd", "List the installed training plugins and their hyperparameters."),
    "export": ("advisor.cli.train:export_cmd", "Merge a trained adapter into a standalone model directory."),
    "models": ("advisor.cli.train:models_cmd", "Build base models for demos and tests offline (advise models tiny)."),
    "run": ("advisor.cli.run:run_cmd", "Assess, evaluate, train, evaluate again, compare and write the report."),
    "report": ("advisor.cli.run:report_cmd", "Write the self-contained HTML report from the run store."),
    "probe": ("advisor.cli.probe:probe_cmd",
              "Measure prompting, RAG and fine-tuning on a dev split of the team's own data before the spend."),
    "gate": ("advisor.cli.gate:gate_cmd", "CI: check project.yaml's gates against stored eval results (exit 1 on fail)."),
}


class LazyGroup(click.Group):
    """A click group whose commands import on first use. A command module that fails to import is an
    error naming the module, never a command that silently disappears."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY_COMMANDS:
            return cmd
        import importlib

        mod_name, attr = LAZY_COMMANDS[name][0].split(":")
        try:
            return getattr(importlib.import_module(mod_name), attr)
        except Exception as e:  # an installation or code defect: loud, with its cause
            if os.environ.get("ADVISE_DEBUG"):
                raise
            raise click.ClickException(f"the '{name}' command cannot load ({mod_name}: {type(e).__name__}: {e}); "
                                       "reinstall advise or set ADVISE_DEBUG=1 for the traceback") from None

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][1]))
            else:
                cmd = self.commands[name]
                rows.append((name, cmd.get_short_help_str(limit=formatter.width)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="advise")
def main():
    """Decide whether and how to customise a language model: prompting, RAG, LoRA, full
    fine-tuning or RLHF, for YOUR task and data, before you spend money.

    \b
    advise init DIR        scaffold a project
    advise assess DIR      the verdict: data checks, goal signals, method, costs
    advise run DIR         assess, eval baselines, train, eval tuned, report
    advise gate DIR        CI gate on the stored eval results
    """
    _sigterm_is_ctrl_c()


def _sigterm_is_ctrl_c() -> None:
    """SIGTERM (a CI job cancelled, `kill PID`, a container stopping) is handled like Ctrl-C: the run in
    progress is marked interrupted in the store, with the resume hint, instead of staying "running"."""
    import signal

    def _raise(_signum, _frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread (an embedding application): leave its handlers alone
        pass


@main.command()
@project_arg
@click.option("--json", "as_json", is_flag=True, help="Print the assessment as one JSON object (see the contract).")
@click.option("--no-embeddings", is_flag=True, help="Skip the embedding signal over docs/ (faster, no torch import).")
@click.option("--probe", is_flag=True, help="Also measure the choice on a dev split of train (advise probe, its defaults).")
@click.option("--probe-budget-minutes", type=float, default=None, help="With --probe: no new arm starts after this.")
@guard
def assess(project_dir: Path, as_json: bool, no_embeddings: bool, probe: bool, probe_budget_minutes: float | None):
    """Analyse the task and data of PROJECT_DIR and recommend prompting, RAG, LoRA, full fine-tuning or RLHF.

    Exit status 0 when an assessment was made (whatever it recommends), 2 when it could not be made.
    """
    from advisor.assess.assessment import assess_and_store
    from advisor.project import load_project

    project = load_project(project_dir)
    result, _ = assess_and_store(project, use_embeddings=not no_embeddings, command=" ".join(sys.argv))
    if project.eval.gates or project.train.model_extra:  # (the registries cost a second to import)
        from advisor.cli.config_check import with_config_findings

        result = with_config_findings(result, project)  # train: keys and gates checked against what is installed
    if probe:  # an extension of the contract: without --probe the JSON is what it always was
        import contextlib

        from advisor.lock import writing
        from advisor.probe import ProbeOptions, run_probe

        opts = ProbeOptions.defaults(project.root, budget_minutes=probe_budget_minutes)
        with writing(project, "advise assess --probe"), contextlib.redirect_stdout(sys.stderr):
            measured = run_probe(project, opts, say=lambda m: click.echo(m, err=True))
        result = {**result, "probe": measured}
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        from advisor.cli.views import print_assessment, print_probe

        print_assessment(result)
        if probe:
            print_probe(result["probe"])


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Project name (default: the directory name).")
@guard
def init(directory: Path, name: str | None):
    """Scaffold a commented project in DIRECTORY (never overwrites existing files)."""
    from advisor.scaffold import scaffold

    written = scaffold(directory, name)
    for p in written:
        click.echo(f"wrote {p}")
    click.echo(f"next: put your examples in {directory / 'data' / 'train.jsonl'}, then `advise assess {directory}`")


@main.command()
@guard
def schema():
    """Print the JSON Schema of project.yaml (for editors and CI)."""
    from advisor.project import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
