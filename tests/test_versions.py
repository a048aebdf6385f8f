"""advisor/versions.py: the one collector of library versions."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata

from advisor import __version__
from advisor.versions import LIBRARIES, distribution_of, versions


def test_versions_lists_python_and_the_installed_libraries_only():
    v = versions()
    assert v["python"] == platform.python_version()
    assert v["advise"] == __version__
    for name in LIBRARIES:
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            assert name not in v
        else:
            assert v[name] == installed
    assert versions(("advise", "no-such-distribution-xyz")) == {"python": platform.python_version(),
                                                                "advise": __version__}


def test_versions_returns_a_new_dict_each_call():
    v = versions()
    v["advise"] = "changed"
    assert versions()["advise"] == __version__


def test_distribution_of_a_module():
    assert distribution_of("advisor.assess") == f"advise-llm {__version__}"  # the distribution name
    assert distribution_of("no_such_module_xyz") is None


def test_collecting_versions_imports_no_library():
    code = ("import sys; from advisor.versions import versions; versions(); "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
