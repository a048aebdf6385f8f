"""Where plugins come from: the ``advise.trainers`` entry-point group (built-in and installed plugins
register the same way), and :func:`register` for a plugin defined in this process (a test, a notebook)
without installing a package::

    with register(TrainerPlugin(name="mine", config_class=MyConfig, train=my_train)):
        ...  # `advise train --method mine` (in this process) trains with it

A plugin registered in-process shadows an installed one of the same name while it is registered. It
exists only in this process: a multi-process run (``--nproc``, accelerate) needs an installed plugin.
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import entry_points

from advisor.errors import AdviseError
from trainers.plugin import TrainerPlugin

__all__ = ["ENTRY_POINT_GROUP", "all_plugins", "get_plugin", "is_registered_in_process", "plugin_names",
           "register"]

ENTRY_POINT_GROUP = "advise.trainers"
_IN_PROCESS: dict[str, list[TrainerPlugin]] = {}  # name -> registrations, the newest last


def _entry_points() -> dict:
    return {e.name: e for e in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)}


class Registration:
    """What :func:`register` returns: the plugin stays registered until :meth:`unregister` or the end of
    the ``with`` block."""

    def __init__(self, plugin: TrainerPlugin):
        self.plugin = plugin

    def unregister(self) -> None:
        stack = _IN_PROCESS.get(self.plugin.name, [])
        if self.plugin in stack:
            stack.remove(self.plugin)
        if not stack:
            _IN_PROCESS.pop(self.plugin.name, None)

    def __enter__(self) -> TrainerPlugin:
        return self.plugin

    def __exit__(self, *exc) -> None:
        self.unregister()


def register(plugin: TrainerPlugin) -> Registration:
    """Make ``plugin`` available by its name in this process (``get_plugin``, ``advise train --method``,
    ``advise plugins``)."""
    if not isinstance(plugin, TrainerPlugin):
        raise TypeError(f"register() takes a trainers.TrainerPlugin, not {type(plugin).__name__}")
    _IN_PROCESS.setdefault(plugin.name, []).append(plugin)
    return Registration(plugin)


def is_registered_in_process(name: str) -> bool:
    return name in _IN_PROCESS


def plugin_names() -> list[str]:
    return sorted(set(_entry_points()) | set(_IN_PROCESS))


def get_plugin(name: str) -> TrainerPlugin:
    if name in _IN_PROCESS:
        return _IN_PROCESS[name][-1]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(plugin_names()) or "none installed"
        raise AdviseError(f"unknown training plugin '{name}' (installed: {known}); `advise plugins` lists them")
    try:
        obj = eps[name].load()
    except Exception as e:  # noqa: BLE001 - a broken third-party plugin: one line
        raise AdviseError(f"training plugin '{name}' ({eps[name].value}) failed to load: {type(e).__name__}: {e}") from None
    if callable(obj) and not isinstance(obj, TrainerPlugin):
        obj = obj()  # a factory
    if not isinstance(obj, TrainerPlugin):
        raise AdviseError(f"training plugin '{name}' ({eps[name].value}) is not a trainers.TrainerPlugin")
    if obj.name != name:
        obj = dataclasses.replace(obj, name=name)
    return obj


def all_plugins() -> dict[str, TrainerPlugin | AdviseError]:
    out: dict[str, TrainerPlugin | AdviseError] = {}
    for name in plugin_names():
        try:
            out[name] = get_plugin(name)
        except AdviseError as e:
            out[name] = e
    return out
