"""The prototype: a teacher LLM drives a function-call pipeline to the task's final call.

Each step sends the conversation (teacher prompt, few-shot, input, earlier steps) with the
helper and final tools. Helper calls really run (``Task.run_helper``, in the task's helper
process, each bounded by ``helpers.timeout_s``, in a thread so that the event loop and the
other inputs' requests go on) and their results go back to the model as ``tool`` messages:
a helper that raises or times out gives an ``error: ...`` result, which the teacher reads
like any other. The first turn that names only final tools ends the pipeline with those
calls (or a plain answer where the task allows one). Steps are bounded by
``teacher.max_steps`` and every step, with its helper results, is kept in the trace.

Verified labels (task key ``helpers.dry_run``): a final turn is first dry-run against the
environment (``Task.dry_run``). If a call cannot be carried out, the turn goes back to the
teacher as an assistant turn and one ``tool`` message per call (``DRY_RUN_OK`` or
``error: <reason>.`` + ``DRY_RUN_RETRY``), and its next final turn is the whole answer; a
call still invalid at the last step ends the sample with ``error_kind = "dry_run"`` (trace
key ``dry_run_errors``), as does a dry-run that fails (raises other than ``ValueError``,
times out); such a sample's calls still make a DPO ``rejected`` output. A turn that mixes
helper and final calls runs the helpers and asks again (on the last step its final calls are
the answer), with its final calls left out of the conversation (trace key
``dropped_final_calls``): measured on smart_home with the bundled 1.5B teacher, answering
them "not carried out" instead made the teacher give up (``no_action``) in 7 of 40 inputs.

Exercised by ``supertiny label TASK.yaml`` (see ``label/stage.py``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from supertiny.core import toolcalls
from supertiny.core.task import Task, ToolError
from supertiny.label.client import Completion, TeacherClient


@dataclass
class PipelineResult:
    """The outcome of one pipeline run (one self-consistency sample)."""

    calls: list[toolcalls.ToolCall]
    content: str | None
    error: str | None
    trace: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    requests: int = 0
    cached: int = 0
    logprobs: list | None = None
    error_kind: str | None = None  # "dry_run": the environment rejected the calls

    @property
    def ok(self) -> bool:
        return self.error is None

    def label(self) -> dict[str, Any]:
        """The record ``label`` shape: ``{"tool_calls": [...], "content": ...}``."""
        return {"tool_calls": [c.to_dict() for c in self.calls], "content": self.content}

    def add(self, completion: Completion) -> None:
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.cost_usd += completion.cost_usd
        self.latency_s += completion.latency_s
        self.requests += 1
        self.cached += int(completion.cached)


def _assistant_message(
    calls: list[toolcalls.ToolCall], content: str | None, step: int
) -> dict[str, Any]:
    """Re-emit the turn in canonical OpenAI shape so every endpoint's template renders it."""
    message: dict[str, Any] = {"role": "assistant", "content": content or ""}
    if calls:
        message["tool_calls"] = [
            {
                "id": f"call_{step}_{i}",
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": json.dumps(c.arguments, ensure_ascii=False),
                },
            }
            for i, c in enumerate(calls)
        ]
    return message


async def _run_helpers(
    task: Task, calls: list[toolcalls.ToolCall], step: int
) -> tuple[list[dict], list[dict]]:
    """Execute helper calls in order, off the event loop; return (tool messages, trace entries)."""
    messages, results = [], []
    for index, call in enumerate(calls):
        try:
            output = await asyncio.to_thread(task.run_helper, call.name, call.arguments)
            text, ok = json.dumps(output, ensure_ascii=False), True
        except ToolError as exc:
            text, ok = f"error: {exc}", False
        messages.append(
            {
                "role": "tool",
                "tool_call_id": f"call_{step}_{index}",
                "name": call.name,
                "content": text,
            }
        )
        results.append({"name": call.name, "arguments": call.arguments, "ok": ok, "result": text})
    return messages, results


DRY_RUN_OK = "ok (checked, not yet carried out)"
DRY_RUN_RETRY = (
    " Nothing was carried out. Reply with the complete corrected set of final calls "
    "(look up what you need first)."
)


def _dry_run_feedback(
    calls: list[toolcalls.ToolCall], verdicts: list[str | None], step: int, content: str | None
) -> list[dict]:
    """The checked turn and one tool message per call (its verdict), for the teacher to correct."""
    tool_messages = [
        {
            "role": "tool",
            "tool_call_id": f"call_{step}_{i}",
            "name": call.name,
            "content": DRY_RUN_OK if verdict is None else f"error: {verdict}.{DRY_RUN_RETRY}",
        }
        for i, (call, verdict) in enumerate(zip(calls, verdicts, strict=True))
    ]
    return [_assistant_message(calls, content, step), *tool_messages]


