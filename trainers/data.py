"""Training rows from records, and the record checks a plugin's data kind needs.

Rows are prompt/completion (or prompt/chosen/rejected) pairs, conversational when the tokenizer has
a chat template (trl applies it) and plain text otherwise, rendered as the eval backends render
prompts (advisor.data.records.render_plain), so training and eval see the same text."""

from __future__ import annotations

from advisor.data.records import render_plain
from advisor.errors import AdviseError

__all__ = ["preference_rows", "require_preference_records", "require_sft_records", "sft_rows"]


def sft_rows(records: list, tokenizer) -> list[dict]:
    """Prompt/completion rows: the loss falls on the completion (the assistant reply) only.

    Conversational rows when the tokenizer has a chat template (trl applies it), plain text otherwise.
    """
    if getattr(tokenizer, "chat_template", None):
        return [{"prompt": [{"role": m["role"], "content": m["content"]} for m in r.prompt],
                 "completion": [{"role": "assistant", "content": r.output}]} for r in records]
    return [{"prompt": render_plain(r.prompt), "completion": " " + r.output} for r in records]


def preference_rows(records: list, tokenizer) -> list[dict]:
    if getattr(tokenizer, "chat_template", None):
        return [{"prompt": [{"role": m["role"], "content": m["content"]} for m in r.prompt],
                 "chosen": [{"role": "assistant", "content": r.output}],
                 "rejected": [{"role": "assistant", "content": r.rejected}]} for r in records]
    return [{"prompt": render_plain(r.prompt), "chosen": " " + r.output, "rejected": " " + r.rejected}
            for r in records]


def require_sft_records(records: list, plugin_name: str, file=None) -> None:
    n = sum(1 for r in records if r.rejected is not None)
    if n:
        raise AdviseError(f"holds preference pairs (chosen/rejected, {n} of {len(records)} training records); the "
                          f"{plugin_name} plugin trains on one reply per prompt: use --method dpo, or give it chat, "
                          "alpaca or prompt_completion data", file=file or "data.train")


def require_preference_records(records: list, plugin_name: str, file=None) -> None:
    n = sum(1 for r in records if r.rejected is None)
    if n:
        raise AdviseError(f"the {plugin_name} plugin trains on preference pairs (prompt, chosen, rejected) and "
                          f"{n} of {len(records)} training records have no rejected reply; use --method lora for "
                          "supervised data", file=file)


