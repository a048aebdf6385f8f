"""A plugin's config from project.yaml's ``train:`` block, and the table of a config's fields.

The config is built from the keys the user wrote under ``train:`` (the common ones of
``advisor.training`` and any plugin-specific ones). A key that no available plugin knows is an error
naming project.yaml, the key and its line (it is most likely a typo); a key that another plugin knows
is ignored by this one, so one project file serves several methods.
"""

from __future__ import annotations

import difflib
import re

from pydantic import BaseModel, ValidationError

from advisor.errors import AdviseError
from trainers.plugin import PluginConfig, TrainerPlugin
from trainers.registry import all_plugins

__all__ = ["build_config", "config_fields", "known_keys", "unknown_train_keys"]


def config_fields(config_class: type[BaseModel]) -> list[dict]:
    """Name, type, default and limits of each hyperparameter (for `advise plugins`)."""
    rows = []
    for name, f in config_class.model_fields.items():
        limits = []
        for m in f.metadata:
            for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                v = getattr(m, attr, None)
                if v is not None:
                    limits.append(f"{sym} {v}")
        typ = re.sub(r"typing\.|<class '([^']+)'>", r"\1", str(f.annotation)).replace("NoneType", "None")
        rows.append({"name": name, "type": typ, "default": f.default if not f.is_required() else None,
                     "limits": ", ".join(limits), "description": f.description or ""})
    return rows


def known_keys() -> set[str]:
    """Every key of ``train:`` that some installed training plugin takes."""
    keys: set[str] = set()
    for p in all_plugins().values():
        if isinstance(p, TrainerPlugin):
            keys |= set(p.config_class.model_fields)
    return keys


_known_keys = known_keys


def _suggest(key: str, known: set[str]) -> str | None:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return close[0] if close else None


def unknown_train_keys(project, known: set[str] | None = None) -> list[tuple[str, str | None]]:
    """The keys under project.yaml's ``train:`` that no installed plugin takes (most likely typos: extra
    keys are allowed there for plugins of one's own), each with the known key closest to it (difflib)
    or None: what ``advise assess`` and ``run --dry-run`` report before a training run refuses them."""
    known = known_keys() if known is None else known
    written = project.train.model_dump(exclude_unset=True)
    return [(str(k), _suggest(str(k), known)) for k in written if k not in known]


def build_config(plugin: TrainerPlugin, project, overrides: dict | None = None,
                 known_keys: set[str] | None = None) -> PluginConfig:
    """The plugin's config from ``project.train`` (only the keys the user wrote) plus ``overrides``
    (command-line options; ``max_steps`` replaces ``epochs`` and the other way round).

    Invalid values raise AdviseError naming project.yaml, the key and its line. Keys no available
    plugin knows are errors; keys only other plugins know are ignored.
    """
    raw = dict(project.train.model_dump(exclude_unset=True)) if project is not None else {}  # extras included
    fields = set(plugin.config_class.model_fields)
    if known_keys is None:
        known_keys = _known_keys()
    pfile = project.project_file if project is not None else "project.yaml"

    def line(key: str) -> int | None:
        return project.key_line("train", key) if project is not None else None

    for key in raw:
        if key not in fields and key not in known_keys:
            close = _suggest(str(key), known_keys | fields)
            hint = f"did you mean {close}? " if close else ""
            raise AdviseError(f"train.{key} is not a hyperparameter of any installed training plugin "
                              f"({hint}`advise plugins` lists them)", file=pfile, line=line(key))
    values = {k: v for k, v in raw.items() if k in fields}
    cli_keys = set()
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in fields:
            raise AdviseError(f"the {plugin.name} plugin has no setting '{k}'")
        values[k] = v
        cli_keys.add(k)
        if k == "max_steps":
            values.pop("epochs", None)
        if k == "epochs":
            values.pop("max_steps", None)
    try:
        return plugin.config_class.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or None
        msg = err.get("msg", "invalid").removeprefix("Value error, ").replace("Input should be", "expected")
        if key is None:  # a model-level rule (e.g. max_steps with epochs)
            raise AdviseError(f"train: {msg}", file=pfile) from None
        if key in cli_keys:
            raise AdviseError(f"--{key.replace('_', '-')}: {msg}") from None
        raise AdviseError(f"train.{key}: {msg} (for the {plugin.name} plugin)", file=pfile,
                          line=line(key)) from None
