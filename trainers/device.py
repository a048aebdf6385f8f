"""The machine a run trains on: the device and precision (:func:`select_device`), options that need
CUDA (:func:`check_common_options`) and peak memory (:class:`PeakMemory`). torch is imported inside
the functions that need it."""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from advisor.errors import AdviseError

__all__ = ["DeviceInfo", "PeakMemory", "check_common_options", "cpu_name", "import_optional", "peak_rss_mb",
           "select_device"]


@dataclass
class DeviceInfo:
    type: Literal["cuda", "mps", "cpu"]
    name: str
    count: int
    bf16: bool = False  # train in bf16 (mixed precision)
    fp16: bool = False
    world_size: int = 1
    rank: int = 0

    @property
    def load_dtype(self) -> str:
        return "bfloat16" if self.bf16 else "float16" if self.fp16 else "float32"

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["dtype"] = self.load_dtype
        d["cpu_cores"] = os.cpu_count()
        d["launcher"] = ("accelerate" if any(k.startswith("ACCELERATE_") for k in os.environ)
                         else "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else "single process")
        try:
            import torch

            d["torch_threads"] = torch.get_num_threads()
        except ImportError:
            pass
        return d


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def select_device(precision: str = "auto") -> DeviceInfo:
    """bf16 on a CUDA GPU that supports it, fp32 elsewhere; the same code on every machine."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        bf16_ok = torch.cuda.is_bf16_supported()
        bf16 = precision == "bf16" or (precision == "auto" and bf16_ok)
        fp16 = precision == "fp16" or (precision == "auto" and not bf16_ok)
        return DeviceInfo("cuda", torch.cuda.get_device_name(0), torch.cuda.device_count(), bf16, fp16, world, rank)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return DeviceInfo("mps", "Apple MPS", 1, False, False, world, rank)
    # bf16 autocast on CPU is correct but several times slower than fp32 on most CPUs: only on request
    return DeviceInfo("cpu", cpu_name(), 1, precision == "bf16", False, world, rank)


def check_common_options(config, device: DeviceInfo) -> None:
    """Options that only work on CUDA, refused before any work on a machine without it."""
    if device.type != "cuda":
        if config.precision == "fp16":
            raise AdviseError(f"train.precision: fp16 needs a CUDA GPU and this machine has none ({device.type}); "
                              "use precision: auto (fp32 on CPU)")
        if config.attn_implementation == "flash_attention_2":
            raise AdviseError("train.attn_implementation: flash_attention_2 needs a CUDA GPU and this machine has "
                              f"none ({device.type}); use auto")



class PeakMemory:
    """Peak memory of this process: torch.cuda.max_memory_allocated on a GPU, peak RSS on CPU."""

    def __init__(self, device: DeviceInfo | None = None):
        self.device = device
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def mb(self) -> float:
        if self.device is not None and self.device.type == "cuda":
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mb()


def peak_rss_mb() -> float:
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024 if sys.platform != "darwin" else kb / 2**20
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20




def import_optional(name: str):
    """The module ``name``, or None when it is not installed (bitsandbytes, deepspeed, ...)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
