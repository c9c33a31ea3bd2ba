"""The student's one-stage format: short prompt + user input -> the final call(s).

Every training step and the evaluation render examples the same way: the task's student
system prompt and the record's messages (tools in the template where the task asks for
them), then one assistant turn holding the label's tool calls, rendered by the student
tokenizer's own chat template. The prompt and the answer are tokenised separately, so the
loss mask (answer tokens only) is exact for any template.

    >>> ex = encode(tok, task, record, record["label"], max_length=512)
    >>> ex["input_ids"], ex["labels"]        # labels are -100 on the prompt
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supertiny.runs import iter_jsonl
from supertiny.task import Task
from supertiny.toolcalls import parse


class DataError(ValueError):
    """The label set cannot train a student (missing, empty, all rejected)."""


def answer_message(label: dict[str, Any]) -> dict[str, Any]:
    """A label ``{"tool_calls": [{name, arguments}], "content"}`` as an assistant message."""
    calls = [
        {"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments") or {}}}
        for c in (label.get("tool_calls") or [])
    ]
    message: dict[str, Any] = {"role": "assistant", "content": label.get("content") or ""}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(task: Task, record: dict[str, Any]) -> list[dict] | None:
    return task.tools_for(record) if task.spec.student.tools_in_prompt else None


def prompt_text(tokenizer, task: Task, record: dict[str, Any]) -> str:
    """The rendered prompt the student answers, ending with the assistant turn's opening."""
    return tokenizer.apply_chat_template(
        task.student_messages(record["messages"]),
        tools=_tools(task, record),
        tokenize=False,
        add_generation_prompt=True,
    )


def answer_text(tokenizer, task: Task, record: dict[str, Any], label: dict[str, Any]) -> str:
    """The rendered answer: what follows :func:`prompt_text`, up to the end-of-turn token."""
    prompt = prompt_text(tokenizer, task, record)
    full = tokenizer.apply_chat_template(
        [*task.student_messages(record["messages"]), answer_message(label)],
        tools=_tools(task, record),
        tokenize=False,
    )
    if not full.startswith(prompt):
        raise DataError(
            "the student's chat template renders the conversation differently with the answer "
            "appended than without it; cannot tell the answer tokens apart"
        )
    answer = full[len(prompt) :]
    eos = tokenizer.eos_token
    if eos and eos in answer:
        answer = answer[: answer.index(eos) + len(eos)]
    return answer


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


def load_labels(path: Path, task: Task, limit: int | None = None) -> list[dict[str, Any]]:
    """The accepted teacher labels, checked: a missing or empty set is a clear error."""
    if not path.is_file():
        raise DataError(
            f"{path}: no labeled records; run `supertiny label {task.path}` first "
            "(or set `labels:` in the train config)"
        )
    records = []
    for record in iter_jsonl(path):
        label = record.get("label")
        if not label or not (label.get("tool_calls") or label.get("content")):
            continue
        if not parse(answer_message(label)).calls and not task.spec.allow_plain_answer:
            continue
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        rejected = path.with_name("rejected.jsonl")
        hint = (
            f"; every input was rejected (see {rejected} and label_report.json)"
            if rejected.is_file()
            else ""
        )
        raise DataError(f"{path}: no usable labels to train on{hint}")
    return records


def test_records(task: Task, limit: int | None = None) -> list[dict[str, Any]]:
    """The gold test records (those with a ``gold`` answer)."""
    out = [r for r in task.records("test") if r.get("gold")]
    return out[:limit] if limit is not None else out
