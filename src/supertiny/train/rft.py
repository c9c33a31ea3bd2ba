"""Rejection-sampling fine-tuning: learn from the student's own correct answers.

The current student samples ``samples`` answers per training input; ``Task.evaluate`` against
the teacher label keeps the correct ones (exact match, or ``Task.reward >= min_reward`` when
``min_reward`` is below 1), the teacher label stands in where none is correct
(``teacher_fallback``), and the student is fine-tuned on the kept set. The pass@k that drove
the step is in its metrics.
"""

from __future__ import annotations

from typing import Any

from supertiny.core.toolcalls import canonical_key
from supertiny.train.sampling import as_label, sample_step
from supertiny.train.sft import fine_tune
from supertiny.train.trainers import StepContext, TrainingError


def judge_samples(
    ctx: StepContext, record: dict[str, Any], texts: list[str], min_reward: float
) -> tuple[list[dict[str, Any]], int]:
    """Distinct correct samples of one input as labels (canonical calls, no stray text), and
    how many of the samples were an exact match."""
    tools = ctx.task.tools_for(record)
    kept: dict[str, dict[str, Any]] = {}
    exact = 0
    for text in texts:
        score = ctx.task.evaluate(text, record["label"], tools)
        exact += score.exact
        good = score.exact or (
            min_reward < 1
            and score.valid
            and ctx.task.reward(text, record["label"], tools=tools) >= min_reward
        )
        if good and score.calls:
            kept.setdefault(canonical_key(score.calls, tools), as_label(score.calls))
    return list(kept.values()), exact


def run(ctx: StepContext, step: Any) -> dict[str, Any]:
    records = ctx.labels[: step.max_examples] if step.max_examples else ctx.labels
    samples = sample_step(ctx, step, records)
    pairs, solved, correct_total, fallback = [], 0, 0, 0
    for record in records:
        texts = samples[record["id"]]
        correct, exact = judge_samples(ctx, record, texts, step.min_reward)
        correct_total += exact
        if correct:
            solved += 1
            pairs += [(record, label) for label in correct[: step.keep_per_input]]
        elif step.teacher_fallback:
            fallback += 1
            pairs.append((record, record["label"]))
    if not pairs:
        raise TrainingError(
            f"{ctx.step_dir.name}: no sample was correct and teacher_fallback is off; "
            "nothing to fine-tune on (run sft first, or raise samples/temperature)"
        )
    n = len(records)
    metrics = fine_tune(ctx, step, pairs)
    metrics.update(
        inputs=n,
        samples_per_input=step.samples,
        pass_at_k=round(solved / n, 4),
        pass_at_1=round(correct_total / (n * step.samples), 4),
        kept_student=len(pairs) - fallback,
        kept_teacher=fallback,
    )
    return metrics
