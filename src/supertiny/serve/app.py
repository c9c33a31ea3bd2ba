"""The HTTP layer of `supertiny serve`: an OpenAI-compatible FastAPI app over a backend.

    python -m supertiny.serve --model student --port 8000
    curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \\
         -d '{"model": "student", "messages": [{"role": "user", "content": "hi"}]}'

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{id}`,
`GET /health` (`{"status": "ok"}`; the app exists only once the model is loaded),
`GET /metrics` (Prometheus text: requests by route and status, latency histogram,
requests in flight, prompt and completion tokens; see `serve/metrics.py`).

What the app does for every backend (`serve/backend.py`):
- validates the body (`serve/protocol.py`); errors are OpenAI-style
  `{"error": {"message", "type", "param", "code"}}` bodies: 400 for malformed JSON,
  an invalid field or a prompt longer than the context (code
  `context_length_exceeded`), 404 for an unknown route or, with `strict_model`, a
  model name other than the served one (by default any name is accepted, because
  every OpenAI client sends one and the server has one model), 500 for a backend
  failure (logged; the server stays up);
- runs the blocking backend in a worker thread, so `/health` answers while a
  generation runs (the backend serialises generations itself);
- parses tool calls out of the generated text with `supertiny.toolcalls.parse`
  when the request has tools (and `tool_choice` is not "none"): calls become
  `message.tool_calls` (arguments as a JSON string), leftover text the `content`,
  and `finish_reason` is "tool_calls" (unless the output was cut: "length");
- `max_tokens` (or `max_completion_tokens`) above the context is a 400; below it but
  beyond what the prompt leaves free, the completion is cut at the end of the
  context (`finish_reason` "length"), as llama.cpp's own server does;
- `n > 1` runs the backend n times (seed, if given, + choice index);
- `response_format` (`json_object`, `json_schema`) and forced tool calls are decoded under
  a grammar by the backends that support it (llama.cpp: GBNF; torch: xgrammar), and under
  `tool_choice` "auto" a call the model opens is finished under the tool-call grammar;
- with a task profile (`supertiny serve --task TASK.yaml`) every request is rewritten into
  the student's trained format first (`serve/profile.py`);
- `stream: true` sends `chat.completion.chunk` server-sent events. Without tools,
  content arrives token by token. With tools, the whole answer is sent in one delta
  at the end (the parser needs the complete text to tell a call from content).
  `stream_options.include_usage` adds a final usage chunk. A client that hangs up
  stops the generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from supertiny.serve.backend import (
    Backend,
    ChatRequest,
    ContextLengthError,
    Generation,
    PromptError,
)
from supertiny.serve.metrics import Metrics
from supertiny.serve.profile import TaskProfile
from supertiny.serve.protocol import (
    FIELD_NAMES,
    ChatCompletionRequest,
    RequestError,
    to_backend_request,
)
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


class APIError(Exception):
    """An error answered with an OpenAI-style body."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def create_app(
    backend: Backend,
    model_name: str,
    *,
    strict_model: bool = False,
    profile: TaskProfile | None = None,
) -> FastAPI:
    """The FastAPI app serving `backend` under the model id `model_name`; with `profile`,
    every request is rewritten into a task's student format (`serve/profile.py`)."""
    app = FastAPI(title="supertiny serve", docs_url=None, redoc_url=None)
    created = int(time.time())
    metrics = Metrics(model_name, backend.name)
    _install_error_handlers(app)

    @app.middleware("http")
    async def count(request: Request, call_next):
        return await metrics.observe(request, call_next)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    def model_card() -> dict[str, Any]:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "supertiny"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise _unknown_model(model_id, model_name)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        if strict_model and body.model not in (None, model_name):
            raise _unknown_model(body.model, model_name)
        request = _backend_request(body, backend.n_ctx)
        if profile is not None:
            request = profile.apply(request, tool_choice_given=body.tool_choice is not None)
        meta = Meta(model=model_name)
        if body.stream:
            # Check the prompt length now: once streaming starts, the status is 200.
            prompt_tokens = await _call(backend.count_tokens, request.messages, request.tools)
            if prompt_tokens >= backend.n_ctx:
                raise _context_error(ContextLengthError(prompt_tokens, backend.n_ctx))
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _stream(backend, request, body.n, meta, include_usage, metrics),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        generations = [await _call(backend.chat, _nth(request, i)) for i in range(body.n)]
        metrics.tokens(generations)
        return completion_body(meta, generations, tools_active=request.tools is not None)

    return app


# ---- streaming --------------------------------------------------------------------------


