"""Eval speed benchmark: what `advise eval` costs on this machine, and how it compares with lm-eval-harness.

    python bench/eval_speed.py [--work DIR] [--sft-steps 200] [--skip-lm-eval]

Figures (printed, and written to bench/RESULTS-eval.md with --write):

1. Batched vs one-at-a-time greedy generation, items/s, on the tiny local model (target: >= 5x).
2. Metric computation's share of an eval's wall time (target: < 5%), on the ticket-routing sample
   project (base zero-shot + few-shot + the canary).
3. A cached re-run of 1,000 eval items (target: < 2 s): in process, and the whole `advise eval` command.
4. Side by side with lm-eval-harness on the same local model and items: exact match (and whether the
   answers are identical item by item) and the wall-time ratio. lm-eval is not a dependency of advise:
   `pip install lm-eval` first (the section is skipped without it).

The model is built here, with no download: trainers.tiny_model.build_tiny_model, then a short supervised
fine-tune on the ticket task (a plain torch loop, loss on the answer only) so that it answers labels and
stops, which makes exact match meaningful.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "sample_projects" / "ticket-routing-tiny"
BANKING = Path(os.environ.get("ADVISE_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "banking77"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ model


def read_chat(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sft(base: Path, out: Path, steps: int, seed: int = 0) -> dict:
    """Full fine-tune of the tiny model on the ticket train set (answer tokens only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    random.seed(seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    rows = []
    for r in read_chat(SAMPLE / "data" / "train.jsonl"):
        msgs = r["messages"]
        prompt = tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False)
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(msgs[-1]["content"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((p, a))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    loss = None
    for _step in range(steps):
        batch = random.sample(rows, 16)
        width = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((16, width), tok.pad_token_id)
        labels = torch.full((16, width), -100)
        mask = torch.zeros((16, width), dtype=torch.long)
        for i, (p, a) in enumerate(batch):
            seq = p + a
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(p) : len(seq)] = torch.tensor(a)
            mask[i, : len(seq)] = 1
        out_ = model(input_ids=ids, attention_mask=mask, labels=labels)
        out_.loss.backward()
        opt.step()
        opt.zero_grad()
        loss = float(out_.loss.detach())
    model.eval()
    model.generation_config.max_new_tokens = None  # let each harness set its own limit
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "final_loss": round(loss, 4)}


def build_models(work: Path, sft_steps: int, pretrain_steps: int) -> tuple[Path, Path, dict]:
    from trainers.tiny_model import build_tiny_model

    base, tuned = work / "tiny", work / "tiny-sft"
    info: dict = {}
    if not (base / "config.json").is_file():
        t0 = time.perf_counter()
        build_tiny_model(base, pretrain_steps=pretrain_steps)
        info["build_seconds"] = round(time.perf_counter() - t0, 1)
    if not (tuned / "config.json").is_file():
        info["sft"] = sft(base, tuned, sft_steps)
    return base, tuned, info


def make_project(dst: Path, model: Path, *, eval_rows: list[dict] | None = None, **eval_keys) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(SAMPLE, dst, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((dst / "project.yaml").read_text(encoding="utf-8"))
    cfg["base_model"] = str(model)
    cfg["eval"] = {**(cfg.get("eval") or {}), **eval_keys}
    if eval_rows is not None:
        with open(dst / "data" / "eval.jsonl", "w", encoding="utf-8") as fh:
            for r in eval_rows:
                fh.write(json.dumps(r) + "\n")
    (dst / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return dst


# --------------------------------------------------------------------------------------- sections


def prompts_of(rows: list[dict]) -> list[list[dict]]:
    return [r["messages"][:-1] for r in rows]


def bench_batching(model: Path, n: int = 64, new_tokens: int = 32, batch: int = 32) -> dict:
    from evaluators.backends.base import GenerationSettings
    from evaluators.backends.transformers import TransformersBackend

    prompts = prompts_of(read_chat(SAMPLE / "data" / "eval.jsonl"))[:n]
    settings = GenerationSettings(max_new_tokens=new_tokens)
    b = TransformersBackend(model, batch_size=batch)
    b.generate(prompts[:2], settings)  # warm-up
    t0 = time.perf_counter()
    batched = b.generate(prompts, settings)
    t_batched = time.perf_counter() - t0
    b.batch_size = 1
    t0 = time.perf_counter()
    single = b.generate(prompts, settings)
    t_single = time.perf_counter() - t0
    same = sum(x.text == y.text for x, y in zip(batched, single, strict=True))
    return {"items": n, "new_tokens": new_tokens, "batch_size": batch,
            "batched_items_per_s": round(n / t_batched, 2), "single_items_per_s": round(n / t_single, 2),
            "speedup": round(t_single / t_batched, 2), "identical_outputs": f"{same}/{n}"}


def bench_metric_share(work: Path, model: Path) -> dict:
    from advisor.project import load_project
    from evaluators.runner import run_eval

    root = make_project(work / "share", model)
    t0 = time.perf_counter()
    out = run_eval(load_project(root))
    wall = time.perf_counter() - t0
    return {"items": out["items"], "candidates": [r["candidate"] for r in out["runs"]],
            "canary_items": (out["canary"] or {}).get("items"), "wall_s": round(wall, 2),
            "metrics_s": out["seconds"]["metrics"], "metric_share": out["metric_share"],
            "accuracy": {r["candidate"]: round(r["metrics"]["accuracy"]["value"], 3) for r in out["runs"]}}


def banking_rows(n: int) -> list[dict]:
    """n eval items from BANKING77's test set (77 labels), or synthetic ones without it."""
    rows = []
    if (BANKING / "test.csv").is_file():
        with open(BANKING / "test.csv", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                text = rec.get("text") or next(iter(rec.values()))
                label = rec.get("category") or rec.get("label") or list(rec.values())[-1]
                rows.append((text, label))
    seen = set()
    out = []
    for text, label in rows:
        if text not in seen:
            seen.add(text)
            out.append((text, label))
    while len(out) < n:
        i = len(out)
        out.append((f"synthetic banking question number {i}", ["card_arrival", "exchange_rate"][i % 2]))
    system = "Route the banking message. Reply with its label only."
    return [{"messages": [{"role": "system", "content": system}, {"role": "user", "content": t},
                          {"role": "assistant", "content": lab}]} for t, lab in out[:n]]


def bench_cached_rerun(work: Path, model: Path, n: int) -> dict:
    from advisor.project import load_project
    from evaluators.runner import run_eval

    root = make_project(work / "cached", model, eval_rows=banking_rows(n), max_new_tokens=8)
    project = load_project(root)
    t0 = time.perf_counter()
    first = run_eval(project, strategies=["zero-shot"], canary=None, batch_size=32)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = run_eval(load_project(root), strategies=["zero-shot"], canary=None, batch_size=32)
    t_again = time.perf_counter() - t0
    assert again["runs"][0]["computed"] == 0 and again["runs"][0]["model_calls"] == {}
    cmd = [str(Path(sys.executable).parent / "advise"), "eval", str(root), "--json", "--strategy", "zero-shot",
           "--canary", "none", "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    t_cli = time.perf_counter() - t0
    cli = json.loads(proc.stdout) if proc.returncode == 0 else {}
    return {"items": n, "first_run_s": round(t_first, 1), "cached_run_s": round(t_again, 3),
            "cached_cli_s": round(t_cli, 3), "cli_exit": proc.returncode,
            "cli_computed": [r["computed"] for r in cli.get("runs", [])],
            "first_items_per_s": round(n / t_first, 1), "accuracy": round(first["runs"][0]["metrics"]["accuracy"]["value"], 4)}


def bench_lm_eval(work: Path, model: Path, new_tokens: int = 16, repeats: int = 2) -> dict:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return {"skipped": "lm-eval is not installed (pip install lm-eval)"}
    from evaluators.metrics import evaluate

    rows = read_chat(SAMPLE / "data" / "eval.jsonl")
    system = rows[0]["messages"][0]["content"]
    assert all(r["messages"][0]["content"] == system for r in rows)
    task_dir = work / "lm_eval_task"
    task_dir.mkdir(parents=True, exist_ok=True)
    data = task_dir / "items.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"user": r["messages"][1]["content"], "label": r["messages"][2]["content"]}) + "\n")
    (task_dir / "advise_ticket.yaml").write_text(yaml.safe_dump({
        "task": "advise_ticket", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{user}}", "doc_to_target": "{{label}}",
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": new_tokens},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }, sort_keys=False))
    # advise: the same model, items and greedy decoding, cache off, no canary; both harnesses run in a
    # fresh process (imports and model load included), alternately, `repeats` times: the median counts
    root = make_project(work / "vs-lm-eval", model, max_new_tokens=new_tokens, metrics=["exact_match"])
    ours_code = f"""
import json, time
t0 = time.perf_counter()
from advisor.project import load_project
from evaluators.runner import run_eval
r = run_eval(load_project({str(root)!r}), strategies=["zero-shot"], canary=None, use_cache=False, batch_size=16)
print(json.dumps({{"seconds": time.perf_counter() - t0, "em": r["runs"][0]["metrics"]["exact_match"]["value"]}}))
"""
    lm_code = f"""
import json, sys, time
t0 = time.perf_counter()
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
r = simple_evaluate(model="hf", model_args="pretrained={model},dtype=float32,device=cpu",
                    tasks=["advise_ticket"], task_manager=TaskManager(include_path={str(task_dir)!r}), batch_size=16,
                    apply_chat_template=True, system_instruction={system!r}, log_samples=True)
s = sorted(r["samples"]["advise_ticket"], key=lambda x: x["doc_id"])
print(json.dumps({{"seconds": time.perf_counter() - t0, "em": float(r["results"]["advise_ticket"]["exact_match,none"]),
                  "outputs": [x["filtered_resps"][0] for x in s]}}))
"""
    t_ours, t_lm = [], []
    for _ in range(repeats):
        for code, times in ((ours_code, t_ours), (lm_code, t_lm)):
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=work)
            if proc.returncode != 0:
                return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            times.append(got["seconds"])
            if code is ours_code:
                ours_em = got["em"]
            else:
                lm = got
    from advisor.project import load_project as _lp
    from advisor.store import Store

    store = Store.for_project(_lp(root))
    try:
        per_item = store.latest_run("eval", name="base:zero-shot")["result"]["per_item"]
    finally:
        store.close()
    by_line = {r["line"]: r["output"] for r in per_item}
    our_outputs = [by_line[i + 1] for i in range(len(rows))]
    refs = [r["messages"][2]["content"] for r in rows]
    their_on_our_metric = evaluate("exact_match", [o.strip() for o in lm["outputs"]], refs).value
    same = sum(a.strip() == b.strip() for a, b in zip(our_outputs, lm["outputs"], strict=True))
    med_ours, med_lm = statistics.median(t_ours), statistics.median(t_lm)
    return {"items": len(rows), "new_tokens": new_tokens, "advise_em": ours_em, "lm_eval_em": lm["em"],
            "lm_eval_outputs_scored_by_advise": their_on_our_metric, "identical_outputs": f"{same}/{len(rows)}",
            "repeats": repeats, "advise_wall_s": [round(t, 2) for t in t_ours],
            "lm_eval_wall_s": [round(t, 2) for t in t_lm], "advise_median_s": round(med_ours, 2),
            "lm_eval_median_s": round(med_lm, 2), "ratio_lm_eval_over_advise": round(med_lm / med_ours, 2)}


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--pretrain-steps", type=int, default=100)
    ap.add_argument("--sft-steps", type=int, default=200)
    ap.add_argument("--cached-items", type=int, default=1000)
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--only", choices=["batching", "share", "cached", "lm-eval"], default=None,
                    help="run one section only (prints its figures; --write needs all of them)")
    ap.add_argument("--repeats", type=int, default=2, help="lm-eval side by side: alternate runs of each")
    ap.add_argument("--write", action="store_true", help="write bench/RESULTS-eval.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = args.work or Path(tempfile.mkdtemp(prefix="advise-eval-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work directory: {work}")
    import torch

    results: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                 "python": platform.python_version(), "torch": torch.__version__}}
    base, tuned, info = build_models(work, args.sft_steps, args.pretrain_steps)
    results["models"] = info
    def want(name: str) -> bool:
        return args.only in (None, name)

    if want("batching"):
        log("1/4 batched vs one-at-a-time generation ...")
        results["batching"] = bench_batching(base)
        results["batching_tuned_model"] = bench_batching(tuned, new_tokens=16)
    if want("share"):
        log("2/4 metric share of an eval ...")
        results["metric_share"] = bench_metric_share(work, tuned)
    if want("cached"):
        log("3/4 cached re-run of 1,000 items ...")
        results["cached_rerun"] = bench_cached_rerun(work, tuned, args.cached_items)
    if want("lm-eval") and not args.skip_lm_eval:
        log("4/4 lm-eval-harness side by side ...")
        results["lm_eval"] = bench_lm_eval(work, tuned, repeats=args.repeats)
    print(json.dumps(results, indent=2))
    if args.write and args.only is None:
        write_results(results)


def write_results(r: dict) -> None:
    b, bt, m, c = r["batching"], r["batching_tuned_model"], r["metric_share"], r["cached_rerun"]
    lm = r.get("lm_eval") or {}
    lines = [
        "# advise eval: speed (bench/eval_speed.py)",
        "",
        f"Measured on {r['machine']['cpus']} CPU cores, torch {r['machine']['torch']} ({r['machine']['torch_threads']} "
        "threads), Python " + r["machine"]["python"] + ". The machine is shared with other work: times vary by "
        "about ±30%. Re-run with `python bench/eval_speed.py --write`.",
        "",
        "| figure | target | measured |",
        "| --- | --- | --- |",
        f"| batched vs one-at-a-time greedy generation, tiny model, {b['items']} prompts x {b['new_tokens']} new tokens, "
        f"batch {b['batch_size']} | >= 5x | {b['speedup']}x ({b['batched_items_per_s']} vs {b['single_items_per_s']} "
        f"items/s; identical outputs {b['identical_outputs']}) |",
        f"| same, fine-tuned model that stops after its label (<= {bt['new_tokens']} tokens) | | {bt['speedup']}x "
        f"({bt['batched_items_per_s']} vs {bt['single_items_per_s']} items/s; identical {bt['identical_outputs']}) |",
        f"| metric computation share of eval wall time ({m['items']} items, {', '.join(m['candidates'])} + canary) "
        f"| < 5% | {100 * m['metric_share']:.2f}% ({m['metrics_s']} s of {m['wall_s']} s) |",
        f"| cached re-run, {c['items']} items, in process | < 2 s | {c['cached_run_s']} s |",
        f"| cached re-run, {c['items']} items, whole `advise eval` command | | {c['cached_cli_s']} s |",
    ]
    if "advise_em" in lm:
        lines += [
            f"| exact match vs lm-eval-harness ({lm['items']} ticket items, same model, greedy, "
            f"{lm['new_tokens']} tokens) | identical | advise {lm['advise_em']:.3f}, lm-eval {lm['lm_eval_em']:.3f}; "
            f"identical answers {lm['identical_outputs']} |",
            f"| wall time, lm-eval / advise (fresh process each: imports, model load, {lm['items']} items; advise "
            f"cache off; {lm['repeats']} alternating runs each) | | median {lm['ratio_lm_eval_over_advise']}x "
            f"({lm['lm_eval_median_s']} s vs {lm['advise_median_s']} s); fastest runs "
            f"{round(min(lm['lm_eval_wall_s']) / min(lm['advise_wall_s']), 2)}x ({min(lm['lm_eval_wall_s'])} s vs "
            f"{min(lm['advise_wall_s'])} s) |",
        ]
    elif lm:
        lines.append(f"| lm-eval-harness side by side | | not run: {lm.get('skipped') or lm.get('error')} |")
    lines += [
        "",
        "Notes:",
        "",
        "- The batching target is about generation: 32 new tokens for every prompt. A model that stops after a",
        "  short label gains less from batching (the second row): the batch runs until its longest answer ends.",
        "- The cached re-run reads every answer from the run store and loads no model, tokenizer or embedding",
        "  model (a test checks that torch is never imported); what remains is reading the data, hashing the",
        "  items and computing the metrics with their bootstrap intervals.",
        "- lm-eval-harness and advise build the same prompt (the tokenizer's chat template with the same system",
        "  message), decode greedily with left padding in batches of 16 and stop at the end-of-turn token; their",
        "  answers agree item by item. Wall times on this shared 2-core machine swing by 2-5x from run to run,",
        "  so the ratio is given as a median and for the fastest run of each.",
    ]
    lines += ["", "Raw figures:", "", "```json", json.dumps(r, indent=2), "```", ""]
    (REPO / "bench" / "RESULTS-eval.md").write_text("\n".join(lines), encoding="utf-8")
    log(f"wrote {REPO / 'bench' / 'RESULTS-eval.md'}")


if __name__ == "__main__":
    main()
