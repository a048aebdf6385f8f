"""The one YAML loader of every YAML file a user gives advise (project.yaml, rubric overrides), and
where in such a file a key or an error is (its line).

Kept apart from the project model so that the rubric loader, which reads rubric overrides with it,
does not import the project model (which reads rubric tables itself: the hardware table, the limits).
"""

from __future__ import annotations

import re

import yaml

__all__ = ["MAX_ALIAS_VALUES", "MAX_YAML_DEPTH", "ProjectLoader", "YAMLBoundError", "key_line", "yaml_error_line"]


def key_line(node: yaml.Node | None, path: tuple) -> int | None:
    """1-based line of the deepest key of ``path`` found in a composed YAML node tree."""
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line



# Bounds of a user's YAML (project.yaml, rubric overrides). A real config has a few hundred values and
# nests under 10 levels; the bounds stop an alias bomb ("billion laughs": 1 KB that expands to 10^9
# values and GBs of memory once anything walks it) and a nesting deep enough to exhaust Python's stack.
MAX_ALIAS_VALUES = 10_000  # values that aliases may add in total, each alias counted expanded
MAX_YAML_DEPTH = 100  # nesting levels of mappings and lists


class YAMLBoundError(yaml.composer.ComposerError):
    """A YAML document beyond the loader's bounds (an alias bomb, a recursive alias, too deep)."""


class ProjectLoader(yaml.SafeLoader):
    """YAML as people mean it in a config file: only true/false are booleans (YAML 1.2), so a key
    ``on:`` or a value ``no`` stays text; a key given twice is an error, not "the last one wins".

    The one loader of every YAML file a user gives advise: aliases are counted expanded while the
    document is composed (more than :data:`MAX_ALIAS_VALUES` values, or an alias of a node that
    contains it, is an error at the alias's line), and nesting deeper than :data:`MAX_YAML_DEPTH` is
    an error at the line where it goes too deep."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._alias_values = 0
        self._open: set[str] = set()
        self._sizes: dict[int, int] = {}

    def _expanded(self, node: yaml.Node) -> int:
        """Values of a composed node with every alias in it expanded (memoised per node)."""
        n = self._sizes.get(id(node))
        if n is None:
            if isinstance(node, yaml.MappingNode):
                n = 1 + sum(self._expanded(k) + self._expanded(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                n = 1 + sum(self._expanded(v) for v in node.value)
            else:
                n = 1
            self._sizes[id(node)] = n
        return n

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise YAMLBoundError(None, None, f"alias *{event.anchor} refers to a value that "
                                                  "contains it (a recursive alias)", event.start_mark)
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._alias_values += self._expanded(node)
                if self._alias_values > MAX_ALIAS_VALUES:
                    raise YAMLBoundError(
                        None, None, f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (an alias bomb?); "
                        "write the values out or use fewer aliases", event.start_mark)
            return super().compose_node(parent, index)
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if self._depth >= MAX_YAML_DEPTH:
                raise YAMLBoundError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                                  event.start_mark)
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if anchor:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # `{a: 1}: 2` or `[x]: 2` (found by bench/fuzz_records.py)
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value (text or a number), not a mapping or a list",
                    key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key '{key}' (first at line {seen[key] + 1})", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


ProjectLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ProjectLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def yaml_error_line(e: yaml.YAMLError, text: str) -> int | None:
    """The problem's line, or the line of its context (an unclosed '[') when the problem is past the end."""
    problem, context = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
    n_lines = max(1, len(text.splitlines()))
    if problem is not None and (problem.line < n_lines or context is None):
        return min(problem.line, n_lines - 1) + 1
    return context.line + 1 if context is not None else None


