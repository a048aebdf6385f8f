"""A plain implementation of the OpenAI cookbook's chat-format data checks: the speed baseline of assess.

Follows "Data preparation and analysis for chat model fine-tuning" (openai/openai-cookbook,
examples/Chat_finetuning_data_prep.ipynb) step by step: load the JSONL with ``json.loads`` line by
line, count the 7 format-error classes, count examples missing a system or user message, count
tokens per example and per assistant reply with one tokenizer call per message, print the
distributions (min/max, mean/median, p10/p90), the examples over the token limit and the billing
estimate.

Differences from the notebook, all of them in the baseline's favour or needed to run here:
* tiktoken cannot download its BPE file on this machine, so the tokenizer is a Hugging Face fast
  tokenizer loaded from a local tokenizer.json with the Rust ``tokenizers`` library (``--tokenizer``;
  the benchmark passes the same file that assess uses). ``Tokenizer.encode`` is the analogue of
  ``tiktoken.Encoding.encode``: one Rust call per text.
* One tokenizer call per message: the notebook encodes every value of a message (the role as well
  as the content) and encodes assistant replies a second time for the assistant count; here the
  content is encoded once, its count reused for the assistant total, and the few role strings are
  encoded once and cached.
* Lines that are not valid JSON are counted as a format error (the notebook would stop with an
  exception), blank lines are skipped, and examples with format errors are left out of the token
  statistics (the notebook's token loop assumes a clean file and would stop on them).

    .venv/bin/python bench/cookbook_baseline.py /tmp/bench100k/data/train.jsonl \\
        --tokenizer /tmp/bench100k/base_model/tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import numpy as np

MAX_TOKENS_PER_EXAMPLE = 16385
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="chat-format JSONL file")
    ap.add_argument("--tokenizer", required=True, help="a local tokenizer.json (HF fast tokenizer)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(a.tokenizer)

    def encode(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False).ids

    # Load the dataset
    dataset = []
    format_errors: dict[str, int] = defaultdict(int)
    with open(a.data, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                dataset.append(json.loads(line))
            except ValueError:
                format_errors["invalid_json"] += 1

    # Initial dataset stats
    print("Num examples:", len(dataset))

    # Format error checks
    clean = []
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        bad = False
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
                bad = True
            if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
                format_errors["message_unrecognized_key"] += 1
                bad = True
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
                bad = True
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] += 1
                bad = True
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] += 1
            bad = True
        if not bad:
            clean.append(ex)

    if format_errors:
        print("Found errors:")
        for k, v in format_errors.items():
            print(f"{k}: {v}")
    else:
        print("No errors found")

    role_tokens: dict[str, int] = {}

    def num_tokens(messages, tokens_per_message=3, tokens_per_name=1) -> tuple[int, int]:
        """(tokens of the example, tokens of its assistant replies): one tokenizer call per message."""
        total = assistant = 0
        for message in messages:
            total += tokens_per_message
            role = message["role"]
            if role not in role_tokens:
                role_tokens[role] = len(encode(role))
            n = len(encode(message["content"]))
            total += role_tokens[role] + n
            if "name" in message:
                total += len(encode(message["name"])) + tokens_per_name
            if role == "assistant":
                assistant += n
        return total + 3, assistant

    def print_distribution(values, name):
        print(f"\n#### Distribution of {name}:")
        print(f"min / max: {min(values)}, {max(values)}")
        print(f"mean / median: {np.mean(values)}, {np.median(values)}")
        print(f"p5 / p95: {np.quantile(values, 0.1)}, {np.quantile(values, 0.9)}")

    # Warnings and tokens counts
    n_missing_system = 0
    n_missing_user = 0
    n_messages = []
    convo_lens = []
    assistant_message_lens = []
    for ex in clean:
        messages = ex["messages"]
        if not any(message["role"] == "system" for message in messages):
            n_missing_system += 1
        if not any(message["role"] == "user" for message in messages):
            n_missing_user += 1
        n_messages.append(len(messages))
        total, assistant = num_tokens(messages)
        convo_lens.append(total)
        assistant_message_lens.append(assistant)

    print("Num examples missing system message:", n_missing_system)
    print("Num examples missing user message:", n_missing_user)
    print_distribution(n_messages, "num_messages_per_example")
    print_distribution(convo_lens, "num_total_tokens_per_example")
    print_distribution(assistant_message_lens, "num_assistant_tokens_per_example")
    n_too_long = sum(n > MAX_TOKENS_PER_EXAMPLE for n in convo_lens)
    print(f"\n{n_too_long} examples may be over the {MAX_TOKENS_PER_EXAMPLE:,} token limit, "
          "they will be truncated during fine-tuning")

    # Pricing and epoch estimates
    n_epochs = TARGET_EPOCHS
    n_train_examples = len(clean)
    if n_train_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        n_epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_train_examples)
    elif n_train_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        n_epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_train_examples)
    n_billing_tokens_in_dataset = sum(min(MAX_TOKENS_PER_EXAMPLE, n) for n in convo_lens)
    print(f"Dataset has ~{n_billing_tokens_in_dataset} tokens that will be charged for during training")
    print(f"By default, you'll train for {n_epochs} epochs on this dataset")
    print(f"By default, you'll be charged for ~{n_epochs * n_billing_tokens_in_dataset} tokens")
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 3)}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
