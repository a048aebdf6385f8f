"""Library chatter (deprecations, progress bars, optional-kernel notices) is not the user's business:
one place that turns it down, for every command that loads models."""

from __future__ import annotations


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
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*(ensure_weight_tying|tied|tie_word_embeddings).*")
    warnings.filterwarnings("ignore", category=FutureWarning)
