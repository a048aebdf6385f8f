"""The layers of advise, enforced over the source: which folder may import which.

* core (``advisor`` at its root and ``advisor/data/``) imports nothing of assess, report, pipeline,
  cli, evaluators or trainers;
* ``advisor.assess`` builds on the core only; ``advisor.probe`` (a top layer like the pipeline) on the
  core, assess, evaluators and trainers, never on the report, the pipeline or the CLI;
* ``evaluators`` and ``trainers`` build on the core (and ``advisor.data``), never on each other,
  assess, report, pipeline or cli;
* the built-in plugins import only ``trainers`` (its public API) and ``advisor.errors``, as a
  third-party plugin would;
* nothing outside ``advisor.cli`` imports ``advisor.cli``;
* the project's own modules are imported at module top (a function-level import of one is a cycle
  or a start-up cost that must be named in ALLOWED_LOCAL below).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OWN = ("advisor", "evaluators", "trainers", "rubrics")

CORE_FORBIDDEN = ("advisor.assess", "advisor.report", "advisor.pipeline", "advisor.probe", "advisor.cli", "evaluators",
                  "trainers")
RULES: list[tuple[str, tuple[str, ...]]] = [
    # (module prefix, prefixes it must not import)
    ("advisor.assess", ("advisor.report", "advisor.pipeline", "advisor.probe", "advisor.cli", "evaluators", "trainers")),
    ("advisor.report", ("advisor.pipeline", "advisor.probe", "advisor.cli", "trainers")),
    ("advisor.probe", ("advisor.report", "advisor.pipeline", "advisor.cli")),
    ("evaluators", ("trainers", "advisor.assess", "advisor.report", "advisor.pipeline", "advisor.probe", "advisor.cli")),
    ("trainers", ("evaluators", "advisor.assess", "advisor.report", "advisor.pipeline", "advisor.probe", "advisor.cli")),
]
PLUGIN_ALLOWED = ("trainers", "advisor.errors")

# Function-level imports of the project's own modules that are there on purpose: the CLI imports a
# command's domain module when the command runs (``advise --help`` stays fast).
ALLOWED_LOCAL = {
    "advisor.cli.main": "the commands of the group import their domain code when they run",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> list[Path]:
    return sorted(p for top in OWN for p in (REPO / top).rglob("*.py"))


def imports(path: Path, me: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module top?) for every import of the project's own code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = me or module_name(path)
    top_level = {id(n) for n in tree.body}
    # imports under `if TYPE_CHECKING:` or try/except at the top count as top level
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            top_level |= {id(m) for m in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".")[: -node.level] if not path.name == "__init__.py" else me.split(".")[: len(me.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] if mod != "trainers" else [f"trainers.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in OWN:
                out.append((name, node.lineno, id(node) in top_level))
    return out


def is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(paths: list[Path], as_module: str | None = None) -> list[str]:
    """Every broken rule in ``paths`` (``as_module``: check a file as if it were that module)."""
    bad = []
    for path in paths:
        me = as_module or module_name(path)
        where = f"{path.relative_to(REPO)}" if path.is_relative_to(REPO) else f"{path} (as {me})"
        core = is_under(me, "advisor") and not any(is_under(me, p) for p in CORE_FORBIDDEN)
        plugin = is_under(me, "trainers.plugins")
        for name, line, at_top in imports(path, me):
            if core and any(is_under(name, p) for p in CORE_FORBIDDEN):
                bad.append(f"{where}:{line}: the core imports {name}")
            for prefix, forbidden in RULES:
                if is_under(me, prefix) and any(is_under(name, f) for f in forbidden):
                    bad.append(f"{where}:{line}: {prefix} imports {name}")
            if plugin and not is_under(name, "trainers.plugins") and name not in PLUGIN_ALLOWED \
                    and not (is_under(name, "advisor.errors") or name.split(".")[0] == "trainers"
                             and name.count(".") <= 1 and name.split(".")[1:2] != ["plugins"]
                             and _public(name)):
                bad.append(f"{where}:{line}: a plugin imports {name} (only trainers and advisor.errors)")
            if is_under(name, "advisor.cli") and not is_under(me, "advisor.cli"):
                bad.append(f"{where}:{line}: imports the CLI ({name})")
            if not at_top and me not in ALLOWED_LOCAL and not is_under(name, me):
                bad.append(f"{where}:{line}: imports {name} inside a function")
    return sorted(set(bad))


def _public(name: str) -> bool:
    """``trainers`` itself, or a name re-exported by ``trainers/__init__.py`` (``trainers.X`` where X is
    one of its ``__all__``)."""
    if name == "trainers":
        return True
    api = REPO / "trainers" / "__init__.py"
    tree = ast.parse(api.read_text(encoding="utf-8"))
    exported: set[str] = set()
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets):
            exported = {e.value for e in n.value.elts}
    return name.split(".", 1)[1] in exported


def test_the_source_keeps_its_layers():
    bad = violations(source_modules())
    assert not bad, "layer violations:\n" + "\n".join(bad)


@pytest.mark.parametrize("offender, line", [
    ("advisor/errors.py", "from evaluators.stats import compare\n"),
    ("evaluators/stats/paired.py", "from trainers import TrainerPlugin\n"),
    ("trainers/plugins/lora.py", "from advisor.store import Store\n"),
    ("advisor/assess/decide.py", "from advisor.cli.views import print_assessment\n"),
    ("evaluators/gates.py", "def f():\n    from advisor.store import Store\n"),
])
def test_a_forbidden_import_is_caught(tmp_path, offender, line):
    """The check can fail: the same walk over a copy of a module with one forbidden import added."""
    src = REPO / offender
    copy = tmp_path / "copy.py"
    copy.write_text(src.read_text(encoding="utf-8") + "\n" + line, encoding="utf-8")
    before = violations([src])
    after = violations([copy], as_module=module_name(src))
    assert len(after) > len(before), f"adding {line!r} to {offender} was not caught"
