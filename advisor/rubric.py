"""Rubrics are data: YAML tables shipped in the ``rubrics`` package, each number with its source.

``load_rubric("decision")`` returns the shipped table merged with ``PROJECT/rubrics/decision.yaml``
when a project overrides it. Entries of the form ``{value: X, source: ...}`` are read with
:func:`value`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from advisor.errors import AdviseError


@cache
def _shipped(name: str) -> dict:
    text = resources.files("rubrics").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml when available


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and "value" not in v:
            out[k] = _merge(out[k], v)
        elif isinstance(out.get(k), dict) and "value" in out[k] and not isinstance(v, dict):
            out[k] = {**out[k], "value": v, "source": "project override"}
        else:
            out[k] = v
    return out


def load_rubric(name: str, project_root: Path | None = None) -> dict:
    table = _shipped(name)
    if project_root is not None:
        over_file = Path(project_root) / "rubrics" / f"{name}.yaml"
        if over_file.is_file():
            try:
                over = yaml.safe_load(over_file.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                raise AdviseError(f"YAML syntax error: {getattr(e, 'problem', e)}", file=over_file,
                                  line=mark.line + 1 if mark else None) from None
            if not isinstance(over, dict):
                raise AdviseError("expected a mapping", file=over_file, line=1)
            table = _merge(table, over)
    return table


def value(table: dict, *path: str) -> Any:
    node: Any = table
    for p in path:
        node = node[p]
    return node["value"] if isinstance(node, dict) and "value" in node else node


def source(table: dict, *path: str) -> str:
    node: Any = table
    for p in path:
        node = node[p]
    return node.get("source", "") if isinstance(node, dict) else ""
