"""JSON metrics: the output parses, conforms to the item's schema (jsonschema, imported on first use),
equals a reference, or shares its (path, value) leaves."""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from evaluators.metrics.base import BINARY, CONTINUOUS, Item, MetricError, as_text, metric

_FENCE_RE = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str, extract: str = "strict") -> tuple[bool, Any]:
    """Parse model output as JSON. ``extract``: ``"strict"`` (the whole output, surrounding
    whitespace allowed), ``"fenced"`` (also accept one markdown code fence around it) or ``"first"``
    (the first JSON object or array anywhere in the text). NaN/Infinity are rejected."""
    s = as_text(text).strip()
    if extract not in {"strict", "fenced", "first"}:
        raise MetricError(f"unknown JSON extract mode {extract!r} (strict, fenced, first)")
    if extract in {"fenced", "first"}:
        m = _FENCE_RE.match(s)
        if m:
            s = m.group(1).strip()
    try:
        return True, json.loads(s, parse_constant=_reject_constant)
    except ValueError:
        pass
    if extract == "first":
        decoder = json.JSONDecoder(parse_constant=_reject_constant)
        for m in re.finditer(r"[\[{]", s):
            try:
                return True, decoder.raw_decode(s, m.start())[0]
            except ValueError:
                continue
    return False, None


@metric("json_valid", kind=BINARY, needs_reference=False, higher_is_better=True,
        description="the output parses as JSON")
def _json_valid(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    return float(parse_json(pred, config.get("extract", "strict"))[0])


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str):
    from jsonschema import exceptions, validators

    schema = json.loads(schema_json)
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as e:
        raise MetricError(f"json_schema: the schema itself is invalid: {e.message}") from None
    return cls(schema)


def _schema_for(item: Item, config: Mapping[str, Any]) -> Any:
    schema = item.get("schema", item.get("json_schema", config.get("schema")))
    if schema is None:
        raise MetricError("json_schema needs a schema: put one in the item ('schema') or the metric config")
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise MetricError(f"json_schema: the schema is not valid JSON: {e}") from None
    return schema


@metric("json_schema", kind=BINARY, needs_reference=False, higher_is_better=True,
        description="the output is JSON that conforms to the schema")
def _json_schema(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    validator = _validator(json.dumps(_schema_for(item, config), sort_keys=True))
    ok, value = parse_json(pred, config.get("extract", "strict"))
    return float(ok and validator.is_valid(value))


def _canon(value: Any) -> Any:
    """Canonical JSON value for comparison: 1 == 1.0, dict key order ignored."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value


@metric("json_match", kind=BINARY, needs_reference=True, higher_is_better=True,
        description="the output's JSON equals a reference's JSON (key order, 1 vs 1.0 ignored)")
def _json_match(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float:
    ok, value = parse_json(pred, config.get("extract", "strict"))
    if not ok:
        return 0.0
    v = _canon(value)
    for r in refs:
        rok, rv = parse_json(r, "fenced")
        if rok and _canon(rv) == v:
            return 1.0
    return 0.0


def _flatten(value: Any, path: str = "$") -> list[tuple[str, str]]:
    """Leaf (path, value) pairs; list positions are ignored (``key[]``) so order does not matter."""
    if isinstance(value, Mapping):
        if not value:
            return [(path, "{}")]
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out.extend(_flatten(v, f"{path}.{k}"))
        return out
    if isinstance(value, list):
        if not value:
            return [(path, "[]")]
        out = []
        for v in value:
            out.extend(_flatten(v, f"{path}[]"))
        return out
    return [(path, json.dumps(_canon(value), sort_keys=True, ensure_ascii=False))]


@metric("json_field_f1", kind=CONTINUOUS, needs_reference=True, higher_is_better=True,
        description="F1 over the (path, value) leaves of output and reference JSON")
def _json_field_f1(pred: str, refs: list[str], item: Item, config: Mapping[str, Any]) -> float | None:
    ok, value = parse_json(pred, config.get("extract", "strict"))
    best: float | None = None
    for r in refs:
        rok, rv = parse_json(r, "fenced")
        if not rok:
            continue
        gold = Counter(_flatten(rv))
        got = Counter(_flatten(value)) if ok else Counter()
        tp = sum((gold & got).values())
        f1 = 0.0 if tp == 0 else 2.0 * tp / (sum(gold.values()) + sum(got.values()))
        best = f1 if best is None else max(best, f1)
    return best


