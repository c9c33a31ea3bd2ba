"""The backend interface: one loaded model that answers chat requests (what `supertiny serve` serves).

A backend owns one loaded model and turns a `ChatRequest` (OpenAI messages, the tools
to show the model, sampling parameters) into a `Generation` (the raw text, why it
stopped, token counts, logprobs). It renders the prompt with the model's own chat
template and serialises access to the model itself: the HTTP layer (`serve/app.py`)
may call it from several threads. Parsing tool calls out of the text is *not* the
backend's job: the HTTP layer does it once, for every backend, with
`supertiny.core.toolcalls.parse`.

Two backends exist: `llamacpp.py` (GGUF) and `torch_backend.py` (transformers and torchao
checkpoints, with request batching). To add one, write a class with the `Backend` methods
whose constructor is `cls(model_path, *, n_ctx, n_threads)`, and add it to `BACKENDS` in
`runtime/backends.py`. `StopMatcher` and `token_logprob` are shared helpers,
so that every backend stops, streams and reports logprobs the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from supertiny.core.errors import SupertinyError

FinishReason = Literal["stop", "length"]

DeltaCallback = Callable[[str, list[dict[str, Any]]], bool | None]
"""Called with each new piece of text and the logprob entries of the tokens behind it
(empty unless asked for). Returning False asks the backend to stop early."""


class ContextLengthError(SupertinyError, ValueError):
    """The prompt leaves no room for a completion in the model's context."""

    def __init__(self, prompt_tokens: int, n_ctx: int):
        super().__init__(
            f"the prompt is {prompt_tokens} tokens; this model's context is {n_ctx} tokens, "
            "which leaves no room for a completion"
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class PromptError(SupertinyError, ValueError):
    """The chat template refused the conversation (e.g. roles in an order it forbids)."""


class BackendFailure(SupertinyError, RuntimeError):
    """The model runtime itself failed in a way that leaves it unusable (llama.cpp's decode
    returned an error, the torch model's forward pass raised, its scheduler thread is gone).
    The server then reports itself failed (`/health` answers 503 with this message) and refuses
    further requests: restart it. A request the backend refuses (`ContextLengthError`,
    `PromptError`) or a failure confined to one request (its grammar, its callback) is not one."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults are the OpenAI API's: plain temperature + top-p."""

    max_tokens: int | None = None
    """None: until the end of the context."""
    temperature: float = 1.0
    """0 is greedy decoding."""
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k."""
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    token_ids_as_text: bool = False
    """Write logprob tokens as "token_id:<id>" (vLLM's `return_tokens_as_token_ids`)."""


@dataclass
class ChatRequest:
    """One generation: the conversation, the tools the model sees, sampling."""

    messages: list[dict[str, Any]]
    """OpenAI messages with text content; tool-call arguments decoded to dicts."""
    tools: list[dict[str, Any]] | None = None
    """OpenAI tool specs to render into the prompt (None: a prompt without tools)."""
    tool_choice: str = "auto"
    """"auto" | "none" | "required" | a function name. Backends may constrain decoding
    for "required" or a name (the llama.cpp backend samples under a tool-call grammar)."""
    params: SamplingParams = field(default_factory=SamplingParams)
    response_format: dict[str, Any] | None = None
    """None (free text), {"type": "json_object"} or {"type": "json_schema", "schema": {...}}:
    the answer must be JSON (matching the schema). Backends decode under a grammar for it."""
    render_tools: bool = True
    """Show `tools` in the prompt. False for a student trained without them in its prompt
    (`student.tools_in_prompt: false`): the tools still constrain and parse its answer."""


@dataclass
class Generation:
    """What a backend produced for one `ChatRequest`."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[dict[str, Any]] | None = None
    """OpenAI `ChatCompletionTokenLogprob` dicts, one per generated token, if asked."""
    cached_tokens: int = 0
    """Prompt tokens whose KV cache was reused from the previous request."""


class Backend(Protocol):
    """A loaded model that answers chat requests. Safe to call from several threads."""

    name: str
    """Backend name, the key in `BACKENDS`."""
    n_ctx: int
    """Context length in tokens (prompt + completion)."""

    def chat(self, request: ChatRequest, on_delta: DeltaCallback | None = None) -> Generation:
        """Generate one completion; raise `ContextLengthError` or `PromptError` on a
        request that cannot be served, `BackendFailure` when the model runtime broke.
        `on_delta` streams the text as it comes; when it returns False, stop soon (the HTTP
        layer passes one to every request, to stop a generation whose client has gone)."""
        ...

    def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> int:
        """Prompt length in tokens of this conversation as the backend renders it."""
        ...

    def close(self) -> None:
        """Free the model. Safe to call twice."""
        ...


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


class StopMatcher:
    """Cuts generated text at the first stop sequence, holding back text that may be
    the start of one, so that streamed text never contains (part of) a stop sequence."""

    def __init__(self, stops: tuple[str, ...] | list[str]):
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add `piece`; return the text that is now safe to emit. After a stop sequence
        is seen, `stopped` is True and later pieces are ignored."""
        if self.stopped:
            return ""
        text = self._held + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return text[: min(hits)]
        keep = max((_overlap(text, s) for s in self.stops), default=0)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The held-back text, at the end of generation."""
        text, self._held = self._held, ""
        return "" if self.stopped else text


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for k in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:k]):
            return k
    return 0


def token_logprob(
    token: str, token_bytes: bytes, logprob: float, top: list[tuple[str, bytes, float]]
) -> dict[str, Any]:
    """One OpenAI `ChatCompletionTokenLogprob` entry."""
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token_bytes),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(b)} for t, b, lp in top],
    }
