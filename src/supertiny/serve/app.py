"""The HTTP layer of `supertiny serve`: an OpenAI-compatible FastAPI app over a backend.

    python -m supertiny.serve --model student --port 8000
    curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \\
         -d '{"model": "student", "messages": [{"role": "user", "content": "hi"}]}'

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{id}`,
`GET /health` (`{"status": "ok"}`; the app exists only once the model is loaded; 503
`{"status": "failed", "reason": ...}` once the backend broke, see below), `GET /metrics`
(Prometheus text: requests by route and status, latency, requests in flight, running,
waiting, refused and stopped, prompt and completion tokens; see `serve/metrics.py`).

What the app does for every backend (`runtime/backend.py`), in order (the steps of the chat
route are `ChatService` in `serve/chat.py`):
- with an API key (`api_key`, `serve/auth.py`), a request without `Authorization: Bearer KEY`
  is a 401 (`/health` and `/metrics` stay open);
- the body is read up to `limits.max_body_bytes` and then validated (`serve/protocol.py`) and
  held to the other `Limits` (`serve/limits.py`: messages, tools, schema size, depth and
  repetition bounds), in a worker thread, so that `/health` stays prompt. Errors are
  OpenAI-style `{"error": {"message", "type", "param", "code"}}` bodies: 400 for malformed
  JSON, an invalid field, a request over a limit (code: the limit's name, e.g.
  "max_schema_repeat") or a prompt longer than the context (code `context_length_exceeded`),
  404 for an unknown route or, with `strict_model`, a model name other than the served one
  (by default any name is accepted, because every OpenAI client sends one and the server has
  one model), 500 for a backend failure (logged; the server stays up);
- admission (`serve/admission.py`): `limits.max_concurrency` requests run at once, up to
  `limits.max_queue` wait, any more is a 429 with `Retry-After` (code "max_queue"); a
  request not answered within `limits.request_timeout_s` of its arrival is stopped and
  answered 504 (code "request_timeout_s"); a client that hangs up, while its request waits or
  while it generates, streamed or not, stops its generation at the next token;
- the blocking backend runs in worker threads, so `/health` answers while a generation runs;
- a `BackendFailure` (the runtime broke: a llama.cpp decode error, a torch forward failure)
  is a 503 (code "backend_failed"), marks the server failed for `/health`, and every later
  request is refused with the same 503: restart the server;
- tool calls are parsed out of the generated text with `supertiny.core.toolcalls.parse` when the
  request has tools (and `tool_choice` is not "none"): calls become `message.tool_calls`
  (arguments as a JSON string), leftover text the `content`, and `finish_reason` is
  "tool_calls" (unless the output was cut: "length");
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
  `stream_options.include_usage` adds a final usage chunk. Once streaming has started the
  status is 200, so a failure or a passed deadline arrives as a last `{"error": ...}` event.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from supertiny.runtime.backend import Backend
from supertiny.serve.auth import BearerAuth
from supertiny.serve.chat import ChatService
from supertiny.serve.errors import install_error_handlers, unknown_model
from supertiny.serve.limits import DEFAULT_LIMITS, Limits
from supertiny.serve.metrics import Metrics, MetricsMiddleware
from supertiny.serve.profile import TaskProfile


def create_app(
    backend: Backend,
    model_name: str,
    *,
    strict_model: bool = False,
    profile: TaskProfile | None = None,
    limits: Limits = DEFAULT_LIMITS,
    api_key: str | None = None,
) -> FastAPI:
    """The FastAPI app serving `backend` under the model id `model_name`; with `profile`,
    every request is rewritten into a task's student format (`serve/profile.py`); `limits`
    bound what it admits (`serve/limits.py`); with `api_key`, `/v1/*` needs that Bearer key."""
    metrics = Metrics(model_name, backend.name)
    chats = ChatService(backend, model_name, limits, metrics, strict_model, profile)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        chats.admission.close()

    app = FastAPI(title="supertiny serve", docs_url=None, redoc_url=None, lifespan=lifespan)
    created = int(time.time())
    install_error_handlers(app)
    if api_key:
        app.add_middleware(BearerAuth, key=api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts 401s too

    @app.get("/health")
    async def health() -> Response:
        if chats.failure is not None:
            return JSONResponse({"status": "failed", "reason": chats.failure}, status_code=503)
        return JSONResponse({"status": "ok"})

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
            raise unknown_model(model_id, model_name)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(http: Request) -> Any:
        return await chats.answer(http)

    return app
