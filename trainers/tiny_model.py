"""Build a tiny causal language model locally, with no download.

``build_tiny_model`` trains a byte-level BPE tokenizer on shipped public prose, gives it a chat template,
builds a small Llama-architecture model with tied embeddings, pretrains it briefly with a plain torch loop
and saves both with ``save_pretrained`` (safetensors), so that ``AutoTokenizer.from_pretrained(out_dir)``
and ``AutoModelForCausalLM.from_pretrained(out_dir)`` load it back.

The model is meant for tests, demos and benchmarks of the fine-tuning path on a CPU: it knows a little
generic English and nothing else, answers nothing zero-shot, and learns a small classification or
formatting task from a few hundred supervised examples in about a minute.

Heavy imports (torch, transformers, tokenizers) happen inside the function so that importing this module
costs nothing.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.hf import quiet_libraries

PAD_TOKEN = "<|pad|>"
BOS_TOKEN = "<|bos|>"
END_TOKEN = "<|end|>"  # end of text and end of turn: the eos token
SYSTEM_TOKEN = "<|system|>"
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, END_TOKEN, SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN]

# Each message renders as <|role|>content<|end|>. The assistant's content and its <|end|> sit inside
# {% generation %} markers so that `return_assistant_tokens_mask=True` (trl's `assistant_only_loss=True`)
# trains the reply and the stop token. The template is prefix-preserving: earlier messages render the same
# whatever follows. Roles other than system/user/assistant are rejected.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|assistant|>' -}}"
    "{%- generation -%}{{- message['content'] -}}{{- '<|end|>' -}}{%- endgeneration -%}"
    "{%- elif message['role'] in ['system', 'user'] -%}"
    "{{- '<|' + message['role'] + '|>' + message['content'] + '<|end|>' -}}"
    "{%- else -%}"
    "{{- raise_exception('Unsupported role: ' + message['role'] + ' (use system, user or assistant)') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}"
)

DEFAULT_CORPUS = Path(__file__).parent / "corpus" / "pretrain_corpus.txt"
# 200 steps x 16 x 128 tokens (~5 passes over the shipped corpus): ~27 s on two cores, loss ~8.0 -> ~4.9.
DEFAULT_PRETRAIN_STEPS = 200

ProgressFn = Callable[[int, int, float], None]


def load_default_corpus() -> list[str]:
    """The shipped pretraining prose (see trainers/corpus/NOTICE), split into documents at blank lines."""
    text = DEFAULT_CORPUS.read_text(encoding="utf-8")
    return [doc.strip() for doc in text.split("\n\n") if doc.strip()]


def _train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=END_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN],
        padding_side="right",
        model_max_length=2048,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _token_stream(tokenizer, texts: list[str]) -> list[int]:
    """Documents as <|bos|> text <|end|>, concatenated."""
    ids: list[int] = []
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for doc in encoded:
        ids.append(tokenizer.bos_token_id)
        ids.extend(doc)
        ids.append(tokenizer.eos_token_id)
    return ids


def build_tiny_model(
    out_dir: Path,
    *,
    corpus_texts: list[str] | None = None,
    vocab_size: int = 3000,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    pretrain_steps: int = DEFAULT_PRETRAIN_STEPS,
    seed: int = 0,
    progress: ProgressFn | None = None,
    batch_size: int = 16,
    seq_len: int = 128,
    learning_rate: float = 3e-3,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Train a tokenizer, build and briefly pretrain a tiny Llama model, and save both into ``out_dir``.

    ``corpus_texts`` defaults to the shipped prose (``trainers/corpus/pretrain_corpus.txt``); it trains both
    the tokenizer and the model. ``pretrain_steps=0`` saves the randomly initialised model. ``progress``,
    when given, is called as ``progress(step, total_steps, loss)`` during pretraining. ``num_threads``, when
    given, sets torch's intra-op threads for the build and restores them after: on a busy two-core machine one
    thread ran ~8x faster than two (OpenMP threads wait on each other), on an idle one ~1.6x slower.
    ``pretrain_loss_last`` is the mean training loss of the last 10 steps.

    Returns a JSON-serialisable summary (also written to ``out_dir/tiny_model_build.json``).
    """
    t_start = time.perf_counter()
    quiet_libraries()  # no weight-writing bar or deprecation chatter on the user's terminal
    import torch

    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _build(
            Path(out_dir),
            corpus_texts=corpus_texts,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            layers=layers,
            heads=heads,
            pretrain_steps=pretrain_steps,
            seed=seed,
            progress=progress,
            batch_size=batch_size,
            seq_len=seq_len,
            learning_rate=learning_rate,
            t_start=t_start,
        )
    finally:
        torch.set_num_threads(previous_threads)


