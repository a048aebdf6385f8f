"""Benchmark: peak memory of `advise assess` on a project.yaml holding an alias bomb (issue 11).

tests/data/alias_bomb.yaml is 463 bytes under ``train:`` (extra keys are allowed there) whose aliases
expand to 9^9 (387 million) values. Before the loader counted aliases, assess walked them: about 13 GB
as reported in the issue; measured here, under a 2 GB address-space limit it aborted with "memory
allocation failed". Target: the bomb is refused (exit 2, one line naming project.yaml:line) with peak
resident memory under 1 GB. The peak is that of the process tree, sampled with psutil.

    .venv/bin/python bench/yaml_bomb_memory.py

Not a test: it asserts nothing and exits 0; it prints one JSON summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from assess_speed import REPO, TreeMemory  # noqa: E402

LIMIT_MB = 1024
BOMB = REPO / "tests" / "data" / "alias_bomb.yaml"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bomb"
        project.mkdir()
        (project / "project.yaml").write_bytes(BOMB.read_bytes())
        cmd = [sys.executable, "-c", "from advisor.cli.main import main; main()", "assess", str(project), "--json"]
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env)
        with TreeMemory(proc.pid) as mem:
            _, err = proc.communicate(timeout=600)
        wall = time.perf_counter() - t0
    peak = mem.peak / 2**20
    print(json.dumps({"bomb_bytes": BOMB.stat().st_size, "expands_to_values": 9**9, "exit": proc.returncode,
                      "stderr": err.decode().strip(), "wall_s": round(wall, 2), "peak_rss_mb": round(peak),
                      "limit_mb": LIMIT_MB, "meets_target": proc.returncode == 2 and peak < LIMIT_MB}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
