"""Running a planned training run (``trainers.plan``): record, train, resume. ``execute`` creates the run:

    PROJECT/.advise/runs/<run_id>/
        request.json      the exact config, data file hashes, base model and revision, library
                          versions, seed, command line (what a worker process and --resume read)
        lock              the pids of a run in progress (refuses a second resume while it lives)
        checkpoints/      checkpoint-<step>/ every ``checkpoint_every`` steps (optimizer, RNG, data position),
                          written under .saving-<step>/ and renamed into place once complete (trainers.loop)
        artifact/         the adapter or model (safetensors), the tokenizer, advise_train.json
        result.json       what ``advise train --json`` prints

and records it in the run store (kind "train"): config, inputs hash, command, versions, start/end,
outcome, the loss log per step and the artifact. With ``nproc > 1`` or an accelerate config the same
plugin runs under torchrun / ``accelerate launch`` (``python -m trainers.runner REQUEST``); rank 0
logs and saves.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from advisor.errors import AdviseError
from advisor.hashing import file_hash
from advisor.project import load_project
from advisor.store import Store
from trainers.plan import (
    LOCK_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    TrainPlan,
    load_records,
    plan_new,
    plan_resume,
    resolve_method,
)
from trainers.plugin import CONFIG_SNAPSHOT, TrainRequest
from trainers.progress import StoreLogger, TerminalProgress
from trainers.registry import get_plugin

__all__ = ["TerminalProgress", "TrainPlan", "execute", "plan_new", "plan_resume", "resolve_method", "run_request",
           "worker_main"]


# -- executing -----------------------------------------------------------------------------------
def _snapshot(request: dict, result) -> dict:
    return {"run_id": request["run_id"], "plugin": request["plugin"], "artifact_kind": result.artifact_kind,
            "base_model": request["base_model"], "base_model_revision": request.get("base_model_revision"),
            "config": request["config"], "data": request["data"], "versions": request["versions"],
            "command": request["command"], "metrics": result.metrics, "created": time.time()}


def run_request(request: dict, *, resume: bool, progress=None, prior_history=None, project=None,
                records=None) -> dict | None:
    """Run the plugin for a request (in this process, or as one rank of torchrun). Rank 0 writes
    result.json and the artifact snapshot and returns the result; other ranks return None."""

    plugin = get_plugin(request["plugin"])
    config = plugin.config_class.model_validate(request["config"])
    if project is None or records is None:

        project = load_project(request["project_dir"])
        _, records = load_records(project, plugin, config)
    rank = int(os.environ.get("RANK", "0"))
    run_dir = Path(request["project_dir"]) / ".advise" / "runs" / request["run_id"]
    logger = StoreLogger(project, request["run_id"], progress) if rank == 0 else None
    req = TrainRequest(project=project, records=records, base_model=request["base_model"], config=config,
                       output_dir=run_dir, resume=resume, progress=logger, run_id=request["run_id"],
                       options={"prior_history": prior_history or [], "request": request,
                                "plugin_facts": request.get("plugin_facts") or {}})
    try:
        result = plugin.train(req)
    finally:
        if logger is not None:
            logger.close()
    if rank != 0:
        return None
    out = result.to_json()
    (Path(result.artifact) / CONFIG_SNAPSHOT).write_text(json.dumps(_snapshot(request, result), indent=2,
                                                                    default=str) + "\n", encoding="utf-8")
    (run_dir / RESULT_FILE).write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    return out


def _launch_command(plan: TrainPlan, request_path: Path) -> list[str]:
    if plan.accelerate_config is not None:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(plan.accelerate_config)]
        if plan.nproc > 1:
            cmd += ["--num_processes", str(plan.nproc)]
        return cmd + ["--module", "trainers.runner", str(request_path)] + (["--resume"] if plan.resume else [])
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={plan.nproc}",
            "--module", "trainers.runner", str(request_path)] + (["--resume"] if plan.resume else [])


def _reopen(store, run_id: str, command: str) -> None:
    store.reopen_run(run_id, command)


def _stderr_fd():
    try:
        return sys.__stderr__.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def execute(plan: TrainPlan, *, progress=None, command: str | None = None) -> dict:
    """Create (or reopen) the run, train, record the outcome. Returns the JSON result."""

    run_dir = plan.run_dir
    request = plan.request
    run_dir.mkdir(parents=True, exist_ok=True)
    req_path = run_dir / REQUEST_FILE
    cmd = command or " ".join(shlex.quote(a) for a in sys.argv)
    if command and not plan.resume:
        request["command"] = command
    # written on resume too: a moved or copied project's request names the project it is in now
    req_path.write_text(json.dumps(request, indent=2, default=str) + "\n", encoding="utf-8")
    store = Store.for_project(plan.project)
    if plan.resume:
        _reopen(store, plan.run_id, cmd)
    else:
        store.start_run("train", name=plan.plugin.name, run_id=plan.run_id, config=request,
                        inputs_hash=request["inputs_hash"], command=cmd, versions=request["versions"])
    lock = run_dir / LOCK_FILE
    lock_info = {"pids": [os.getpid()], "host": socket.gethostname(), "started": time.time()}
    lock.write_text(json.dumps(lock_info))
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    try:
        if plan.nproc > 1 or plan.accelerate_config is not None:
            env = dict(os.environ)
            env.setdefault("PYTHONUNBUFFERED", "1")
            # the workers' stdout goes to stderr: stdout carries the result only (advise train --json)
            proc = subprocess.Popen(_launch_command(plan, req_path), env=env, stdout=_stderr_fd())
            lock_info["pids"].append(proc.pid)
            lock.write_text(json.dumps(lock_info))
            rc = proc.wait()
            if rc != 0 or not (run_dir / RESULT_FILE).is_file():
                raise AdviseError(f"the training processes failed (exit status {rc}); see the messages above; "
                                  f"`advise train {plan.project.root} --resume {plan.run_id}` continues from the "
                                  "last checkpoint")
            result = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
        else:
            result = run_request(request, resume=plan.resume, progress=progress, prior_history=plan.prior_history,
                                 project=plan.project, records=plan.records)
    except BaseException as e:  # record the outcome, then let the CLI report it
        if isinstance(e, KeyboardInterrupt):
            store.finish_run(plan.run_id, "interrupted", error="interrupted")
        else:
            store.finish_run(plan.run_id, "failed",
                             error=str(e) if isinstance(e, AdviseError) else f"{type(e).__name__}: {e}")
        lock.unlink(missing_ok=True)
        store.close()
        raise
    result = {"run_id": plan.run_id, "method": plan.plugin.name, "plugin": plan.plugin.name, "status": "done",
              "base_model": request["base_model"], "base_model_revision": request.get("base_model_revision"),
              "run_dir": str(run_dir), **result, "config": request["config"], "nproc": plan.nproc,
              "examples": len(plan.records)}
    result["artifact"] = str(Path(result["artifact"]).resolve())

    art = Path(result["artifact"])
    main_file = next((art / n for n in ("adapter_model.safetensors", "model.safetensors") if (art / n).is_file()), None)
    store.add_artifact(plan.run_id, result["artifact_kind"], art, file_hash(main_file) if main_file else None)
    store.finish_run(plan.run_id, "done", result={k: v for k, v in result.items() if k != "loss_history"})
    store.close()
    lock.unlink(missing_ok=True)
    (run_dir / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result


def worker_main(argv: list[str] | None = None) -> int:
    """Entry point of each process under torchrun / accelerate launch."""
    argv = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in argv
    argv = [a for a in argv if a != "--resume"]
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    prior = []
    if resume and int(os.environ.get("RANK", "0")) == 0:

        store = Store.for_project(load_project(request["project_dir"]))
        prior = [(r["step"], r["loss"]) for r in store.train_log(request["run_id"]) if r.get("loss") is not None]
        store.close()
    try:
        run_request(request, resume=resume, progress=TerminalProgress(), prior_history=prior)
    except AdviseError as e:
        print(f"advise: {e.render()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
