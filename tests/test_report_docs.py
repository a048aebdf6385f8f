"""What a fresh checkout ships to its readers: the project contract, and install lines that install this
project (the package index's "advise" is someone else's)."""

import re

import pytest
from conftest import REPO, SHARED

CONTRACT = REPO / "docs" / "project-contract.md"


def test_the_shipped_contract_is_the_spec():
    spec = SHARED.parent / "spec" / "project-contract.md"
    if not spec.is_file():
        pytest.skip(f"no {spec} here (set ADVISE_SHARED_DATASETS to the shared datasets folder)")
    assert CONTRACT.read_bytes() == spec.read_bytes(), f"{CONTRACT} differs from {spec}: copy it again"


def test_the_readme_links_the_shipped_contract_not_a_path_outside_the_checkout():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/project-contract.md)" in readme and CONTRACT.is_file()
    assert "../shared" not in readme


def test_every_install_line_installs_this_checkout_or_its_distribution_name():
    name = re.search(r'^name = "([^"]+)"', (REPO / "pyproject.toml").read_text(encoding="utf-8"), re.M).group(1)
    assert name != "advise"
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    seen = 0
    for doc in docs:
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for m in re.finditer(r"pip install ((?:-\S+ )*)([^\s`&;|]+)", line):
                seen += 1
                target = m.group(2).strip("'\"")
                ok = target.startswith((".", "/", "torch")) or target.split("[")[0] == name
                assert ok, f"{doc.name}:{n}: `pip install {target}` does not install this project"
    assert seen >= 3
