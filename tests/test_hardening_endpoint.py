"""The endpoint client against a hostile server on 127.0.0.1 (tests/hostile_endpoint.py), through
``advise eval --endpoint``: credentials never cross origins, the timeout bounds the whole request,
a dead server fails fast, huge and deeply nested replies are errors."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from eval_fixtures import copy_project
from hostile_endpoint import HostileEndpoint

from advisor.cli.main import main

KEY = "hostile7Qx2Kp9Lz"


@pytest.fixture
def root(tmp_path):
    return copy_project(tmp_path / "ticket", None)


@pytest.fixture
def hostile():
    servers = [HostileEndpoint(), HostileEndpoint()]
    yield servers
    for s in servers:
        s.stop()


def _eval(root, url, *extra, monkeypatch=None):
    args = ["eval", str(root), "--endpoint", url, "--endpoint-model", "m", "--json", "--max-items", "6",
            "--strategy", "zero-shot", "--canary", "none", "--retries", "0", "--no-progress", *extra]
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("code", [302, 307])
def test_redirect_to_another_origin_never_forwards_the_key(root, hostile, monkeypatch, code):
    ep, other = hostile
    ep.redirect_to = other.url("ok") + "/chat/completions"  # same host, another port: another origin
    monkeypatch.setenv("ADVISE_HOSTILE_KEY", KEY)
    r = _eval(root, ep.url(f"redirect-{code}"), "--api-key-env", "ADVISE_HOSTILE_KEY")
    assert r.exit_code == 2, r.stdout
    line, = r.stderr.strip().splitlines()
    assert f"redirected (HTTP {code}) to another origin" in line and f"127.0.0.1:{other.port}" in line
    assert other.requests == []  # nothing reached the other origin, with or without the key
    assert all(auth == f"Bearer {KEY}" for _, auth in ep.requests)


def test_redirect_to_the_same_origin_is_followed(root, hostile, monkeypatch):
    ep, _ = hostile
    monkeypatch.setenv("ADVISE_HOSTILE_KEY", KEY)
    r = _eval(root, ep.url("redirect-same"), "--api-key-env", "ADVISE_HOSTILE_KEY")
    assert r.exit_code == 0, r.stderr
    (run,) = json.loads(r.stdout)["runs"]
    assert run["errors"] == 0 and run["computed"] == 6
    assert {p for p, _ in ep.requests} == {"/redirect-same/v1/chat/completions", "/ok/v1/chat/completions"}


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_timeout_bounds_the_whole_request_and_a_dead_server_fails_fast(root, hostile, mode):
    ep, _ = hostile
    t0 = time.perf_counter()
    r = _eval(root, ep.url(mode), "--timeout", "1", "--concurrency", "2")
    took = time.perf_counter() - t0
    assert r.exit_code == 2, r.stdout
    line, = r.stderr.strip().splitlines()
    assert "timed out after 1 s" in line
    # 6 items, 2 at a time, one second each: after 3 timeouts the endpoint is unreachable and the rest
    # fail at once (without the deadline a trickled reply of ~700 bytes takes 140 s per item)
    assert "unreachable" in line
    assert len(ep.requests) <= 4
    assert took < 10


def test_a_huge_reply_is_an_error(root, hostile):
    ep, _ = hostile
    r = _eval(root, ep.url("huge"), "--timeout", "20")
    assert r.exit_code == 2, r.stdout
    line, = r.stderr.strip().splitlines()
    assert "larger than 8 MiB" in line


def test_a_deeply_nested_reply_is_an_error_not_a_recursion_error(root, hostile):
    ep, _ = hostile
    r = _eval(root, ep.url("deep"))
    assert r.exit_code == 2, r.stdout
    line, = r.stderr.strip().splitlines()
    assert "nested too deeply" in line and "RecursionError" not in r.stderr


def test_markup_in_a_model_name_is_printed_as_text(root, hostile):
    """Rich markup in a name (`org/[/]m`) crashed the eval tables with exit 70; it is data, shown as is."""
    ep, _ = hostile
    args = ["eval", str(root), "--endpoint", ep.url("ok"), "--endpoint-model", "org/[/]m[bold]x", "--max-items", "4",
            "--strategy", "zero-shot", "--canary", "none", "--retries", "0", "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "endpoint:org/[/]m[bold]x:zero-shot" in r.stdout.replace("\n", "")
