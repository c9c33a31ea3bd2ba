"""The one way a model is scored on the gold test set: the request, the answer, the score.

Train (after every step), compress (every model it makes) and eval (every local model, over
HTTP) ask a model the same question and read its answer the same way, so one model on the
same records gets the same numbers in every report:

- the request (:func:`student_request`): the task's student prompt and the record's messages,
  its tools (rendered only where the student saw them in training), ``tool_choice`` from
  :func:`tool_choice_for` ("required" when the task allows no plain answer: decoding under
  the tools' grammar), greedy, ``max_tokens`` (``MAX_TOKENS`` unless set);
- the model: a serving backend (``runtime/backends.py``) in this process, one request at a
  time, as ``supertiny serve`` runs it for the eval stage (:func:`request_body` is the same
  request as an OpenAI body);
- the answer (:func:`assistant_message`): the text's tool calls parsed once, as the server
  answers them; the score (:func:`score_message`): ``Task.evaluate`` on that message.

    >>> backend = load_backend("runs/x/train/01-sft/model")
    >>> summary = score_backend(backend, task, tests, max_tokens=160, log_path=step / "eval.jsonl")
    {'n': 40, 'exact': 0.85, 'valid': 0.975, 'similarity': 0.91, 'f1': 0.9}

``EvalSettings`` is the train and compress stages' ``eval:`` section; ``logged_rows`` is the
resumable loop under scoring (and under the train stage's sampling): rows already in the log
are not computed again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from supertiny.core import config as cfg
from supertiny.core.metrics import summarize_scores
from supertiny.core.progress import bar
from supertiny.core.runs import RecordLog, read_jsonl
from supertiny.core.task import Task
from supertiny.core.toolcalls import Score, parse
from supertiny.runtime.backend import Backend, ChatRequest, Generation, SamplingParams

MAX_TOKENS = 160
"""The longest answer a model is scored on, in every stage (the eval stage's ``max_tokens``
and the train and compress stages' ``eval.max_new_tokens`` default to it)."""


class EvalSettings(cfg.Section):
    """Exact-match evaluation on the gold test set (shared by the train and compress stages)."""

    limit: int | None = Field(
        None, ge=1, description="Evaluate on the first N gold test records (all when unset)."
    )
    max_new_tokens: int = Field(
        MAX_TOKENS,
        ge=1,
        description="Longest answer generated (the eval stage's max_tokens: keep them equal for equal numbers).",
    )
    batch_size: int = Field(
        8,
        ge=1,
        description="Answers written to the log at a time (each is asked alone, as the eval stage asks its server).",
    )


def tool_choice_for(task: Task, setting: str = "task") -> str:
    """``setting`` unless it is "task": then "required" when the task allows no plain answer
    (decoding constrained to valid calls), else "auto"."""
    if setting != "task":
        return setting
    return "auto" if task.spec.allow_plain_answer else "required"


def student_request(
    task: Task, record: dict[str, Any], max_tokens: int, tool_choice: str = "task"
) -> ChatRequest:
    """The request a model is scored on: what ``supertiny serve --task`` makes of
    :func:`request_body` (``serve/profile.py``)."""
    choice = tool_choice_for(task, tool_choice)
    tools = None if choice == "none" else task.tools_for(record)
    return ChatRequest(
        messages=task.student_messages(
            [m for m in record["messages"] if m.get("role") != "system"]
        ),
        tools=tools,
        tool_choice=choice if tools else "none",
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        render_tools=task.spec.student.tools_in_prompt,
    )


def request_body(
    task: Task, record: dict[str, Any], max_tokens: int, tool_choice: str = "task"
) -> dict[str, Any]:
    """:func:`student_request` as the OpenAI body the eval stage sends to its server."""
    return {
        "model": "student",
        "messages": record["messages"],
        "tools": task.tools_for(record),
        "tool_choice": tool_choice_for(task, tool_choice),
        "temperature": 0,
        "max_tokens": max_tokens,
    }


def assistant_message(text: str, tools_active: bool) -> dict[str, Any]:
    """The OpenAI assistant message for generated ``text`` (what the server answers).

    With tools, calls found by ``supertiny.core.toolcalls.parse`` become ``tool_calls`` and the
    text around them the ``content`` (None if there is none); text that is no call (or a call
    that does not parse) is returned whole as ``content``.
    """
    if tools_active:
        parsed = parse(text)
        if parsed.calls:
            calls = [call.to_openai(f"call_{uuid.uuid4().hex[:24]}") for call in parsed.calls]
            return {"role": "assistant", "content": parsed.content, "tool_calls": calls}
    return {"role": "assistant", "content": text}


def ask(backend: Backend, request: ChatRequest) -> tuple[dict[str, Any], Generation]:
    """The backend's answer to ``request`` as an assistant message, and its generation."""
    generation = backend.chat(request)
    return assistant_message(generation.text, request.tools is not None), generation


def score_message(task: Task, record: dict[str, Any], message: dict[str, Any]) -> Score:
    """``Task.evaluate`` of an assistant message against the record's gold answer."""
    return task.evaluate(message, record["gold"], task.tools_for(record))


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


def score_backend(
    backend: Backend | Callable[[], Backend],
    task: Task,
    records: list[dict[str, Any]],
    *,
    max_tokens: int = MAX_TOKENS,
    tool_choice: str = "task",
    batch_size: int = 8,
    log_path: Path,
    title: str = "evaluate",
) -> dict[str, Any]:
    """A backend's answers on gold test records, scored by ``Task.evaluate``; resumable via
    ``log_path``. ``backend`` may be a function that loads it (called only when a record is
    not yet in the log); the caller closes it. Returns ``{"n", "exact", "valid", "similarity", "f1"}``."""
    loaded: list[Backend] = []

    def rows_for(chunk: list[dict[str, Any]], _: int) -> list[dict[str, Any]]:
        if not loaded:
            loaded.append(backend() if callable(backend) else backend)
        rows = []
        for record in chunk:
            request = student_request(task, record, max_tokens, tool_choice)
            message, generation = ask(loaded[0], request)
            score = score_message(task, record, message)
            rows.append(
                {
                    "id": record["id"],
                    "output": generation.text,
                    "exact": score.exact,
                    "valid": score.valid,
                    "similarity": score.similarity,
                    "f1": score.f1,
                    "reason": score.reason,
                }
            )
        return rows

    return summarize_scores(logged_rows(records, log_path, batch_size, title, rows_for))
