"""The Hugging Face Trainer loop the built-in plugins share: training arguments chosen for the
hardware, a progress callback (loss history, tokens/s, ETA), checkpoints and resume, and the
:class:`TrainResult`. transformers is imported inside the functions."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor import training
from trainers.device import DeviceInfo, PeakMemory
from trainers.plugin import PluginConfig, ProgressEvent, TrainRequest, TrainResult

__all__ = ["checkpoint_interval", "last_checkpoint", "make_callback", "run_trainer", "total_steps",
           "training_arguments"]


def total_steps(config: PluginConfig, n_examples: int, world_size: int = 1) -> int:
    """Optimizer steps of the run: max_steps, or epochs (default: the plugin's) over the data."""
    return training.total_steps(config.max_steps, config.epochs, default_epochs=config.DEFAULT_EPOCHS,
                                batch_size=config.batch_size, grad_accum=config.grad_accum,
                                examples=n_examples, world_size=world_size)


def checkpoint_interval(config: PluginConfig, steps: int) -> int:
    """checkpoint_every, else about every 10% of the run but not more often than every 10 steps."""
    return config.checkpoint_every or max(10, -(-steps // 10))


def training_arguments(req: TrainRequest, device: DeviceInfo, n_examples: int, *, model_params: int = 0,
                       **extra) -> dict:
    """Keyword arguments for transformers.TrainingArguments (or a trl config) chosen for the hardware:
    no gradient checkpointing and fp32 on CPU (trl's defaults cost 3.5x there), bf16 on a capable GPU,
    the gloo backend for several CPU processes."""
    c = req.config
    steps = total_steps(c, n_examples, device.world_size)
    gc = c.gradient_checkpointing
    if gc is None:
        gc = device.type == "cuda" and model_params > 1_000_000_000
    kw: dict[str, Any] = dict(
        output_dir=str(req.checkpoint_dir),
        per_device_train_batch_size=c.batch_size,
        gradient_accumulation_steps=c.grad_accum,
        learning_rate=c.learning_rate,
        lr_scheduler_type=c.lr_scheduler,
        warmup_steps=c.warmup_ratio,
        weight_decay=c.weight_decay,
        max_grad_norm=c.max_grad_norm,
        seed=c.seed,
        data_seed=c.seed,
        max_steps=steps,
        logging_strategy="steps",
        logging_steps=min(c.logging_steps, steps),  # the last step's loss is always logged
        report_to="none",
        disable_tqdm=True,
        save_strategy="steps",
        save_steps=checkpoint_interval(c, steps),
        save_total_limit=c.keep_checkpoints,
        bf16=device.bf16,
        fp16=device.fp16,
        use_cpu=device.type == "cpu",
        gradient_checkpointing=bool(gc),
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        log_level="warning",
    )
    if device.world_size > 1 and device.type == "cpu":
        kw["ddp_backend"] = "gloo"
    from transformers import TrainingArguments

    if "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}:
        kw["activation_checkpointing"] = kw.pop("gradient_checkpointing")  # the new name (transformers >= 5.x)
    kw.update(extra)
    return kw


def last_checkpoint(req: TrainRequest) -> str | None:
    if not req.checkpoint_dir.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(req.checkpoint_dir))


def make_callback(req: TrainRequest, max_steps: int, history: list[tuple[int, float]]):
    """A TrainerCallback that collects the loss history and reports progress (step, loss, tokens/s, ETA)."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self):
            self.t0 = None
            self.step0 = 0
            self.tokens0 = 0

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()
            self.step0 = state.global_step
            self.tokens0 = state.num_input_tokens_seen or 0

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            loss = float(logs["loss"])
            history.append((state.global_step, loss))
            dt = time.perf_counter() - (self.t0 or time.perf_counter())
            tokens = (state.num_input_tokens_seen or 0) - self.tokens0
            done = state.global_step - self.step0
            tps = tokens / dt if dt > 0 else None
            eta = dt / done * (max_steps - state.global_step) if done > 0 else None
            ev = ProgressEvent(state.global_step, max_steps, loss, tps, eta, state.num_input_tokens_seen or 0,
                               logs.get("learning_rate"), logs.get("epoch"))
            if req.progress is not None:
                req.progress(ev)

    return _Progress()


def run_trainer(trainer, req: TrainRequest, device: DeviceInfo, peak: PeakMemory, *, artifact_kind: str,
                save: Callable[[Path], None], metrics: dict | None = None) -> TrainResult:
    """Train (resuming from the last checkpoint when asked), save the artifact on rank 0, return the result."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    history: list[tuple[int, float]] = []
    max_steps = trainer.args.max_steps
    for cb in (PrinterCallback, ProgressCallback):  # our own progress line replaces them; stdout stays clean
        trainer.remove_callback(cb)
    trainer.add_callback(make_callback(req, max_steps, history))
    resume_from = last_checkpoint(req) if req.resume else None
    resumed_step = None
    if resume_from:
        resumed_step = int(Path(resume_from).name.split("-")[-1])
        prior = req.options.get("prior_history") or []
        history.extend((int(s), float(v)) for s, v in prior if int(s) <= resumed_step)
    # read now: the checkpoint resumed from may be rotated away (save_total_limit) by the end of training
    tokens_before = _checkpoint_tokens(resume_from) if resume_from else 0
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - t0
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    session_tokens = tokens - tokens_before
    if trainer.is_world_process_zero():
        req.artifact_dir.mkdir(parents=True, exist_ok=True)
        save(req.artifact_dir)
        drop_library_cards(req.output_dir)
    m = dict(metrics or {})
    m["train_loss_mean"] = out.training_loss
    hardware = device.to_json()
    dist = getattr(getattr(trainer, "accelerator", None), "distributed_type", None)
    hardware["distributed"] = getattr(dist, "value", str(dist)) if dist is not None else "NO"
    return TrainResult(
        artifact=req.artifact_dir,
        artifact_kind=artifact_kind,
        loss_history=history,
        train_tokens=tokens,
        wall_seconds=wall,
        hardware=hardware,
        peak_memory_mb=round(peak.mb(), 1),
        steps=trainer.state.global_step,
        resumed_from_step=resumed_step,
        session_tokens=session_tokens,
        metrics=m,
    )


# what the model cards transformers, trl and peft write into every save directory say when they know
# nothing of the run ("This model is a fine-tuned version of [None]", a template of "[More Information
# Needed]"): advise export writes the run's own card (advisor/modelcard.py)
LIBRARY_CARD_MARKS = ("generated_from_trainer", "fine-tuned version of [None]", "[More Information Needed]")


def drop_library_cards(run_dir: Path) -> list[Path]:
    """Remove the libraries' boilerplate README.md files under ``run_dir`` (checkpoints, artifact);
    a README that says anything else stays. Returns the files removed."""
    gone = []
    for f in sorted(Path(run_dir).rglob("README.md")):
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(m in text for m in LIBRARY_CARD_MARKS):
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


def _checkpoint_tokens(ckpt: str) -> int:
    try:
        state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
        return int(state.get("num_input_tokens_seen") or 0)
    except (OSError, ValueError):
        return 0


