"""The chat-completion flow of `supertiny serve`: check, admit, generate, answer.

`ChatService.answer` is `POST /v1/chat/completions` (`serve/app.py` routes it here):

1. a server whose backend broke (`BackendFailure`) refuses at once: 503, code "backend_failed";
2. if every running place is taken and the queue is full, it is refused now (429), before its
   body is read or parsed: under overload a refusal should cost next to nothing;
3. the body is read up to `limits.max_body_bytes` (`read_body`: 400 "max_body_bytes" as soon
   as it is longer, from Content-Length or while it arrives), then, in a worker thread so that
   `/health` stays prompt, parsed (`parse_body`), held to the other `Limits` and normalised
   (`protocol.to_backend_request`), and rewritten by the task profile, if any: a bad request is
   answered 400 without waiting for a place;
4. admission (`serve/admission.py`) gives it a slot, or queues it, or refuses it (429 with
   `Retry-After`, code "max_queue");
5. the backend runs in the slot's worker thread with `slot.keep_going` as its `on_delta`, so
   that a client who hangs up (499 in `/metrics`) or a passed deadline (504, code
   "request_timeout_s") stops the generation at its next token, streamed or not;
6. the answer: a `chat.completion`, or server-sent `chat.completion.chunk` events (without
   tools token by token, with tools in one delta at the end, since the parser needs the whole
   text); in a stream, whose status is already 200, an error arrives as a last
   `{"error": ...}` event.

Exercised by `python -m pytest tests/unit/serve/test_serve.py tests/unit/serve/test_serve_limits.py -q`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from supertiny.runtime.backend import (
    Backend,
    BackendFailure,
    ChatRequest,
    ContextLengthError,
    Generation,
)
from supertiny.serve.admission import (
    Admission,
    ClientGone,
    Deadline,
    DeadlineExceeded,
    QueueFull,
    Slot,
)
from supertiny.serve.errors import (
    APIError,
    context_error,
    error_for,
    unknown_model,
    validation_error,
)
from supertiny.serve.limits import Limits
from supertiny.serve.metrics import Metrics
from supertiny.serve.profile import TaskProfile
from supertiny.serve.protocol import ChatCompletionRequest, to_backend_request
from supertiny.serve.responses import (
    Meta,
    assistant_message,
    choice_delta,
    chunk,
    completion_body,
    finish_reason,
    usage,
)

log = logging.getLogger(__name__)


class ChatService:
    """`POST /v1/chat/completions`: check, admit, generate, answer; and the backend's health."""

    def __init__(
        self,
        backend: Backend,
        model_name: str,
        limits: Limits,
        metrics: Metrics,
        strict_model: bool = False,
        profile: TaskProfile | None = None,
    ):
        self.backend = backend
        self.model_name = model_name
        self.limits = limits
        self.metrics = metrics
        self.strict_model = strict_model
        self.profile = profile
        self.admission = Admission(limits, metrics)
        self.failure: str | None = None
        """Why the backend is unusable (after a `BackendFailure`), else None."""

    async def answer(self, http: Request) -> Any:
        """The response to one chat-completions request (an `APIError` for a refusal)."""
        deadline = Deadline(self.limits.request_timeout_s)
        if self.failure is not None:
            self.metrics.refused("backend_failed")
            raise self._failed_error()
        self._refuse_if_full()  # before any work: a refusal must be cheap under overload
        try:  # a client that sends its body slowly is held to the deadline too
            raw = await asyncio.wait_for(
                read_body(http, self.limits.max_body_bytes), deadline.remaining()
            )
        except TimeoutError:
            raise self._given_up(DeadlineExceeded(), deadline) from None
        body, request = await run_in_threadpool(self.parse, raw)
        slot = await self.admit(http, deadline)
        if not body.stream:
            with contextlib.closing(slot):
                generations = [
                    await self.call(slot, self.backend.chat, _nth(request, i), slot.keep_going)
                    for i in range(body.n)
                ]
            self.metrics.tokens(generations)
            meta = Meta(model=self.model_name)
            return completion_body(meta, generations, tools_active=request.tools is not None)
        try:
            return await self.open_stream(slot, body, request)
        except BaseException:
            slot.close()
            raise

    # ---- the steps ----------------------------------------------------------------------

    def parse(self, raw: bytes) -> tuple[ChatCompletionRequest, ChatRequest]:
        """The validated body and the backend request (blocking: run in a worker thread)."""
        body = parse_body(raw, self.limits)
        if self.strict_model and body.model not in (None, self.model_name):
            raise unknown_model(body.model, self.model_name)
        try:
            request = to_backend_request(body, self.backend.n_ctx, self.limits)
        except ValueError as exc:  # LimitError, RequestError
            raise error_for(exc) from exc
        if self.profile is not None:
            request = self.profile.apply(request, tool_choice_given=body.tool_choice is not None)
        return body, request

    def _refuse_if_full(self) -> None:
        try:
            self.admission.check_room()
        except QueueFull as exc:
            self.metrics.refused("queue_full")
            raise self._busy_error(exc) from None

    async def admit(self, http: Request, deadline: Deadline) -> Slot:
        try:
            return await self.admission.enter(http, deadline)
        except QueueFull as exc:  # it filled up while this request was parsed
            self.metrics.refused("queue_full")
            raise self._busy_error(exc) from None
        except (ClientGone, DeadlineExceeded) as exc:
            raise self._given_up(exc, deadline) from None

    async def call(self, slot: Slot, fn, *args) -> Any:
        """`fn(*args)` in the slot's worker, its errors as API errors."""
        try:
            return await slot.run(fn, *args)
        except (ClientGone, DeadlineExceeded) as exc:
            raise self._given_up(exc, slot.deadline) from None
        except Exception as exc:
            raise self._backend_error(exc) from exc

    async def open_stream(
        self, slot: Slot, body: ChatCompletionRequest, request: ChatRequest
    ) -> StreamingResponse:
        # Check the prompt length now: once streaming starts, the status is 200.
        prompt_tokens = await self.call(
            slot, self.backend.count_tokens, request.messages, request.tools
        )
        if prompt_tokens >= self.backend.n_ctx:
            raise context_error(ContextLengthError(prompt_tokens, self.backend.n_ctx))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            self.stream(slot, request, body.n, Meta(model=self.model_name), include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            # also runs when the client hangs up before the first chunk
            background=BackgroundTask(slot.close),
        )

    async def stream(
        self, slot: Slot, request: ChatRequest, n: int, meta: Meta, include_usage: bool
    ) -> AsyncIterator[str]:
        """Server-sent events for `n` choices, generated one after the other."""
        tools_active = request.tools is not None
        generations: list[Generation] = []
        try:
            for index in range(n):
                yield chunk(meta, [choice_delta(index, {"role": "assistant", "content": ""})])
                events = self._choice_events(slot, request, index, meta, tools_active)
                async for event in events:
                    if isinstance(event, Generation):
                        generations.append(event)
                    else:
                        yield event
                if len(generations) <= index:  # the choice ended in an error event
                    return
            self.metrics.tokens(generations)
            if include_usage:
                yield chunk(meta, [], usage(generations))
            yield "data: [DONE]\n\n"
        except DeadlineExceeded as exc:
            slot.stopped.set()
            yield _event(self._given_up(exc, slot.deadline))
        except asyncio.CancelledError:  # the client hung up (Starlette cancels the stream)
            self.metrics.stopped("disconnected")
            raise
        finally:
            slot.close()

    async def _choice_events(
        self, slot: Slot, request: ChatRequest, index: int, meta: Meta, tools_active: bool
    ) -> AsyncIterator[str | Generation]:
        """The chunks of one choice, then its `Generation` (or an error event instead)."""
        loop = asyncio.get_running_loop()
        wants_logprobs = request.params.logprobs
        queue: asyncio.Queue = asyncio.Queue()

        def on_delta(text: str, logprobs: list) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, (text, logprobs))
            return slot.keep_going()

        # With tools the answer is sent whole at the end; the callback then only stops it.
        callback = slot.keep_going if tools_active else on_delta
        future = slot.start(self.backend.chat, _nth(request, index), callback)
        future.add_done_callback(lambda _: queue.put_nowait(None))
        while (item := await _next(queue, slot.deadline)) is not None:
            text, logprobs = item
            lp = logprobs if wants_logprobs else None
            yield chunk(meta, [choice_delta(index, {"content": text}, lp)])
        try:
            gen = future.result()
        except Exception as exc:  # the status is already 200: report in the stream
            yield _event(self._backend_error(exc))
            return
        message = assistant_message(gen.text, tools_active)
        if tools_active:
            delta = {"content": message["content"]}
            if message.get("tool_calls"):
                delta["tool_calls"] = [
                    {"index": i, **call} for i, call in enumerate(message["tool_calls"])
                ]
            yield chunk(meta, [choice_delta(index, delta, gen.logprobs)])
        finish = finish_reason(gen.finish_reason, message)
        yield chunk(meta, [choice_delta(index, {}, finish=finish)])
        yield gen

    # ---- errors -------------------------------------------------------------------------

    def _backend_error(self, exc: Exception) -> APIError:
        if not isinstance(exc, BackendFailure):
            return error_for(exc)
        if self.failure is None:
            self.failure = str(exc)
            log.error("the backend failed; /health now reports it: %s", exc, exc_info=exc)
        return self._failed_error()

    def _failed_error(self) -> APIError:
        return APIError(
            503,
            f"the backend failed and cannot serve requests until the server is restarted: "
            f"{self.failure}",
            "server_error",
            code="backend_failed",
        )

    def _busy_error(self, exc: QueueFull) -> APIError:
        wait = self.limits.retry_after_s
        return APIError(
            429,
            f"the server is busy: {exc.running} requests running and {exc.waiting} waiting, "
            f"the most it queues (max_queue {self.limits.max_queue}); retry after {wait} s",
            "rate_limit_error",
            code="max_queue",
            headers={"Retry-After": str(wait)},
        )

    def _given_up(self, exc: ClientGone | DeadlineExceeded, deadline: Deadline) -> APIError:
        if isinstance(exc, ClientGone):
            self.metrics.stopped("disconnected")
            # nobody reads this answer; 499 (nginx's "client closed request") shows in /metrics
            return APIError(499, "the client closed the connection", code="client_disconnected")
        self.metrics.stopped("timeout")
        return APIError(
            504,
            f"the request did not finish within the server's request timeout of "
            f"{deadline.seconds:g} s (request_timeout_s) and was stopped after "
            f"{deadline.waited():.1f} s",
            "timeout_error",
            code="request_timeout_s",
        )


