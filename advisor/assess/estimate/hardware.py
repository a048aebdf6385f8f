"""The training hardware: ``constraints.hardware`` parsed against ``rubrics/hardware.yaml``.

Also the one reader of that table's constants (``hw_const`` / ``hw_source``) for the other estimate
modules, through :func:`advisor.rubric.load_rubric` like every rubric.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel

from advisor.rubric import load_rubric, source, value


def hw_table() -> dict[str, Any]:
    """``rubrics/hardware.yaml`` (cached by the rubric loader: read-only data)."""
    return load_rubric("hardware")


def hw_const(*path: str) -> Any:
    """A constant from hardware.yaml's compute/memory sections: its ``value`` when it has one."""
    return value(hw_table(), *path)


def hw_source(*path: str) -> str:
    return str(source(hw_table(), *path))


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

def gpu_entry(name: str) -> dict[str, Any]:
    for gpu in hw_table()["gpus"]:
        if gpu["name"] == name:
            return gpu
    raise KeyError(name)  # pragma: no cover - the rubric names its own reference GPU


def reference_gpu() -> dict[str, Any]:
    """The GPU that times and prices a project with no GPU stated (or none at all)."""
    return gpu_entry(hw_table()["reference_gpu"]["name"])


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


def parse_hardware(text: str | None) -> Hardware:
    """Parse ``constraints.hardware``: "1x A100-80GB", "2x H100", "8xA10G", "RTX 4090", "none", "cpu", None.

    A bare count-less GPU name means one GPU. "none"/"cpu" means no GPU; ``None`` or an empty string
    means the project did not say. An unknown GPU name raises ``ValueError`` with a one-line message
    listing the known names.
    """
    if text is None or not str(text).strip():
        return Hardware(text=text, kind="unknown", count=0, gpu=None, memory_gb=None, bf16_tflops=None,
                        bf16_supported=None, source="no hardware stated in the project")
    raw = str(text).strip()
    if _norm_gpu(raw) in _NO_GPU or raw.lower() in _NO_GPU:
        return Hardware(text=raw, kind="cpu", count=0, gpu=None, memory_gb=None, bf16_tflops=None,
                        bf16_supported=None, source=f"'{raw}': no GPU available")
    count, name = 1, raw
    if m := _COUNT_FIRST.match(raw):
        count, name = int(m.group(1)), m.group(2)
    elif m := _COUNT_LAST.match(raw):
        name, count = m.group(1), int(m.group(2))
    if count < 1:
        raise ValueError(f"hardware '{raw}': the GPU count must be at least 1 (write 'none' for no GPU)")
    gpu = _lookup_gpu(name)
    if gpu is None:
        raise ValueError(f"unknown GPU '{name}' in hardware '{raw}'; known GPUs: {_known_gpu_names()} "
                         f"(or 'none')")
    return Hardware(
        text=raw, kind="gpu", count=count, gpu=gpu["name"], memory_gb=float(gpu["memory_gb"]),
        bf16_tflops=float(gpu["bf16_dense_tflops"]), bf16_supported=bool(gpu.get("bf16", True)),
        source=f"'{raw}' read as {count}x {gpu['name']}; rubrics/hardware.yaml: {gpu['source']}",
    )

