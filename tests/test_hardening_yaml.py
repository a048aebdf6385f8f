"""The one YAML loader of user files (project.yaml, rubric overrides) refuses alias bombs, recursive
aliases and absurd nesting with one line naming the file and line, exit 2; ordinary aliases still work."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from conftest import chat

from advisor.cli.main import main
from advisor.project import MAX_YAML_DEPTH, load_project

BOMB = Path(__file__).parent / "data" / "alias_bomb.yaml"


def _assess(root: Path):
    return CliRunner().invoke(main, ["assess", str(root), "--json", "--no-embeddings"])


def _one_line(r, where: str) -> str:
    assert r.exit_code == 2, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert where in lines[0], lines[0]
    return lines[0]


def test_alias_bomb_in_project_yaml_is_refused_at_its_line(tmp_path):
    assert BOMB.stat().st_size < 1024
    root = tmp_path / "p"
    root.mkdir()
    (root / "project.yaml").write_bytes(BOMB.read_bytes())
    line = _one_line(_assess(root), "project.yaml:")
    assert "alias bomb" in line and "10,000 values" in line
    n = int(line.split("project.yaml:")[1].split(":")[0])
    assert BOMB.read_text().splitlines()[n - 1].lstrip().startswith(("e:", "f:", "g:"))  # where it crosses


def test_alias_bomb_in_a_rubric_override_is_refused(make_project):
    root = make_project([chat(f"message {i}", "billing") for i in range(20)])
    (root / "rubrics").mkdir()
    (root / "rubrics" / "decision.yaml").write_text(
        "x: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
            f"x{i}: &{c} [" + ",".join([f"*{p}"] * 10) + "]\n"
            for i, (p, c) in enumerate(zip("abcdefgh", "bcdefghi", strict=True))), encoding="utf-8")
    line = _one_line(_assess(root), "decision.yaml:")
    assert "alias bomb" in line


def test_recursive_alias_is_refused(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "project.yaml").write_text("name: p\ntask: t\ndata: {train: t.jsonl}\ntrain:\n  loop: &a [1, *a]\n")
    assert "recursive alias" in _one_line(_assess(root), "project.yaml:5")


def test_deep_nesting_is_one_line(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    deep = 20_000
    for text in ("name: p\ntask: t\ndata: {train: t.jsonl}\ntrain:\n  deep: " + "[" * deep + "]" * deep + "\n",
                 "name: p\ntask: t\ndata: {train: t.jsonl}\ntrain:\n" + "".join(
                     " " * (i + 2) + f"k{i}:\n" for i in range(2000)) + " " * 2002 + "v: 1\n"):  # 2 MB
        (root / "project.yaml").write_text(text)
        assert f"nested more than {MAX_YAML_DEPTH} levels" in _one_line(_assess(root), "project.yaml:")


def test_ordinary_aliases_still_load(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "project.yaml").write_text(
        "name: p\ntask: t\ndata: {train: t.jsonl}\n"
        "eval:\n  gates:\n    accuracy: &g {min: 0.5, on: lower_bound}\n    macro_f1: *g\n"
        "train:\n  common: &c {warmup: 10, decay: [0.1, 0.2]}\n  again: *c\n")
    p = load_project(root)
    assert p.eval.gates["macro_f1"] == {"min": 0.5, "on": "lower_bound"}
    assert p.train.model_extra["again"] == {"warmup": 10, "decay": [0.1, 0.2]}
