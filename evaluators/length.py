"""Length awareness: how long an answer may be, and which answers and prompts the limits cut.

* :func:`size_max_new_tokens`: ``max_new_tokens`` from the eval references when project.yaml does not
  set ``eval.max_new_tokens`` (a high percentile of their token lengths, with headroom, within bounds:
  ``rubrics/eval.yaml`` length.*); tokens are counted with the base model's own ``tokenizer.json``
  (its directory, or the Hugging Face cache), else estimated from characters (an overestimate);
* :func:`length_summary`: per candidate, the answers that stopped at the limit without an end of
  sequence (``hit_limit``), the prompts cut to fit the context (``truncated``) and the prompts whose
  few-shot examples or RAG passages were reduced to fit (``dropped``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.rubric import load_rubric, value
from evaluators.items import EvalItem


def tokenizer_file(base_model: str | None) -> Path | None:
    """The base model's ``tokenizer.json``: in its directory, or in the Hugging Face cache (no download)."""
    if not base_model:
        return None
    p = Path(base_model).expanduser()
    if p.is_dir():
        return p / "tokenizer.json" if (p / "tokenizer.json").is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        got = try_to_load_from_cache(str(base_model), "tokenizer.json")
    except Exception:  # noqa: BLE001 - not a hub id, or no cache: the estimate
        return None
    return Path(got) if isinstance(got, str) and Path(got).is_file() else None


def _token_lengths(texts: list[str], base_model: str | None, chars_per_token: float) -> tuple[list[int], str]:
    tok_file = tokenizer_file(base_model)
    if tok_file is not None:
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tok_file))
            return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)], "tokenizer.json"
        except Exception:  # noqa: BLE001 - an unreadable tokenizer: the estimate below
            pass
    return [math.ceil(len(t) / chars_per_token) for t in texts], f"{chars_per_token:g} characters a token"


def size_max_new_tokens(items: Sequence[EvalItem], base_model: str | None,
                        project_root: Path | None = None) -> dict[str, Any]:
    """``{"value": max_new_tokens, "percentile", "reference_tokens", "counted_with", "source"}`` from the
    eval references' token lengths."""
    import numpy as np

    r = load_rubric("eval", project_root)
    pct = float(value(r, "length", "percentile"))
    headroom = float(value(r, "length", "headroom"))
    pad = int(value(r, "length", "pad_tokens"))
    lo, hi = int(value(r, "length", "min_tokens")), int(value(r, "length", "max_tokens"))
    refs = [ref for it in items for ref in it.references if ref] or [""]
    lengths, how = _token_lengths(refs, base_model, float(value(r, "length", "chars_per_token")))
    p = float(np.percentile(lengths, pct))
    v = max(lo, min(hi, math.ceil(p * headroom) + pad))
    return {"value": v, "percentile": pct, "reference_tokens": round(p, 1), "longest_reference": max(lengths),
            "counted_with": how, "source": "eval references"}


def length_summary(data: Sequence[dict | None], errors: Sequence[str | None], limit: int) -> dict[str, Any]:
    """What the limits did to one candidate's answered items (per-item ``data`` as stored)."""
    ok = [d or {} for d, e in zip(data, errors, strict=True) if e is None]
    return {"limit": limit, "answered": len(ok),
            "hit_limit": sum(1 for d in ok if d.get("hit_limit")),
            "prompts_cut": sum(1 for d in ok if d.get("truncated")),
            "prompts_reduced": sum(1 for d in ok if d.get("dropped")),
            "dropped": sum(int(d.get("dropped") or 0) for d in ok)}


def length_notes(summary: dict | None, strategy: str | None = None) -> list[str]:
    """Sentences for the tables: "12 of 150 answers hit the 64-token limit" and the prompt cuts
    (``strategy``: the run's, which names what was left out)."""
    s = summary or {}
    what = {"rag": "RAG passages", "few-shot": "few-shot examples"}.get(strategy or "", "examples or passages")
    out = []
    n = s.get("answered") or 0
    if s.get("hit_limit"):
        out.append(f"{s['hit_limit']} of {n} answers hit the {s['limit']}-token limit")
    if s.get("prompts_reduced"):
        out.append(f"{s['prompts_reduced']} of {n} prompts had {s['dropped']} {what} left out to fit the context")
    if s.get("prompts_cut"):
        out.append(f"{s['prompts_cut']} of {n} prompts were cut to fit the context")
    return out