async def _stream(
    backend: Backend,
    request: ChatRequest,
    n: int,
    meta: Meta,
    include_usage: bool,
    metrics: Metrics,
) -> AsyncIterator[str]:
    """Server-sent events for `n` choices, generated one after the other."""
    tools_active = request.tools is not None
    wants_logprobs = request.params.logprobs
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    generations: list[Generation] = []
    try:
        for index in range(n):
            yield chunk(meta, [choice_delta(index, {"role": "assistant", "content": ""})])
            queue: asyncio.Queue = asyncio.Queue()

            def on_delta(text: str, logprobs: list, queue: asyncio.Queue = queue) -> bool:
                loop.call_soon_threadsafe(queue.put_nowait, (text, logprobs))
                return not cancel.is_set()

            future = loop.run_in_executor(
                None, backend.chat, _nth(request, index), None if tools_active else on_delta
            )
            future.add_done_callback(lambda _, queue=queue: queue.put_nowait(None))
            while (item := await queue.get()) is not None:
                text, logprobs = item
                yield chunk(
                    meta,
                    [choice_delta(index, {"content": text}, logprobs if wants_logprobs else None)],
                )
            try:
                gen = future.result()
            except Exception as exc:  # the status is already 200: report in the stream
                yield f"data: {json.dumps(_error_for(exc).body())}\n\n"
                return
            generations.append(gen)
            message = assistant_message(gen.text, tools_active)
            if tools_active:
                delta = {"content": message["content"]}
                if message.get("tool_calls"):
                    delta["tool_calls"] = [
                        {"index": i, **call} for i, call in enumerate(message["tool_calls"])
                    ]
                yield chunk(meta, [choice_delta(index, delta, gen.logprobs)])
            yield chunk(
                meta, [choice_delta(index, {}, finish=finish_reason(gen.finish_reason, message))]
            )
        metrics.tokens(generations)
        if include_usage:
            yield chunk(meta, [], usage(generations))
        yield "data: [DONE]\n\n"
    finally:
        cancel.set()


# ---- helpers ----------------------------------------------------------------------------


async def _call(fn, *args):
    """Run a blocking backend call in a worker thread, mapping its errors to API errors."""
    try:
        return await run_in_threadpool(fn, *args)
    except Exception as exc:
        raise _error_for(exc) from exc


def _error_for(exc: Exception) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextLengthError):
        return _context_error(exc)
    if isinstance(exc, PromptError):
        return APIError(400, str(exc), param="messages")
    log.exception("backend failure", exc_info=exc)
    return APIError(500, f"backend failure: {type(exc).__name__}: {exc}", "server_error")


def _context_error(exc: ContextLengthError) -> APIError:
    return APIError(400, str(exc), param="messages", code="context_length_exceeded")


def _unknown_model(name: str | None, served: str) -> APIError:
    return APIError(
        404,
        f"the model '{name}' does not exist; this server serves '{served}'",
        param="model",
        code="model_not_found",
    )


def _backend_request(body: ChatCompletionRequest, n_ctx: int) -> ChatRequest:
    try:
        return to_backend_request(body, n_ctx)
    except RequestError as exc:
        raise APIError(400, exc.message, param=exc.param, code=exc.code) from exc


def _nth(request: ChatRequest, index: int) -> ChatRequest:
    """The request for choice `index`: a different seed per choice when one is given."""
    seed = request.params.seed
    if index == 0 or seed is None:
        return request
    return replace(request, params=replace(request.params, seed=seed + index))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_error(exc.errors()).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            APIError(exc.status_code, str(exc.detail), kind).body(), status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        error = _error_for(exc)
        return JSONResponse(error.body(), status_code=error.status)


def _validation_error(errors: list[dict]) -> APIError:
    """One 400 naming the first invalid field (e.g. `max_tokens`, `messages[0].role`)."""
    if not errors:
        return APIError(400, "invalid request body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error") or first.get("msg")
        return APIError(400, f"malformed JSON body: {detail}", code="invalid_json")
    loc = [p for p in first.get("loc", ()) if p != "body"]
    param = _param(loc) or None
    if first.get("type") == "missing" and param:
        message = f"missing required field '{param}'"
    elif param:
        message = f"invalid '{param}': {first.get('msg')}"
    else:
        message = f"invalid request body: {first.get('msg')}"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return APIError(400, message, param=param)


def _param(loc: list) -> str:
    """`["messages", 0, "role"]` -> "messages[0].role"; stops at pydantic's union tags."""
    out = ""
    for part in loc:
        if not isinstance(part, int) and part not in FIELD_NAMES:
            break
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out
