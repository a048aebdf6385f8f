"""Benchmark: `advise --help` answers in under a second; `assess` without docs/ imports no torch.

Target (issue 2, "Speed and memory"): `advise --help` in under a second, and `advise assess` on a
project without docs/ imports neither torch nor transformers (heavy imports happen only where they
are needed; with trl they take about 10 s here).

    .venv/bin/python bench/cli_startup.py [--runs 5]

Measures the wall time of `advise --help` (median of --runs), and runs `advise assess --json` in a
fresh interpreter on a small generated project without docs/, then lists which heavy modules that
interpreter had imported. Not a test: it asserts nothing and exits 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from assess_speed import REPO, advise_command, ensure_project, machine  # noqa: E402

HEAVY = ("torch", "transformers", "sentence_transformers", "trl", "peft", "datasets", "accelerate")

PROBE = """
import sys
from advisor.cli.main import main
code = 0
try:
    main(["assess", sys.argv[1], "--json"])
except SystemExit as e:
    code = e.code
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
print("EXIT=" + str(code), file=sys.stderr)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args(argv)

    help_times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        subprocess.run([*advise_command(), "--help"], check=True, capture_output=True, cwd=REPO)
        help_times.append(time.perf_counter() - t0)

    tmp = Path(tempfile.mkdtemp(prefix="advise-startup-"))
    try:
        project = ensure_project(tmp / "project", 2000)
        assert not (project / "docs").exists()
        t0 = time.perf_counter()
        probe = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), str(project)],
                               capture_output=True, text=True, cwd=REPO)
        assess_s = time.perf_counter() - t0
        err = probe.stderr.splitlines()
        heavy = next((x[6:] for x in err if x.startswith("HEAVY=")), "?")
        code = next((x[5:] for x in err if x.startswith("EXIT=")), "?")
        json.loads(probe.stdout)  # the assessment itself came out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {
        "help_median_s": round(statistics.median(help_times), 3),
        "help_runs_s": [round(t, 3) for t in help_times],
        "help_target_s": 1.0,
        "help_meets_target": statistics.median(help_times) < 1.0,
        "assess_without_docs": {"exit": code, "wall_s": round(assess_s, 2),
                                "heavy_modules_imported": [m for m in heavy.split(",") if m]},
        "machine": machine(),
    }
    summary["no_heavy_imports"] = not summary["assess_without_docs"]["heavy_modules_imported"]
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