async def _dry_run(
    task: Task, calls: list[toolcalls.ToolCall], content: str | None, entry: dict, last_step: bool
) -> tuple[str | None, list[dict]]:
    """Dry-run a final turn: ``(None, [])`` when every call can be carried out (or the task
    has no dry-runs); ``(None, messages)`` when some cannot and steps remain (the turn and
    its verdicts, for the teacher to correct); ``(reason, [])`` when the sample is rejected.
    """
    if not task.dry_runs:
        return None, []
    try:
        verdicts = [await asyncio.to_thread(task.dry_run, c.name, c.arguments) for c in calls]
    except ToolError as exc:
        entry["dry_run_failed"] = str(exc)
        return f"dry-run failed: {exc}", []
    errors = [v for v in verdicts if v]
    if not errors:
        return None, []
    entry["dry_run_errors"] = errors
    if last_step:
        return "dry-run: " + "; ".join(errors), []
    return None, _dry_run_feedback(calls, verdicts, entry["step"], content)


REASK = (
    "Your last reply contained no function call. Reply with the function call(s) that "
    "complete the request, using the tools provided."
)


def _reask(conversation: list[dict], message: dict, entry: dict, problem: str) -> list[dict]:
    """Append the unusable turn and a corrective user message."""
    entry["reask"] = problem
    reply = {"role": "assistant", "content": message.get("content") or ""}
    return [*conversation, reply, {"role": "user", "content": REASK}]


async def run_pipeline(
    client: TeacherClient,
    task: Task,
    messages: list[dict[str, Any]],
    *,
    temperature: float = 0.0,
    seed: int | None = None,
    sample: int = 0,
    max_tokens: int = 512,
    top_logprobs: int | None = None,
    reasks: int = 1,
) -> PipelineResult:
    """Run the teacher's function-call pipeline on one input conversation.

    A turn with neither a readable call nor an allowed plain answer (small teachers sometimes
    return an empty turn) is answered with ``REASK`` up to ``reasks`` times, within the step
    budget; the trace marks it. A final turn is dry-run where the task has dry-runs, and a
    turn mixing helper and final calls runs the helpers and asks again (on the last step its
    final calls are the answer): see the module docstring. Never raises for model
    misbehaviour (garbage, unknown tools, invalid calls, too many steps): those end the run
    with ``error`` set. Transport failures (``TeacherError``) propagate.
    """
    conversation = task.teacher_messages(messages)
    tools = task.teacher_tools
    reasks_left = reasks
    result = PipelineResult(calls=[], content=None, error=None)
    for step in range(task.spec.teacher.max_steps):
        completion = await client.chat(
            conversation,
            tools=tools,
            tool_choice=None if task.spec.allow_plain_answer else "required",
            temperature=temperature,
            max_tokens=max_tokens,
            seed=None if seed is None else seed + step,
            sample=sample,
            logprobs=bool(top_logprobs),
            top_logprobs=top_logprobs or None,
        )
        result.add(completion)
        parsed = toolcalls.parse(completion.message)
        entry: dict[str, Any] = {
            "step": step,
            "message": completion.message,
            "latency_s": round(completion.latency_s, 3),
            "cached": completion.cached,
        }
        result.trace.append(entry)
        if parsed.error and not parsed.calls:
            problem = f"step {step}: unparseable output: {parsed.error}"
            if reasks_left > 0:
                reasks_left -= 1
                conversation = _reask(conversation, completion.message, entry, problem)
                continue
            result.error = problem
            return result
        finals = [c for c in parsed.calls if task.is_final(c.name)]
        helpers = [c for c in parsed.calls if not task.is_final(c.name)]
        last_step = step + 1 >= task.spec.teacher.max_steps
        if finals and (not helpers or last_step):
            if helpers:  # no step left to ask again: the final calls are the answer
                entry["ignored_helper_calls"] = [c.to_dict() for c in helpers]
            rejected, feedback = await _dry_run(task, finals, parsed.content, entry, last_step)
            if feedback:
                conversation = conversation + feedback
                continue
            result.calls, result.content = finals, parsed.content
            if rejected:
                result.error, result.error_kind = f"step {step}: {rejected}", "dry_run"
            else:
                result.logprobs = completion.logprobs
            return result
        if helpers:
            if finals:  # a mixed turn: look up first, then the teacher answers again
                entry["dropped_final_calls"] = [c.to_dict() for c in finals]
            tool_messages, entry["tool_results"] = await _run_helpers(task, helpers, step)
            conversation = conversation + [
                _assistant_message(helpers, parsed.content, step),
                *tool_messages,
            ]
            continue
        if completion.finish_reason == "length":
            result.error = f"step {step}: output cut at max_tokens={max_tokens}"
        elif task.spec.allow_plain_answer and parsed.content:
            result.content = parsed.content
            result.logprobs = completion.logprobs
        elif reasks_left > 0:
            reasks_left -= 1
            conversation = _reask(conversation, completion.message, entry, "no function call")
            continue
        else:
            result.error = f"step {step}: answered in text without a final call"
        return result
    result.error = f"no final call within {task.spec.teacher.max_steps} steps"
    return result
