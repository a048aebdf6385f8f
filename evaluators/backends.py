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
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import AdviseError
from advisor.records import render_plain

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SAMPLE_BYTES = 1 << 20  # bytes read from each end of a weights file for its fingerprint
_FULL_HASH_LIMIT = 8 << 20  # smaller files are hashed whole


# ----------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class GenerationSettings:
    """How replies are generated. ``temperature == 0`` is greedy decoding (the default)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def key(self) -> dict[str, Any]:
        """What changes outputs (the seed only matters when sampling)."""
        d = asdict(self)
        if not self.sampling:
            d.pop("seed")
            d.pop("top_p")
        return d


@dataclass
class Generation:
    """One reply. ``text`` is None exactly when ``error`` says why there is no reply."""

    text: str | None
    error: str | None = None
    n_tokens: int | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend:
    """Base class: what the runner needs from anything that answers eval items."""

    kind = "base"
    supports_loglik = False
    batch_size = 16

    def __init__(self) -> None:
        self.calls = {"generate": 0, "items": 0, "loglik_items": 0}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        raise NotImplementedError

    def loglik(self, prompts: Sequence[list[dict]], targets: Sequence[str]) -> list[tuple[float | None, int]]:
        raise NotImplementedError(f"the {self.kind} backend cannot score references")

    def close(self) -> None:
        """Release the model (memory); the backend is unusable afterwards."""


# ----------------------------------------------------------------------------------- fingerprints


def _file_digest(path: Path) -> str:
    """sha256 of a small file; of its size and first and last MiB for a large one (weights)."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= _FULL_HASH_LIMIT:
            h.update(fh.read())
        else:
            h.update(str(size).encode())
            h.update(fh.read(_SAMPLE_BYTES))
            fh.seek(size - _SAMPLE_BYTES)
            h.update(fh.read(_SAMPLE_BYTES))
    return h.hexdigest()[:16]


def dir_fingerprint(path: Path) -> dict[str, Any]:
    """Identity of a model or adapter directory without loading it: every file's name and size, and
    a content digest (whole small files; size plus first/last MiB of large weight files), so a
    retrained model saved to the same place does not reuse stale cached answers."""
    path = Path(path)
    files = {}
    for p in sorted(path.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(path).parts):
            continue
        rel = str(p.relative_to(path))
        if rel.startswith(("checkpoint-", "runs/")) or rel.endswith((".log", ".md")):
            continue  # training leftovers that do not change the model
        files[rel] = [p.stat().st_size, _file_digest(p)]
    return {"files": files}


def hub_cache_dir() -> Path:
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env)
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def hub_commit(model_id: str, revision: str | None = None) -> str | None:
    """The commit a hub id resolves to in the local hub cache (read from its refs file), if cached."""
    ref = revision or "main"
    if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
        return ref
    refs = hub_cache_dir() / ("models--" + model_id.replace("/", "--")) / "refs" / ref
    try:
        return refs.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def model_fingerprint(model: str | Path, revision: str | None = None) -> dict[str, Any]:
    """Identity of a model given as a local directory or a hub id (with its cached commit)."""
    p = Path(model).expanduser()
    if p.is_dir():
        return dir_fingerprint(p)
    return {"hub": str(model), "revision": revision or "main", "commit": hub_commit(str(model), revision)}


# --------------------------------------------------------------------------------------- loading


