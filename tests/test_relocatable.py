"""Relocatable projects: the run store keeps paths inside the project relative to it, so a copied or
moved project evaluates, reports and resumes its own runs, never the original's; rows written with
absolute paths (before) are read under the project they are in now, and one that can only be found in
another project's tree is named so, not evaluated."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import train_fixtures as fx

train_tiny_model = fx.train_tiny_model
TRAIN = {"max_steps": 2, "learning_rate": 5.0e-3, "batch_size": 8, "max_length": 64, "checkpoint_every": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_tiny_model) -> Path:
    """Project A, its base model inside it (.advise/models/tiny, the demo's layout), one LoRA run."""
    root = tmp_path_factory.mktemp("reloc")
    a = fx.copy_project("ticket-routing-tiny", root / "A", ".advise/models/tiny", TRAIN, max_records=24)
    shutil.copytree(train_tiny_model, a / ".advise" / "models" / "tiny")
    fx.train(a, "lora", max_steps=2)
    return a


def _eval(project: Path) -> dict:
    res = fx.cli("eval", project, "--json", "--candidate", "tuned:*", "--max-items", "4", "--canary", "none",
                 "--no-progress")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _raw(project: Path, sql: str) -> list:
    db = sqlite3.connect(project / ".advise" / "store.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_the_store_records_paths_inside_the_project_relative_to_it(trained):
    ((path,),) = _raw(trained, "SELECT path FROM artifacts")
    assert not Path(path).is_absolute() and path.startswith(".advise/runs/train-")
    (result, config), = _raw(trained, "SELECT result, config FROM runs WHERE kind='train'")
    assert str(trained) not in result and str(trained.resolve()) not in result
    assert str(trained.resolve()) not in config
    # what a reader gets is a path of the project as it is now
    from advisor.project import load_project
    from advisor.store import Store

    with Store.for_project(load_project(trained), read_only=True) as store:
        run = store.latest_run("train")
        art = store.artifacts(run["id"])[0]["path"]
    assert Path(run["result"]["artifact"]) == Path(art) == (trained / path).resolve()
    assert Path(run["config"]["project_dir"]) == trained.resolve()


def test_a_copy_evaluates_its_own_run_and_works_once_the_original_is_gone(trained, tmp_path):
    a = tmp_path / "A"
    shutil.copytree(trained, a)
    b = tmp_path / "B"
    shutil.copytree(a, b)
    out = _eval(b)  # the original still exists: B must still use its own files
    (run,) = [r for r in out["runs"] if r["candidate"] == "tuned:lora"]
    assert b.resolve() in Path(run["adapter"]).parents and b.resolve() in Path(run["model"]).parents
    blob = json.dumps(_raw(b, "SELECT config, result FROM runs WHERE kind='eval'"))
    assert str(a.resolve()) not in blob and str(a) not in blob
    shutil.rmtree(a)
    out = _eval(b)
    assert out["warnings"] == [] and "tuned:lora" in [r["candidate"] for r in out["runs"]]
    res = fx.cli("report", b)
    assert res.exit_code == 0, res.stderr
    html = (b / ".advise" / "report.html").read_text(encoding="utf-8")
    assert str(a.resolve()) not in html
    # the model card / export read the artifact through the store, under B
    from trainers.export import resolve_artifact

    rid = _raw(b, "SELECT id FROM runs WHERE kind='train'")[0][0]
    assert b.resolve() in resolve_artifact(rid, b).parents
    # the same training in the copy has the run's inputs hash (advise run reuses it, does not retrain)
    from trainers.runner import plan_new

    ((stored,),) = _raw(b, "SELECT inputs_hash FROM runs WHERE kind='train'")
    assert plan_new(b, method="lora", max_steps=2).request["inputs_hash"] == stored


def _absolute_row(project: Path, old_root: Path) -> None:
    """Rewrite the store's train rows as an older advise wrote them: absolute paths of ``old_root``."""
    db = sqlite3.connect(project / ".advise" / "store.sqlite")
    for rid, result, config in db.execute("SELECT id, result, config FROM runs WHERE kind='train'").fetchall():
        def absolute(text):
            d = json.loads(text)
            for where in d.pop("_project_paths", []):
                obj = d
                for k in where[:-1]:
                    obj = obj[k]
                rel = obj[where[-1]]
                obj[where[-1]] = str(old_root.resolve() / rel) if rel != "." else str(old_root.resolve())
            return json.dumps(d)
        db.execute("UPDATE runs SET result=?, config=? WHERE id=?", (absolute(result), absolute(config), rid))
    for (path,) in db.execute("SELECT path FROM artifacts").fetchall():
        db.execute("UPDATE artifacts SET path=? WHERE path=?", (str(old_root.resolve() / path), path))
    db.commit()
    db.close()
    assert "_project_paths" not in json.dumps(_raw(project, "SELECT result, config FROM runs WHERE kind='train'"))


def test_older_absolute_rows_are_read_under_the_copy(trained, tmp_path):
    a = tmp_path / "A"
    shutil.copytree(trained, a)
    _absolute_row(a, a)  # A as an older advise left it
    b = tmp_path / "B"
    shutil.copytree(a, b)
    from advisor.project import load_project
    from advisor.store import Store

    with Store.for_project(load_project(b), read_only=True) as store:
        run = store.latest_run("train")
        art = Path(store.artifacts(run["id"])[0]["path"])
    assert b.resolve() in Path(run["result"]["artifact"]).parents and b.resolve() in art.parents
    out = _eval(b)
    assert out["warnings"] == [] and "tuned:lora" in [r["candidate"] for r in out["runs"]]


def test_an_older_row_whose_files_stayed_in_the_original_is_named_not_evaluated(trained, tmp_path):
    a = tmp_path / "A"
    shutil.copytree(trained, a)
    _absolute_row(a, a)
    b = tmp_path / "B"
    shutil.copytree(a, b, ignore=shutil.ignore_patterns("runs"))  # the store copied, the run's files not
    res = fx.cli("eval", b, "--json", "--candidate", "base:zero-shot", "--max-items", "2", "--canary", "none",
                 "--no-progress")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert not any(r["candidate"].startswith("tuned") for r in out["runs"])
    (warn,) = [w for w in out["warnings"] if "train run" in w]
    assert "another project" in warn and str(a.resolve()) in warn


def test_a_copied_project_resumes_its_own_run(tmp_path, train_tiny_model):
    """An interrupted run, copied with its project: --resume writes into the copy's run directory."""
    from trainers.runner import plan_resume

    a = fx.copy_project("ticket-routing-tiny", tmp_path / "A", train_tiny_model, TRAIN, max_records=16)
    r = fx.train(a, "lora", max_steps=2)
    db = sqlite3.connect(a / ".advise" / "store.sqlite")
    db.execute("UPDATE runs SET status='interrupted' WHERE kind='train'")
    db.commit()
    db.close()
    b = tmp_path / "B"
    shutil.copytree(a, b)
    plan = plan_resume(b, r["run_id"])
    assert plan.request["project_dir"] == str(b.resolve())
    assert b.resolve() in plan.run_dir.resolve().parents
