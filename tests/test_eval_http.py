"""The OpenAI-compatible HTTP backend against a real chat-completions server on 127.0.0.1 (started in
the test): paired statistics with known answers, retries on 429/5xx, per-item errors that are never
cached, the concurrency limit, timeouts, an unreachable endpoint, the API key, and LLM-as-judge."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from eval_fixtures import LABELS, copy_project

from advisor.cli.main import main
from advisor.project import load_project
from evaluators.canary import CANARY_FILE

EVAL_FILE = "data/eval.jsonl"


class FakeOpenAI:
    """A small OpenAI-compatible chat-completions server with scripted behaviour.

    Task items: the right label when the prompt has few-shot turns, or the item is in ``good``; another
    label otherwise. Canary questions: the right answer. Judge prompts: a fair judge (prefers the
    answer equal to the reference) or a position-biased one (always "[[A]]").
    """

    def __init__(self, truth: dict[str, str], good: set[str]):
        self.truth, self.good = truth, good
        self.canary = {}
        for line in CANARY_FILE.read_text().splitlines():
            d = json.loads(line)
            self.canary[d["prompt"]] = d["completion"]
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.attempts: Counter = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.flaky = False
        self.fail: set[str] = set()
        self.slow: set[str] = set()
        self.delay = 0.0
        self.judge = "fair"

    # -- behaviour -------------------------------------------------------------------------------
    def reply(self, body: dict) -> tuple[int, dict, dict]:
        msgs = body["messages"]
        users = [m["content"] for m in msgs if m["role"] == "user"]
        last = users[-1]
        key = json.dumps(body, sort_keys=True)
        with self.lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
        if self.flaky and attempt == 1:
            return 429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}
        if self.flaky and attempt == 2:
            return 500, {"error": {"message": "upstream hiccup"}}, {}
        question = last.split("Question:\n")[-1]
        if question in self.fail:
            return 400, {"error": {"message": "this prompt is not allowed"}}, {}
        if question in self.slow:
            time.sleep(1.5)
        if "[ANSWER A]" in last:
            return 200, _completion(self.pairwise(last)), {}
        if "Score: [[N]]" in last:
            return 200, _completion(self.single(last)), {}
        if question in self.canary:
            return 200, _completion(f"The answer is {self.canary[question]}."), {}
        right = self.truth.get(question)
        if right is None:
            return 200, _completion("I do not know"), {}
        if len(users) > 1 or question in self.good:
            return 200, _completion(right), {}
        return 200, _completion(LABELS[(LABELS.index(right) + 1) % len(LABELS)]), {}

    @staticmethod
    def _block(text: str, name: str) -> str:
        m = re.search(rf"\[{name}\]\n(.*?)\n\[END {name}\]", text, re.DOTALL)
        return m.group(1).strip() if m else ""

    def single(self, text: str) -> str:
        ok = self._block(text, "ANSWER") == self._block(text, "REFERENCE ANSWER")
        return f"Looks {'right' if ok else 'wrong'}.\nScore: [[{9 if ok else 2}]]"

    def pairwise(self, text: str) -> str:
        if self.judge == "biased":
            return "A reads better.\n[[A]]"
        ref = self._block(text, "REFERENCE ANSWER")
        a_ok = self._block(text, "ANSWER A") == ref
        b_ok = self._block(text, "ANSWER B") == ref
        return "[[A]]" if a_ok and not b_ok else "[[B]]" if b_ok and not a_ok else "[[C]]"


def _completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"completion_tokens": len(text.split())}}


def _handler(state: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with state.lock:
                state.requests.append(body)
                state.auth.append(self.headers.get("Authorization"))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                if state.delay:
                    time.sleep(state.delay)
                if not self.path.endswith("/v1/chat/completions"):
                    status, payload, headers = 404, {"error": {"message": "no such route"}}, {}
                else:
                    status, payload, headers = state.reply(body)
            finally:
                with state.lock:
                    state.in_flight -= 1
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    return Handler


@pytest.fixture
def project(tmp_path):
    """The ticket project without a local model, and the truth of its first 24 eval items."""
    root = copy_project(tmp_path / "ticket", None)
    truth = {}
    for line in (root / EVAL_FILE).read_text().splitlines()[:24]:
        msgs = json.loads(line)["messages"]
        truth[msgs[1]["content"]] = msgs[2]["content"]
    return root, truth


@pytest.fixture
def server(project):
    _, truth = project
    good = set(sorted(truth)[::2])  # zero-shot answers these 12 right
    state = FakeOpenAI(truth, good)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_endpoint_eval_with_known_paired_statistics(project, server, monkeypatch):
    root, truth = project
    monkeypatch.setenv("ADVISE_TEST_KEY", "sekrit-123")
    r = CliRunner().invoke(main, ["eval", str(root), "--endpoint", server.url, "--endpoint-model", "fake",
                                  "--api-key-env", "ADVISE_TEST_KEY", "--json", "--max-items", "24",
                                  "--retriever", "bm25", "--no-progress", "--concurrency", "3"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["candidate"] for x in out["runs"]] == ["endpoint:fake:zero-shot", "endpoint:fake:few-shot"]
    zs, fs = out["runs"]
    assert zs["metrics"]["accuracy"]["value"] == pytest.approx(0.5) and zs["errors"] == 0
    assert fs["metrics"]["accuracy"]["value"] == 1.0
    assert zs["endpoint"] == {"url": server.url, "model": "fake", "api_key_env": "ADVISE_TEST_KEY"}
    (comp,) = out["comparisons"]
    acc = comp["metrics"]["accuracy"]
    assert acc["delta"] == pytest.approx(0.5)
    assert (acc["wins"], acc["losses"], acc["ties"]) == (12, 0, 12)
    assert acc["p_value"] == pytest.approx(2 * 0.5 ** 12)  # McNemar exact: 12 discordant pairs, all one way
    assert 0 < acc["ci"][0] < 0.5 < acc["ci"][1] <= 1
    assert comp["regressions_total"] == 0
    canary = out["canary"]["runs"]
    assert [c["candidate"] for c in canary] == ["endpoint:fake"]
    assert canary[0]["metrics"]["contains_answer"]["value"] == 1.0
    # the key went in the header and nowhere else
    assert set(server.auth) == {"Bearer sekrit-123"}
    for f in (root / ".advise").rglob("*"):
        if f.is_file():
            assert b"sekrit-123" not in f.read_bytes()
    # an unchanged re-run sends nothing
    before = len(server.requests)
    again = CliRunner().invoke(main, ["eval", str(root), "--endpoint", server.url, "--endpoint-model", "fake",
                                      "--api-key-env", "ADVISE_TEST_KEY", "--json", "--max-items", "24",
                                      "--retriever", "bm25", "--no-progress"])
    assert again.exit_code == 0 and len(server.requests) == before
    assert json.loads(again.stdout)["comparisons"] == out["comparisons"]


def test_retries_on_429_and_500(project, server):
    from evaluators.runner import run_eval

    root, _ = project
    server.flaky = True
    out = run_eval(load_project(root), endpoint=server.url, endpoint_model="fake", strategies=["zero-shot"],
                   max_items=10, canary=None, backoff=0.01)
    (run,) = out["runs"]
    assert run["errors"] == 0 and run["computed"] == 10
    assert run["model_calls"]["retries"] == 20 and run["model_calls"]["requests"] == 30


def test_failed_items_are_recorded_and_retried_next_time(project, server):
    from advisor.store import Store
    from evaluators.runner import run_eval

    root, truth = project
    bad = sorted(truth)[:2]
    server.fail = set(bad)
    p = load_project(root)
    out = run_eval(p, endpoint=server.url, endpoint_model="fake", strategies=["zero-shot"], max_items=24,
                   canary=None, max_retries=0)
    (run,) = out["runs"]
    assert run["errors"] == 2 and len(run["error_items"]) == 2
    assert all("HTTP 400" in e["error"] and "not allowed" in e["error"] for e in run["error_items"])
    assert run["metrics"]["accuracy"]["n"] == 22 and run["metrics"]["accuracy"]["errors"] == 2
    store = Store.for_project(p)
    try:
        rows = store.latest_run("eval", name=run["candidate"])["result"]["per_item"]
    finally:
        store.close()
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 2 and all(r["output"] is None and r["scores"]["accuracy"] is None for r in failed)
    server.fail = set()
    again = run_eval(p, endpoint=server.url, endpoint_model="fake", strategies=["zero-shot"], max_items=24,
                     canary=None)
    assert (again["runs"][0]["cached"], again["runs"][0]["computed"], again["runs"][0]["errors"]) == (22, 2, 0)


def test_concurrency_limit_and_timeout(project, server):
    from evaluators.backends.base import GenerationSettings
    from evaluators.backends.openai import OpenAIBackend

    root, truth = project
    server.delay = 0.05
    questions = sorted(truth)[:12]
    b = OpenAIBackend(server.url, "fake", concurrency=3, timeout=5, max_retries=0)
    gens = b.generate([[{"role": "user", "content": q}] for q in questions], GenerationSettings(max_new_tokens=8))
    assert all(g.error is None for g in gens)
    assert 2 <= server.max_in_flight <= 3
    server.delay = 0.0
    server.slow = {questions[0]}
    b = OpenAIBackend(server.url, "fake", concurrency=2, timeout=0.3, max_retries=0)
    slow, fast = b.generate([[{"role": "user", "content": q}] for q in questions[:2]], GenerationSettings())
    assert slow.text is None and "timed out" in slow.error
    assert fast.error is None and fast.text


def test_unreachable_endpoint_exits_2(project):
    root, _ = project
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, ["eval", str(root), "--endpoint", f"http://127.0.0.1:{dead_port()}/v1",
                                  "--endpoint-model", "fake", "--json", "--max-items", "12", "--retries", "1",
                                  "--strategy", "zero-shot", "--no-progress"])
    assert r.exit_code == 2, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and "cannot connect" in lines[0]
    assert r.stdout == ""
    assert time.perf_counter() - t0 < 20


def test_missing_api_key_variable_and_bad_url_exit_2(project, monkeypatch):
    root, _ = project
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    r = CliRunner().invoke(main, ["eval", str(root), "--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m",
                                  "--api-key-env", "NO_SUCH_KEY_VAR"])
    assert r.exit_code == 2 and "NO_SUCH_KEY_VAR" in r.stderr and "not set" in r.stderr
    r = CliRunner().invoke(main, ["eval", str(root), "--endpoint", "localhost:8000", "--endpoint-model", "m"])
    assert r.exit_code == 2 and "not an http(s) URL" in r.stderr
    r = CliRunner().invoke(main, ["eval", str(root), "--endpoint", "http://127.0.0.1:9/v1"])
    assert r.exit_code == 2 and "--endpoint-model" in r.stderr


def test_llm_judge_single_and_pairwise_in_both_orders(project, server):
    from evaluators.candidates import make_judge
    from evaluators.runner import run_eval

    root, _ = project
    p = load_project(root)
    judge = make_judge(p, endpoint=server.url, model="judge")
    out = run_eval(p, endpoint=server.url, endpoint_model="fake", max_items=24, canary=None, retriever="bm25",
                   judge=judge)
    zs, fs = out["runs"]
    assert "judge_score" in out["metrics"]
    # fair judge: 9/10 -> 8/9 for a right answer, 2/10 -> 1/9 for a wrong one
    assert zs["metrics"]["judge_score"]["value"] == pytest.approx((12 * 8 / 9 + 12 * 1 / 9) / 24)
    assert fs["metrics"]["judge_score"]["value"] == pytest.approx(8 / 9)
    pair = out["comparisons"][0]["metrics"]["judge_pairwise"]
    assert (pair["wins"], pair["losses"], pair["ties"]) == (12, 0, 12)
    assert pair["delta"] == pytest.approx(0.5) and pair["consistency"] == 1.0
    judge_prompts = [r for r in server.requests if "[ANSWER A]" in r["messages"][-1]["content"]]
    assert len(judge_prompts) == 48  # 24 items, both orders
    # judged once: a re-run asks the judge nothing
    before = len(server.requests)
    run_eval(p, endpoint=server.url, endpoint_model="fake", max_items=24, canary=None, retriever="bm25", judge=judge)
    assert len(server.requests) == before


def test_position_biased_judge_cancels_out(project, server):
    from evaluators.candidates import make_judge
    from evaluators.runner import run_eval

    root, _ = project
    server.judge = "biased"
    p = load_project(root)
    out = run_eval(p, endpoint=server.url, endpoint_model="fake", max_items=12, canary=None, retriever="bm25",
                   judge=make_judge(p, endpoint=server.url, model="judge"))
    pair = out["comparisons"][0]["metrics"]["judge_pairwise"]
    assert (pair["wins"], pair["losses"], pair["ties"]) == (0, 0, 12)
    assert pair["delta"] == 0 and pair["consistency"] == 0.0
