"""Benchmark: peak memory of `advise assess` on a project with one 50 MB training record (issue 11).

Builds, in a temporary directory (never committed), a chat project of 300 ordinary records and one
record whose user message is 50 MB of generated words, with the base model a locally built tiny
model, so that tokens are counted by a real (byte-level BPE) tokenizer. Before the per-record bound
(data_checks ``records.max_chars``), assess peaked at 14.6 GB on such a record (as reported in the
issue). Target: assess exits 0, reports the record (record_too_long, file:line) and peaks under 1 GB.
The peak is that of the process tree, sampled with psutil every 20 ms, and the largest child's
ru_maxrss (exact, but of one process); the target holds for the larger of the two.

    .venv/bin/python bench/record_memory.py [--record-mb 50]

``--train`` also runs ``advise train --method lora --max-steps 2`` on the project (the issue measured
16 GB): it assesses, skips the record with one line and trains on the rest.
``--unbounded`` also runs assess with the bound lifted (a project override of records.max_chars)
under an address-space limit (``--cap-mb``, default 4096) to show what the bound saves; off by
default because without a cap that run takes the machine's memory.

Not a test: it asserts nothing and exits 0; it prints one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from assess_speed import REPO, TreeMemory  # noqa: E402

LIMIT_MB = 1024
WORDS = ("card", "payment", "declined", "refund", "transfer", "account", "balance", "the", "my", "was", "not",
         "arrived", "yesterday", "please", "help", "why", "is", "pending", "fee", "exchange", "rate", "top-up")


def _long_text(n_bytes: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = rng.choices(WORDS, k=4096)
    block = " ".join(words) + ". "
    return (block * (n_bytes // len(block) + 1))[:n_bytes]


def build_project(root: Path, record_mb: float) -> tuple[Path, int]:
    from trainers.tiny_model import build_tiny_model

    build_tiny_model(root / "tiny", pretrain_steps=0, seed=0, hidden_size=64, layers=2, heads=2, vocab_size=1000)
    project = root / "project"
    (project / "data").mkdir(parents=True)
    labels = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "cash_withdrawal_charge"]
    rng = random.Random(1)
    long_line = 0
    with open(project / "data" / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(301):
            if i == 150:
                user = _long_text(int(record_mb * 2**20))
                long_line = i + 1
            else:
                user = " ".join(rng.choices(WORDS, k=12)) + f" (ticket {i})"
            rec = {"messages": [{"role": "system", "content": "Route the banking message."},
                                {"role": "user", "content": user},
                                {"role": "assistant", "content": rng.choice(labels)}]}
            fh.write(json.dumps(rec) + "\n")
    (project / "project.yaml").write_text(
        "name: long-record\ntask: Route each banking message to its queue.\n"
        f"base_model: {root / 'tiny'}\ndata:\n  train: data/train.jsonl\n  format: chat\n", encoding="utf-8")
    return project, long_line


def run_assess(project: Path, cap_mb: int | None = None, train: bool = False) -> dict:
    args = ["train", str(project), "--method", "lora", "--max-steps", "2", "--json"] if train else [
        "assess", str(project), "--json", "--no-embeddings"]
    cmd = [sys.executable, "-c", "from advisor.cli.main import main; main()", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    def limit():  # in the child, before exec
        if cap_mb:
            resource.setrlimit(resource.RLIMIT_AS, (cap_mb * 2**20, cap_mb * 2**20))

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env, preexec_fn=limit)
    with TreeMemory(proc.pid) as mem:
        out, err = proc.communicate(timeout=1800)
    wall = time.perf_counter() - t0
    row = {"exit": proc.returncode, "wall_s": round(wall, 2), "peak_rss_mb": round(mem.peak / 2**20),
           "children_maxrss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
           "stderr_tail": err.decode(errors="replace").strip()[-300:]}
    if proc.returncode == 0 and train:
        r = json.loads(out)
        row.update(steps=r["steps"], examples=r["examples"],
                   skipped=[ln for ln in err.decode(errors="replace").splitlines() if "skipped" in ln][:1])
    elif proc.returncode == 0:
        a = json.loads(out)
        f = next((f for f in a["findings"] if f["code"] == "record_too_long"), None)
        row["finding"] = f["examples"][0] if f else None
        row["tokens_per_example_max"] = a["data"]["train"]["tokens"]["per_example"]["max"]
        row["token_method"] = a["data"]["train"]["tokens"]["method"]
        row["examples"] = a["data"]["train"]["examples"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record-mb", type=float, default=50.0)
    ap.add_argument("--unbounded", action="store_true", help="also run with the bound lifted, under --cap-mb")
    ap.add_argument("--cap-mb", type=int, default=4096)
    ap.add_argument("--train", action="store_true", help="also run `advise train --max-steps 2` (assess, then "
                    "LoRA on the tiny model) on the same project")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project, line = build_project(Path(tmp), args.record_mb)
        size = (project / "data" / "train.jsonl").stat().st_size
        summary = {"train_file_bytes": size, "long_record_line": line, "limit_mb": LIMIT_MB}
        bounded = run_assess(project)
        summary["bounded"] = bounded
        summary["meets_target"] = bounded["exit"] == 0 and bounded.get("finding") is not None and (
            max(bounded["peak_rss_mb"], bounded["children_maxrss_mb"]) < LIMIT_MB)
        if args.train:
            summary["train"] = run_assess(project, train=True)
        if args.unbounded:
            (project / "rubrics").mkdir()
            (project / "rubrics" / "data_checks.yaml").write_text("records:\n  max_chars: 1000000000000\n")
            summary["unbounded"] = {"address_space_cap_mb": args.cap_mb, **run_assess(project, args.cap_mb)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