def _quiet_transformers() -> None:
    from advisor.quiet import quiet_libraries

    quiet_libraries()


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _looks_like_path(model: str) -> bool:
    """A hub id is "name" or "org/name"; anything else that is not a directory is a missing path."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


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
    if _looks_like_path(src) or Path(src).is_absolute():
        raise AdviseError(f"{what} directory not found", file=p)
    from advisor.hub import check_hub_reachable

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
    raise AdviseError(f"cannot load the tokenizer of '{src}': {_first_line(last)}")


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
        raise AdviseError(f"cannot load model '{src}': {_first_line(e)}") from None
    if adapter_src is not None:
        try:
            from peft import PeftModel

            emb = lm.get_input_embeddings()
            if emb is not None and len(tokenizer) > emb.num_embeddings:
                lm.resize_token_embeddings(len(tokenizer))
            lm = PeftModel.from_pretrained(lm, str(adapter_src), is_trainable=False)
        except Exception as e:  # noqa: BLE001
            raise AdviseError(f"cannot load adapter '{adapter_src}' on '{src}': {_first_line(e)}") from None
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
        except Exception:  # noqa: BLE001 - e.g. "system role not supported"
            try:
                return tokenizer.apply_chat_template(_merge_system(messages), add_generation_prompt=True,
                                                     tokenize=False), True
            except Exception as e:  # noqa: BLE001
                raise AdviseError(f"the tokenizer's chat template failed on an eval prompt: {_first_line(e)}") from None
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

    def _fit(self, ids: list[int], room: int) -> tuple[list[int], bool]:
        """Keep the end of a prompt that is longer than the context minus ``room`` tokens."""
        limit = max(8, self.context - room)
        if len(ids) <= limit:
            return ids, False
        return ids[-limit:], True

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
                ids, cut = self._fit(self.encode_prompt(msgs), settings.max_new_tokens)
                encoded.append((i, ids, cut))
            except AdviseError:
                raise
            except Exception as e:  # noqa: BLE001 - one bad prompt is one item's error
                out[i] = Generation(None, error=f"prompt could not be encoded: {_first_line(e)}")
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
                msg = f"generation failed: {_first_line(e)}"
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
                toks = [t for t in toks[:n] if t != self.pad_id]
                text = self.tokenizer.decode(toks, skip_special_tokens=True).strip()
                out[i] = Generation(text, n_tokens=len(toks), seconds=dt, extra={"truncated": True} if cut else {})
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


def classifier_input(messages: list[dict]) -> str:
    """The text a sequence classifier reads: the user turns of the prompt (the record's key)."""
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return "\n".join(users) if users else messages[-1]["content"]


def _load_labels(path: Path, config) -> dict[int, str]:
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    for name in ("labels.json", "label_map.json"):
        f = path / name
        if f.is_file():
            data = json.loads(f.read_text(encoding="utf-8"))
            if isinstance(data, list):
                id2label = dict(enumerate(map(str, data)))
            elif isinstance(data, dict):
                data = data.get("id2label", data)
                id2label = {int(k): str(v) for k, v in data.items()}
    return id2label


class SequenceClassifierBackend(Backend):
    """A label classifier saved by the ``classifier`` training plugin: an
    ``AutoModelForSequenceClassification`` directory (or a peft adapter of one) whose ``id2label``
    names the labels. Its reply is the label; ``extra["label_scores"]`` holds every label's probability
    (for ROC AUC)."""

    kind = "classifier"

    def __init__(self, path: str | Path, *, trust_remote_code: bool = False, device: str | None = None,
                 batch_size: int = 32, max_length: int = 512):
        super().__init__()
        _quiet_transformers()
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise AdviseError("classifier directory not found", file=self.path)
        self.batch_size, self.max_length = max(1, int(batch_size)), max_length
        from transformers import AutoConfig, AutoModelForSequenceClassification

        device = pick_device(device)
        t0 = time.perf_counter()
        try:
            if (self.path / "adapter_config.json").is_file():
                from peft import AutoPeftModelForSequenceClassification

                model = AutoPeftModelForSequenceClassification.from_pretrained(str(self.path), is_trainable=False)
                config = model.config
            else:
                config = AutoConfig.from_pretrained(str(self.path), trust_remote_code=trust_remote_code)
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(self.path), use_safetensors=True, trust_remote_code=trust_remote_code)
        except Exception as e:  # noqa: BLE001
            raise AdviseError(f"cannot load classifier '{self.path}': {_first_line(e)}") from None
        base = None
        acfg = self.path / "adapter_config.json"
        if acfg.is_file():
            base = json.loads(acfg.read_text(encoding="utf-8")).get("base_model_name_or_path")
        self.tokenizer = load_tokenizer(str(self.path), trust_remote_code=trust_remote_code, fallback=base)
        self.id2label = _load_labels(self.path, config)
        if not self.id2label or all(v.startswith("LABEL_") for v in self.id2label.values()):
            raise AdviseError("classifier has no label names (id2label in config.json or labels.json)", file=self.path)
        self.model = model.to(device).eval()
        self.device = device
        self.load_seconds = time.perf_counter() - t0
        self.model.requires_grad_(False)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": str(self.path), "labels": len(self.id2label), "device": self.device}

    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        import torch

        texts = [classifier_input(m) for m in prompts]
        out: list[Generation] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            t0 = time.perf_counter()
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            with torch.inference_mode():
                probs = torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu()
            dt = (time.perf_counter() - t0) / len(chunk)
            self.calls["generate"] += 1
            self.calls["items"] += len(chunk)
            for row in probs.tolist():
                best = max(range(len(row)), key=row.__getitem__)
                scores = {self.id2label.get(j, str(j)): round(p, 6) for j, p in enumerate(row)}
                out.append(Generation(self.id2label.get(best, str(best)), n_tokens=0, seconds=dt,
                                      extra={"label_scores": scores}))
        return out

    def close(self) -> None:
        self.model = None


