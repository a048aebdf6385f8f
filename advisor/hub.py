"""Hub ids: fail in one line when a model is neither in the local Hugging Face cache nor reachable."""

from __future__ import annotations

from advisor.errors import AdviseError


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
