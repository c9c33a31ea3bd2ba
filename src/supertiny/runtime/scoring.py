"""Score a model on the gold test set: its answers, scored by ``Task.evaluate``, logged to resume.

    >>> summary = score_model(model, tok, task, test_records, max_new_tokens=128,
    ...                       batch_size=8, log_path=step_dir / "eval.jsonl")
    >>> summary = score_answers(runner.generate, tok, task, test_records, 8, log_path)
    {'n': 40, 'exact': 0.85, 'valid': 0.975, 'similarity': 0.91, 'f1': 0.9}

``score_answers`` takes any ``generate(prompts) -> texts`` (transformers, torchao, llama.cpp),
so the train stage (after every step) and the compress stage (every model it makes) render
the prompts and score the answers the same way. ``EvalSettings`` is
their config section (``eval:``). ``logged_rows`` is the resumable loop under both (and under
the train stage's sampling): rows already in the log are not computed again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from supertiny.core import config as cfg
from supertiny.core.metrics import summarize_scores
from supertiny.core.progress import bar
from supertiny.core.runs import RecordLog, read_jsonl
from supertiny.core.task import Task
from supertiny.runtime.generate import greedy
from supertiny.runtime.render import prompt_text


class EvalSettings(cfg.Section):
    """Exact-match evaluation on the gold test set (shared by the train and compress stages)."""

    limit: int | None = Field(
        None, ge=1, description="Evaluate on the first N gold test records (all when unset)."
    )
    max_new_tokens: int = Field(128, ge=1, description="Longest answer generated.")
    batch_size: int = Field(8, ge=1, description="Prompts per generate() call.")


def logged_rows(
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


def score_model(
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

    return summarize_scores(logged_rows(records, log_path, batch_size, title, rows_for))
