"""What every training step shares: the step context, trainer arguments, resume, metrics.

The steps hand their data to TRL's trainers (SFTTrainer, DPOTrainer, GRPOTrainer) or to our
distillation trainer; all of them are transformers ``Trainer``s, so one argument builder
serves them all, a crash resumes from the step's last checkpoint, and ``accelerate launch``
spreads any of them over several GPUs unchanged. A checkpoint whose save was cut short (a
crash, a full disk) is set aside beside the checkpoints, never deleted, and training resumes
from the last complete one (``last_complete_checkpoint``).
"""

from __future__ import annotations

import json
import math
import struct
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertiny.core.errors import SupertinyError
from supertiny.core.runs import set_aside
from supertiny.core.task import Task
from supertiny.train import distributed as dist


class TrainingError(SupertinyError, RuntimeError):
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
        from supertiny.core.progress import warn

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
    """Run ``trainer`` (resuming from its last complete checkpoint) and return its metrics."""
    guard = NanGuard()
    trainer.add_callback(guard)
    with dist.main_first():  # the main process sets the incomplete ones aside
        last = last_complete_checkpoint(ctx.step_dir / "checkpoints", ctx.warn)
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


WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
"""The files of which a checkpoint holds at least one: the model's weights or a LoRA's."""


def last_complete_checkpoint(checkpoints: Path, warn: Callable[[str], None]) -> str | None:
    """The newest ``checkpoint-N`` folder under ``checkpoints`` that was saved whole, or None.

    Newer folders whose save was cut short are renamed aside into the step folder
    (``checkpoint-N.incomplete-<time>``, out of reach of the trainer's checkpoint rotation
    and of the clean-up when the step finishes), with a warning that says why."""
    from transformers.trainer_utils import get_last_checkpoint

    while checkpoints.is_dir() and (last := get_last_checkpoint(str(checkpoints))):
        problem = checkpoint_problem(Path(last))
        if problem is None:
            return last
        aside = set_aside(Path(last), "incomplete", into=checkpoints.parent)
        warn(f"{last} is incomplete ({problem}): set aside as {aside}")
    return None


def checkpoint_problem(folder: Path) -> str | None:
    """Why the checkpoint ``folder`` cannot be resumed from, or None if it is complete.

    The Trainer writes ``trainer_state.json`` last; every weight, optimizer and JSON file in
    it must also read back whole (a safetensors header and size, a torch zip's index)."""
    state = folder / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json: the save did not finish"
    if not any((folder / name).is_file() for name in WEIGHTS):
        return f"no model or adapter weights ({', '.join(WEIGHTS)})"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        problem = _file_problem(path)
        if problem:
            return f"{path.relative_to(folder)}: {problem}"
    return None


def _file_problem(path: Path) -> str | None:
    """Why a checkpoint file does not read back whole, or None (None too for other kinds)."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "not JSON"
        shards = data.get("weight_map") if isinstance(data, dict) else None
        names = set(shards.values()) if isinstance(shards, dict) else set()
        missing = sorted(n for n in names if not (path.parent / n).is_file())
        if missing:
            return f"names missing weight files {', '.join(missing)}"
    elif path.suffix == ".safetensors":
        return _safetensors_problem(path)
    elif path.suffix in (".bin", ".pt", ".pth") and not zipfile.is_zipfile(path):
        return "not a whole torch file"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then exactly the data the
    header's offsets cover: a save cut short fails one of these."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or 8 + length > size:
            return "cut short in its header"
        try:
            header = json.loads(handle.read(length))
            ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "unreadable header"
    described = 8 + length + max(ends, default=0)
    return None if described == size else f"{size} bytes, its header describes {described}"


def as_dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list(rows)
