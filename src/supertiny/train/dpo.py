"""DPO on preference pairs (TRL ``DPOTrainer``).

Two sources of pairs, both optional:
- the label stage's ``preferences.jsonl``: where the teacher's own samples disagreed, the
  voted call is chosen and each disagreeing or invalid output rejected;
- pairs mined from the student: it samples answers to the training inputs, and every wrong
  one becomes a rejected answer against the teacher label (chosen).

With LoRA the reference model is the student with its adapters switched off, so no second
copy of the weights is held.
"""

from __future__ import annotations

import json
from typing import Any

from supertiny.core.runs import iter_jsonl
from supertiny.runtime.render import answer_text, prompt_text
from supertiny.train.sampling import sample_step
from supertiny.train.trainers import (
    StepContext,
    TrainingError,
    as_dataset,
    train,
    trainer_kwargs,
)


def _as_label(answer: dict[str, Any]) -> dict[str, Any] | None:
    """A preference answer as a label; raw OpenAI tool calls get their JSON arguments decoded."""
    if "raw" not in answer:
        return answer
    calls = []
    for call in answer.get("tool_calls") or []:
        function = call.get("function", call)
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return None
        calls.append({"name": function.get("name", ""), "arguments": arguments or {}})
    return {"tool_calls": calls, "content": answer.get("raw")}


def label_pairs(ctx: StepContext) -> list[dict[str, str]]:
    """Pairs from the label stage's preferences.jsonl, rendered for the student."""
    path = ctx.label_dir / "preferences.jsonl"
    if not path.is_file():
        return []
    records = {r["id"]: r for r in ctx.labels}
    rejected_path = ctx.label_dir / "rejected.jsonl"
    if rejected_path.is_file():
        for r in iter_jsonl(rejected_path):
            records.setdefault(r["id"], r)
    out = []
    for pair in iter_jsonl(path):
        record = records.get(pair.get("source_id"))
        rejected = _as_label(pair.get("rejected") or {})
        if record is None or rejected is None:
            continue
        out.append(
            _render(
                ctx, record, pair["chosen"], answer_text(ctx.tokenizer, ctx.task, record, rejected)
            )
        )
    return out


def _render(ctx: StepContext, record, chosen: dict[str, Any], rejected_text: str) -> dict[str, str]:
    tok, task = ctx.tokenizer, ctx.task
    return {
        "prompt": prompt_text(tok, task, record),
        "chosen": answer_text(tok, task, record, chosen),
        "rejected": rejected_text,
    }


def mined_pairs(
    ctx: StepContext, step: Any, records: list[dict[str, Any]]
) -> tuple[list[dict[str, str]], int]:
    """Pairs from the student's wrong samples; also returns how many samples were correct."""
    samples = sample_step(ctx, step, records)
    eos = ctx.tokenizer.eos_token or ""
    pairs, correct = [], 0
    for record in records:
        seen: set[str] = set()
        for text in samples[record["id"]]:
            if ctx.task.evaluate(text, record["label"], ctx.task.tools_for(record)).exact:
                correct += 1
                continue
            if text in seen or len(seen) >= step.pairs_per_input:
                continue
            seen.add(text)
            pairs.append(_render(ctx, record, record["label"], text + eos))
    return pairs, correct


def run(ctx: StepContext, step: Any) -> dict[str, Any]:
    from trl import DPOConfig, DPOTrainer

    records = ctx.labels[: step.max_examples] if step.max_examples else ctx.labels
    from_labels = label_pairs(ctx) if step.label_pairs else []
    mined, correct = mined_pairs(ctx, step, records) if step.mine else ([], 0)
    pairs = from_labels + mined
    if not pairs:
        raise TrainingError(
            f"{ctx.step_dir.name}: no preference pairs (the teacher never disagreed with itself "
            "and every student sample was correct); drop the dpo step or sample more"
        )
    args = DPOConfig(**trainer_kwargs(ctx, step), beta=step.beta, max_length=step.max_length)
    trainer = DPOTrainer(
        model=ctx.model, args=args, train_dataset=as_dataset(pairs), processing_class=ctx.tokenizer
    )
    metrics = train(trainer, ctx)
    rewards = [e for e in trainer.state.log_history if "rewards/accuracies" in e]
    metrics.update(
        pairs=len(pairs),
        pairs_from_labels=len(from_labels),
        pairs_mined=len(mined),
        student_samples_correct=correct,
        reward_accuracy_last=rewards[-1]["rewards/accuracies"] if rewards else None,
        reward_margin_last=rewards[-1].get("rewards/margins") if rewards else None,
    )
    return metrics
