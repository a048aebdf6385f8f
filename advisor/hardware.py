"""The one parser of a hardware string ("2x H100", "1x A100-80GB", "none"), read against
``rubrics/hardware.yaml``: project.yaml's ``constraints.hardware`` is parsed with it when the project
loads, so assess, train, eval and ``run --dry-run`` accept and refuse the same strings, and the cost
estimate (``advisor.assess.estimate``) prices the GPUs it names.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel

from advisor import rubric

__all__ = ["Hardware", "hw_table", "max_gpus", "parse_hardware"]


def hw_table() -> dict[str, Any]:
    """``rubrics/hardware.yaml`` (cached by the rubric loader: read-only data)."""
    return rubric.load_rubric("hardware")


def max_gpus() -> int:
    """The most GPUs a hardware string may state (``max_gpus`` of the hardware table, a policy)."""
    return int(rubric.value(hw_table(), "max_gpus"))


class Hardware(BaseModel):
    """The GPUs available for training, as parsed from ``constraints.hardware``.

    ``kind`` is "gpu" (a known GPU, ``count`` >= 1), "cpu" (the project said "none"/"cpu": no GPU) or
    "unknown" (nothing stated). ``memory_gb`` is per GPU; ``bf16_tflops`` is the peak dense bf16
    tensor throughput per GPU (fp16 for GPUs without bf16, see ``bf16_supported``).
    """

    text: str | None
    kind: Literal["gpu", "cpu", "unknown"]
    count: int
    gpu: str | None
    memory_gb: float | None
    bf16_tflops: float | None
    bf16_supported: bool | None
    source: str


_NO_GPU = {"none", "no", "nogpu", "cpu", "cpuonly", "0", "na", "n/a"}
_VENDOR_WORDS = re.compile(r"\b(nvidia|geforce|tesla)\b")


def _norm_gpu(text: str) -> str:
    """Lower-case, drop vendor words and every non-alphanumeric character: 'NVIDIA A100 80GB' -> 'a10080gb'."""
    return re.sub(r"[^a-z0-9]", "", _VENDOR_WORDS.sub("", text.lower()))


@lru_cache(maxsize=1)
def _gpu_index() -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for gpu in hw_table()["gpus"]:
        for alias in [gpu["name"], *gpu.get("aliases", [])]:
            index.setdefault(_norm_gpu(str(alias)), gpu)
    return index


_MEMORY_WORD = re.compile(r"\b\d+\s*gb?\b", re.IGNORECASE)
_FORM_WORD = re.compile(r"\b(pcie|sxm\d?)\b", re.IGNORECASE)


def _lookup_gpu(name: str) -> dict[str, Any] | None:
    """Exact alias first; then the same name without its memory size, its form factor, or both."""
    index = _gpu_index()
    if (gpu := index.get(_norm_gpu(name))) is not None:
        return gpu
    stated = [int(re.sub(r"\D", "", m)) for m in _MEMORY_WORD.findall(name)]
    no_mem = _MEMORY_WORD.sub(" ", name)
    for candidate in (no_mem, _FORM_WORD.sub(" ", name), _FORM_WORD.sub(" ", no_mem)):
        gpu = index.get(_norm_gpu(candidate))
        if gpu is not None and (not stated or stated[0] == gpu["memory_gb"]):
            return gpu
    return None


def _known_gpu_names() -> str:
    return ", ".join(g["name"] for g in hw_table()["gpus"])


_COUNT_FIRST = re.compile(r"^\s*(\d+)\s*[x×*]\s*(.+?)\s*$", re.IGNORECASE)
_COUNT_LAST = re.compile(r"^\s*(.+?)\s+[x×*]\s*(\d+)\s*$", re.IGNORECASE)
# a count that is not a whole number written in digits: "1e26x", "10^26x", "1.5x", "-2x", "2**8x"
_ODD_COUNT = re.compile(r"^\s*([-+]?[\d.]+(?:\s*(?:[eE][-+]?|\^|\*\*)\s*[-+]?\d+)|[-+][\d.]+|\d*\.\d+)\s*[x×]\s*\S",
                        re.IGNORECASE)


def parse_hardware(text: str | None) -> Hardware:
    """Parse ``constraints.hardware``: "1x A100-80GB", "2x H100", "8xA10G", "RTX 4090", "none", "cpu", None.

    A bare count-less GPU name means one GPU. "none"/"cpu" means no GPU; ``None`` or an empty string
    means the project did not say. An unknown GPU name, or a count that is not a whole number from 1 to
    :func:`max_gpus`, raises ``ValueError`` with a one-line message.
    """
    if text is None or not str(text).strip():
        return Hardware(text=text, kind="unknown", count=0, gpu=None, memory_gb=None, bf16_tflops=None,
                        bf16_supported=None, source="no hardware stated in the project")
    raw = str(text).strip()
    if _norm_gpu(raw) in _NO_GPU or raw.lower() in _NO_GPU:
        return Hardware(text=raw, kind="cpu", count=0, gpu=None, memory_gb=None, bf16_tflops=None,
                        bf16_supported=None, source=f"'{raw}': no GPU available")
    if m := _ODD_COUNT.match(raw):
        raise ValueError(f"hardware '{raw}': the GPU count '{m.group(1).strip()}' is not a whole number written in "
                         f"digits; write it, from 1 to {max_gpus():,} (e.g. '2x H100'), or 'none' for no GPU")
    count, name = 1, raw
    if m := _COUNT_FIRST.match(raw):
        count, name = int(m.group(1)), m.group(2)
    elif m := _COUNT_LAST.match(raw):
        name, count = m.group(1), int(m.group(2))
    if count < 1:
        raise ValueError(f"hardware '{raw}': the GPU count must be at least 1 (write 'none' for no GPU)")
    if count > max_gpus():
        raise ValueError(f"hardware '{raw}': {count:,} GPUs is more than any training cluster holds (at most "
                         f"{max_gpus():,}, rubrics/hardware.yaml max_gpus); check the count")
    gpu = _lookup_gpu(name)
    if gpu is None:
        raise ValueError(f"unknown GPU '{name}' in hardware '{raw}'; known GPUs: {_known_gpu_names()} "
                         f"(or 'none')")
    return Hardware(
        text=raw, kind="gpu", count=count, gpu=gpu["name"], memory_gb=float(gpu["memory_gb"]),
        bf16_tflops=float(gpu["bf16_dense_tflops"]), bf16_supported=bool(gpu.get("bf16", True)),
        source=f"'{raw}' read as {count}x {gpu['name']}; rubrics/hardware.yaml: {gpu['source']}",
    )
