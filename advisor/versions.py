"""The versions a result depends on: Python and the installed libraries, read from package metadata.

One collector for every place that records them (the run store's ``versions`` column, training
runs, the HTML report). Nothing is imported: ``importlib.metadata`` reads the installed
distributions' metadata, so asking costs milliseconds even when torch is installed.
"""

from __future__ import annotations

import platform
from functools import cache
from importlib import metadata

from advisor import __version__

# Every library whose version can change a result of advise (absent ones are left out).
LIBRARIES: tuple[str, ...] = (
    "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers", "safetensors",
    "bitsandbytes", "deepspeed", "sentence-transformers", "scikit-learn", "vllm",
)


def versions(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """``{"python": "3.12.3", "torch": "2.5.1", ...}`` for the installed ones among ``libraries`` (a new dict)."""
    return dict(_versions(tuple(libraries)))


@cache
def _versions(libraries: tuple[str, ...]) -> dict[str, str]:  # installed packages do not change mid-process
    # advise itself: its own version (the distribution is advise-llm; PyPI's "advise" is another project)
    out = {"python": platform.python_version(), "advise": __version__}
    for name in libraries:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def distribution_of(module: str) -> str | None:
    """``"advise-plugin-example 0.2.0"``: the installed distribution that provides ``module``, or None."""
    try:
        dists = metadata.packages_distributions().get(module.split(".")[0], [])
        return f"{dists[0]} {metadata.version(dists[0])}" if dists else None
    except metadata.PackageNotFoundError:
        return None
