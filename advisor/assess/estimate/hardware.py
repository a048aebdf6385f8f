"""The training hardware of the estimate: ``constraints.hardware`` parsed by the one parser of
:mod:`advisor.hardware` (re-exported here) against ``rubrics/hardware.yaml``.

Also the one reader of that table's constants (``hw_const`` / ``hw_source``) for the other estimate
modules, through :func:`advisor.rubric.load_rubric` like every rubric.
"""

from __future__ import annotations

from typing import Any

from advisor.hardware import Hardware, _gpu_index, hw_table, parse_hardware
from advisor.rubric import source, value

__all__ = ["Hardware", "_gpu_index", "gpu_entry", "hw_const", "hw_source", "hw_table", "parse_hardware",
           "reference_gpu"]


def hw_const(*path: str) -> Any:
    """A constant from hardware.yaml's compute/memory sections: its ``value`` when it has one."""
    return value(hw_table(), *path)


def hw_source(*path: str) -> str:
    return str(source(hw_table(), *path))


def gpu_entry(name: str) -> dict[str, Any]:
    for gpu in hw_table()["gpus"]:
        if gpu["name"] == name:
            return gpu
    raise KeyError(name)  # pragma: no cover - the rubric names its own reference GPU


def reference_gpu() -> dict[str, Any]:
    """The GPU that times and prices a project with no GPU stated (or none at all)."""
    return gpu_entry(hw_table()["reference_gpu"]["name"])


