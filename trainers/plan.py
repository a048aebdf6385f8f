"""Planning a training run: which plugin, and every check a bad input can fail (unknown plugin,
invalid hyperparameters, a missing or unloadable model, the wrong kind of data, CUDA-only options on
a machine without CUDA, a launch that would not run as written), before anything is written.
``plan_new`` / ``plan_resume`` return a :class:`TrainPlan`; ``trainers.runner.execute`` runs it.
"""

from __future__ import annotations

import json
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from advisor.data.dataset import load_project_data
from advisor.errors import AdviseError
from advisor.files import require_regular_file
from advisor.hashing import file_hash, stable_hash
from advisor.lock import pid_alive
from advisor.methods import NO_TRAINING, plugin_for
from advisor.project import ProjectLoader, YAMLBoundError, _yaml_error_line, load_project
from advisor.store import STORE_FILE, Store, new_run_id, project_relative, relocate
from advisor.versions import distribution_of, versions
from trainers.config import build_config
from trainers.data import require_preference_records, require_sft_records
from trainers.device import check_common_options, import_optional, select_device
from trainers.loop import checkpoints
from trainers.models import check_model_source, check_target_modules, resolve_base_model
from trainers.plugin import FinishedRun, TrainRequest
from trainers.registry import get_plugin, is_registered_in_process, plugin_names

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
    """The one collector (advisor.versions), plus the distribution that provides the plugin."""
    out = versions()
    dist = distribution_of(getattr(plugin.train, "__module__", "") or "")
    if dist:
        out[f"plugin:{plugin.name}"] = dist
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


