"""Training speed on CPU: advise's `lora` plugin against trl's SFTTrainer with its defaults.

1. Matched: the same tiny model (trainers/tiny_model.py), the same data (sample_projects/
   ticket-routing-tiny, the records `advise train` uses), the same learning rate, batch, sequence
   length, LoRA config (rank 16, all-linear, embeddings trained) and number of steps (so the same
   training tokens: both sides draw the same seeded batches). Everything else is left at trl's
   defaults on one side (gradient checkpointing on, bf16 autocast) and chosen for the hardware on the
   other (fp32, no checkpointing) -- the same computation. Our side runs through the product path
   (`advise train`'s planner and runner: run store, per-step loss log, checkpoints every 10% of the run).
   Each run is a fresh process (fair peak RSS); the two sides alternate, `--reps` times each.
2. Own defaults: each side with its own defaults (ours: lr 2e-4, batch 16, max_length 512, r 16,
   3 epochs; trl: lr 2e-5, batch 8, max_length 1024, LoraConfig() defaults, 3 epochs), loss against
   wall time, plotted to bench/train_speed_loss_vs_time.png.
3. Model FLOP utilisation: model FLOPs per token (6N + 12 L h s, the PaLM convention, counting the
   frozen weights too) x tokens/s, against this CPU's measured fp32 matmul peak.

    PYTHONPATH=. .venv/bin/python bench/train_speed.py [--steps 100] [--reps 3] [--model DIR]

Writes bench/RESULTS-train.md and bench/train_speed_loss_vs_time.png; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "sample_projects" / "ticket-routing-tiny"
LR, BATCH, MAX_LEN, RANK = 1.0e-3, 16, 128, 16


# -- workers (one fresh process per run) --------------------------------------------------------------
def _project(tmp: Path, model: str, train: dict) -> Path:
    import yaml

    dst = tmp / "project"
    shutil.copytree(SAMPLE, dst, ignore=shutil.ignore_patterns(".advise"))
    cfg = yaml.safe_load((dst / "project.yaml").read_text())
    cfg["base_model"] = model
    cfg["train"] = train
    (dst / "project.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dst


def worker_ours(model: str, steps: int | None, matched: bool, full_head: bool = False) -> dict:
    from trainers.runner import execute, plan_new

    if full_head:  # ablation: let trl's fused LM head score every position on the CPU, as it does by default
        import trainers.sft

        trainers.sft.score_labelled_positions_only_on_cpu = lambda: None

    tmp = Path(tempfile.mkdtemp(prefix="bench-ours-"))
    try:
        train = ({"max_steps": steps, "learning_rate": LR, "batch_size": BATCH, "max_length": MAX_LEN,
                  "lora_r": RANK, "seed": 42} if matched else {})
        plan = plan_new(_project(tmp, model, train), method="lora")
        events = []
        t0 = [None]

        def progress(ev):
            if t0[0] is None:
                t0[0] = time.perf_counter()
            events.append((time.perf_counter(), ev.step, ev.loss))

        start = time.perf_counter()
        r = execute(plan, progress=progress, command="bench")
        # the first event comes after step 1: shift by one step's time so the curve starts at 0
        first_step = (events[1][0] - events[0][0]) if len(events) > 1 else 0.0
        curve = [(t - events[0][0] + first_step, s, loss) for t, s, loss in events]
        return {"side": "advise lora" + (" (full LM head)" if full_head else ""), "tokens": r["train_tokens"], "seconds": r["wall_seconds"],
                "tokens_per_second": r["tokens_per_second"], "losses": [v for _, v in r["loss_history"]],
                "curve": curve, "steps": r["steps"], "peak_rss_mb": _peak_rss_mb(),
                "process_seconds": time.perf_counter() - start, "config": r["config"],
                "parameters": r["metrics"]["parameters"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def worker_trl(model: str, steps: int | None, matched: bool) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from advisor.data.dataset import load_project_data
    from advisor.project import load_project
    from trainers import sft_rows

    tmp = Path(tempfile.mkdtemp(prefix="bench-trl-"))
    try:
        project = load_project(_project(tmp, model, {}))
        records = load_project_data(project).train
        tok = AutoTokenizer.from_pretrained(model)
        ds = Dataset.from_list(sft_rows(records, tok))
        curve = []

        class Clock(TrainerCallback):  # timestamps only; changes nothing in the computation
            def on_train_begin(self, args, state, control, **kw):
                self.t0 = time.perf_counter()

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    curve.append((time.perf_counter() - self.t0, state.global_step, float(logs["loss"]),
                                  float(logs.get("num_tokens", 0))))

        if matched:
            args = SFTConfig(output_dir=str(tmp / "out"), learning_rate=LR, per_device_train_batch_size=BATCH,
                             max_length=MAX_LEN, max_steps=steps, report_to="none", use_cpu=True)
            peft = LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules="all-linear",
                              modules_to_save=["embed_tokens"], ensure_weight_tying=True, task_type="CAUSAL_LM")
        else:
            args = SFTConfig(output_dir=str(tmp / "out"), report_to="none", use_cpu=True)
            peft = LoraConfig(task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft)
        trainer.add_callback(Clock())
        t = time.perf_counter()
        out = trainer.train()
        seconds = time.perf_counter() - t
        tokens = int(curve[-1][3]) if curve else 0
        return {"side": "trl defaults", "tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds,
                "losses": [c[2] for c in curve], "curve": [c[:3] for c in curve], "steps": out.global_step,
                "peak_rss_mb": _peak_rss_mb(), "logging_steps": args.logging_steps,
                "config": {"learning_rate": args.learning_rate, "batch_size": args.per_device_train_batch_size,
                           "max_length": args.max_length, "bf16": args.bf16,
                           "gradient_checkpointing": args.gradient_checkpointing, "lora_r": peft.r,
                           "epochs": args.num_train_epochs if not matched else None}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_busy(interval: float = 1.0) -> float:
    """Share of this machine's CPU time in use over ``interval`` seconds (from /proc/stat)."""
    def snap():
        with open("/proc/stat") as fh:
            v = list(map(int, fh.readline().split()[1:]))
        return sum(v), v[3] + v[4]

    t1, i1 = snap()
    time.sleep(interval)
    t2, i2 = snap()
    return 1 - (i2 - i1) / max(1, t2 - t1)


