"""The train stage's on-policy samples: answers drawn from the current student, logged so an
interrupted step resumes, and parsed calls as labels.

    >>> samples = sample_step(ctx, step, records)     # {record id: [answer text, ...]}
    >>> label = as_label(parse(samples["q-1"][0]).calls)

Used by rejection sampling (``rft.py``) and DPO pair mining (``dpo.py``); the sampling itself
is ``runtime/generate.py``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supertiny.core.task import Task
from supertiny.runtime.generate import sample
from supertiny.runtime.render import prompt_text
from supertiny.runtime.scoring import logged_rows


def sample_records(
    model,
    tokenizer,
    task: Task,
    records: list[dict[str, Any]],
    *,
    samples: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    log_path: Path,
    title: str,
) -> dict[str, list[str]]:
    """``samples`` answers per record, kept in ``log_path`` so an interrupted step resumes."""

    def rows_for(chunk: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
        texts = sample(
            model,
            tokenizer,
            [prompt_text(tokenizer, task, r) for r in chunk],
            samples=samples,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            seed=seed + start,
        )
        return [{"id": r["id"], "samples": group} for r, group in zip(chunk, texts, strict=True)]

    rows = logged_rows(records, log_path, batch_size, title, rows_for)
    return {row["id"]: row["samples"] for row in rows}


def as_label(calls: list[Any]) -> dict[str, Any]:
    """Parsed ``ToolCall``s as a label ``{"tool_calls": [{name, arguments}], "content": None}``."""
    return {
        "tool_calls": [c.to_dict() for c in calls],
        "content": None,
    }


def sample_step(ctx: Any, step: Any, records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """An on-policy step's samples from the current student (``samples.jsonl`` in its folder;
    under several processes the main one samples, the others read its log)."""
    from supertiny.train import distributed as dist

    with dist.main_first():
        return sample_records(
            ctx.model,
            ctx.tokenizer,
            ctx.task,
            records,
            samples=step.samples,
            temperature=step.temperature,
            max_new_tokens=step.max_new_tokens,
            batch_size=step.sample_batch_size,
            seed=ctx.seed,
            log_path=ctx.step_dir / "samples.jsonl",
            title=f"{step.kind}: sampling {step.samples} per input",
        )