def _build(
    out_dir: Path,
    *,
    corpus_texts: list[str] | None,
    vocab_size: int,
    hidden_size: int,
    layers: int,
    heads: int,
    pretrain_steps: int,
    seed: int,
    progress: ProgressFn | None,
    batch_size: int,
    seq_len: int,
    learning_rate: float,
    t_start: float,
) -> dict[str, Any]:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    texts = corpus_texts if corpus_texts is not None else load_default_corpus()
    if not texts:
        raise ValueError("corpus_texts is empty")
    if hidden_size % heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by heads ({heads})")

    random.seed(seed)
    torch.manual_seed(seed)

    t0 = time.perf_counter()
    tokenizer = _train_tokenizer(texts, vocab_size)
    tokenizer_seconds = time.perf_counter() - t0

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())

    losses: list[float] = []
    pretrain_tokens = 0
    t0 = time.perf_counter()
    if pretrain_steps > 0:
        stream = torch.tensor(_token_stream(tokenizer, texts), dtype=torch.long)
        n_blocks = len(stream) // seq_len
        if n_blocks < 1:
            raise ValueError(f"corpus too small: {len(stream)} tokens for seq_len {seq_len}")
        blocks = stream[: n_blocks * seq_len].view(n_blocks, seq_len)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=learning_rate, weight_decay=0.01, betas=(0.9, 0.95)
        )
        warmup = max(1, min(30, pretrain_steps // 10))

        def lr_at(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            frac = (step - warmup) / max(1, pretrain_steps - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        model.train()
        order = torch.randperm(n_blocks, generator=generator)
        cursor = 0
        for step in range(pretrain_steps):
            if cursor + batch_size > n_blocks:
                order = torch.randperm(n_blocks, generator=generator)
                cursor = 0
            batch = blocks[order[cursor : cursor + batch_size]]
            cursor += batch_size
            out = model(input_ids=batch, labels=batch)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss = float(out.loss.detach())
            losses.append(loss)
            pretrain_tokens += batch.numel()
            if progress is not None and (step % 10 == 0 or step == pretrain_steps - 1):
                progress(step + 1, pretrain_steps, loss)
        model.eval()
    pretrain_seconds = time.perf_counter() - t0

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=32,
        do_sample=False,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

    tail = losses[-10:]
    summary = {
        "out_dir": str(out_dir),
        "parameters": parameters,
        "vocab_size": len(tokenizer),
        "vocab_size_requested": vocab_size,
        "hidden_size": hidden_size,
        "layers": layers,
        "heads": heads,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
        "corpus_documents": len(texts),
        "corpus_characters": sum(len(t) for t in texts),
        "pretrain_steps": pretrain_steps,
        "pretrain_tokens": pretrain_tokens,
        "pretrain_loss_first": losses[0] if losses else None,
        "pretrain_loss_last": sum(tail) / len(tail) if tail else None,
        "tokenizer_seconds": round(tokenizer_seconds, 3),
        "pretrain_seconds": round(pretrain_seconds, 3),
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    (out_dir / "tiny_model_build.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
