"""Model backends that answer eval items: local transformers models (causal LMs, optionally with a
peft adapter, and sequence classifiers) and, lazily, vLLM's offline engine.

Every backend has the same small interface (:class:`Backend`):

* ``generate(prompts, settings) -> list[Generation]``: one reply per prompt (a list of chat messages);
  a failure on one item is a :class:`Generation` with ``error`` set, never a silent empty answer;
* ``loglik(prompts, targets) -> list[(mean token log-likelihood, n_tokens)]`` where the backend can
  score a reference (``supports_loglik``);
* ``calls``: counters of what was asked of the model (used by the cache tests and the benchmark).

Local generation is batched with left padding (prompts sorted by length so a batch pads little), uses
the tokenizer's chat template, and is greedy unless ``GenerationSettings.temperature > 0`` (seeded
sampling). Weights load from safetensors only; ``trust_remote_code`` stays off unless the caller
passes it. A model that cannot be loaded raises :class:`~advisor.errors.AdviseError` naming it.

torch and transformers are imported inside the functions, never at module import.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.data.records import render_plain
from advisor.errors import AdviseError
from advisor.hf import (
    chat_template_error,
    check_hub_reachable,
    first_line,
    looks_like_path,
    quiet_libraries,
    template_refused,
)
from evaluators.backends.base import Backend, Generation, GenerationSettings

# ----------------------------------------------------------------------------------- fingerprints


# --------------------------------------------------------------------------------------- loading


def _quiet_transformers() -> None:
    quiet_libraries()


def _check_source(model: str | Path, what: str = "model", revision: str | None = None) -> str:
    """The directory or hub id to load from; a missing directory is a clear error."""
    src = str(model)
    p = Path(src).expanduser()
    if p.is_dir():
        if not any(p.glob("*.safetensors")) and not (p / "adapter_config.json").exists():
            if any(p.glob("*.bin")) or any(p.glob("*.pt")):
                raise AdviseError(f"{what} directory has no .safetensors weights (advise loads safetensors only; "
                                  f"convert the .bin files with save_pretrained(safe_serialization=True))", file=p)
        return str(p)
    if p.exists():
        raise AdviseError(f"{what} is a file, expected a model directory or a hub id", file=p)
    if looks_like_path(src):
        raise AdviseError(f"{what} directory not found", file=p)
    check_hub_reachable(src, revision, what=f"the {what}")
    return src


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _dtype_for(device: str):
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_tokenizer(src: str, *, revision: str | None = None, trust_remote_code: bool = False, fallback: str | None = None):
    from transformers import AutoTokenizer

    last: Exception | None = None
    for where in [src, fallback] if fallback else [src]:
        try:
            return AutoTokenizer.from_pretrained(where, revision=revision if where == src else None,
                                                 trust_remote_code=trust_remote_code)
        except Exception as e:  # noqa: BLE001 - any failure becomes one line naming the model
            last = e
    raise AdviseError(f"cannot load the tokenizer of '{src}': {first_line(last)}")


def load_causal_lm(model: str | Path, *, adapter: str | Path | None = None, revision: str | None = None,
                   trust_remote_code: bool = False, device: str | None = None):
    """(model, tokenizer) for a hub id or directory, with a peft adapter on top when given.

    ``adapter`` is a directory holding ``adapter_config.json`` (peft). Weights load from safetensors
    only. Raises :class:`AdviseError` naming the model (or adapter) when anything fails to load.
    """
    _quiet_transformers()
    src = _check_source(model, revision=revision)
    adapter_src = None
    if adapter is not None:
        adapter_src = Path(adapter).expanduser()
        if not (adapter_src / "adapter_config.json").is_file():
            raise AdviseError("adapter directory has no adapter_config.json", file=adapter_src)
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    # a trained adapter may ship its own tokenizer (added tokens, chat template): prefer it
    tok_src = str(adapter_src) if adapter_src and (adapter_src / "tokenizer_config.json").is_file() else src
    tokenizer = load_tokenizer(tok_src, revision=None if adapter_src and tok_src != src else revision,
                               trust_remote_code=trust_remote_code, fallback=src if tok_src != src else None)
    try:
        lm = AutoModelForCausalLM.from_pretrained(src, revision=revision, use_safetensors=True,
                                                  trust_remote_code=trust_remote_code, dtype=_dtype_for(device))
    except Exception as e:  # noqa: BLE001
        raise AdviseError(f"cannot load model '{src}': {first_line(e)}") from None
    if adapter_src is not None:
        try:
            from peft import PeftModel

            emb = lm.get_input_embeddings()
            if emb is not None and len(tokenizer) > emb.num_embeddings:
                lm.resize_token_embeddings(len(tokenizer))
            lm = PeftModel.from_pretrained(lm, str(adapter_src), is_trainable=False)
        except Exception as e:  # noqa: BLE001
            raise AdviseError(f"cannot load adapter '{adapter_src}' on '{src}': {first_line(e)}") from None
    lm.to(device)
    lm.eval()
    lm.requires_grad_(False)  # no global torch.set_grad_enabled(False): training may follow in this process
    return lm, tokenizer


# ------------------------------------------------------------------------------- prompt rendering


def _merge_system(messages: list[dict]) -> list[dict]:
    """For chat templates without a system role: the system text goes before the first user turn."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        for m in rest:
            if m["role"] == "user":
                m["content"] = system + "\n\n" + m["content"]
                break
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


