"""Files, the store and what lies in their place: every one of these is one line naming the file, exit 2
(never a traceback, exit 70 or a hang); a killed writer's temporary files are cleaned by the next one;
charts draw data as text; docs links out of the project are never read; the accelerate config is read
with the bounded loader of every user YAML."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import train_fixtures as fx
import yaml
from click.testing import CliRunner
from conftest import chat, write_jsonl
from hostile_endpoint import HostileEndpoint

from advisor.cli.main import main

train_tiny_model = fx.train_tiny_model
BOMB = Path(__file__).parent / "data" / "alias_bomb.yaml"
LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card"]


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line(r, where, *words: str) -> str:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert str(where) in lines[0], lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def project(make_project):
    recs = [chat(f"message {i} about my card and money", LABELS[i % 3]) for i in range(30)]
    return make_project(recs, base_model="Qwen/Qwen2.5-0.5B-Instruct")


def _set(root: Path, **data) -> None:
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["data"].update(data)
    (root / "project.yaml").write_text(yaml.safe_dump(cfg))


# -- the store -----------------------------------------------------------------------------------------
def test_a_foreign_sqlite_file_at_the_store_is_refused_and_left_as_it_was(project):
    store = project / ".advise" / "store.sqlite"
    store.parent.mkdir()
    db = sqlite3.connect(store)
    db.execute("CREATE TABLE customers (name TEXT)")
    db.execute("INSERT INTO customers VALUES ('ada')")
    db.commit()
    db.close()
    before = store.read_bytes()
    for cmd in (["assess", project, "--no-embeddings"], ["report", project], ["gate", project]):
        _one_line(_cli(*cmd), store, "not an advise run store")
    assert store.read_bytes() == before  # no advise table was added to the user's database
    tables = sqlite3.connect(store).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("customers",)]


def test_store_rows_with_broken_json_are_one_line(project):
    assert _cli("assess", project, "--no-embeddings").exit_code == 0
    store = project / ".advise" / "store.sqlite"
    db = sqlite3.connect(store)
    db.execute("UPDATE runs SET result='{broken'")
    db.commit()
    db.close()
    for cmd in (["assess", project, "--no-embeddings"], ["report", project]):
        _one_line(_cli(*cmd), store, "broken row")


def test_advise_being_a_file_is_one_line(project):
    (project / ".advise").write_text("not a directory")
    for cmd in (["assess", project, "--no-embeddings"], ["report", project],
                ["eval", project, "--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m"]):
        _one_line(_cli(*cmd), project / ".advise", "is a file")
    assert (project / ".advise").read_text() == "not a directory"


# -- paths -----------------------------------------------------------------------------------------------
def test_init_under_a_file_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("mine")
    _one_line(_cli("init", tmp_path / "a-file" / "sub" / "proj"), tmp_path / "a-file", "is a file")
    assert (tmp_path / "a-file").read_text() == "mine"
    long = tmp_path / ("n" * 300)
    _one_line(_cli("init", long), long, "too long")


def test_names_too_long_for_the_file_system(project, tmp_path):
    _set(project, train="data/" + "a" * 300 + ".jsonl")
    _one_line(_cli("assess", project, "--no-embeddings"), "a" * 300, "training data file", "too long")
    _set(project, train="data/train.jsonl", eval="data/" + "e" * 300 + ".jsonl")
    _one_line(_cli("assess", project, "--no-embeddings"), "e" * 300, "eval data file", "too long")
    _set(project, eval=None)
    assert _cli("assess", project, "--no-embeddings").exit_code == 0
    out = tmp_path / ("r" * 300 + ".html")
    _one_line(_cli("report", project, "--out", out), out.name, "--out", "too long")
    _one_line(_cli("gate", project, "--junit-xml", tmp_path / ("j" * 300 + ".xml")), "j" * 300, "too long")


def test_a_symlink_loop_as_a_data_path(project):
    os.symlink(project / "data" / "b.jsonl", project / "data" / "a.jsonl")
    os.symlink(project / "data" / "a.jsonl", project / "data" / "b.jsonl")
    _set(project, eval="data/a.jsonl")
    for cmd in (["assess", project, "--no-embeddings"], ["run", project, "--dry-run"],
                ["eval", project, "--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m"]):
        _one_line(_cli(*cmd), project / "project.yaml", "symlink loop")


def test_a_fifo_as_a_data_file_is_named_and_never_read(project):
    fifo = project / "data" / "pipe.jsonl"
    os.mkfifo(fifo)
    _set(project, train="data/pipe.jsonl")
    # in a process of its own: opening a FIFO for reading would block until a writer comes
    for cmd in (["assess", project, "--no-embeddings"], ["eval", project, "--endpoint", "http://127.0.0.1:9/v1",
                                                          "--endpoint-model", "m"]):
        r = fx.advise_subprocess(*cmd, timeout=120)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(fifo) in lines[0] and "named pipe (FIFO)" in lines[0]
        assert "not found" not in lines[0]


# -- a chat template the sandbox refuses ---------------------------------------------------------------------
def _model_with_template(src: Path, dst: Path, template: str) -> Path:
    shutil.copytree(src, dst)
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    cfg_file = dst / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["chat_template"] = template
    cfg_file.write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("template, why", [
    ("{{ ''.__class__.__mro__ }}{% for m in messages %}{{ m.content }}{% endfor %}", "sandbox refuses"),
    ("{% for m in messages %}{{ m.content ", "does not parse"),
])
def test_a_chat_template_the_sandbox_refuses(tmp_path, train_tiny_model, template, why):
    model = _model_with_template(train_tiny_model, tmp_path / "model", template)
    p = fx.copy_project("ticket-routing-tiny", tmp_path / "p", model, {"max_steps": 1, "batch_size": 4,
                                                                       "max_length": 32}, max_records=12)
    cfg_file = model / "tokenizer_config.json"
    _one_line(_cli("eval", p, "--max-items", "2", "--canary", "none", "--no-progress"), cfg_file, why)
    _one_line(_cli("train", p, "--method", "lora"), cfg_file, why)
    assert not (p / ".advise" / "runs").exists()  # refused before any run was started


def test_a_template_that_refuses_only_the_system_role_passes_the_check(tmp_path, train_tiny_model):
    """Not every template error is the template's fault: one that raises on a system message passes
    the check before training (prompts merge the system message into the user's, as eval does)."""
    from trainers.models import check_model_source

    template = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role') }}"
                "{% endif %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    model = _model_with_template(train_tiny_model, tmp_path / "model", template)
    assert check_model_source(str(model))["local"] is True


# -- temporary files of a killed writer ---------------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_reports_temporary_files_are_cleaned_by_the_next_run(project):
    assert _cli("assess", project, "--no-embeddings").exit_code == 0
    store = project / ".advise"
    dead = _dead_pid()
    stale = store / f".report.html.{dead}.tmp"
    stale.write_text("<!-- generated by advise -->\n<html>half a rep")
    empty = store / f".report.html.{_dead_pid()}.tmp"
    empty.write_text("")
    live = store / ".report.html.1.tmp"  # pid 1 lives: its writer may still be at work
    live.write_text("<!-- generated by advise -->\n")
    mine = store / f".report.html.{dead}.tmp.keep"  # not a name advise gives
    mine.write_text("the user's")
    foreign = store / f".notes.html.{dead}.tmp"  # another file's temp name
    foreign.write_text("<!-- generated by advise -->\n")
    users = project / f".report.html.{_dead_pid()}.tmp"
    users.write_text("a file of the user's, not advise's")  # same name pattern, no mark: never removed
    r = _cli("report", project)
    assert r.exit_code == 0, r.stderr
    assert (store / "report.html").is_file()
    assert not stale.exists() and not empty.exists()
    assert live.exists() and mine.exists() and foreign.exists()
    out = project / "report.html"
    r = _cli("report", project, "--out", out)
    assert r.exit_code == 0, r.stderr
    assert users.exists() and users.read_text().startswith("a file of the user's")
    assert not [p for p in project.iterdir() if p.name.startswith(".report.html.") and p != users]


def test_a_long_report_name_that_fits_is_written(project, tmp_path):
    """The temporary name stays within the file system's limit even when the report's own name is at it."""
    assert _cli("assess", project, "--no-embeddings").exit_code == 0
    out = tmp_path / ("r" * 250 + ".html")
    r = _cli("report", project, "--out", out)
    assert r.exit_code == 0, r.stderr
    assert out.is_file() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- charts treat data as text -----------------------------------------------------------------------------
def test_labels_with_mathtext_are_drawn_as_text(make_project):
    labels = ["$\\foo$", "$x^$", "a_b$", "plain"]
    root = make_project([chat(f"message number {i} about things", labels[i % 4]) for i in range(40)])
    assert _cli("assess", root, "--no-embeddings").exit_code == 0
    r = _cli("report", root)
    assert r.exit_code == 0, r.stderr
    html = (root / ".advise" / "report.html").read_text(encoding="utf-8")
    assert "$\\foo$" in html and "$x^$" in html


# -- docs confinement --------------------------------------------------------------------------------------
CANARY = "CANARYOUTSIDE card arrival exchange rate lost stolen card"


def _docs_with_an_outside_link(root: Path, tmp_path: Path, inside: bool = True) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text(CANARY + "\n")
    docs = root / "docs"
    docs.mkdir(exist_ok=True)
    if inside:
        (docs / "faq.md").write_text("Cards arrive within five working days. Exchange rates change daily.\n")
    os.symlink(outside, docs / "secret.md")
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["data"]["docs"] = "docs/"
    (root / "project.yaml").write_text(yaml.safe_dump(cfg))


def test_assess_signals_never_read_a_docs_link_out_of_the_project(project, tmp_path):
    _docs_with_an_outside_link(project, tmp_path)
    r = _cli("assess", project, "--json", "--no-embeddings")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    f = next(f for f in out["findings"] if f["code"] == "doc_outside_project")
    assert str(project / "docs" / "secret.md") in json.dumps(f)
    assert out["data"]["docs"]["files"] == 1
    assert out["data"]["docs"]["characters"] == len((project / "docs" / "faq.md").read_text())
    assert "CANARYOUTSIDE" not in r.stdout


def test_docs_that_are_only_a_link_out_of_the_project_are_no_docs(project, tmp_path):
    _docs_with_an_outside_link(project, tmp_path, inside=False)
    r = _cli("assess", project, "--json", "--no-embeddings")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["data"]["docs"]["files"] == 0
    ep = HostileEndpoint()
    try:
        r = _cli("eval", project, "--endpoint", ep.url("ok"), "--endpoint-model", "m", "--retriever", "bm25",
                 "--canary", "none", "--max-items", "3", "--json", "--no-progress")
        assert r.exit_code == 0, r.stderr
        assert not [x for x in json.loads(r.stdout)["runs"] if x["strategy"] == "rag"]
        assert b"CANARYOUTSIDE" not in b"".join(ep.bodies)
        r = _cli("eval", project, "--endpoint", ep.url("ok"), "--endpoint-model", "m", "--strategy", "rag",
                 "--canary", "none", "--max-items", "3", "--no-progress")
        _one_line(r, "project.yaml", "needs documents")
    finally:
        ep.stop()


def test_rag_reads_a_link_that_stays_inside_the_project(project, tmp_path):
    """The docs rule is the project's, in RAG as in assess: a link to a file elsewhere in the project is read."""
    _docs_with_an_outside_link(project, tmp_path)
    (project / "notes.md").write_text("Top-ups fail when the card is frozen: unfreeze it in the app.\n")
    os.symlink(project / "notes.md", project / "docs" / "notes.md")
    write_jsonl(project / "data" / "eval.jsonl", [chat("why did my top-up fail, is the card frozen", "top_up")])
    cfg = yaml.safe_load((project / "project.yaml").read_text())
    cfg["data"]["eval"] = "data/eval.jsonl"
    (project / "project.yaml").write_text(yaml.safe_dump(cfg))
    ep = HostileEndpoint()
    try:
        r = _cli("eval", project, "--endpoint", ep.url("ok"), "--endpoint-model", "m", "--strategy", "rag",
                 "--retriever", "bm25", "--canary", "none", "--json", "--no-progress")
        assert r.exit_code == 0, r.stderr
        sent = b"".join(ep.bodies)
        assert b"unfreeze it in the app" in sent and b"CANARYOUTSIDE" not in sent
    finally:
        ep.stop()


# -- the accelerate config ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, words", [
    (BOMB.read_text(), ("YAML refused", "alias")),
    ("distributed_type: NO\nnum_processes: [1\n", ("YAML syntax error",)),
    ("a: 1\na: 2\n", ("duplicate key",)),
])
def test_a_bad_accelerate_config_is_one_line_naming_it(project, tmp_path, text, words):
    cfg = tmp_path / "accelerate.yaml"
    cfg.write_text(text)
    _one_line(_cli("train", project, "--method", "lora", "--accelerate-config", cfg), cfg, *words)
