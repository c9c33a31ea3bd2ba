"""OpenAI response objects for generated text: `chat.completion` and its stream chunks.

Shared by every backend: the text a backend generated becomes an assistant message
here, with tool calls read by `supertiny.core.toolcalls.parse` when the request had tools.
Exercised by `python -m pytest tests/unit/serve/test_serve.py -q`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from supertiny.core.toolcalls import parse
from supertiny.runtime.backend import Generation


class Meta:
    """The id, creation time and model name shared by a response and its chunks."""

    def __init__(self, model: str):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model


def assistant_message(text: str, tools_active: bool) -> dict[str, Any]:
    """The OpenAI assistant message for generated `text`.

    With tools, calls found by `supertiny.core.toolcalls.parse` become `tool_calls` and the
    text around them the `content` (None if there is none); text that is no call (or
    a call that does not parse) is returned whole as `content`.
    """
    if tools_active:
        parsed = parse(text)
        if parsed.calls:
            calls = [call.to_openai(f"call_{uuid.uuid4().hex[:24]}") for call in parsed.calls]
            return {"role": "assistant", "content": parsed.content, "tool_calls": calls}
    return {"role": "assistant", "content": text}


def finish_reason(backend_reason: str, message: dict[str, Any]) -> str:
    """The OpenAI finish reason: "length" if the output was cut (even with calls, which
    may then be incomplete), else "tool_calls" if it has calls, else "stop"."""
    if backend_reason == "length":
        return "length"
    return "tool_calls" if message.get("tool_calls") else "stop"


def usage(generations: list[Generation]) -> dict[str, Any]:
    """OpenAI usage; the prompt is counted once however many choices were drawn."""
    prompt = generations[0].prompt_tokens if generations else 0
    completion = sum(g.completion_tokens for g in generations)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": generations[0].cached_tokens if generations else 0
        },
    }


def completion_body(meta: Meta, generations: list[Generation], tools_active: bool) -> dict:
    """The `chat.completion` object for one request."""
    choices = []
    for index, gen in enumerate(generations):
        message = assistant_message(gen.text, tools_active)
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": None if gen.logprobs is None else {"content": gen.logprobs},
                "finish_reason": finish_reason(gen.finish_reason, message),
            }
        )
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage(generations),
    }


def chunk(meta: Meta, choices: list[dict], usage_: dict | None = None) -> str:
    """One server-sent event carrying a `chat.completion.chunk`."""
    body: dict[str, Any] = {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": None,
        "choices": choices,
    }
    if usage_ is not None:
        body["usage"] = usage_
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def choice_delta(
    index: int, delta: dict, logprobs: list | None = None, finish: str | None = None
) -> dict[str, Any]:
    """One entry of a chunk's `choices`."""
    return {
        "index": index,
        "delta": delta,
        "logprobs": None if logprobs is None else {"content": logprobs},
        "finish_reason": finish,
    }
