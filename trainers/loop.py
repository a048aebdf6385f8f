"""The Hugging Face Trainer loop the built-in plugins share: training arguments chosen for the
hardware, a progress callback (loss history, tokens/s, ETA), checkpoints and resume, and the
:class:`TrainResult`. transformers is imported inside the functions.

Checkpoints are written whole or not at all: the Trainer saves ``checkpoint-N`` under a staging
name (``.saving-N/checkpoint-N``) that is renamed into place once every file is written, so a kill
during a save leaves only the staging directory. ``--resume`` continues from the last complete
checkpoint (its trainer_state.json whole and of its own step), skips incomplete ones and says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor import training
from trainers.device import DeviceInfo, PeakMemory
from trainers.plugin import PluginConfig, ProgressEvent, TrainRequest, TrainResult

__all__ = ["checkpoint_interval", "checkpoints", "last_checkpoint", "make_callback", "run_trainer", "total_steps",
           "training_arguments"]

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # as transformers names them (trainer_utils.PREFIX_CHECKPOINT_DIR)
STAGING = ".saving-"  # where a checkpoint is written before it is renamed into place


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


def _complete(path: Path, step: int) -> bool:
    """A checkpoint is complete when its trainer_state.json (the Trainer writes it last) is whole
    and of the checkpoint's own step."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == step


def checkpoints(folder: Path) -> tuple[list[Path], list[Path]]:
    """(complete checkpoints of a run's checkpoint folder in step order, incomplete ones: a
    ``checkpoint-N`` without a whole trainer state, or a staging directory a save never renamed)."""
    if not folder.is_dir():
        return [], []
    complete, incomplete = [], []
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        m = CHECKPOINT.match(p.name)
        if m and p.is_dir():
            (complete if _complete(p, int(m.group(1))) else incomplete).append(p)
        elif p.name.startswith(STAGING) and p.is_dir():
            incomplete.append(p)
    key = lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1  # noqa: E731
    return sorted(complete, key=key), sorted(incomplete, key=key)


def last_checkpoint(req: TrainRequest) -> str | None:
    """The last complete checkpoint of the run. Incomplete ones (a save killed half way) are skipped
    with one line on stderr; unfinished staging directories are removed (nothing in them is usable)."""
    complete, incomplete = checkpoints(req.checkpoint_dir)
    if incomplete and int(os.environ.get("RANK", "0")) == 0:
        for p in incomplete:
            if p.name.startswith(STAGING):
                shutil.rmtree(p, ignore_errors=True)
        frm = f"resuming from {complete[-1].name}" if complete else "no complete checkpoint to resume from"
        print(f"advise: skipped {len(incomplete)} incomplete checkpoint(s) ({', '.join(p.name for p in incomplete)}: "
              f"a save that did not finish); {frm}", file=sys.stderr, flush=True)
    return str(complete[-1]) if complete else None


def atomic_checkpoints(trainer) -> None:
    """Make the Trainer write each checkpoint under a staging name and rename it into place when every
    process has written its part, then rotate old checkpoints (save_total_limit) as it would have."""
    save = trainer._save_checkpoint
    if getattr(save, "_advise_atomic", False):
        return

    def _save_checkpoint(model, trial=None):
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(trainer._get_output_dir(trial=trial))
        step = trainer.state.global_step
        staging = run_dir / f"{STAGING}{step}"
        final = run_dir / f"checkpoint-{step}"
        trainer._get_output_dir = lambda trial=None: str(staging)  # where the Trainer writes this save
        try:
            save(model, trial)
        finally:
            del trainer._get_output_dir  # the class's method again
        trainer.accelerator.wait_for_everyone()  # every rank has written its files (RNG state per rank)
        if trainer.args.should_save:
            if final.exists():  # an incomplete checkpoint of this step, left by a killed save
                shutil.rmtree(final)
            os.replace(staging / final.name, final)
            shutil.rmtree(staging, ignore_errors=True)
            best = trainer.state.best_model_checkpoint
            if best and Path(best).parent == staging:
                trainer.state.best_model_checkpoint = str(run_dir / Path(best).name)
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=trainer.args.save_total_limit,
                               best_model_checkpoint=trainer.state.best_model_checkpoint, use_mtime=False)
        trainer.accelerator.wait_for_everyone()

    _save_checkpoint._advise_atomic = True
    trainer._save_checkpoint = _save_checkpoint


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
    atomic_checkpoints(trainer)
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


