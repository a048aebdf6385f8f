"""Rubrics are data: YAML tables shipped in the ``rubrics`` package, each number with its source.

This is the one reader of those tables: the decision rules and data checks (``decision``,
``data_checks``) and the estimate's constants (``hardware``, ``prices``, ``models``) all come through
:func:`load_rubric`, parsed once per process (libyaml when available) and cached.

``load_rubric("decision", project_root)`` returns the shipped table merged with
``PROJECT/rubrics/decision.yaml`` when a project overrides it (callers pass ``project_root`` only for
the tables a project may override: decision and data_checks). Entries of the form
``{value: X, source: ...}`` are read with :func:`value` and :func:`source`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from advisor.errors import AdviseError
from advisor.yamlload import ProjectLoader
from advisor.yamlload import key_line as _key_line
from advisor.yamlload import yaml_error_line as _yaml_error_line


@cache
def _shipped(name: str) -> dict:
    """The shipped ``rubrics/NAME.yaml`` (read-only: callers must not mutate it)."""
    text = resources.files("rubrics").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    table = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml when available
    if not isinstance(table, dict):  # pragma: no cover - a broken install, not user input
        raise RuntimeError(f"rubrics/{name}.yaml is not a mapping")
    return table


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


class _Bad(Exception):
    def __init__(self, path: tuple, why: str):
        self.path, self.why = path, why


def _merge(base: dict, over: dict, path: tuple = ()) -> dict:
    """The shipped table with the override merged in; each overriding value must have the shipped value's kind."""
    out = dict(base)
    for k, v in over.items():
        here = (*path, k)
        if k not in base:
            # new entries only where the shipped table is a map of numbers (e.g. points per method)
            if base and all(_kind(x) == "a number" for x in base.values()) and _kind(v) == "a number":
                out[k] = v
                continue
            raise _Bad(here, f"is not a key of the shipped rubric (known here: {', '.join(map(str, base)) or 'none'})")
        b = base[k]
        if isinstance(b, dict) and "value" in b:  # {value: X, source: ...}
            new = v.get("value") if isinstance(v, dict) else v
            if isinstance(v, dict) and "value" not in v:
                raise _Bad(here, "expected {value: ..., source: ...} or a plain value")
            if _kind(new) != _kind(b["value"]):
                raise _Bad(here, f"expected {_kind(b['value'])} (shipped: {b['value']!r}), got {new!r}")
            out[k] = {**b, **v} if isinstance(v, dict) else {**b, "value": v, "source": "project override"}
        elif isinstance(b, dict):
            if not isinstance(v, dict):
                raise _Bad(here, f"expected a mapping like the shipped rubric's, got {v!r}")
            out[k] = _merge(b, v, here)
        elif _kind(v) != _kind(b):
            raise _Bad(here, f"expected {_kind(b)} (shipped: {b!r}), got {v!r}")
        else:
            out[k] = v
    return out


def load_rubric(name: str, project_root: Path | None = None) -> dict:
    """The shipped table ``name``, merged with the project's ``rubrics/NAME.yaml`` when ``project_root`` has one.

    A bad override raises :class:`AdviseError` naming the override file and line.
    """
    table = _shipped(name)
    if project_root is not None:
        over_file = Path(project_root) / "rubrics" / f"{name}.yaml"
        if over_file.is_file():
            text = over_file.read_text(encoding="utf-8")
            try:
                over = yaml.load(text, Loader=ProjectLoader) or {}  # noqa: S506 - a SafeLoader subclass
            except yaml.YAMLError as e:
                raise AdviseError(f"YAML syntax error: {getattr(e, 'problem', None) or e}", file=over_file,
                                  line=_yaml_error_line(e, text)) from None
            if not isinstance(over, dict):
                raise AdviseError("expected a mapping of rubric keys (see rubrics/ in advise for the shipped ones)",
                                  file=over_file, line=1)
            try:
                table = _merge(table, over)
            except _Bad as e:
                line = _key_line(yaml.compose(text, Loader=ProjectLoader), e.path)
                raise AdviseError(f"{'.'.join(map(str, e.path))} {e.why}", file=over_file, line=line) from None
    return table


def value(table: dict, *path: str) -> Any:
    """The entry at ``path``: its ``value`` when it is a ``{value: X, source: ...}`` entry."""
    node: Any = table
    for p in path:
        node = node[p]
    return node["value"] if isinstance(node, dict) and "value" in node else node


def source(table: dict, *path: str) -> str:
    """The ``source`` of the entry at ``path`` ("" when it has none)."""
    node: Any = table
    for p in path:
        node = node[p]
    return node.get("source", "") if isinstance(node, dict) else ""
