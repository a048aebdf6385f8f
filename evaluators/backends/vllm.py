"""vLLM's offline engine as an eval backend, imported only when asked for (``--backend vllm``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.errors import AdviseError
from advisor.hf import first_line
from evaluators.backends.base import Backend, Generation, GenerationSettings


class VLLMBackend(Backend):
    """vLLM's offline engine (``vllm.LLM``), for users who outgrow one CPU/GPU process.

    Loaded only when vLLM is installed; otherwise a clear :class:`AdviseError`. Greedy unless the
    settings ask for sampling; LoRA adapters through vLLM's ``LoRARequest``.
    """

    kind = "vllm"

    def __init__(self, model: str | Path, *, adapter: str | Path | None = None, trust_remote_code: bool = False,
                 **engine_args: Any):
        super().__init__()
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise AdviseError("the vLLM backend needs vLLM: pip install vllm (on a machine with a supported GPU)") from None
        from vllm import LLM

        self.model_name, self.adapter = str(model), adapter
        try:
            self.llm = LLM(model=str(model), trust_remote_code=trust_remote_code, enable_lora=adapter is not None,
                           **engine_args)
        except Exception as e:  # noqa: BLE001
            raise AdviseError(f"vLLM cannot load model '{model}': {first_line(e)}") from None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_name, "adapter": str(self.adapter) if self.adapter else None}

    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                top_p=settings.top_p if settings.sampling else 1.0,
                                seed=settings.seed if settings.sampling else None)
        lora = None
        if self.adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, str(self.adapter))
        t0 = time.perf_counter()
        try:
            results = self.llm.chat(list(prompts), params, lora_request=lora, use_tqdm=False)
        except Exception as e:  # noqa: BLE001
            return [Generation(None, error=f"vLLM generation failed: {first_line(e)}") for _ in prompts]
        dt = (time.perf_counter() - t0) / max(1, len(prompts))
        self.calls["generate"] += 1
        self.calls["items"] += len(prompts)
        return [Generation(r.outputs[0].text.strip(), n_tokens=len(r.outputs[0].token_ids), seconds=dt,
                           extra={"hit_limit": True} if getattr(r.outputs[0], "finish_reason", None) == "length" else {})
                for r in results]
