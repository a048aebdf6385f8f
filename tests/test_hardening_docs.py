"""Files under data.docs are confined to the project directory (the rule of data paths): a symlink to a
file outside it is never read, retrieved or sent to an endpoint; symlink loops end at once."""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml
from click.testing import CliRunner
from eval_fixtures import copy_project
from hostile_endpoint import HostileEndpoint

from advisor.cli.main import main
from advisor.data.docs import load_docs
from advisor.data.findings import Findings

CANARY = "root:x:0:0:CANARYPASSWD"
SECRET_TEXT = f"{CANARY} card arrival lost stolen card exchange rate top up failed cash withdrawal charge\n"


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir()
    (d / "passwd").write_text(SECRET_TEXT)
    (d / "more.md").write_text(SECRET_TEXT)
    return d


def _hostile_docs(docs, outside):
    docs.mkdir(exist_ok=True)
    (docs / "faq.md").write_text("Cards arrive within 5 working days. Exchange rates are set daily.\n")
    os.symlink(outside / "passwd", docs / "passwd.md")  # a file outside the project
    os.symlink(outside, docs / "elsewhere")  # a directory outside the project
    os.symlink(docs / "loop-b.md", docs / "loop-a.md")  # a file loop
    os.symlink(docs / "loop-a.md", docs / "loop-b.md")
    os.symlink(docs, docs / "again")  # a directory cycle
    os.symlink(docs / "missing.md", docs / "dangling.md")


def test_rag_never_reads_or_sends_a_linked_file_outside_the_project(tmp_path, outside):
    root = copy_project(tmp_path / "ticket", None)
    cfg = yaml.safe_load((root / "project.yaml").read_text())
    cfg["data"]["docs"] = "docs/"
    (root / "project.yaml").write_text(yaml.safe_dump(cfg))
    _hostile_docs(root / "docs", outside)
    ep = HostileEndpoint()
    try:
        t0 = time.perf_counter()
        r = CliRunner().invoke(main, ["eval", str(root), "--endpoint", ep.url("ok"), "--endpoint-model", "m",
                                      "--strategy", "rag", "--retriever", "bm25", "--canary", "none",
                                      "--max-items", "5", "--json", "--no-progress"])
        assert r.exit_code == 0, r.stderr
        assert time.perf_counter() - t0 < 30
        assert len(ep.bodies) == 5
        sent = b"".join(ep.bodies)
        assert b"Cards arrive within 5 working days" in sent  # the docs inside are retrieved and sent
        assert CANARY.encode() not in sent
        assert CANARY not in r.stdout + r.stderr
    finally:
        ep.stop()
    assert all(CANARY.encode() not in f.read_bytes() for f in (root / ".advise").rglob("*") if f.is_file())
    json.loads(r.stdout)


def test_skipped_links_are_findings_naming_the_link(tmp_path, outside):
    root = tmp_path / "p"
    docs = root / "docs"
    docs.mkdir(parents=True)
    _hostile_docs(docs, outside)
    (root / "notes.md").write_text("Top-ups fail when the card is frozen.\n")
    os.symlink(root / "notes.md", docs / "notes.md")  # a link that stays inside the project: read
    findings = Findings()
    docs_read = load_docs(docs, root, findings)
    assert sorted(docs_read) == ["faq.md", "notes.md"]
    by_code = {f["code"]: f for f in findings.to_list()}
    outside_links = {e["file"] for e in by_code["doc_outside_project"]["examples"]}
    assert outside_links == {str(docs / "passwd.md"), str(docs / "elsewhere")}
    assert {e["file"] for e in by_code["doc_symlink_loop"]["examples"]} == {
        str(docs / "loop-a.md"), str(docs / "loop-b.md"), str(docs / "dangling.md")}
    # without the project root the docs directory itself is the boundary: the inside link is skipped too
    assert sorted(load_docs(docs)) == ["faq.md"]


def test_a_data_path_that_is_a_symlink_loop_is_one_line(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    os.symlink(root / "b.jsonl", root / "a.jsonl")
    os.symlink(root / "a.jsonl", root / "b.jsonl")
    (root / "project.yaml").write_text("name: p\ntask: t\ndata: {train: a.jsonl}\n")
    r = CliRunner().invoke(main, ["assess", str(root), "--no-embeddings"])
    assert r.exit_code == 2 and "symlink loop" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
