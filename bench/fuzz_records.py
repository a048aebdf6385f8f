"""Fuzzing (issue 11): the record parser and the project loader under atheris (coverage-guided libFuzzer).

Two targets, chosen by the first byte of each input (odd: a record, even: a project):

* the record parser: one line of a JSONL data file as ``advisor.data.records`` parses it for
  ``iter_records`` (``_line_parser``'s ``parse``: orjson, format detection, the checks of each
  format), under each declared format. It must return a Record or None and report problems as
  findings: any exception is a crash;
* the project loader: ``advisor.project.parse_project`` on the input as project.yaml text in a
  temporary project directory. It must return a Project or raise AdviseError (one line for the
  user): any other exception is a crash.

Seeds are every file of tests/corpus/ (the bad-input corpus) split into lines, plus its
project.yaml files whole. The run stops after ``--runs`` inputs or ``--seconds``, whichever comes
first, or at the first crash (libFuzzer writes the input as crash-<sha1>; the summary names it).

    pip install atheris        # wheels for CPython 3.8-3.11 on Linux x86-64
    .venv/bin/python bench/fuzz_records.py --seconds 300

Not a test: it prints one JSON summary (executions, crashes, seconds, coverage features when libFuzzer
reports them) for BENCHMARKS.md and exits 0 unless a crash was found.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

with atheris.instrument_imports(include=["advisor"]):
    from advisor.data.findings import Findings
    from advisor.data.records import FileStats, _line_parser
    from advisor.errors import AdviseError
    from advisor.project import parse_project

FORMATS = ("auto", "chat", "alpaca", "prompt_completion", "preference")
STATE = {"runs": 0, "records": 0, "valid_records": 0, "projects": 0, "valid_projects": 0, "t0": time.perf_counter()}
ROOT = Path(tempfile.mkdtemp(prefix="fuzz-project-"))
(ROOT / "data").mkdir()
(ROOT / "data" / "train.jsonl").write_text("{}\n")
PFILE = ROOT / "project.yaml"


STATE_FILE = os.environ.get("FUZZ_STATE_FILE")
SELFTEST = os.environ.get("FUZZ_SELFTEST") == "1"  # --selftest: a planted bug, to show crashes are caught


def one_input(data: bytes) -> None:
    STATE["runs"] += 1
    if STATE_FILE and STATE["runs"] % 500 == 0:  # libFuzzer ends the process itself: counts kept as we go
        Path(STATE_FILE).write_text(json.dumps(STATE))
    if not data:
        return
    pick, body = data[0], data[1:]
    if SELFTEST and body.startswith(b'{"messages"'):
        raise RuntimeError("planted crash (--selftest)")
    if pick & 1:  # odd first byte: a data line, under the format of the other bits
        STATE["records"] += 1
        declared = FORMATS[(pick >> 1) % len(FORMATS)]
        parse = _line_parser("train.jsonl", Findings(), FileStats("train.jsonl"), declared)
        if parse(body, 1) is not None:
            STATE["valid_records"] += 1
        return
    STATE["projects"] += 1
    text = body.decode("utf-8", errors="replace")
    try:
        parse_project(text, ROOT, PFILE)
        STATE["valid_projects"] += 1
    except AdviseError:
        pass


def seeds(into: Path) -> int:
    n = 0
    for f in sorted((REPO / "tests" / "corpus").rglob("*")):
        if not f.is_file() or f.suffix == ".md":
            continue
        raw = f.read_bytes()
        if f.name == "project.yaml":
            (into / f"seed-{n}").write_bytes(b"\x00" + raw)
            n += 1
            continue
        for line in raw.splitlines()[:20]:
            (into / f"seed-{n}").write_bytes(bytes([1 + 2 * (n % len(FORMATS))]) + line[:4096])
            n += 1
    return n


def child(args, rest) -> None:
    """The fuzzing process (libFuzzer owns it: it exits when done or at the first crash)."""
    work = Path(tempfile.mkdtemp(prefix="fuzz-corpus-"))
    n = seeds(work)
    print(f"fuzz: {n} seeds from tests/corpus; up to {args.runs:,} runs or {args.seconds} s", file=sys.stderr)
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-max_total_time={args.seconds}", f"-max_len={args.max_len}",
                   "-print_final_stats=1", *rest, str(work)], one_input)
    atheris.Fuzz()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2_000_000)
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--selftest", action="store_true", help="plant a crash and show that it is found")
    args, rest = ap.parse_known_args()
    if args.child:
        child(args, rest)
        return 0
    state = Path(tempfile.mkdtemp(prefix="fuzz-state-")) / "state.json"
    rest = [f"-artifact_prefix={state.parent}/"]  # a crashing input is written there as crash-<sha1>
    t0 = time.perf_counter()
    env = {**os.environ, "FUZZ_STATE_FILE": str(state), **({"FUZZ_SELFTEST": "1"} if args.selftest else {})}
    proc = subprocess.run([sys.executable, __file__, "--child", *[a for a in sys.argv[1:] if a != "--selftest"], *rest],
                          capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    secs = time.perf_counter() - t0
    log = proc.stdout + proc.stderr  # atheris prints an uncaught exception on stdout, libFuzzer on stderr
    stat = dict(re.findall(r"^stat::(\w+):\s+(\d+)", log, re.MULTILINE))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    crashed = "Uncaught Python exception" in log or "==ERROR" in log or proc.returncode not in (0,)
    counts = json.loads(state.read_text()) if state.is_file() else {}
    crash = None
    if crashed:
        start = log.find("=== Uncaught Python exception")
        crash = log[start:start + 3000] if start >= 0 else log[-3000:]
        print(crash, file=sys.stderr)
        crash = {"exception": next((ln for ln in crash.splitlines() if re.match(r"^\w+(Error|Exception)\b", ln)),
                                   crash[:200]),
                 "inputs": [str(f) for f in state.parent.glob("crash-*")]}
    print(json.dumps({
        "executions": int(stat.get("number_of_executed_units", 0)) or counts.get("runs"),
        "executions_per_second": int(stat.get("average_exec_per_sec", 0)) or None,
        "record_inputs_counted": counts.get("records"), "valid_records": counts.get("valid_records"),
        "project_inputs_counted": counts.get("projects"), "valid_projects": counts.get("valid_projects"),
        "coverage_edges": int(cov[-1][0]) if cov else None, "coverage_features": int(cov[-1][1]) if cov else None,
        "new_units": int(stat.get("new_units_added", 0)), "peak_rss_mb": int(stat.get("peak_rss_mb", 0)),
        "crashes": 1 if crashed else 0, "crash": crash, "selftest": args.selftest, "exit_status": proc.returncode, "seconds": round(secs, 1),
        "atheris": _version()}, indent=1))
    return 1 if crashed else 0


def _version() -> str:
    from importlib.metadata import version

    return version("atheris")


if __name__ == "__main__":
    sys.exit(main())
