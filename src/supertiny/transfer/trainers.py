"""What every training step shares: the step context, trainer arguments, resume, metrics.

The steps hand their data to TRL's trainers (SFTTrainer, DPOTrainer, GRPOTrainer) or to our
distillation trainer; all of them are transformers ``Trainer``s, so one argument builder
serves them all, a crash resumes from the step's last checkpoint, and ``accelerate launch``
spreads any of them over several GPUs unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertiny.task import Task


class TrainingError(RuntimeError):
    """A step cannot go on (NaN loss, nothing to learn from, ...)."""


@dataclass
class StepContext:
    """What a step needs: the task, the current model, its data and where to write."""

    task: Task
    model: Any
    tokenizer: Any
    labels: list[dict[str, Any]]
    step_dir: Path
    label_dir: Path
    device: str
    dtype: Any
    seed: int = 0
    gradient_checkpointing: bool = False
    notes: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        from supertiny.progress import warn

        warn(message, self.notes)


def trainer_kwargs(ctx: StepContext, step: Any) -> dict[str, Any]:
    """Keyword arguments common to every TRL/transformers config class."""
    import torch

    return {
        "output_dir": str(ctx.step_dir / "checkpoints"),
        "num_train_epochs": step.epochs,
        "learning_rate": step.learning_rate,
        "per_device_train_batch_size": step.batch_size,
        "gradient_accumulation_steps": step.grad_accum,
        "warmup_steps": step.warmup_ratio,  # a float below 1 is a ratio of all steps
        "weight_decay": step.weight_decay,
        "lr_scheduler_type": "cosine",
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": step.save_steps,
        "save_total_limit": 1,
        "report_to": "none",
        "seed": ctx.seed,
        "bf16": ctx.dtype == torch.bfloat16,
        "fp16": ctx.dtype == torch.float16,
        "use_cpu": ctx.device == "cpu",
        "dataloader_pin_memory": ctx.device == "cuda",
        "remove_unused_columns": False,
        "logging_nan_inf_filter": False,
        # TRL's configs turn this on by default and transformers' does not: say it once here.
        "gradient_checkpointing": ctx.gradient_checkpointing,  # NaN must reach NanGuard, not be averaged away
    }


class NanGuard:
    """A ``TrainerCallback`` that stops training on a NaN or infinite loss."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Guard(TrainerCallback):
            bad: float | None = None

            def on_log(self, args, state, control, logs=None, **kwargs):
                loss = (logs or {}).get("loss")
                if loss is not None and not math.isfinite(loss):
                    self.bad = loss
                    control.should_training_stop = True

        return _Guard()


def train(trainer, ctx: StepContext, tokens: int | None = None) -> dict[str, Any]:
    """Run ``trainer`` (resuming from its last checkpoint) and return its metrics."""
    from transformers.trainer_utils import get_last_checkpoint

    guard = NanGuard()
    trainer.add_callback(guard)
    checkpoints = ctx.step_dir / "checkpoints"
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    resumed_at = 0
    if last:
        ctx.warn(f"resuming from {last}")
        resumed_at = int(Path(last).name.rsplit("-", 1)[-1])
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    if guard.bad is not None:
        raise TrainingError(
            f"{ctx.step_dir.name}: the loss became {guard.bad} at step "
            f"{trainer.state.global_step}; lower learning_rate (or use float32) and run again "
            f"with --restart-step {ctx.step_dir.name.split('-', 1)[0]}"
        )
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    metrics: dict[str, Any] = {
        "optimizer_steps": trainer.state.global_step,
        "train_seconds": round(seconds, 2),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        # (optimizer step, loss) at every logged step: the report draws the training curve
        "loss_curve": [
            [e["step"], round(e["loss"], 5)] for e in trainer.state.log_history if "loss" in e
        ],
    }
    if tokens is None:  # TRL's trainers count the non-padding tokens they saw
        counts = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e]
        tokens = int(max(counts)) if counts else None
    if tokens:
        total = max(trainer.state.global_step, 1)
        ran = tokens * (total - resumed_at) / total  # only what this process trained
        metrics["tokens"] = tokens
        metrics["tokens_per_s"] = round(ran / seconds, 2) if seconds > 0 else None
    return metrics


def as_dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list(rows)
