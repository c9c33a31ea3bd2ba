"""Sample answers from a transformers model, and score a model on the gold test set.

Used by rejection sampling, DPO pair mining and the evaluation after every step. Prompts
are left-padded and generated in batches; answers are cut at the end-of-turn token and keep
special tokens such as ``<tool_call>`` so the tool-call parser sees what the model wrote.

    >>> texts = sample(model, tok, prompts, samples=4, temperature=0.8, max_new_tokens=96)
    >>> summary = evaluate(model, tok, task, test_records, conf, log_path)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from supertiny.progress import bar
from supertiny.runs import RecordLog, read_jsonl
from supertiny.task import Task
from supertiny.transfer.data import prompt_text


def _cut(text: str, stops: list[str]) -> str:
    for stop in stops:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text.strip()


def sample(
    model,
    tokenizer,
    prompts: list[str],
    *,
    samples: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    seed: int = 0,
) -> list[list[str]]:
    """``samples`` answers per prompt (greedy when ``temperature`` is 0)."""
    import torch

    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    stops = [t for t in (tokenizer.eos_token, tokenizer.pad_token) if t]
    out: list[list[str]] = []
    greedy = temperature <= 0
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            torch.manual_seed(seed + start)
            with torch.no_grad():
                ids = model.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=None if greedy else temperature,
                    top_p=None,
                    top_k=None,
                    num_return_sequences=1 if greedy else samples,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            new = ids[:, enc["input_ids"].shape[1] :]
            texts = [_cut(t, stops) for t in tokenizer.batch_decode(new, skip_special_tokens=False)]
            per = 1 if greedy else samples
            for i in range(len(chunk)):
                group = texts[i * per : (i + 1) * per]
                out.append(group * samples if greedy else group)
    finally:
        tokenizer.padding_side = side
    return out


def _logged(
    records: list[dict[str, Any]],
    log_path: Path,
    batch_size: int,
    title: str,
    rows_for: Callable[[list[dict[str, Any]], int], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Run ``rows_for(batch, offset)`` on the records not yet in ``log_path``, appending its
    rows, then return the logged rows of ``records``: an interrupted run resumes here."""
    with RecordLog(log_path) as log:
        todo = [r for r in records if r["id"] not in log]
        if todo:
            with bar(len(todo), title) as advance:
                for start in range(0, len(todo), batch_size):
                    chunk = todo[start : start + batch_size]
                    for row in rows_for(chunk, start):
                        log.append(row)
                    advance(len(chunk))
    wanted = {r["id"] for r in records}
    return [row for row in read_jsonl(log_path) if row["id"] in wanted]


def evaluate(
    model,
    tokenizer,
    task: Task,
    records: list[dict[str, Any]],
    *,
    max_new_tokens: int,
    batch_size: int,
    log_path: Path,
    title: str = "evaluate",
) -> dict[str, Any]:
    """Greedy answers of a transformers model on gold test records; see :func:`score_answers`."""

    def generate(prompts: list[str]) -> list[str]:
        return greedy(model, tokenizer, prompts, max_new_tokens, batch_size)

    return score_answers(generate, tokenizer, task, records, batch_size, log_path, title)


def greedy(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """One greedy answer per prompt."""
    texts = sample(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [group[0] for group in texts]


def score_answers(
    generate: Callable[[list[str]], list[str]],
    tokenizer,
    task: Task,
    records: list[dict[str, Any]],
    batch_size: int,
    log_path: Path,
    title: str = "evaluate",
) -> dict[str, Any]:
    """Answers from ``generate(prompts)`` on gold test records, scored by ``Task.evaluate``.

    Any backend (transformers, torchao, llama.cpp) plugs in as ``generate``; the prompts are
    rendered by ``tokenizer``. Resumable via ``log_path``. Returns ``{"n", "exact", "valid",
    "similarity", "f1"}`` (rates in [0, 1]).
    """

    def rows_for(chunk: list[dict[str, Any]], _: int) -> list[dict[str, Any]]:
        texts = generate([prompt_text(tokenizer, task, r) for r in chunk])
        rows = []
        for record, text in zip(chunk, texts, strict=True):
            score = task.evaluate(text, record["gold"], task.tools_for(record))
            rows.append(
                {
                    "id": record["id"],
                    "output": text,
                    "exact": score.exact,
                    "valid": score.valid,
                    "similarity": score.similarity,
                    "f1": score.f1,
                    "reason": score.reason,
                }
            )
        return rows

    return summarize(_logged(records, log_path, batch_size, title, rows_for))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    if not n:
        return {"n": 0, "exact": None, "valid": None, "similarity": None, "f1": None}
    return {
        "n": n,
        "exact": sum(r["exact"] for r in rows) / n,
        "valid": sum(r["valid"] for r in rows) / n,
        "similarity": sum(max(r["similarity"], 0.0) for r in rows) / n,
        "f1": sum(r["f1"] for r in rows) / n,
    }


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

    rows = _logged(records, log_path, batch_size, title, rows_for)
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
    from supertiny.transfer import distributed as dist

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
