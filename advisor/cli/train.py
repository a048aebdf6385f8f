"""``advise train``, ``advise plugins``, ``advise export`` and ``advise models``.

Loaded lazily by advisor.cli.main (LazyGroup); torch and friends are imported only once a command has
checked its input and is about to train, export or build.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from advisor.cli.main import guard, project_arg
from advisor.errors import AdviseError
from advisor.files import check_output_dir
from advisor.lock import writing
from advisor.pipeline import check_blockers, choose_plugin, store_assessment, write_model_card
from advisor.project import load_project
from advisor.tracking import require_mlflow, track_train, tracking_uri
from trainers import ENTRY_POINT_GROUP, all_plugins, config_fields
from trainers.export import export, resolve_artifact
from trainers.runner import TerminalProgress, execute, plan_new, plan_resume
from trainers.tiny_model import build_tiny_model


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


@click.command("train")
@project_arg
@click.option("--method", "--plugin", "method", default=None, metavar="NAME",
              help="Training plugin (lora, qlora, full, dpo, prompt_tuning, classifier, or an installed one); "
                   "also a method name (rlhf = dpo). Default: project.yaml's method, else assess's recommendation.")
@click.option("--resume", "resume", is_flag=False, flag_value="", default=None, metavar="[RUN_ID]",
              help="Continue an interrupted run (the latest, or RUN_ID) from its last checkpoint, with its own config.")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Processes to train with (torchrun; gloo on CPU, NCCL on GPUs).")
@click.option("--accelerate-config", type=click.Path(path_type=Path), default=None,
              help="An accelerate config file (DDP, FSDP, DeepSpeed), passed to `accelerate launch`.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Override train.max_steps.")
@click.option("--ignore-blockers", is_flag=True, help="Train although the assessment found blockers (recorded in the run).")
@click.option("--mlflow", "mlflow_uri", default=None, metavar="URI",
              help="Also log the run to MLflow (default: project.yaml's tracking.mlflow).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout.")
@guard
def train_cmd(project_dir: Path, method: str | None, resume: str | None, nproc: int | None,
              accelerate_config: Path | None, max_steps: int | None, ignore_blockers: bool,
              mlflow_uri: str | None, as_json: bool):
    """Train PROJECT_DIR's base model with a training plugin and record the run.

    Every check (plugin, hyperparameters, data, base model, hardware) happens before anything is
    written. Checkpoints let `--resume` continue an interrupted run, kill -9 included.
    """

    if resume is not None:
        if method:
            raise click.UsageError("--resume continues a run with its own plugin; drop --method")
        plan = plan_resume(project_dir, resume or None, nproc=nproc, accelerate_config=accelerate_config,
                           max_steps=max_steps)
    else:
        rec, method = choose_plugin(load_project(project_dir), method)
        plan = plan_new(project_dir, method=method, max_steps=max_steps, nproc=nproc or 1,
                        accelerate_config=accelerate_config, recommendation=rec)
    if tracking_uri(plan.project, mlflow_uri):
        require_mlflow()
    import contextlib

    with writing(plan.project, "advise train"):
        try:
            with contextlib.redirect_stdout(sys.stderr):
                blockers = store_assessment(plan.project) if not plan.resume else []
            check_blockers(blockers, ignore_blockers, plan.project)
            c = plan.config
            budget = f"max_steps {c.max_steps}" if c.max_steps else f"epochs {c.epochs or c.DEFAULT_EPOCHS:g}"
            how = f"resuming run {plan.run_id}" if plan.resume else f"training {plan.plugin.name} ({plan.request['chosen_by']})"
            _echo_err(f"advise: {how} on {plan.notes[0]}; base {plan.request['base_model']}; "
                      f"{budget}, batch {c.batch_size}, lr {c.learning_rate:g}, seed {c.seed}"
                      + (f", {plan.nproc} processes" if plan.nproc > 1 else "") + f"; run {plan.run_id}")
            for note in plan.notes[1:]:  # records left out of training, and the like
                _echo_err(f"advise: {note}")
            if blockers:
                plan.request["ignored_blockers"] = blockers
                _echo_err(f"advise: training despite {len(blockers)} blocker(s) (--ignore-blockers): " + "; ".join(blockers))
            # libraries print to stdout now and then; with --json stdout carries the result only
            with contextlib.redirect_stdout(sys.stderr):
                result = execute(plan, progress=TerminalProgress())
        except KeyboardInterrupt:
            _echo_err(f"advise: run {plan.run_id} stopped; `advise train {project_dir} --resume {plan.run_id}` "
                      "continues it from its last checkpoint")
            raise
    tracked = track_train(plan.project, result["run_id"], mlflow_uri)
    if tracked:
        _echo_err(f"advise: logged to MLflow as run {tracked} ({tracking_uri(plan.project, mlflow_uri)})")
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    first, last = result.get("first_loss"), result.get("final_loss")
    loss = f"loss {first:.4f} -> {last:.4f}" if first is not None and last is not None else "no loss logged"
    click.echo(f"run {result['run_id']} done: {result['steps']} steps, {loss}, "
               f"{result['tokens_per_second']:,.0f} tokens/s, peak memory {result['peak_memory_mb']:,.0f} MB")
    click.echo(f"artifact ({result['artifact_kind']}): {result['artifact']}")
    if result["artifact_kind"] == "adapter" and plan.plugin.name != "classifier":
        click.echo(f"next: advise eval {project_dir}   |   standalone model: advise export {result['run_id']} OUT_DIR "
                   f"--project {project_dir}")


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the plugins and their configs as JSON.")
@guard
def plugins_cmd(as_json: bool):
    """List the installed training plugins with their hyperparameters (defaults and limits)."""

    rows = []
    for name, p in all_plugins().items():
        if isinstance(p, AdviseError):
            rows.append({"name": name, "error": p.message})
            continue
        rows.append({"name": name, "description": p.description, "data": p.data, "artifact": p.artifact_kind,
                     "module": getattr(p.train, "__module__", ""), "config": config_fields(p.config_class)})
    if as_json:
        click.echo(json.dumps({"entry_point_group": ENTRY_POINT_GROUP, "plugins": rows}, indent=2, default=str))
        return
    if not rows:
        click.echo(f"no training plugins installed (entry-point group {ENTRY_POINT_GROUP})")
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']}: BROKEN: {r['error']}\n")
            continue
        click.echo(f"{r['name']}  [{r['data']} data -> {r['artifact']}]  {r['description']}")
        for f in r["config"]:
            lim = f"  ({f['limits']})" if f["limits"] else ""
            click.echo(f"    {f['name']:<24} {json.dumps(f['default'], default=str):<14}{lim}  {f['description']}")
        click.echo("")


@click.command("export")
@click.argument("run", metavar="RUN_ID_OR_DIR")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--project", "project_dir", type=click.Path(path_type=Path), default=Path("."),
              help="Project whose run store holds RUN_ID (default: the current directory).")
@guard
def export_cmd(run: str, out_dir: Path, project_dir: Path):
    """Merge a trained LoRA adapter (a run id, or an artifact directory) into a standalone model in OUT_DIR,
    loadable with plain transformers."""

    src = resolve_artifact(run, project_dir)
    info = export(src, out_dir)
    card = write_model_card(src, out_dir, project_dir)
    click.echo(f"wrote {info['kind']} model to {out_dir} ({info['parameters']:,} parameters, from {src})"
               + (f"; model card {card}" if card else ""))


@click.group("models")
def models_cmd():
    """Base models for demos and tests, built offline."""


@models_cmd.command("tiny")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--steps", type=click.IntRange(min=0), default=None, help="Pretraining steps (default: the builder's).")
@click.option("--seed", type=int, default=0)
@click.option("--force", is_flag=True, help="Overwrite a model already in DIRECTORY.")
@click.option("--exist-ok", is_flag=True, help="Do nothing when DIRECTORY already holds a tiny model built here.")
@guard
def models_tiny(directory: Path, steps: int | None, seed: int, force: bool, exist_ok: bool):
    """Build a small causal LM in DIRECTORY with no download: a byte-level BPE tokenizer with a chat
    template, a small Llama config, a short pretraining on text shipped in the package."""

    check_output_dir(directory, "the model directory")
    if exist_ok and not force and (directory / "tiny_model_build.json").is_file() and (directory / "config.json").is_file():
        click.echo(f"{directory} already holds a tiny model; kept it (--force rebuilds it)")
        return
    if (directory / "config.json").exists() and not force:
        raise AdviseError("already holds a model; pass --force to rebuild it", file=directory)

    kw = {"seed": seed}
    if steps is not None:
        kw["pretrain_steps"] = steps

    def progress(step, total, loss):
        click.echo(f"pretraining step {step}/{total}  loss {loss:.3f}", err=True)

    try:
        directory.mkdir(parents=True, exist_ok=True)  # fails here, at once, where it cannot be created
    except OSError as e:
        raise AdviseError(f"cannot create the model directory: {e.strerror or e}", file=directory) from None
    summary = build_tiny_model(directory, progress=progress, **kw)
    click.echo(f"wrote a {summary['parameters']:,}-parameter model to {directory} in {summary['seconds']:.0f} s "
               f"(pretraining loss {summary.get('pretrain_loss_first') or 0:.2f} -> "
               f"{summary.get('pretrain_loss_last') or 0:.2f})")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_cmd())