def render_prompt(tokenizer, messages: list[dict]) -> tuple[str, bool]:
    """(prompt text, whether it came from the chat template)."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), True
        except Exception as first:  # noqa: BLE001 - e.g. "system role not supported"
            if template_refused(first):
                raise chat_template_error(tokenizer, first, "an eval prompt") from None
            try:
                return tokenizer.apply_chat_template(_merge_system(messages), add_generation_prompt=True,
                                                     tokenize=False), True
            except Exception as e:  # noqa: BLE001
                raise chat_template_error(tokenizer, e, "an eval prompt") from None
    return render_plain(messages), False


def _context_limit(model, tokenizer) -> int:
    limits = []
    mml = getattr(tokenizer, "model_max_length", None)
    if isinstance(mml, int) and 0 < mml < 10_000_000:
        limits.append(mml)
    cfg = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            limits.append(v)
            break
    return min(limits) if limits else 4096


# ---------------------------------------------------------------------------------- causal LM


class TransformersBackend(Backend):
    """A local causal LM (hub id or directory), optionally with a peft adapter; batched greedy generation
    with left padding and the chat template; mean token log-likelihood of references."""

    kind = "transformers"
    supports_loglik = True

    def __init__(self, model: str | Path, *, adapter: str | Path | None = None, revision: str | None = None,
                 trust_remote_code: bool = False, device: str | None = None, batch_size: int = 16):
        super().__init__()
        self.model_name, self.adapter, self.revision = str(model), adapter, revision
        self.batch_size = max(1, int(batch_size))
        t0 = time.perf_counter()
        self.model, self.tokenizer = load_causal_lm(model, adapter=adapter, revision=revision,
                                                    trust_remote_code=trust_remote_code, device=device)
        self.load_seconds = time.perf_counter() - t0
        self.device = str(next(self.model.parameters()).device)
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        eos = set()
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for v in (gen_eos if isinstance(gen_eos, list) else [gen_eos]) + [tok.eos_token_id]:
            if isinstance(v, int):
                eos.add(v)
        self.eos_ids = sorted(eos)
        self.context = _context_limit(self.model, tok)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_name, "adapter": str(self.adapter) if self.adapter else None,
                "device": self.device, "batch_size": self.batch_size}

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass

    # -- encoding --------------------------------------------------------------------------------
    def encode_prompt(self, messages: list[dict]) -> list[int]:
        text, templated = render_prompt(self.tokenizer, messages)
        return self.tokenizer(text, add_special_tokens=not templated)["input_ids"]

    def _fit(self, ids: list[int], room: int, head: int = 0) -> tuple[list[int], bool]:
        """A prompt longer than the context minus ``room`` tokens, cut in the middle: its first ``head``
        tokens (the system instruction, at most half the limit) and its end (the item) are kept."""
        limit = max(8, self.context - room)
        if len(ids) <= limit:
            return ids, False
        head = max(0, min(head, limit // 2))
        return ids[:head] + ids[len(ids) - (limit - head):], True

    def overflow(self, messages: list[dict], room: int) -> int | None:
        return len(self.encode_prompt(messages)) - max(8, self.context - room)

    def _system_tokens(self, messages: list[dict], ids: list[int]) -> int:
        """Tokens of ``ids`` (the encoded prompt) that render its opening system messages: the prefix it
        shares with the system messages rendered alone (0 if none)."""
        system = []
        for m in messages:
            if m["role"] != "system":
                break
            system.append(m)
        if not system:
            return 0
        try:
            alone = self.encode_prompt(system)
        except Exception:  # noqa: BLE001 - a template that needs a user turn: keep the end only
            return 0
        n = 0
        for a, b in zip(alone, ids, strict=False):
            if a != b:
                break
            n += 1
        return n

    def _left_pad(self, rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    # -- generation ------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        import torch

        out: list[Generation | None] = [None] * len(prompts)
        encoded: list[tuple[int, list[int], bool]] = []
        for i, msgs in enumerate(prompts):
            try:
                ids = self.encode_prompt(msgs)
                head = self._system_tokens(msgs, ids) if len(ids) > self.context - settings.max_new_tokens else 0
                ids, cut = self._fit(ids, settings.max_new_tokens, head)
                encoded.append((i, ids, cut))
            except AdviseError:
                raise
            except Exception as e:  # noqa: BLE001 - one bad prompt is one item's error
                out[i] = Generation(None, error=f"prompt could not be encoded: {first_line(e)}")
        encoded.sort(key=lambda t: -len(t[1]))
        kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "pad_token_id": self.pad_id,
            "eos_token_id": self.eos_ids or None,
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
        }
        if settings.sampling:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start : start + self.batch_size]
            ids, mask = self._left_pad([b[1] for b in batch])
            if settings.sampling:
                digest = hashlib.sha256(json.dumps([b[1] for b in batch]).encode()).digest()
                torch.manual_seed(settings.seed * 1_000_003 + int.from_bytes(digest[:4], "little"))
            t0 = time.perf_counter()
            try:
                with torch.inference_mode():
                    gen = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            except Exception as e:  # noqa: BLE001 - the batch's items get the error, the run goes on
                msg = f"generation failed: {first_line(e)}"
                for i, _, _ in batch:
                    out[i] = Generation(None, error=msg)
                continue
            dt = (time.perf_counter() - t0) / len(batch)
            self.calls["generate"] += 1
            self.calls["items"] += len(batch)
            new = gen[:, ids.shape[1]:].tolist()
            for (i, _, cut), toks in zip(batch, new, strict=True):
                n = len(toks)
                for j, t in enumerate(toks):
                    if t in self.eos_ids:
                        n = j
                        break
                # stopped by max_new_tokens, not by an end of sequence: the answer may be cut
                hit = n == len(toks) and len(toks) >= settings.max_new_tokens
                toks = [t for t in toks[:n] if t != self.pad_id]
                text = self.tokenizer.decode(toks, skip_special_tokens=True).strip()
                extra = {"truncated": True} if cut else {}
                if hit:
                    extra["hit_limit"] = True
                out[i] = Generation(text, n_tokens=len(toks), seconds=dt, extra=extra)
        return [g if g is not None else Generation(None, error="not generated") for g in out]

    # -- log-likelihood --------------------------------------------------------------------------
    def loglik(self, prompts: Sequence[list[dict]], targets: Sequence[str]) -> list[tuple[float | None, int]]:
        """Mean log-probability per token of each target given its prompt (right-padded forward pass)."""
        import torch

        rows = []
        for i, (msgs, target) in enumerate(zip(prompts, targets, strict=True)):
            t_ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            p_ids, _ = self._fit(self.encode_prompt(msgs), len(t_ids))
            rows.append((i, p_ids, t_ids[: max(1, self.context - 8)]))
        out: list[tuple[float | None, int]] = [(None, 0)] * len(rows)
        rows.sort(key=lambda r: -(len(r[1]) + len(r[2])))
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            seqs = [p + t for _, p, t in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
                mask[r, : len(s)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            self.calls["loglik_items"] += len(batch)
            for r, (i, p, t) in enumerate(batch):
                if not t or not p:
                    out[i] = (None, 0)
                    continue
                pos = torch.arange(len(p) - 1, len(p) + len(t) - 1)
                tgt = torch.tensor(t, dtype=torch.long)
                lp = logp[r, pos.to(logp.device), tgt.to(logp.device)]
                out[i] = (float(lp.mean()), len(t))
        return out


# ----------------------------------------------------------------------------- sequence classifier


