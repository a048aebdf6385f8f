"""Does the locally built tiny model learn a small supervised task on a CPU?

Builds the tiny model (trainers/tiny_model.py), makes a 5-intent chat classification task from BANKING77
(/work/shared/datasets/banking77, CC BY 4.0; or --banking77-dir), fine-tunes with trl's SFTTrainer (full
fine-tuning and LoRA) with the loss on the assistant reply only, and measures greedy label accuracy on 100
held-out test messages before and after. Prints one JSON object.

    PYTHONPATH=. .venv/bin/python bench/tiny_model_learns.py [--steps 200] [--skip-lora] [--loss assistant]

Not a test: it takes about two to four minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INTENTS = ["card_arrival", "exchange_rate", "passcode_forgotten", "terminate_account", "age_limit"]
SYSTEM_PROMPT = "Classify the banking customer's message. Answer with one label: " + ", ".join(INTENTS) + "."


def load_task(banking77_dir: Path, n_train: int, n_test: int, seed: int):
    def read(name: str, per_class: int):
        by_label: dict[str, list[str]] = {label: [] for label in INTENTS}
        with open(banking77_dir / name, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["category"] in by_label:
                    by_label[row["category"]].append(row["text"].strip())
        rng = random.Random(seed)
        items = []
        for label, texts in by_label.items():
            rng.shuffle(texts)
            items += [(t, label) for t in texts[:per_class]]
        rng.shuffle(items)
        return items

    train = read("train.csv", n_train // len(INTENTS))
    train_texts = {t.lower() for t, _ in train}
    test = [item for item in read("test.csv", 1000) if item[0].lower() not in train_texts]
    per_class: dict[str, int] = {}
    held_out = []
    for text, label in test:
        if per_class.get(label, 0) < n_test // len(INTENTS):
            per_class[label] = per_class.get(label, 0) + 1
            held_out.append((text, label))
    return train, held_out


def prompt_messages(text: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def accuracy(model, tokenizer, items, batch_size: int = 50) -> tuple[float, list[str]]:
    import torch

    model.eval()
    predictions: list[str] = []
    prompts = [
        tokenizer.apply_chat_template(prompt_messages(t), add_generation_prompt=True, tokenize=False)
        for t, _ in items
    ]
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(
                prompts[i : i + batch_size],
                return_tensors="pt",
                padding=True,
                padding_side="left",
                add_special_tokens=False,
            )
            out = model.generate(**enc, max_new_tokens=16, do_sample=False)
            new = out[:, enc["input_ids"].shape[1] :]
            predictions += [s.strip() for s in tokenizer.batch_decode(new, skip_special_tokens=True)]
    correct = sum(p == label for p, (_, label) in zip(predictions, items, strict=True))
    return correct / len(items), predictions


def fine_tune(
    model_dir: Path,
    train,
    *,
    lora: bool,
    tie: bool = True,
    steps: int,
    lr: float,
    batch_size: int,
    loss: str,
    seed: int,
):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if loss == "completion":
        rows = [
            {"prompt": prompt_messages(t), "completion": [{"role": "assistant", "content": label}]}
            for t, label in train
        ]
    else:
        rows = [
            {"messages": prompt_messages(t) + [{"role": "assistant", "content": label}]} for t, label in train
        ]
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules="all-linear",
            modules_to_save=["embed_tokens"],  # per the CPU notes, LoRA stays at one class without it
            ensure_weight_tying=tie,  # keep lm_head tied to the trained copy of embed_tokens
            task_type="CAUSAL_LM",
        )
    with tempfile.TemporaryDirectory() as out:
        # trl defaults gradient checkpointing and bf16 to True: both cost ~3.5x on CPU. transformers 5.23 renames
        # the option `activation_checkpointing` and warns when trl's non-None `gradient_checkpointing` is mirrored.
        if "activation_checkpointing" in SFTConfig.__dataclass_fields__:
            checkpointing = {"activation_checkpointing": False}
        else:
            checkpointing = {"gradient_checkpointing": False}
        args = SFTConfig(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            lr_scheduler_type="linear",
            warmup_steps=10,
            weight_decay=0.0,
            **checkpointing,
            bf16=False,
            use_cpu=True,
            max_length=256,
            assistant_only_loss=(loss == "assistant"),
            logging_steps=25,
            save_strategy="no",
            report_to="none",
            seed=seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its log dicts to stdout
            result = trainer.train()
        seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return (
        trainer.model,
        tokenizer,
        {
            "train_seconds": round(seconds, 1),
            "trainable_parameters": trainable,
            "train_loss": round(result.training_loss, 4),
            "logged_losses": [round(v, 3) for v in losses],
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--banking77-dir", type=Path, default=Path("/work/shared/datasets/banking77"))
    parser.add_argument(
        "--model-dir", type=Path, help="use an already built tiny model instead of building one"
    )
    parser.add_argument("--pretrain-steps", type=int, default=None)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lora-lr", type=float, default=None, help="defaults to --lr")
    parser.add_argument(
        "--loss",
        choices=["completion", "assistant"],
        default="completion",
        help="prompt/completion rows (completion-only loss) or messages rows with "
        "assistant_only_loss=True (uses the template's generation markers)",
    )
    parser.add_argument(
        "--no-lora-tie",
        action="store_true",
        help="LoRA without ensure_weight_tying (lm_head stays the frozen original embeddings)",
    )
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-lora", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, help="torch threads (1 is much faster when other processes share 2 cores)"
    )
    args = parser.parse_args()

    t_all = time.perf_counter()
    import torch

    from trainers.tiny_model import build_tiny_model

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, held_out = load_task(args.banking77_dir, 400, 100, args.seed)
    report: dict = {
        "torch_threads": torch.get_num_threads(),
        "task": {"intents": INTENTS, "train": len(train), "held_out": len(held_out)},
    }

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(tmp) / "tiny"
            kwargs = {"hidden_size": args.hidden_size, "layers": args.layers, "seed": args.seed}
            if args.pretrain_steps is not None:
                kwargs["pretrain_steps"] = args.pretrain_steps
            report["build"] = build_tiny_model(model_dir, **kwargs)
            report["build"].pop("out_dir")

        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        base = AutoModelForCausalLM.from_pretrained(model_dir)
        t0 = time.perf_counter()
        acc, preds = accuracy(base, tokenizer, held_out)
        report["before"] = {
            "accuracy": acc,
            "eval_seconds": round(time.perf_counter() - t0, 1),
            "sample_predictions": preds[:5],
        }

        runs = [] if args.skip_full else [("full", False, args.lr)]
        if not args.skip_lora:
            runs.append(("lora", True, args.lora_lr or args.lr))
        for name, lora, lr in runs:
            model, tok, info = fine_tune(
                model_dir,
                train,
                lora=lora,
                tie=not args.no_lora_tie,
                steps=args.steps,
                lr=lr,
                batch_size=args.batch_size,
                loss=args.loss,
                seed=args.seed,
            )
            acc, preds = accuracy(model, tok, held_out)
            info.update({"accuracy": acc, "lr": lr, "sample_predictions": preds[:5]})
            report[name] = info
            print(
                f"{name}: accuracy {report['before']['accuracy']:.2f} -> {acc:.2f} in {info['train_seconds']} s",
                file=sys.stderr,
                flush=True,
            )
    report["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
