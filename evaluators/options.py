"""The settings of an eval, with their defaults and what each means, defined once: :class:`EvalOptions`.

``advise eval``'s options read their defaults and help from here (:func:`default`, :func:`help_of`), and
:func:`evaluators.runner.run_eval` takes an :class:`EvalOptions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from advisor.errors import AdviseError
from evaluators.candidates import LOCAL_BACKENDS


def _setting(default: Any, help: str) -> Any:  # noqa: A002 - the word click uses
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how. ``None`` in ``candidates``/``strategies``/``max_items`` means the default
    (every default candidate, every applicable strategy, ``eval.max_items`` of project.yaml)."""

    candidates: Sequence[str] | None = _setting(
        None, "Evaluate only these candidates (shell patterns such as 'tuned:*').")
    strategies: Sequence[str] | None = _setting(
        None, "Prompt strategies to run (default: zero-shot, few-shot, and rag when the project has docs).")
    endpoint: str | None = _setting(
        None, "An OpenAI-compatible server (vLLM, TGI, hosted), e.g. http://localhost:8000/v1.")
    endpoint_model: str | None = _setting(None, "The model name the endpoint serves.")
    api_key_env: str | None = _setting(
        None, "Environment variable holding the endpoint's API key (the key itself is never stored).")
    concurrency: int = _setting(4, "Requests in flight at once to an endpoint.")
    timeout: float = _setting(60.0, "Seconds per endpoint request.")
    max_retries: int = _setting(
        4, "Retries of an endpoint request on 429, 5xx and connection errors (exponential backoff).")
    backoff: float = _setting(1.0, "Seconds before the first retry of an endpoint request (doubling after).")
    max_items: int | None = _setting(None, "Evaluate at most N eval items.")
    use_cache: bool = _setting(True, "Reuse cached answers (off: answer every item again; the new answers "
                                     "replace the cached ones).")
    seed: int = _setting(0, "Seed of sampling (with a temperature above 0).")
    temperature: float = _setting(0.0, "0 is greedy decoding; above 0 samples, seeded by the seed.")
    top_p: float = _setting(1.0, "Nucleus sampling: the share of probability mass sampled from.")
    batch_size: int = _setting(16, "Prompts per local generation batch.")
    retriever: str = _setting("embedding", "How few-shot examples and RAG passages are found.")
    canary: str | None = _setting(
        "shipped", "Forgetting check: the shipped general-capability canary set, none, or your own JSONL file.")
    benchmarks: Sequence[str] | None = _setting(
        None, "Standard benchmarks (lm-eval task names) on the base and tuned models (default: eval.benchmarks.tasks "
              "of project.yaml; an empty list runs none).")
    local_backend: str = _setting(
        "transformers", "Engine for local models: transformers, or vLLM's offline engine (needs `pip install vllm`).")
    trust_remote_code: bool = _setting(
        False, "Allow model repositories to run their own Python code (off by default).")
    progress: bool = _setting(False, "Show a progress bar on stderr.")

    def __post_init__(self) -> None:
        if self.local_backend not in LOCAL_BACKENDS:
            raise AdviseError(f"unknown local backend {self.local_backend!r} ({', '.join(LOCAL_BACKENDS)})")
        if self.endpoint and not self.endpoint_model:
            raise AdviseError("an endpoint needs the name of the model it serves (endpoint_model)")
        if self.endpoint_model and not self.endpoint:
            raise AdviseError(f"endpoint_model {self.endpoint_model!r} needs an endpoint URL")

    def endpoint_config(self) -> dict | None:
        """The endpoint candidate's connection settings, or None without an endpoint."""
        if not self.endpoint:
            return None
        return {"url": self.endpoint, "model": self.endpoint_model, "api_key_env": self.api_key_env,
                "concurrency": self.concurrency, "timeout": self.timeout, "max_retries": self.max_retries,
                "backoff": self.backoff}


_FIELDS = {f.name: f for f in fields(EvalOptions)}


def default(name: str) -> Any:
    """The default of the setting ``name``."""
    f = _FIELDS[name]
    return None if f.default is MISSING else f.default


def help_of(name: str) -> str:
    """What the setting ``name`` means (the CLI's help text)."""
    return _FIELDS[name].metadata["help"]