def _read_accelerate_config(path: Path):
    """The accelerate config, read with the loader of every user YAML (advisor.project.ProjectLoader:
    aliases bounded, nesting bounded, duplicate keys refused); a problem is one line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AdviseError(f"cannot read the accelerate config (--accelerate-config): "
                          f"{getattr(e, 'strerror', None) or e}", file=path) from None
    try:
        return yaml.load(text, Loader=ProjectLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        what = "YAML refused" if isinstance(e, YAMLBoundError) else "YAML syntax error"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise AdviseError(f"accelerate config (--accelerate-config): {what}: {problem}", file=path,
                          line=_yaml_error_line(e, text)) from None


def _check_launch(nproc: int, accelerate_config: Path | None) -> None:
    if nproc < 1:
        raise AdviseError("--nproc must be 1 or more")
    if accelerate_config is not None:
        require_regular_file(Path(accelerate_config), "accelerate config file", " (--accelerate-config)")
        cfg = _read_accelerate_config(Path(accelerate_config))
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


def _check_in_process(name: str, nproc: int, accelerate_config) -> None:
    if (nproc > 1 or accelerate_config is not None) and is_registered_in_process(name):
        raise AdviseError(f"the training plugin '{name}' is registered in this process only (trainers.register), "
                          "and the worker processes of a multi-process run cannot see it; install it as an "
                          "advise.trainers entry point, or train with one process")


def finished_runs(project) -> list[FinishedRun]:
    """The project's finished training runs, newest first, with their artifacts (what a plugin's
    ``prepare`` may start from); the store is opened read-only and never created."""
    out = []
    with Store.for_project(project, read_only=True) as store:
        if store is None:
            return out
        for run in store.list_runs("train", limit=1000):
            if run["status"] != "done":
                continue
            arts = store.artifacts(run["id"])
            out.append(FinishedRun(id=run["id"], plugin=run["name"], base_model=(run.get("config") or {}).get("base_model"),
                                   artifact=Path(arts[-1]["path"]) if arts else None))
    return out


def load_records(project, plugin, config):
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
    _check_in_process(plugin.name, nproc, accelerate_config)
    config = build_config(plugin, project, {"max_steps": max_steps})
    base = resolve_base_model(project)
    data, records = load_records(project, plugin, config)

    device = select_device(config.precision)
    check_common_options(config, device)
    if plugin.preflight is not None:
        plugin.preflight(config, device)
    run_id = new_run_id("train")
    run_dir = project.store_dir / "runs" / run_id
    plugin_facts = {}
    if plugin.prepare is not None:
        plugin_facts = plugin.prepare(TrainRequest(project=project, records=records, base_model=base, config=config,
                                                   output_dir=run_dir, run_id=run_id,
                                                   finished_runs=finished_runs(project)))
    base = plugin_facts.get("base_model", base)
    model_facts = check_model_source(plugin_facts.get("model_source", base), trust_remote_code=config.trust_remote_code,
                                     revision=config.revision, causal_lm=plugin.needs_causal_lm)

    check_target_modules(config, model_facts, file=project.project_file,
                         line=project.key_line("train", "target_modules"))
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
    # the hash names a base model inside the project by its path in the project, so a copied or moved
    # project still finds its runs; the hash an older advise gave (the absolute path) is kept beside it
    hashed = {k: request[k] for k in ("plugin", "config", "base_model_revision")} | {
        "data": {k: v for k, v in data_facts.items() if k.endswith("sha256")}}
    request["inputs_hash"] = stable_hash(hashed | {"base_model": project_relative(base, project.root)})
    legacy = stable_hash(hashed | {"base_model": base})
    if legacy != request["inputs_hash"]:
        request["inputs_hash_absolute"] = legacy
    return TrainPlan(project, plugin, config, records, request, run_id, run_dir, nproc=nproc,
                     accelerate_config=Path(accelerate_config) if accelerate_config else None,
                     notes=[f"{len(records)} training examples ({data.eval_source} eval: {len(data.eval)} held out)",
                            *filter(None, [data.train_note()])])


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
    try:
        request = json.loads(req_file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise AdviseError(f"run {run['id']}: request.json is not valid JSON ({e}); it cannot be resumed",
                          file=req_file) from None
    # the run goes on in the project it is in now (a copied or moved project resumes its own run)
    old_root, request["project_dir"] = request.get("project_dir"), str(Path(project.root).resolve())
    if request.get("accelerate_config"):
        request["accelerate_config"] = relocate(request["accelerate_config"], project.root, old_root)
    lock = run_dir / LOCK_FILE
    if lock.is_file():
        try:
            info = json.loads(lock.read_text())
        except ValueError:
            info = {}
        if info.get("host") == socket.gethostname() and any(pid_alive(int(p)) for p in info.get("pids", [])):
            raise AdviseError(f"run {run['id']} is still running (pid {info.get('pids')}); stop it before resuming")
    ckpts, _ = checkpoints(run_dir / "checkpoints")  # complete ones only (a killed save is skipped)
    if not ckpts:
        raise AdviseError(f"run {run['id']} stopped before its first checkpoint (none is complete); start a new run without --resume")
    plugin = get_plugin(request["plugin"])
    try:
        config = plugin.config_class.model_validate(request["config"])
    except Exception as e:  # noqa: BLE001
        raise AdviseError(f"run {run['id']}: its recorded config no longer validates ({e})") from None
    data, records = load_records(project, plugin, config)
    now = _data_facts(project, data)
    for key in ("train_sha256", "eval_sha256"):
        if request["data"].get(key) != now.get(key):
            raise AdviseError(f"the {key.split('_')[0]} data changed since run {run['id']} started; resuming would "
                              "mix two datasets: start a new run without --resume")
    n = nproc if nproc is not None else int(request.get("nproc") or 1)
    acc = accelerate_config or (Path(request["accelerate_config"]) if request.get("accelerate_config") else None)
    _check_launch(n, acc)
    _check_in_process(plugin.name, n, acc)
    return TrainPlan(project, plugin, config, records, request, run["id"], run_dir, resume=True, nproc=n,
                     accelerate_config=acc, prior_history=prior,
                     notes=[f"{len(records)} training examples, from {ckpts[-1].name}",
                            *filter(None, [data.train_note()])])


