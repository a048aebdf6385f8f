"""Hugging Face plumbing shared by assess, eval and train: the hub cache, hub id or local path, a model
source that cannot load, and the libraries' chatter turned down."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from advisor.errors import AdviseError

_SAMPLE_BYTES = 1 << 20  # bytes read from each end of a weights file for its fingerprint
_FULL_HASH_LIMIT = 8 << 20  # smaller files are hashed whole


# ------------------------------------------------------------------------------ hub id or path


def looks_like_path(model: str) -> bool:
    """A hub id is "name" or "org/name"; anything else (./x, /x, ~/x, a/b/c, a\\b) is a path."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model or Path(model).is_absolute()


def is_local(model: str | Path) -> bool:
    """True when ``model`` names a local directory or file (existing or not), False for a hub id."""
    return Path(str(model)).expanduser().exists() or looks_like_path(str(model))


def first_line(e: BaseException | None) -> str:
    text = (str(e).strip() if e is not None else "") or type(e).__name__
    return text.splitlines()[0][:300]


# ------------------------------------------------------------------------------------ hub cache


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub resolves it (HF_HUB_CACHE, then HF_HOME/hub)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hub_commit(model_id: str, revision: str | None = None) -> str | None:
    """The commit a hub id resolves to in the local cache: a 40-hex revision is itself, a branch or tag
    is read from ``refs/<name>`` (``main`` by default), as huggingface_hub does. None when not cached."""
    ref = revision or "main"
    if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
        return ref
    refs = hub_cache_dir() / ("models--" + model_id.replace("/", "--")) / "refs" / ref
    try:
        return refs.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def cached_snapshot(model_id: str | None, revision: str | None = None) -> Path | None:
    """The one rule for "this hub id is in the local cache": the snapshot directory of the commit
    that ``revision`` (default ``main``) resolves to. Not the alphabetically first snapshot, not the
    newest by mtime: the one the hub client itself would load offline."""
    if not model_id or looks_like_path(model_id) or model_id.count("/") > 1:
        return None
    commit = hub_commit(model_id, revision)
    if commit is None:
        return None
    snap = hub_cache_dir() / ("models--" + model_id.replace("/", "--")) / "snapshots" / commit
    return snap if snap.is_dir() else None


# ---------------------------------------------------------------------------------- model identity


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


def model_fingerprint(model: str | Path, revision: str | None = None) -> dict[str, Any]:
    """Identity of a model given as a local directory or a hub id (with its cached commit)."""
    p = Path(model).expanduser()
    if p.is_dir():
        return dir_fingerprint(p)
    return {"hub": str(model), "revision": revision or "main", "commit": hub_commit(str(model), revision)}


# ---------------------------------------------------------------------------- reachability

def check_hub_reachable(repo_id: str, revision: str | None = None, what: str = "the base model") -> None:
    """A hub id that is neither in the local cache nor reachable fails now, in one line, instead of after
    the hub client's retries (which print a warning each)."""
    import logging
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise AdviseError(f"{what} '{repo_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                          "is set; download it first or point base_model at a local directory")
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        raise AdviseError(f"{what} '{repo_id}' is not in the local Hugging Face cache and {host} cannot be "
                          "reached from this machine; download it first or point base_model at a local directory"
                          ) from None

def quiet_libraries() -> None:
    """Turn down transformers, datasets, peft and bitsandbytes output; errors still surface."""
    import logging
    import os
    import warnings

    # bitsandbytes (installed for qlora, imported by peft) tells at import that an optional CPU kernel
    # package is missing; its pure-torch fallback is what runs, so that line is noise in every lora run
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # datasets reads these when it is imported (by trl, lm-eval): importing it here only to quiet it
    # would load pyarrow, whose allocator starts a background thread, and a thread alive at a fork
    # (assess's parallel reader) can leave the forked worker waiting on a lock it holds
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    import sys

    if "datasets" in sys.modules:
        datasets = sys.modules["datasets"]
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*(ensure_weight_tying|tied|tie_word_embeddings).*")
    warnings.filterwarnings("ignore", category=FutureWarning)


# ------------------------------------------------------------------------------- chat templates

_PROBE_CHAT = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
               {"role": "assistant", "content": "a"}]


def chat_template_file(tokenizer) -> str:
    """Where a tokenizer's chat template is written: chat_template.jinja or tokenizer_config.json of its
    directory (a hub id when it is not a local directory)."""
    src = str(getattr(tokenizer, "name_or_path", "") or "the tokenizer")
    d = Path(src).expanduser()
    if d.is_dir():
        for name in ("chat_template.jinja", "tokenizer_config.json"):
            if (d / name).is_file():
                return str(d / name)
    return src


def template_refused(e: BaseException) -> bool:
    """The template itself is at fault (the sandbox refused it, or it does not parse), whatever the
    conversation; a template's own raise_exception (e.g. "system role not supported") is not."""
    try:
        from jinja2.exceptions import SecurityError, TemplateSyntaxError
    except ImportError:  # pragma: no cover - jinja2 ships with transformers
        return False
    return isinstance(e, (SecurityError, TemplateSyntaxError))


def chat_template_error(tokenizer, e: BaseException, where: str) -> AdviseError:
    why = "it fails"
    if template_refused(e):
        why = "it does not parse" if type(e).__name__ == "TemplateSyntaxError" else "transformers' sandbox refuses it"
    return AdviseError(f"the tokenizer's chat template cannot be used ({why} on {where}: {first_line(e)}); "
                       "fix or remove chat_template", file=chat_template_file(tokenizer))


def check_chat_template(tokenizer) -> None:
    """Render a small conversation with the tokenizer's chat template (when it has one), before any
    work: a template that the sandbox refuses or that does not parse is one error naming its file. A
    template that refuses only the system role passes (prompts then merge the system message)."""
    if not getattr(tokenizer, "chat_template", None):
        return
    try:
        tokenizer.apply_chat_template(_PROBE_CHAT, tokenize=False)
        return
    except Exception as e:  # noqa: BLE001 - third-party template code
        if template_refused(e):
            raise chat_template_error(tokenizer, e, "a test conversation") from None
    try:
        tokenizer.apply_chat_template(_PROBE_CHAT[1:], tokenize=False)
    except Exception as e:  # noqa: BLE001
        raise chat_template_error(tokenizer, e, "a test conversation") from None
