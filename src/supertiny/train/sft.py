"""Supervised fine-tuning on the teacher's labels (TRL ``SFTTrainer``), and the shared SFT loop.

``fine_tune`` is also the second half of rejection-sampling fine-tuning: it trains on any
list of ``(record, answer)`` pairs rendered in the student's one-stage format, with the
loss on the answer tokens only.
"""

from __future__ import annotations

from typing import Any

from supertiny.train.data import encode_all
from supertiny.train.trainers import (
    StepContext,
    TrainingError,
    as_dataset,
    train,
    trainer_kwargs,
)


def fine_tune(
    ctx: StepContext, step: Any, pairs: list[tuple[dict[str, Any], dict[str, Any]]]
) -> dict[str, Any]:
    """SFT on ``(record, label)`` pairs; returns the step's training metrics."""
    from trl import SFTConfig, SFTTrainer

    examples, too_long = encode_all(ctx.tokenizer, ctx.task, pairs, step.max_length)
    if too_long:
        ctx.warn(f"{too_long} examples longer than max_length={step.max_length} were left out")
    if not examples:
        raise TrainingError(
            f"{ctx.step_dir.name}: no example fits max_length={step.max_length}; raise it"
        )
    args = SFTConfig(**trainer_kwargs(ctx, step), max_length=step.max_length)
    trainer = SFTTrainer(
        model=ctx.model,
        args=args,
        train_dataset=as_dataset([{k: e[k] for k in ("input_ids", "labels")} for e in examples]),
        processing_class=ctx.tokenizer,
    )
    tokens = int(sum(len(e["input_ids"]) for e in examples) * step.epochs)
    metrics = train(trainer, ctx, tokens)
    metrics.update(examples=len(examples), dropped_too_long=too_long)
    return metrics


def run(ctx: StepContext, step: Any) -> dict[str, Any]:
    labels = ctx.labels[: step.max_examples] if step.max_examples else ctx.labels
    return fine_tune(ctx, step, [(r, r["label"]) for r in labels])
