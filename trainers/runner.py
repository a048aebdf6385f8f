"""Running a trainer plugin for a project: plan (every check, nothing written), record, train, resume.

``plan_new`` / ``plan_resume`` do all the checks a bad input can fail (unknown plugin, invalid
hyperparameters, a missing or unloadable model, the wrong kind of data, CUDA-only options on a
machine without CUDA) and write nothing. ``execute`` then creates the run:

    PROJECT/.advise/runs/<run_id>/
        request.json      the exact config, data file hashes, base model and revision, library
                          versions, seed, command line (what a worker process and --resume read)
        lock              the pids of a run in progress (refuses a second resume while it lives)
        checkpoints/      checkpoint-<step>/ every ``checkpoint_every`` steps (optimizer, RNG, data position)
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
from dataclasses import dataclass, field
from pathlib import Path

from advisor.data.dataset import load_project_data
from advisor.errors import AdviseError
from advisor.hashing import file_hash, stable_hash
from advisor.methods import NO_TRAINING, plugin_for
from advisor.project import load_project
from advisor.store import STORE_FILE, Store, new_run_id
from trainers.base import (
    CONFIG_SNAPSHOT,
    TrainRequest,
    build_config,
    check_common_options,
    check_model_source,
    check_target_modules,
    get_plugin,
    import_optional,
    plugin_names,
    require_preference_records,
    require_sft_records,
    resolve_base_model,
    select_device,
)

REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
LOCK_FILE = "lock"


# -- method --------------------------------------------------------------------------------------
def resolve_method(project, method: str | None, recommendation: dict | None = None) -> tuple[str, str]:
    """The plugin to run and why: --method, else project.yaml's method, else the assessment's
    recommendation (``recommendation``, made by the caller: training does not run the decision engine;
    ``advisor.pipeline.choose_plugin`` is the one place that turns a verdict into a plugin)."""

    if method:
        if method in NO_TRAINING:
            raise AdviseError(f"--method {method} needs no training; `advise eval` measures it")
        return plugin_for(method) if method not in plugin_names() else method, "--method"
    if project.method != "auto":
        m = project.method
        if m in NO_TRAINING:
            raise AdviseError(f"method: {m} needs no training, so there is nothing to train; pass --method lora "
                              "(or another plugin) to train anyway", file=project.project_file)
        return plugin_for(m), "project.yaml method"
    if recommendation is None:
        raise AdviseError("method: auto needs the assessment's recommendation; `advise train` makes one, "
                          "or pass --method", file=project.project_file)
    m = recommendation["method"]
    if m in NO_TRAINING:
        raise AdviseError(f"assess recommends {m} for this project, so no training is recommended "
                          f"(`advise assess` says why); pass --method lora (or another plugin) to train anyway",
                          file=project.project_file)
    if m == "lora" and recommendation.get("variant") == "qlora":
        return plugin_for(m, "qlora"), "assess (lora, qlora variant)"
    return plugin_for(m), f"assess ({m})"


# -- plans ---------------------------------------------------------------------------------------
@dataclass
class TrainPlan:
    project: object
    plugin: object
    config: object
    records: list
    request: dict  # what request.json holds
    run_id: str
    run_dir: Path
    resume: bool = False
    nproc: int = 1
    accelerate_config: Path | None = None
    prior_history: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _versions(plugin) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("advise", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers",
                "safetensors", "bitsandbytes", "deepspeed"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    mod = getattr(plugin.train, "__module__", "") or ""
    try:
        from importlib.metadata import packages_distributions

        dists = packages_distributions().get(mod.split(".")[0], [])
        if dists:
            out[f"plugin:{plugin.name}"] = f"{dists[0]} {version(dists[0])}"
    except Exception:  # noqa: BLE001
        pass
    return out


def _data_facts(project, data) -> dict:

    facts = {"format": data.format, "train_examples": len(data.train), "eval_source": data.eval_source,
             "eval_examples": len(data.eval), "holdout_seed": project.train.seed}
    for key in ("train", "eval"):
        p = project.data_path(key)
        if p is not None and p.is_file():
            facts[f"{key}_file"] = str(p)
            facts[f"{key}_sha256"] = file_hash(p)
    return facts


# sharded / offloaded training that accelerate sets up only with CUDA devices
GPU_ONLY_DISTRIBUTED = {"FSDP", "DEEPSPEED", "MEGATRON_LM"}


def _check_launch(nproc: int, accelerate_config: Path | None) -> None:
    if nproc < 1:
        raise AdviseError("--nproc must be 1 or more")
    if accelerate_config is not None:
        if not Path(accelerate_config).is_file():
            raise AdviseError("accelerate config file not found (--accelerate-config)", file=accelerate_config)
        try:
            import yaml

            cfg = yaml.safe_load(Path(accelerate_config).read_text(encoding="utf-8"))
        except Exception as e:  # noqa: BLE001
            raise AdviseError(f"cannot read the accelerate config: {e}", file=accelerate_config) from None
        if not isinstance(cfg, dict):
            raise AdviseError("expected an accelerate config (a YAML mapping, as `accelerate config` writes)",
                              file=accelerate_config)
        kind = str(cfg.get("distributed_type") or "NO").upper()
        import torch

        on_cpu = bool(cfg.get("use_cpu")) or not torch.cuda.is_available()
        where = "the config sets use_cpu: true" if cfg.get("use_cpu") else "this machine has no CUDA GPU"
        if kind in GPU_ONLY_DISTRIBUTED and on_cpu:
            raise AdviseError(f"the accelerate config asks for distributed_type: {kind}, which accelerate runs "
                              f"only on GPUs, and {where} (accelerate would quietly fall back to plain "
                              "data parallelism); use --nproc N without --accelerate-config on CPUs",
                              file=accelerate_config)
        n = nproc if nproc > 1 else int(cfg.get("num_processes") or 1)
        if n > 1 and on_cpu and not cfg.get("mpirun_config"):
            raise AdviseError(f"{n} processes on CPUs: accelerate launch starts several CPU processes only through "
                              f"mpirun (mpirun_config), and {where}, so it would run one; use --nproc {n} without "
                              "--accelerate-config (torchrun with gloo)", file=accelerate_config)
        if kind == "DEEPSPEED":

            if import_optional("deepspeed") is None:
                raise AdviseError("the accelerate config asks for DeepSpeed, which is not installed "
                                  "(pip install deepspeed)", file=accelerate_config)


def _load_records(project, plugin, config):

    data = load_project_data(project)
    records = data.train
    if plugin.data == "sft":

        require_sft_records(records, plugin.name, project.data_path("train"))
    elif plugin.data == "preference":

        require_preference_records(records, plugin.name, project.data_path("train"))
    if plugin.check_records is not None:
        plugin.check_records(records, config)
    return data, records


def plan_new(project_dir, *, method: str | None = None, max_steps: int | None = None, nproc: int = 1,
             accelerate_config: Path | None = None, command: str | None = None,
             recommendation: dict | None = None) -> TrainPlan:
    """Every check before a new run; writes nothing. ``recommendation`` is the assessment's, for a
    project whose method is auto and no --method was given."""

    project = load_project(project_dir)
    _check_launch(nproc, accelerate_config)
    name, why = resolve_method(project, method, recommendation)
    plugin = get_plugin(name)
    config = build_config(plugin, project, {"max_steps": max_steps})
    base = resolve_base_model(project)
    data, records = _load_records(project, plugin, config)

    device = select_device(config.precision)
    check_common_options(config, device)
    if plugin.preflight is not None:
        plugin.preflight(config, device)
    plugin_facts = plugin.prepare(project, config, base) if plugin.prepare is not None else {}
    base = plugin_facts.get("base_model", base)
    model_facts = check_model_source(plugin_facts.get("model_source", base), trust_remote_code=config.trust_remote_code,
                                     revision=config.revision, causal_lm=plugin.needs_causal_lm)

    check_target_modules(config, model_facts, file=project.project_file,
                         line=project.key_line("train", "target_modules"))
    run_id = new_run_id("train")
    run_dir = project.store_dir / "runs" / run_id
    data_facts = _data_facts(project, data)
    request = {
        "run_id": run_id,
        "project_dir": str(Path(project.root).resolve()),
        "plugin": plugin.name,
        "chosen_by": why,
        "config": config.model_dump(mode="json"),
        "seed": config.seed,
        "base_model": base,
        "base_model_revision": model_facts.get("revision"),
        "model": model_facts,
        "plugin_facts": plugin_facts,
        "data": data_facts,
        "versions": _versions(plugin),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "nproc": nproc,
        "accelerate_config": str(Path(accelerate_config).resolve()) if accelerate_config else None,
        "created": time.time(),
        "host": socket.gethostname(),
    }
    request["inputs_hash"] = stable_hash({k: request[k] for k in ("plugin", "config", "base_model",
                                                                  "base_model_revision")} | {
        "data": {k: v for k, v in data_facts.items() if k.endswith("sha256")}})
    return TrainPlan(project, plugin, config, records, request, run_id, run_dir, nproc=nproc,
                     accelerate_config=Path(accelerate_config) if accelerate_config else None,
                     notes=[f"{len(records)} training examples ({data.eval_source} eval: {len(data.eval)} held out)"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def plan_resume(project_dir, run_id: str | None = None, *, nproc: int | None = None,
                accelerate_config: Path | None = None, max_steps: int | None = None) -> TrainPlan:
    """Checks before resuming an interrupted run (its own config, from its last checkpoint); writes nothing."""

    project = load_project(project_dir)
    if max_steps is not None:
        raise AdviseError("--resume continues a run with its own config; --max-steps cannot change it "
                          "(start a new run instead)")
    store_path = project.store_dir / STORE_FILE
    if not store_path.is_file():
        raise AdviseError("no training run to resume (the project has no run store yet)", file=store_path)
    store = Store(store_path)
    try:
        if run_id:
            run = store.get_run(run_id)
            if run is None or run["kind"] != "train":
                raise AdviseError(f"no training run '{run_id}' in this project's run store", file=store_path)
        else:
            run = next((r for r in store.list_runs("train", limit=1000) if r["status"] != "done"), None)
            if run is None:
                raise AdviseError("no interrupted training run to resume (every run finished); "
                                  "start a new one without --resume", file=store_path)
        prior = [(r["step"], r["loss"]) for r in store.train_log(run["id"]) if r.get("loss") is not None]
    finally:
        store.close()
    if run["status"] == "done":
        raise AdviseError(f"run {run['id']} already finished; nothing to resume")
    run_dir = project.store_dir / "runs" / run["id"]
    req_file = run_dir / REQUEST_FILE
    if not req_file.is_file():
        raise AdviseError(f"run {run['id']} has no request.json; it cannot be resumed", file=req_file)
    request = json.loads(req_file.read_text(encoding="utf-8"))
    lock = run_dir / LOCK_FILE
    if lock.is_file():
        try:
            info = json.loads(lock.read_text())
        except ValueError:
            info = {}
        if info.get("host") == socket.gethostname() and any(_pid_alive(int(p)) for p in info.get("pids", [])):
            raise AdviseError(f"run {run['id']} is still running (pid {info.get('pids')}); stop it before resuming")
    ckpts = sorted((p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1])) if (run_dir / "checkpoints").is_dir() else []
    if not ckpts:
        raise AdviseError(f"run {run['id']} stopped before its first checkpoint; start a new run without --resume")
    plugin = get_plugin(request["plugin"])
    try:
        config = plugin.config_class.model_validate(request["config"])
    except Exception as e:  # noqa: BLE001
        raise AdviseError(f"run {run['id']}: its recorded config no longer validates ({e})") from None
    data, records = _load_records(project, plugin, config)
    now = _data_facts(project, data)
    for key in ("train_sha256", "eval_sha256"):
        if request["data"].get(key) != now.get(key):
            raise AdviseError(f"the {key.split('_')[0]} data changed since run {run['id']} started; resuming would "
                              "mix two datasets: start a new run without --resume")
    n = nproc if nproc is not None else int(request.get("nproc") or 1)
    acc = accelerate_config or (Path(request["accelerate_config"]) if request.get("accelerate_config") else None)
    _check_launch(n, acc)
    return TrainPlan(project, plugin, config, records, request, run["id"], run_dir, resume=True, nproc=n,
                     accelerate_config=acc, prior_history=prior,
                     notes=[f"{len(records)} training examples, from {ckpts[-1].name}"])


# -- progress ------------------------------------------------------------------------------------
def _fmt_secs(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class TerminalProgress:
    """One progress line on stderr: step, loss, tokens/s, ETA (rewritten in place on a terminal)."""

    def __init__(self, stream=None, min_interval: float = 2.0):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = 0.1 if self.tty else min_interval
        self.last = 0.0

    def __call__(self, ev) -> None:
        now = time.monotonic()
        final = ev.step >= ev.max_steps
        if not final and ev.step > 1 and now - self.last < self.min_interval:
            return
        self.last = now
        tps = f"{ev.tokens_per_second:,.0f} tok/s" if ev.tokens_per_second else "- tok/s"
        loss = f"{ev.loss:.4f}" if ev.loss is not None else "-"
        line = f"step {ev.step}/{ev.max_steps}  loss {loss}  {tps}  ETA {_fmt_secs(ev.eta_seconds)}"
        if self.tty:
            self.stream.write("\r" + line.ljust(70) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class _StoreLogger:
    """Progress events into the run store's train_log (rank 0 only), forwarded to the terminal."""

    def __init__(self, project, run_id: str, forward=None):

        self.store = Store.for_project(project)
        self.run_id = run_id
        self.forward = forward

    def __call__(self, ev) -> None:
        self.store.log_train(self.run_id, ev.step, {"loss": ev.loss, "lr": ev.learning_rate, "tokens": ev.tokens,
                                                    "tokens_per_second": ev.tokens_per_second, "epoch": ev.epoch,
                                                    "time": time.time()})
        if self.forward is not None:
            self.forward(ev)

    def close(self) -> None:
        self.store.close()


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
        _, records = _load_records(project, plugin, config)
    rank = int(os.environ.get("RANK", "0"))
    run_dir = Path(request["project_dir"]) / ".advise" / "runs" / request["run_id"]
    logger = _StoreLogger(project, request["run_id"], progress) if rank == 0 else None
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
    if not plan.resume:
        if command:
            request["command"] = command
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