# ---- helpers ----------------------------------------------------------------------------


async def read_body(http: Request, max_bytes: int) -> bytes:
    """The request body, refused (400, code "max_body_bytes") as soon as it is known to be
    longer than `max_bytes`: from its Content-Length, or while it arrives."""
    declared = http.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(f"{int(declared)} bytes", max_bytes)
    chunks, size = [], 0
    try:
        async for piece in http.stream():
            size += len(piece)
            if size > max_bytes:
                raise _too_large(f"more than {max_bytes} bytes", max_bytes)
            chunks.append(piece)
    except ClientDisconnect:
        raise APIError(
            499, "the client closed the connection", code="client_disconnected"
        ) from None
    return b"".join(chunks)


def _too_large(size: str, max_bytes: int) -> APIError:
    return APIError(
        400,
        f"the request body is {size}; at most {max_bytes} bytes are allowed (max_body_bytes)",
        code="max_body_bytes",
    )


def parse_body(raw: bytes, limits: Limits) -> ChatCompletionRequest:
    """The body as a `ChatCompletionRequest`, or a 400 naming the first invalid field.

    pydantic's JSON parser (Rust) refuses nesting deeper than about 200 levels with
    "recursion limit exceeded": no request needs that, so it is answered as what it must be,
    a schema too deep (code "max_schema_depth")."""
    try:
        return ChatCompletionRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        detail = str((errors[0].get("ctx") or {}).get("error", "")) if errors else ""
        if errors and errors[0]["type"] == "json_invalid" and "recursion limit" in detail:
            raise APIError(
                400,
                f"the request body nests JSON more deeply than its parser allows ({detail}); "
                f"a schema may nest at most {limits.max_schema_depth} levels (max_schema_depth)",
                code="max_schema_depth",
            ) from None
        raise validation_error(errors) from None


async def _next(queue: asyncio.Queue, deadline: Deadline) -> Any:
    """The next item of a stream's queue; `DeadlineExceeded` if the deadline comes first."""
    try:
        return await asyncio.wait_for(queue.get(), timeout=deadline.remaining())
    except TimeoutError:
        raise DeadlineExceeded() from None


def _event(error: APIError) -> str:
    return f"data: {json.dumps(error.body())}\n\n"


def _nth(request: ChatRequest, index: int) -> ChatRequest:
    """The request for choice `index`: a different seed per choice when one is given."""
    seed = request.params.seed
    if index == 0 or seed is None:
        return request
    return replace(request, params=replace(request.params, seed=seed + index))
