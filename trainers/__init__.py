"""The public plugin API: everything a trainer plugin (built-in or third-party) may import.

    from trainers import TrainerPlugin, TrainRequest, TrainResult, SFTFields, train_sft

Importing it is cheap (pydantic only): torch, transformers, peft and trl are imported inside the
functions that need them, so ``advise plugins`` and ``advise --help`` stay fast. The modules behind
it: ``plugin`` (the contract), ``registry`` (entry points and in-process :func:`register`),
``config`` (a plugin's config from project.yaml), ``device``, ``models``, ``data`` (training rows),
``loop`` (the Trainer loop), ``sft`` (the SFT loop), ``runner`` (plans and runs; not for plugins).
See docs/plugins.md.
"""

from advisor.hf import quiet_libraries
from advisor.training import DEFAULT_EPOCHS, PLUGIN_DEFAULTS, with_plugin_defaults
from trainers.config import build_config, config_fields
from trainers.data import preference_rows, require_preference_records, require_sft_records, sft_rows
from trainers.device import (
    DeviceInfo,
    PeakMemory,
    check_common_options,
    cpu_name,
    import_optional,
    select_device,
)
from trainers.loop import run_trainer, total_steps, training_arguments
from trainers.models import (
    count_parameters,
    load_causal_lm,
    load_tokenizer,
    lora_config,
    model_load_kwargs,
    tied_embeddings,
)
from trainers.plugin import (
    CONFIG_SNAPSHOT,
    FinishedRun,
    LoraFields,
    PluginConfig,
    ProgressEvent,
    TrainerPlugin,
    TrainRequest,
    TrainResult,
)
from trainers.registry import ENTRY_POINT_GROUP, all_plugins, get_plugin, plugin_names, register
from trainers.sft import SFTFields, score_labelled_positions_only_on_cpu, train_sft

__all__ = [
    # the contract
    "TrainerPlugin", "PluginConfig", "LoraFields", "SFTFields", "TrainRequest", "TrainResult", "ProgressEvent",
    "FinishedRun", "CONFIG_SNAPSHOT",
    # the built-in plugins' defaults (advisor.training)
    "DEFAULT_EPOCHS", "PLUGIN_DEFAULTS", "with_plugin_defaults",
    # finding plugins
    "ENTRY_POINT_GROUP", "register", "get_plugin", "plugin_names", "all_plugins", "build_config", "config_fields",
    # device and libraries
    "DeviceInfo", "PeakMemory", "select_device", "check_common_options", "cpu_name", "import_optional",
    "quiet_libraries",
    # models
    "load_causal_lm", "load_tokenizer", "model_load_kwargs", "lora_config", "count_parameters", "tied_embeddings",
    # data
    "sft_rows", "preference_rows", "require_sft_records", "require_preference_records",
    # the training loop
    "train_sft", "run_trainer", "training_arguments", "total_steps", "score_labelled_positions_only_on_cpu",
]
