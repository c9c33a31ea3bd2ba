"""The student's one-stage format: short prompt + user input -> the final call(s), as text.

Every training step, every score of a model and the serving path's prompts render a record
the same way: the task's student system prompt and the record's messages (tools in the
template where the task asks for them), then one assistant turn holding the label's tool
calls, rendered by the student tokenizer's own chat template.

    >>> prompt_text(tok, task, record)                    # ends with the assistant turn's opening
    >>> answer_text(tok, task, record, record["label"])   # what follows it, up to end-of-turn
"""

from __future__ import annotations

from typing import Any

from supertiny.core.records import DataError, answer_message
from supertiny.core.task import Task


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
