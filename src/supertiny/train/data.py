"""Training examples in the student's one-stage format: token ids with the prompt masked.

The prompt and the answer are rendered as every step and every score renders them
(``runtime/render.py``: the task's student system prompt and the record's messages, then
one assistant turn holding the label's tool calls) and tokenised separately, so the loss
mask (answer tokens only) is exact for any template.

    >>> ex = encode(tok, task, record, record["label"], max_length=512)
    >>> ex["input_ids"], ex["labels"]        # labels are -100 on the prompt
"""

from __future__ import annotations

from typing import Any

from supertiny.core.task import Task
from supertiny.runtime.render import answer_text, prompt_text


def encode(
    tokenizer, task: Task, record: dict[str, Any], label: dict[str, Any], max_length: int
) -> dict[str, list[int]] | None:
    """``{"input_ids", "labels"}`` with the prompt masked (-100); None if longer than ``max_length``."""
    prompt_ids = tokenizer(prompt_text(tokenizer, task, record), add_special_tokens=False)[
        "input_ids"
    ]
    answer_ids = tokenizer(answer_text(tokenizer, task, record, label), add_special_tokens=False)[
        "input_ids"
    ]
    if len(prompt_ids) + len(answer_ids) > max_length:
        return None
    return {
        "input_ids": prompt_ids + answer_ids,
        "labels": [-100] * len(prompt_ids) + answer_ids,
    }


def encode_all(
    tokenizer, task: Task, pairs: list[tuple[dict[str, Any], dict[str, Any]]], max_length: int
) -> tuple[list[dict[str, Any]], int]:
    """Encode ``(record, label)`` pairs; returns the examples and how many were too long."""
    out, dropped = [], 0
    for record, label in pairs:
        example = encode(tokenizer, task, record, label, max_length)
        if example is None:
            dropped += 1
            continue
        out.append({"id": record["id"], **example})
    return out, dropped
