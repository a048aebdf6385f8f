"""Candidates: what ``advise eval`` can evaluate in a project, and the backend that answers for each.

* ``base:zero-shot``, ``base:few-shot``, ``base:rag`` -- the project's ``base_model`` with each prompt
  strategy (RAG only when the project has docs). Base models get the project's task as a system
  message when an item has none.
* ``tuned:<method>`` -- the base model plus the artifact of a finished ``train`` run (a peft adapter, a full
  model directory, or a sequence classifier), prompted as it was trained (zero-shot, no added
  instruction); ``tuned:<method>:<strategy>`` with another strategy; older runs of the same method are
  ``tuned:<method>@<run id>``.
* ``tuned:<name>`` for each ``eval.candidates`` entry of project.yaml: a model directory named there
  (an exported model, a peft adapter on the base model, a classifier), prompted as trained: how a model
  trained elsewhere reaches a fresh checkout's CI.
* ``endpoint:<model>:<strategy>`` -- an OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from advisor.errors import AdviseError
from advisor.hashing import file_hash
from advisor.project import Project
from advisor.store import STORE_DIR, Store
from evaluators.backends.base import Backend
from evaluators.backends.classifier import SequenceClassifierBackend, is_classifier_dir
from evaluators.backends.openai import OpenAIBackend
from evaluators.backends.transformers import TransformersBackend
from evaluators.backends.vllm import VLLMBackend
from evaluators.judge import Judge
from evaluators.strategies import STRATEGIES

LOCAL_BACKENDS = ("transformers", "vllm")


@dataclass
class CandidateSpec:
    name: str
    source: str  # base | tuned | endpoint
    backend: str  # transformers | classifier | openai | vllm
    model: str  # hub id or directory (the base model under an adapter); the endpoint's model name
    strategy: str = "zero-shot"
    adapter: str | None = None
    instruction: bool = True
    train_run: str | None = None
    method: str | None = None
    endpoint: dict | None = None
    revision: str | None = None
    stem: str = ""  # the model part of the name: base, tuned:<method>, endpoint:<model>

    @property
    def backend_key(self) -> tuple:
        ep = (self.endpoint or {}).get("url")
        return (self.backend, self.model, self.adapter, ep)

    def describe(self) -> dict[str, Any]:
        d = {"source": self.source, "backend": self.backend, "model": self.model, "strategy": self.strategy}
        if self.adapter:
            d["adapter"] = self.adapter
        if self.train_run:
            d["train_run"], d["method"] = self.train_run, self.method
        if self.endpoint:
            d["endpoint"] = {k: v for k, v in self.endpoint.items() if k in ("url", "model", "api_key_env")}
        return d


def _same_model(a: str | None, b: str | None, root: Path | None) -> bool:
    if not a or not b:
        return True
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if root is not None:
        pa = pa if pa.is_absolute() else root / pa
        pb = pb if pb.is_absolute() else root / pb
    try:
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    except OSError:
        return False


def _inside_store(model: str | None, project: Project) -> bool:
    """A model this project made (e.g. the SFT model a DPO run started from) lives under ``.advise/``."""
    if not model:
        return False
    try:
        p = Path(model).expanduser()
        if not p.is_absolute() and project.root is not None:
            p = project.root / p
        p.resolve().relative_to(project.store_dir.resolve())
        return True
    except (ValueError, OSError):
        return False


def _other_project(path: str, project: Project) -> str | None:
    """The project directory a path belongs to when it lies under another project's ``.advise/`` (a run
    recorded before this project was copied or moved here, whose files were not copied with it)."""
    p = Path(path).expanduser()
    if not p.is_absolute() or STORE_DIR not in p.parts:
        return None
    try:
        p.resolve().relative_to(project.store_dir.resolve())
        return None
    except (ValueError, OSError):
        pass
    i = len(p.parts) - 1 - p.parts[::-1].index(STORE_DIR)
    return str(Path(*p.parts[:i]))


def _same_local_weights(run_config: dict, project: Project) -> bool:
    """The run's base model has the config.json of the project's local base model (local-sha256 revision):
    the same model, wherever the directory lives now."""

    rev = str(run_config.get("base_model_revision") or "")
    d = project.base_model_dir()
    if not rev.startswith("local-sha256:") or d is None or not (d / "config.json").is_file():
        return False
    return rev == "local-sha256:" + file_hash(d / "config.json")[:16]


def base_model_ref(project: Project) -> str | None:
    if not project.base_model:
        return None
    d = project.base_model_dir()
    return str(d) if d is not None else project.base_model


def tuned_runs(project: Project, store: Store, warnings: list[str]) -> list[dict]:
    """Finished train runs with a usable artifact for the project's base model, newest first, each with
    its candidate name stem (``tuned:<method>`` or ``tuned:<method>@<run id>`` for older ones)."""
    out, seen_methods = [], set()
    base = base_model_ref(project)
    for run in store.list_runs("train", limit=1000):
        if run.get("status") != "done":
            continue
        result = run.get("result") or {}
        config = run.get("config") or {}
        artifact = result.get("artifact")
        method = str(result.get("method") or run.get("name") or "model")
        if not artifact:
            continue
        art = Path(artifact).expanduser()  # the store gives paths under this project as they are now
        if not art.is_absolute() and project.root is not None:
            art = project.root / art
        other = _other_project(str(art), project)
        if other is not None:
            warnings.append(f"train run {run['id']}: its artifact {artifact} belongs to another project ({other}; "
                            f"this one was copied or moved from it without the run's files); not evaluated")
            continue
        if not art.is_dir():
            warnings.append(f"train run {run['id']}: artifact {artifact} no longer exists; not evaluated")
            continue
        run_base = result.get("base_model") or config.get("base_model")
        if method != "classifier" and not _same_model(run_base, project.base_model, project.root) \
                and not _same_model(run_base, base, project.root) and not _inside_store(run_base, project) \
                and not _same_local_weights(config, project):
            warnings.append(f"train run {run['id']} tuned {run_base}, not the project's base model "
                            f"{project.base_model}; not evaluated")
            continue
        stem = f"tuned:{method}" if method not in seen_methods else f"tuned:{method}@{run['id']}"
        seen_methods.add(method)
        out.append({"run": run, "artifact": str(art), "method": method, "stem": stem,
                    "base_model": run_base or base})
    return out


def plan_candidates(project: Project, store: Store, *, strategies: Sequence[str] | None = None,
                    names: Sequence[str] | None = None, endpoint: dict | None = None,
                    has_docs: bool = False, has_train: bool = True,
                    warnings: list[str] | None = None, local_backend: str = "transformers") -> list[CandidateSpec]:
    """Every candidate this project can evaluate, then the selection: ``names`` (fnmatch patterns)
    when given, else the defaults (base with every applicable strategy, or the endpoint's instead when
    one is given, plus every tuned run zero-shot); ``strategies`` restricts the strategies."""
    warnings = warnings if warnings is not None else []
    applicable = ["zero-shot"] + (["few-shot"] if has_train and project.eval.few_shot_k > 0 else []) + \
        (["rag"] if has_docs else [])
    for s in strategies or []:
        if s not in STRATEGIES:
            raise AdviseError(f"unknown strategy {s!r} ({', '.join(STRATEGIES)})")
        if s == "rag" and not has_docs:
            raise AdviseError("the rag strategy needs documents: set data.docs in project.yaml",
                              file=project.project_file)
    wanted = list(strategies) if strategies else applicable
    universe: list[tuple[CandidateSpec, bool]] = []  # (spec, selected by default)
    base = base_model_ref(project)
    if base:
        for s in applicable:
            universe.append((CandidateSpec(f"base:{s}", "base", local_backend, base, s, stem="base"),
                             s in wanted and endpoint is None))
    if endpoint:
        for s in applicable:
            universe.append((CandidateSpec(f"endpoint:{endpoint['model']}:{s}", "endpoint", "openai",
                                           endpoint["model"], s, endpoint=endpoint,
                                           stem=f"endpoint:{endpoint['model']}"), s in wanted))
    for t in tuned_runs(project, store, warnings):  # tuned runs (a classifier needs no base model)
        art = Path(t["artifact"])
        if t["method"] == "classifier" or is_classifier_dir(art):
            spec = CandidateSpec(t["stem"], "tuned", "classifier", str(art), "zero-shot", instruction=False,
                                 train_run=t["run"]["id"], method=t["method"], stem=t["stem"])
            universe.append((spec, endpoint is None and "zero-shot" in wanted))
            continue
        adapter = str(art) if (art / "adapter_config.json").is_file() else None
        model = (t["base_model"] or base) if adapter else str(art)
        if adapter and model and not Path(model).is_absolute() and project.root is not None \
                and (project.root / model).exists():
            model = str(project.root / model)
        for s in applicable:
            name = t["stem"] if s == "zero-shot" else f"{t['stem']}:{s}"
            if "@" in t["stem"] and s != "zero-shot":
                name = t["stem"].replace("@", f":{s}@", 1)
            spec = CandidateSpec(name, "tuned", local_backend, model, s, adapter=adapter, instruction=False,
                                 train_run=t["run"]["id"], method=t["method"], stem=t["stem"])
            default = endpoint is None and (s == "zero-shot" if not strategies else s in wanted)
            universe.append((spec, default))
    universe += [(spec, endpoint is None and "zero-shot" in wanted)
                 for spec in named_models(project, universe, local_backend)]
    if names:
        chosen, unknown = [], []
        for pat in names:
            hits = [sp for sp, _ in universe if fnmatchcase(sp.name, pat)]
            if not hits:
                unknown.append(pat)
            chosen += [h for h in hits if h not in chosen]
        if unknown:
            known = ", ".join(sp.name for sp, _ in universe) or "none"
            raise AdviseError(f"no candidate named {', '.join(map(repr, unknown))}; candidates: {known}")
        if strategies:
            chosen = [c for c in chosen if c.strategy in wanted]
        return chosen
    chosen = [sp for sp, default in universe if default]
    if not chosen:
        if not base and not endpoint:
            raise AdviseError("base_model is required for eval (a hub id or a local model directory), "
                              "or an OpenAI-compatible endpoint to evaluate", file=project.project_file)
        raise AdviseError("no candidate to evaluate with the strategies asked for")
    return chosen


def named_models(project: Project, universe: list[tuple[CandidateSpec, bool]],
                 local_backend: str = "transformers") -> list[CandidateSpec]:
    """``eval.candidates`` of project.yaml: model directories (an exported model, a full model, a peft
    adapter on the base model, a sequence classifier) evaluated zero-shot as ``tuned:NAME``, prompted as
    trained; a fresh checkout with no run store gates them."""
    out = []
    taken = {sp.name for sp, _ in universe}
    for name, path in project.eval.candidates.items():
        line = project.key_line("eval", "candidates", name)
        d = Path(path).expanduser()
        d = d if d.is_absolute() or project.root is None else project.root / d
        if not (d / "config.json").is_file() and not (d / "adapter_config.json").is_file():
            raise AdviseError(f"eval.candidates.{name}: {path} is not a model directory (no config.json or "
                              "adapter_config.json)", file=project.project_file, line=line)
        if f"tuned:{name}" in taken:
            raise AdviseError(f"eval.candidates.{name}: tuned:{name} is also a training run's candidate; "
                              "give the model directory another name", file=project.project_file, line=line)
        adapter = str(d) if (d / "adapter_config.json").is_file() else None
        backend = "classifier" if not adapter and is_classifier_dir(d) else local_backend
        model = base_model_ref(project) if adapter else str(d)
        if adapter and not model:
            raise AdviseError(f"eval.candidates.{name}: an adapter needs the project's base_model",
                              file=project.project_file, line=line)
        out.append(CandidateSpec(f"tuned:{name}", "tuned", backend, model, "zero-shot", adapter=adapter,
                                 instruction=False, method=name, stem=f"tuned:{name}"))
    return out


def candidate_order(spec: CandidateSpec) -> tuple:
    src = {"base": 0, "endpoint": 1, "tuned": 2}.get(spec.source, 3)
    return (src, STRATEGIES.index(spec.strategy) if spec.strategy in STRATEGIES else 9)



def make_backend(spec: CandidateSpec, *, trust_remote_code: bool = False, batch_size: int = 16) -> Backend:
    """The backend that answers for ``spec`` (a local model loads here)."""
    if spec.backend == "transformers":
        return TransformersBackend(spec.model, adapter=spec.adapter, revision=spec.revision,
                                   trust_remote_code=trust_remote_code, batch_size=batch_size)
    if spec.backend == "classifier":
        return SequenceClassifierBackend(spec.model, trust_remote_code=trust_remote_code,
                                         batch_size=max(batch_size, 32))
    if spec.backend == "openai":
        ep = dict(spec.endpoint or {})
        return OpenAIBackend(ep.pop("url"), ep.pop("model"), **ep)
    if spec.backend == "vllm":
        return VLLMBackend(spec.model, adapter=spec.adapter, trust_remote_code=trust_remote_code)
    raise AdviseError(f"unknown backend {spec.backend!r}")


def make_judge(project: Project, *, endpoint: str | None = None, model: str | None = None,
               api_key_env: str | None = None, trust_remote_code: bool = False, concurrency: int = 4,
               timeout: float = 120.0) -> Judge:
    """A :class:`~evaluators.judge.Judge` on an endpoint (``endpoint`` + ``model``) or a local model."""
    if not model:
        raise AdviseError("a judge needs a model: the name of a local model, or of the model an endpoint serves")
    if endpoint:
        backend = OpenAIBackend(endpoint, model, api_key_env=api_key_env, concurrency=concurrency, timeout=timeout)
    else:
        backend = TransformersBackend(model, trust_remote_code=trust_remote_code)
    return Judge(backend, task=project.task, project_root=project.root)