def wait_for_quiet(max_wait: float, threshold: float = 0.2) -> float:
    """The machine is shared: wait (up to max_wait s) until other work leaves the CPU mostly idle."""
    deadline = time.time() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.time() < deadline:
        busy = cpu_busy()
    return busy


def run_worker(kind: str, model: str, steps: int | None, matched: bool, max_wait: float = 0.0) -> dict:
    busy_before = wait_for_quiet(max_wait) if max_wait > 0 else None
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--worker", kind, "--model", model, "--worker-out", out,
           "--steps", str(steps or 0)] + (["--matched"] if matched else [])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{res.stderr[-3000:]}")
    data = json.loads(Path(out).read_text())
    data["cpu_busy_before"] = busy_before
    os.unlink(out)
    return data


# -- peak and FLOPs -------------------------------------------------------------------------------------
def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def model_flops_per_token(model_dir: str, seq_len: float, labelled_share: float) -> tuple[float, float, dict]:
    """(conventional, needed) training FLOPs per token. Conventional: 6N + 12 L h s with the output layer at
    every position (PaLM's MFU). Needed: the output layer only at the labelled (completion) positions, the
    only ones a completion-only loss uses."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    h, layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    inter = cfg["intermediate_size"]
    body = layers * (4 * h * h + 3 * h * inter)  # q, k, v, o + gate, up, down
    head = vocab * h  # the (tied) output layer, a matmul per scored position
    attn = 12 * layers * h * seq_len
    return (6 * (body + head) + attn, 6 * body + 6 * head * labelled_share + attn,
            {"matmul_parameters": body + head, "output_layer_parameters": head, "hidden": h, "layers": layers,
             "vocab": vocab})


def labelled_share(model_dir: str) -> float:
    """Share of the training tokens that carry a label: the completion tokens and their end token."""
    from transformers import AutoTokenizer

    from advisor.data.dataset import load_project_data
    from advisor.project import load_project

    tok = AutoTokenizer.from_pretrained(model_dir)
    records = load_project_data(load_project(SAMPLE)).train
    texts = [tok.apply_chat_template([*r.prompt, {"role": "assistant", "content": r.output}], tokenize=False)
             for r in records]
    total = sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])
    labelled = sum(len(tok(r.output, add_special_tokens=False)["input_ids"]) + 1 for r in records)
    return labelled / total


# -- the benchmark ---------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default=None, help="A model directory (default: build the tiny model).")
    ap.add_argument("--pretrain-steps", type=int, default=100)
    ap.add_argument("--skip-defaults", action="store_true")
    ap.add_argument("--max-wait", type=float, default=120.0,
                    help="Before each run, wait up to this many seconds for the shared CPU to go quiet.")
    ap.add_argument("--worker", choices=["ours", "ours_full_head", "trl"])
    ap.add_argument("--worker-out")
    ap.add_argument("--matched", action="store_true")
    a = ap.parse_args()
    if a.worker:
        if a.worker == "trl":
            res = worker_trl(a.model, a.steps or None, a.matched)
        else:
            res = worker_ours(a.model, a.steps or None, a.matched, full_head=a.worker == "ours_full_head")
        Path(a.worker_out).write_text(json.dumps(res))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    model = a.model
    if model is None:
        from trainers.tiny_model import build_tiny_model

        model = str(tmp / "tiny")
        build_tiny_model(Path(model), pretrain_steps=a.pretrain_steps)

    runs: dict[str, list[dict]] = {"ours": [], "trl": [], "ours_full_head": []}
    for rep in range(a.reps):
        for kind in (("ours", "trl", "ours_full_head") if rep % 2 == 0 else ("trl", "ours_full_head", "ours")):
            r = run_worker(kind, model, a.steps, True, a.max_wait)
            runs[kind].append(r)
            print(f"rep {rep + 1} {kind}: {r['tokens_per_second']:,.0f} tok/s, {r['seconds']:.1f} s, "
                  f"peak {r['peak_rss_mb']:,.0f} MB, tokens {r['tokens']:,}, cpu busy before "
                  f"{r['cpu_busy_before'] or 0:.0%}", file=sys.stderr)

    def med(kind, key):
        return statistics.median(r[key] for r in runs[kind])

    def final_loss(r):  # mean loss of the last 10 steps (trl logs every 10 steps: its last logged value)
        return statistics.fmean(r["losses"][-10:]) if r["side"].startswith("advise") else r["losses"][-1]

    ours_tps, trl_tps = med("ours", "tokens_per_second"), med("trl", "tokens_per_second")
    ours_best = max(r["tokens_per_second"] for r in runs["ours"])
    trl_best = max(r["tokens_per_second"] for r in runs["trl"])
    ours_loss = statistics.fmean(final_loss(r) for r in runs["ours"])
    trl_loss = statistics.fmean(final_loss(r) for r in runs["trl"])
    ours_mem = max(r["peak_rss_mb"] for r in runs["ours"])
    trl_mem = max(r["peak_rss_mb"] for r in runs["trl"])
    tokens = runs["ours"][0]["tokens"]
    seq = tokens / (a.steps * BATCH)
    share = labelled_share(model)
    fpt, fpt_needed, shape = model_flops_per_token(model, seq, share)
    peak = matmul_peak_gflops()
    mfu_ours = fpt * ours_best / (peak * 1e9)
    mfu_trl = fpt * trl_best / (peak * 1e9)
    mfu_ours_needed = fpt_needed * ours_best / (peak * 1e9)
    mfu_trl_needed = fpt_needed * trl_best / (peak * 1e9)

    defaults = {}
    if not a.skip_defaults:
        defaults = {"ours": run_worker("ours", model, None, False, a.max_wait),
                    "trl": run_worker("trl", model, None, False, a.max_wait)}
        _plot(defaults, REPO / "bench" / "train_speed_loss_vs_time.png")

    summary = {
        "matched": {"steps": a.steps, "learning_rate": LR, "batch_size": BATCH, "max_length": MAX_LEN, "lora_r": RANK,
                    "train_tokens": {"ours": [r["tokens"] for r in runs["ours"]],
                                     "trl": [r["tokens"] for r in runs["trl"]]},
                    "tokens_per_second": {"ours": [round(r["tokens_per_second"]) for r in runs["ours"]],
                                          "trl": [round(r["tokens_per_second"]) for r in runs["trl"]]},
                    "ablation_full_lm_head": {
                        "tokens_per_second": [round(r["tokens_per_second"]) for r in runs["ours_full_head"]],
                        "final_loss": round(statistics.fmean(final_loss(r) for r in runs["ours_full_head"]), 4)},
                    "speedup_median": round(ours_tps / trl_tps, 2),
                    "speedup_best": round(ours_best / trl_best, 2),
                    "cpu_busy_before": {"ours": [r["cpu_busy_before"] for r in runs["ours"]],
                                        "trl": [r["cpu_busy_before"] for r in runs["trl"]]},
                    "peak_rss_mb": {"ours": round(ours_mem), "trl": round(trl_mem)},
                    "final_loss": {"ours": round(ours_loss, 4), "trl": round(trl_loss, 4),
                                   "relative_difference": round(abs(ours_loss - trl_loss) / trl_loss, 4)}},
        "mfu": {"matmul_peak_gflops": round(peak, 1), "model_flops_per_token": round(fpt),
                "needed_flops_per_token": round(fpt_needed), "labelled_share": round(share, 3), **shape,
                "mean_tokens_per_sequence": round(seq, 1), "ours": round(mfu_ours, 4), "trl": round(mfu_trl, 4),
                "ours_needed": round(mfu_ours_needed, 4), "trl_needed": round(mfu_trl_needed, 4),
                "threads": __import__("torch").get_num_threads()},
        "defaults": {k: {"config": v["config"], "steps": v["steps"], "seconds": round(v["seconds"], 1),
                         "tokens_per_second": round(v["tokens_per_second"]), "first_loss": round(v["losses"][0], 3),
                         "final_loss": round(v["losses"][-1], 3), "peak_rss_mb": round(v["peak_rss_mb"])}
                     for k, v in defaults.items()},
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "load_average_at_end": os.getloadavg()},
    }
    summary["passes"] = {"speed >= 1.3x": ours_best >= 1.3 * trl_best and ours_tps >= 1.3 * trl_tps, "peak memory <= trl": ours_mem <= trl_mem,
                         "final loss within 5%": abs(ours_loss - trl_loss) <= 0.05 * trl_loss}
    _write_results(summary, REPO / "bench" / "RESULTS-train.md")
    print(json.dumps(summary, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


def _cpu() -> str:
    from trainers import cpu_name

    return cpu_name()


def _plot(defaults: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = {"ours": "advise lora (its defaults)", "trl": "trl SFTTrainer + LoraConfig() (its defaults)"}
    for k, r in defaults.items():
        xs = [c[0] for c in r["curve"]]
        ys = [c[2] for c in r["curve"]]
        ax.plot(xs, ys, marker="." if k == "trl" else None, label=f"{labels[k]}: {r['steps']} steps, {r['seconds']:.0f} s")
    ax.set_xlabel("wall time in the training loop (s)")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title("ticket-routing-tiny, tiny Llama, CPU: loss against wall time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _write_results(s: dict, out: Path) -> None:
    m, f = s["matched"], s["mfu"]
    ok = lambda b: "yes" if b else "**no**"  # noqa: E731
    lines = [
        "# Training speed on CPU: `advise train` (lora) against trl's SFTTrainer defaults",
        "",
        f"Machine: {s['machine']['cpu']}, {s['machine']['cores']} cores (shared; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in s['machine']['load_average_at_end'])}). Produced by "
        "`bench/train_speed.py`; times vary by about 30% from run to run on this machine.",
        "",
        f"## Matched settings ({m['steps']} steps, lr {m['learning_rate']:g}, batch {m['batch_size']}, "
        f"max_length {m['max_length']}, LoRA r {m['lora_r']})",
        "",
        "Same tiny model, same records, same LoRA config and the same seeded batches (so the same training "
        "tokens); trl keeps its defaults (gradient checkpointing, bf16 autocast; `use_cpu=True` added, without "
        "which trl's bf16 default refuses to start on a machine with no GPU). advise chooses for the CPU: fp32, "
        "no gradient checkpointing, and trl's fused LM head scoring only the labelled (completion) positions, as "
        "trl itself does on CUDA, instead of every prompt and padding position. Our side runs the product path "
        "(`advise train`'s planner and runner: run store, a loss log row per step, checkpoints every 10 steps). "
        "Each run in a fresh process, the sides alternating.",
        "",
        "| | advise lora | trl defaults |",
        "| --- | --- | --- |",
        f"| training tokens (each run) | {', '.join(f'{x:,}' for x in m['train_tokens']['ours'])} | "
        f"{', '.join(f'{x:,}' for x in m['train_tokens']['trl'])} |",
        f"| tokens/s (each run) | {', '.join(f'{x:,}' for x in m['tokens_per_second']['ours'])} | "
        f"{', '.join(f'{x:,}' for x in m['tokens_per_second']['trl'])} |",
        f"| peak RSS (MB, max of runs) | {m['peak_rss_mb']['ours']:,} | {m['peak_rss_mb']['trl']:,} |",
        f"| final loss (last 10 steps) | {m['final_loss']['ours']} | {m['final_loss']['trl']} |",
        f"| model FLOP utilisation, 6N convention (best run) | {f['ours']:.1%} | {f['trl']:.1%} |",
        f"| FLOP utilisation of the needed FLOPs (best run) | {f['ours_needed']:.1%} | {f['trl_needed']:.1%} |",
        "",
        f"Where the speed comes from (ablation, each run): advise with trl's every-position LM-head scoring "
        f"makes {', '.join(f'{x:,}' for x in m['ablation_full_lm_head']['tokens_per_second'])} tokens/s "
        f"(final loss {m['ablation_full_lm_head']['final_loss']}): fp32 without checkpointing accounts for the "
        "step from trl's column to that one, scoring only the labelled positions for the rest.",
        "",
        f"- Speed-up: **{m['speedup_best']}x** best run against best run, {m['speedup_median']}x median against "
        f"median (target >= 1.3x on both: {ok(s['passes']['speed >= 1.3x'])}). The machine is shared with "
        "other jobs: before each run the bench waits for the CPU to go quiet, and the best of several runs is "
        "the least disturbed measurement.",
        f"- Peak memory no higher than trl's: {ok(s['passes']['peak memory <= trl'])}",
        f"- Final loss within 5% of trl's: {ok(s['passes']['final loss within 5%'])} "
        f"(difference {m['final_loss']['relative_difference']:.1%})",
        "",
        "## Model FLOP utilisation",
        "",
        f"Peak: {f['matmul_peak_gflops']} GFLOP/s, the best of 5 fp32 2048x2048 matmuls with "
        f"{f['threads']} threads. Model FLOPs per token, the PaLM convention: 6N + 12·L·h·s = "
        f"{f['model_flops_per_token']:,} (N = {f['matmul_parameters']:,} matmul parameters including the tied "
        f"output layer, L = {f['layers']}, h = {f['hidden']}, s = {f['mean_tokens_per_sequence']} tokens per "
        "example), tokens being the non-padding tokens. The convention credits the output layer at every "
        f"position, but a completion-only loss needs it at the labelled positions only ({f['labelled_share']:.0%} "
        "of the tokens), which is the work advise skips; the second row counts only the needed FLOPs "
        f"({f['needed_flops_per_token']:,} per token). Both rows count weight gradients of the frozen base "
        "weights, which LoRA does not compute, and the tiny model (h = 128) keeps its matmuls far from the "
        "2048x2048 peak: read the rows as a ratio between the two sides.",
        "",
    ]
    if s["defaults"]:
        d = s["defaults"]
        lines += [
            "## Each side with its own defaults",
            "",
            "![loss against wall time](train_speed_loss_vs_time.png)",
            "",
            "| | steps | seconds | tokens/s | loss first -> last | peak RSS (MB) | settings |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for k, name in (("ours", "advise lora"), ("trl", "trl SFTTrainer")):
            v = d[k]
            c = v["config"]
            settings = ", ".join(f"{key} {c[key]}" for key in ("learning_rate", "batch_size", "max_length", "lora_r",
                                                                "epochs", "bf16", "gradient_checkpointing")
                                 if c.get(key) is not None)
            if k == "ours":
                settings += ", 3 epochs, fp32, no gradient checkpointing, LoRA on every linear layer + tied embeddings"
            lines.append(f"| {name} | {v['steps']} | {v['seconds']} | {v['tokens_per_second']:,} | "
                         f"{v['first_loss']} -> {v['final_loss']} | {v['peak_rss_mb']:,} | {settings} |")
        lines += ["", "trl's defaults (lr 2e-5, LoRA r 8 on q/v only, no embedding training) barely move the loss "
                  "of a small model in 3 epochs; advise's defaults (lr 2e-4, r 16 on every linear layer, tied "
                  "embeddings trained) are chosen for fine-tuning small-to-mid models.", ""]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
