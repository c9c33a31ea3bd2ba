"""OpenAI-style errors of `supertiny serve`: `{"error": {"message", "type", "param", "code"}}`.

`APIError` is an error answered with such a body (and optional headers, e.g. `Retry-After`);
`error_for` maps what a backend or the request checks raise to one; `install_error_handlers`
makes every error of the app (a bad field, an unknown route, a crash) answer this way.
Exercised by `python -m pytest tests/unit/serve/test_serve.py tests/unit/serve/test_serve_limits.py -q`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from supertiny.runtime.backend import ContextLengthError, PromptError
from supertiny.serve.limits import LimitError
from supertiny.serve.protocol import FIELD_NAMES, RequestError

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
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_for(exc: Exception) -> APIError:
    """The API error for what a request check or a backend call raised (unknown: a 500)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, LimitError):
        return APIError(400, exc.message, param=exc.param, code=exc.limit)
    if isinstance(exc, RequestError):
        return APIError(400, exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, ContextLengthError):
        return context_error(exc)
    if isinstance(exc, PromptError):
        return APIError(400, str(exc), param="messages")
    log.exception("backend failure", exc_info=exc)
    return APIError(500, f"backend failure: {type(exc).__name__}: {exc}", "server_error")


def context_error(exc: ContextLengthError) -> APIError:
    return APIError(400, str(exc), param="messages", code="context_length_exceeded")


def unknown_model(name: str | None, served: str) -> APIError:
    return APIError(
        404,
        f"the model '{name}' does not exist; this server serves '{served}'",
        param="model",
        code="model_not_found",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return APIError(exc.status_code, str(exc.detail), kind).response()

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        return error_for(exc).response()


def validation_error(errors: list[dict]) -> APIError:
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
