"""Serve a student the way it was trained: the task's short prompt, the task's tools.

A student trained by supertiny answers a *one-stage* prompt: the task's short system prompt,
the user's messages, and (unless ``student.tools_in_prompt`` is false) the final tools
rendered by the chat template. A production client that swaps the teacher's URL for the
student's keeps sending what it sent before: perhaps the teacher's long system prompt,
perhaps the tools, perhaps neither. With ``supertiny serve --task TASK.yaml`` every request
is rewritten into the student's format before it reaches the backend:

- system messages are replaced by the task's student system prompt;
- a request without ``tools`` gets the task's final tools (for parsing and constrained
  decoding); they are rendered into the prompt only if the student saw them in training;
- a request that does not set ``tool_choice`` gets "required" when the task does not allow
  plain answers (``allow_plain_answer: false``), so the answer is always a valid call.

    supertiny serve --model runs/smart_home/compress/03-gguf/model.gguf \\
        --task examples/smart_home/task.yaml
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from supertiny.runtime.backend import ChatRequest


@dataclass(frozen=True)
class TaskProfile:
    """The student prompt format of one task."""

    system_prompt: str
    tools: list[dict[str, Any]]
    tools_in_prompt: bool
    require_call: bool

    @classmethod
    def load(cls, task_path: str | Path) -> TaskProfile:
        """The profile of the task file at ``task_path`` (a ``ConfigError`` names bad keys)."""
        from supertiny.core.task import Task

        task = Task.load(task_path)
        return cls(
            system_prompt=task.spec.student.system_prompt,
            tools=task.tools,
            tools_in_prompt=task.spec.student.tools_in_prompt,
            require_call=not task.spec.allow_plain_answer,
        )

    def apply(self, request: ChatRequest, tool_choice_given: bool) -> ChatRequest:
        """``request`` in the student's format (see the module docstring)."""
        messages = [{"role": "system", "content": self.system_prompt}] + [
            m for m in request.messages if m["role"] != "system"
        ]
        tools, choice = request.tools, request.tool_choice
        if tools is None and not (tool_choice_given and choice == "none"):
            tools = self.tools
        if tools and not tool_choice_given:
            choice = "required" if self.require_call else "auto"
        return replace(
            request,
            messages=messages,
            tools=tools,
            tool_choice=choice if tools else "none",
            render_tools=self.tools_in_prompt,
        )
