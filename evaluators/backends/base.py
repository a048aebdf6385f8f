"""What the eval needs from anything that answers eval items: settings, one reply, the backend interface.

Every backend has the same small interface (:class:`Backend`):

* ``generate(prompts, settings) -> list[Generation]``: one reply per prompt (a list of chat messages);
  a failure on one item is a :class:`Generation` with ``error`` set, never a silent empty answer;
* ``loglik(prompts, targets) -> list[(mean token log-likelihood, n_tokens)]`` where the backend can
  score a reference (``supports_loglik``);
* ``calls``: counters of what was asked of the model (used by the cache tests and the benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationSettings:
    """How replies are generated. ``temperature == 0`` is greedy decoding (the default)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def key(self) -> dict[str, Any]:
        """What changes outputs (the seed only matters when sampling)."""
        d = asdict(self)
        if not self.sampling:
            d.pop("seed")
            d.pop("top_p")
        return d


@dataclass
class Generation:
    """One reply. ``text`` is None exactly when ``error`` says why there is no reply."""

    text: str | None
    error: str | None = None
    n_tokens: int | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend:
    """Base class: what the runner needs from anything that answers eval items."""

    kind = "base"
    supports_loglik = False
    batch_size = 16

    def __init__(self) -> None:
        self.calls = {"generate": 0, "items": 0, "loglik_items": 0}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        raise NotImplementedError

    def overflow(self, messages: list[dict], room: int) -> int | None:
        """Tokens by which ``messages`` exceed the context with ``room`` tokens left to answer in (<= 0:
        it fits); None when the backend cannot tell (an endpoint)."""
        return None

    def loglik(self, prompts: Sequence[list[dict]], targets: Sequence[str]) -> list[tuple[float | None, int]]:
        raise NotImplementedError(f"the {self.kind} backend cannot score references")

    def close(self) -> None:
        """Release the model (memory); the backend is unusable afterwards."""
