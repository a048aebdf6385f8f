"""The run store on a real SQLite file: runs, the eval item cache, training logs, versioning."""

import sqlite3

import pytest

from advisor.errors import AdviseError
from advisor.hashing import stable_hash
from advisor.store import SCHEMA_VERSION, Store


def test_runs_round_trip_and_latest(tmp_path):
    s = Store(tmp_path / ".advise" / "store.sqlite")
    a = s.start_run("eval", name="base:zero-shot", config={"k": 1}, inputs_hash="h1", command="advise eval")
    s.finish_run(a, result={"items": 3})
    b = s.start_run("eval", name="base:zero-shot", inputs_hash="h1")
    assert s.latest_run("eval")["id"] == a  # b is still running
    s.finish_run(b, status="failed", error="boom")
    assert s.get_run(b)["status"] == "failed" and s.get_run(b)["error"] == "boom"
    assert s.get_run(a)["result"] == {"items": 3} and s.get_run(a)["config"] == {"k": 1}
    assert s.latest_run("eval", inputs_hash="other") is None
    assert [r["id"] for r in s.list_runs("eval")] == [b, a]
    s.reopen_run(b, "advise train --resume")
    r = s.get_run(b)
    assert r["status"] == "running" and r["error"] is None and r["ended"] is None and r["command"] == "advise train --resume"


def test_item_cache_and_train_log(tmp_path):
    s = Store(tmp_path / "store.sqlite")
    s.put_items("cand", "set", [("i1", "out1", {"accuracy": 1.0}, None), ("i2", None, {}, "timeout")])
    got = s.get_items("cand", "set", ["i1", "i2", "i3"])
    assert got["i1"]["output"] == "out1" and got["i1"]["data"] == {"accuracy": 1.0}
    assert got["i2"]["error"] == "timeout" and "i3" not in got
    assert s.get_items("cand", "other-settings", ["i1"]) == {}
    s.log_train("r", 1, {"loss": 2.0})
    s.log_train("r", 2, {"loss": 1.5})
    assert [r["loss"] for r in s.train_log("r")] == [2.0, 1.5]


def test_store_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(AdviseError, match="newer advise"):
        Store(path)


def test_corrupt_store_is_a_clear_error(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AdviseError, match="cannot be read"):
        Store(path)


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_reading_an_absent_store_creates_nothing(tmp_path):
    from advisor.project import load_project

    (tmp_path / "project.yaml").write_text("name: p\ntask: t\ndata: {train: train.jsonl}\n")
    (tmp_path / "train.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    project = load_project(tmp_path)
    with Store.for_project(project, read_only=True) as store:
        assert store is None
    assert not (tmp_path / ".advise").exists()
    with Store.for_project(project) as store:
        run = store.start_run("eval", name="x")
    assert (tmp_path / ".advise" / "store.sqlite").is_file()
    with Store.for_project(project, read_only=True) as store:
        assert store.get_run(run)["name"] == "x"


ROWS = [{"prompt": f"Ticket {i}: my card was charged twice", "completion": "billing" if i % 2 else "fraud"}
        for i in range(40)]


def test_readers_on_a_project_without_a_store_create_nothing(make_project):
    import yaml
    from click.testing import CliRunner

    from advisor.assess.assessment import stored_assessment_id
    from advisor.cli.main import main
    from advisor.project import load_project

    root = make_project(ROWS, ROWS[:10])
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["eval"] = {"gates": {"accuracy": {"min": 0.5}}}
    (root / "project.yaml").write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    for args in (["report", str(root)], ["report", str(root), "--out", str(root / "r.html")], ["gate", str(root)]):
        r = runner.invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and ".advise" in lines[0] and "Traceback" not in r.stderr, (args, r.stderr)
        assert not (root / ".advise").exists(), args
        assert not (root / "r.html").exists()
    assert stored_assessment_id(load_project(root)) is None
    assert not (root / ".advise").exists()


def test_assess_records_its_library_versions_and_reuses_the_stored_run(make_project):
    import json

    from click.testing import CliRunner

    from advisor import __version__
    from advisor.assess.assessment import stored_assessment_id
    from advisor.cli.main import main
    from advisor.project import load_project

    root = make_project(ROWS, ROWS[:10])
    project = load_project(root)
    assert stored_assessment_id(project, use_embeddings=False) is None
    r = CliRunner().invoke(main, ["assess", str(root), "--json", "--no-embeddings"])
    assert r.exit_code == 0, r.stderr
    run_id = stored_assessment_id(project, use_embeddings=False)
    assert run_id is not None and stored_assessment_id(project, use_embeddings=True) is None
    with Store.for_project(project, read_only=True) as store:
        run = store.get_run(run_id)
        assert run["status"] == "done" and run["result"] == json.loads(r.stdout)
        assert run["versions"]["advise"] == __version__ and run["versions"]["python"].count(".") == 2
    again = CliRunner().invoke(main, ["assess", str(root), "--json", "--no-embeddings"])
    assert again.exit_code == 0 and json.loads(again.stdout) == json.loads(r.stdout)
    with Store.for_project(project, read_only=True) as store:
        assert [x["id"] for x in store.list_runs("assess")] == [run_id]