def is_classifier_dir(path: Path) -> bool:
    """Whether a trained artifact is a sequence classifier (by its config's architectures or task)."""
    cfg = Path(path) / "config.json"
    acfg = Path(path) / "adapter_config.json"
    try:
        if acfg.is_file() and json.loads(acfg.read_text(encoding="utf-8")).get("task_type") == "SEQ_CLS":
            return True
        if cfg.is_file():
            archs = json.loads(cfg.read_text(encoding="utf-8")).get("architectures") or []
            return any(a.endswith("ForSequenceClassification") for a in archs)
    except (OSError, ValueError):
        return False
    return False


# ------------------------------------------------------------------------------------ vLLM (lazy)


class VLLMBackend(Backend):
    """vLLM's offline engine (``vllm.LLM``), for users who outgrow one CPU/GPU process.

    Loaded only when vLLM is installed; otherwise a clear :class:`AdviseError`. Greedy unless the
    settings ask for sampling; LoRA adapters through vLLM's ``LoRARequest``.
    """

    kind = "vllm"

    def __init__(self, model: str | Path, *, adapter: str | Path | None = None, trust_remote_code: bool = False,
                 **engine_args: Any):
        super().__init__()
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise AdviseError("the vLLM backend needs vLLM: pip install vllm (on a machine with a supported GPU)") from None
        from vllm import LLM

        self.model_name, self.adapter = str(model), adapter
        try:
            self.llm = LLM(model=str(model), trust_remote_code=trust_remote_code, enable_lora=adapter is not None,
                           **engine_args)
        except Exception as e:  # noqa: BLE001
            raise AdviseError(f"vLLM cannot load model '{model}': {_first_line(e)}") from None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_name, "adapter": str(self.adapter) if self.adapter else None}

    def generate(self, prompts: Sequence[list[dict]], settings: GenerationSettings) -> list[Generation]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                top_p=settings.top_p if settings.sampling else 1.0,
                                seed=settings.seed if settings.sampling else None)
        lora = None
        if self.adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, str(self.adapter))
        t0 = time.perf_counter()
        try:
            results = self.llm.chat(list(prompts), params, lora_request=lora, use_tqdm=False)
        except Exception as e:  # noqa: BLE001
            return [Generation(None, error=f"vLLM generation failed: {_first_line(e)}") for _ in prompts]
        dt = (time.perf_counter() - t0) / max(1, len(prompts))
        self.calls["generate"] += 1
        self.calls["items"] += len(prompts)
        return [Generation(r.outputs[0].text.strip(), n_tokens=len(r.outputs[0].token_ids), seconds=dt)
                for r in results]
