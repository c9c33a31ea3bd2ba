"""GRPO with the task's reward (TRL ``GRPOTrainer``).

For each training prompt the student samples a group of ``samples`` answers; each answer's
reward is ``Task.reward`` against the teacher label (the Sim-RL similarity by default, exact
match as an option), advantages are normalised within the group, and ``beta`` weighs the KL
to the reference model (the student with LoRA switched off, or a frozen copy). Here
``batch_size`` counts prompts: each optimiser step sees ``batch_size x samples`` answers.
"""

from __future__ import annotations

import json
from typing import Any

from supertiny.runtime.render import prompt_text
from supertiny.train.trainers import StepContext, as_dataset, train, trainer_kwargs


def reward_function(ctx: StepContext, kind: str | None):
    """A TRL reward function: one float per completion, from ``Task.reward``."""

    def task_reward(prompts, completions, reference, tools, **_: Any) -> list[float]:
        out = []
        for completion, ref, tool_json in zip(completions, reference, tools, strict=True):
            tool_list = json.loads(tool_json) if tool_json else None
            out.append(ctx.task.reward(completion, json.loads(ref), kind=kind, tools=tool_list))
        return out

    task_reward.__name__ = f"task_{kind or ctx.task.spec.reward}"
    return task_reward


def run(ctx: StepContext, step: Any) -> dict[str, Any]:
    from trl import GRPOConfig, GRPOTrainer

    records = ctx.labels[: step.max_examples] if step.max_examples else ctx.labels
    rows = [
        {
            "prompt": prompt_text(ctx.tokenizer, ctx.task, r),
            "reference": json.dumps(r["label"]),
            "tools": json.dumps(r["tools"]) if r.get("tools") else "",
        }
        for r in records
    ]
    kwargs = trainer_kwargs(ctx, step)
    kwargs["per_device_train_batch_size"] = step.batch_size * step.samples
    args = GRPOConfig(
        **kwargs,
        num_generations=step.samples,
        max_completion_length=step.max_new_tokens,
        temperature=step.temperature,
        beta=step.beta,
        log_completions=False,
    )
    trainer = GRPOTrainer(
        model=ctx.model,
        reward_funcs=[reward_function(ctx, step.reward)],
        args=args,
        train_dataset=as_dataset(rows),
        processing_class=ctx.tokenizer,
    )
    metrics = train(trainer, ctx)
    logs = [e for e in trainer.state.log_history if "reward" in e]
    metrics.update(
        prompts=len(rows),
        group_size=step.samples,
        reward_first=logs[0]["reward"] if logs else None,
        reward_last=logs[-1]["reward"] if logs else None,
        kl_last=logs[-1].get("kl") if logs else None,
    )
    return metrics
