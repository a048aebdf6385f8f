"""Defects the redesign fixed, each with its test: one hub-cache rule, every plugin's estimate row
(prompt_tuning included), every command in `advise --help`, a command that cannot import is loud."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from advisor.cli.main import LAZY_COMMANDS, main
from advisor.hf import cached_snapshot, hub_commit
from advisor.methods import ESTIMATE_ROWS, estimate_row


def _cache(root, repo, snaps: dict[str, float], main_commit: str):
    base = root / ("models--" + repo.replace("/", "--"))
    for commit, mtime in snaps.items():
        d = base / "snapshots" / commit
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
        import os
        os.utime(d, (mtime, mtime))
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(main_commit)


def test_one_hub_cache_rule_the_snapshot_refs_main_names(tmp_path, monkeypatch):
    """Not the alphabetically first snapshot, not the newest by mtime: the commit refs/main names."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    _cache(tmp_path, "org/model", {a: 1000, b: 3000, c: 2000}, c)
    assert hub_commit("org/model") == c
    assert cached_snapshot("org/model") == tmp_path / "models--org--model" / "snapshots" / c
    assert cached_snapshot("org/model", revision=a) == tmp_path / "models--org--model" / "snapshots" / a
    assert cached_snapshot("org/other") is None and cached_snapshot("./local/dir") is None
    # the estimate and the token counter read the same snapshot
    from advisor.assess.estimate.model_size import _hf_cache_dir
    assert _hf_cache_dir("org/model") == cached_snapshot("org/model")


def test_every_built_in_plugin_has_an_estimate_row():
    for plugin in ("lora", "qlora", "full", "dpo", "prompt_tuning", "classifier"):
        assert estimate_row(plugin) in ESTIMATE_ROWS, plugin
    assert estimate_row("prompt_tuning") == "lora" and estimate_row("dpo") == "rlhf"


def test_help_lists_every_command():
    out = CliRunner().invoke(main, ["--help"]).output
    for name in [*LAZY_COMMANDS, "assess", "init", "schema"]:
        assert f"  {name} " in out, name


def test_a_command_whose_module_fails_to_import_fails_loudly(tmp_path):
    code = ("import sys, builtins; real = builtins.__import__\n"
            "def broken(name, *a, **k):\n"
            "    if name == 'advisor.cli.gate': raise ImportError('simulated broken install')\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = broken\n"
            "import importlib; orig = importlib.import_module\n"
            "importlib.import_module = lambda n, *a: broken(n) if n == 'advisor.cli.gate' else orig(n, *a)\n"
            "from advisor.cli.main import main; sys.exit(main(['gate', '.']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0
    assert "the 'gate' command cannot load" in r.stderr and "simulated broken install" in r.stderr
