"""Secrets never reach the run store, the report, CI outputs or the terminal: a canary API key seeded
through a loopback server (which also echoes it in its error bodies), a password in the endpoint URL's
userinfo and a key pasted where a variable NAME belongs are searched for in every file under .advise/,
the HTML report, the JUnit and Markdown gate outputs and all stdout/stderr."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner
from eval_fixtures import copy_project
from hostile_endpoint import HostileEndpoint

from advisor.cli.main import main
from advisor.redact import redact, register

KEY = "canaryKEY7q3x9Lm2"  # no well-known key shape: only registration can redact it
URL_PW = "canaryPW4z8Rt6"
PASTED = "sk-canaryPASTED0123456789abcdef"  # an OpenAI-shaped key given as --api-key-env


@pytest.fixture
def hostile():
    ep = HostileEndpoint()
    yield ep
    ep.stop()


def test_no_secret_anywhere(tmp_path, hostile, monkeypatch):
    root = copy_project(tmp_path / "ticket", None, gates={"accuracy": ">= 0.0"})
    monkeypatch.setenv("ADVISE_CANARY_KEY", KEY)
    runner = CliRunner()
    texts: list[str] = []

    def invoke(*args):
        r = runner.invoke(main, [str(a) for a in args])
        texts.extend([r.stdout, r.stderr])
        return r

    base = ["--endpoint-model", "m", "--strategy", "zero-shot", "--canary", "none", "--no-progress",
            "--retries", "0"]
    ok = invoke("eval", root, "--endpoint", hostile.url("ok", f"user:{URL_PW}"), "--api-key-env",
                "ADVISE_CANARY_KEY", "--json", *base)
    assert ok.exit_code == 0, ok.stderr
    assert any(auth == f"Bearer {KEY}" for _, auth in hostile.requests)  # the key was really sent
    echo = invoke("eval", root, "--endpoint", hostile.url("echo", f"user:{URL_PW}"), "--api-key-env",
                  "ADVISE_CANARY_KEY", *base)
    assert echo.exit_code == 2 and "HTTP 401" in echo.stderr and "invalid credentials: Bearer ***" in echo.stderr
    pasted = invoke("eval", root, "--endpoint", hostile.url("ok"), "--api-key-env", PASTED, "--no-cache", *base)
    assert pasted.exit_code == 2 and "NAME of an environment variable" in pasted.stderr
    report = tmp_path / "report.html"
    assert invoke("report", root, "--out", report).exit_code == 0
    junit, summary = tmp_path / "gate.xml", tmp_path / "gate.md"
    gate = invoke("gate", root, "--candidate", "endpoint:m:zero-shot", "--baseline", "endpoint:m:zero-shot",
                  "--junit-xml", junit, "--summary-md", summary)
    assert gate.exit_code in (0, 1), gate.stderr
    assert junit.is_file() and summary.is_file() and report.is_file()

    stored = [f for f in (root / ".advise").rglob("*") if f.is_file()]
    db = root / ".advise" / "store.sqlite"
    with sqlite3.connect(db) as con:  # the failed run's error is stored, redacted
        errors = [e for (e,) in con.execute("SELECT error FROM runs WHERE error IS NOT NULL")]
    assert any("Bearer ***" in e for e in errors)
    for secret in (KEY, URL_PW, PASTED):
        for f in [*stored, report, junit, summary]:
            assert secret.encode() not in f.read_bytes(), f"{secret} in {f}"
        for t in texts:
            assert secret not in t


def test_redact_removes_registered_values_userinfo_bearer_and_key_shapes():
    register("s3cretVALUE99")
    text = ("key s3cretVALUE99 url https://bob:pw@example.com/v1 header Bearer abc123def456 "
            "gh ghp_" + "a1" * 18 + " and plain words about bearer tokens")
    out = redact(text)
    assert "s3cretVALUE99" not in out and "bob:pw" not in out and "abc123def456" not in out and "ghp_" not in out
    assert out.count("***") == 4 and out.endswith("plain words about bearer tokens")
