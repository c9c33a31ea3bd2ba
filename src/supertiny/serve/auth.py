"""The API key of `supertiny serve`: Bearer authentication, as vLLM and llama.cpp's server do it.

    supertiny serve --model student --api-key "$KEY"       # or SUPERTINY_API_KEY=... in the env
    curl localhost:8000/v1/models -H "Authorization: Bearer $KEY"
    openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY)   # sends that header

With a key, every route but `OPEN_PATHS` (the `/v1/*` API, and unknown paths too, so that a
caller without the key learns nothing about the routes) needs `Authorization: Bearer KEY`.
Anything else is a 401 with an OpenAI-style body (code "invalid_api_key", as OpenAI answers a
wrong key; the official clients raise `openai.AuthenticationError`) and `WWW-Authenticate:
Bearer`. The key is compared with `hmac.compare_digest` (time independent of where the keys
differ) and never logged. `/health` and `/metrics` stay open, for load balancers and
Prometheus.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.responses import JSONResponse

OPEN_PATHS = frozenset({"/health", "/metrics"})
"""Paths answered without the key."""
ENV_VAR = "SUPERTINY_API_KEY"
"""The environment variable `supertiny serve` reads the key from when `--api-key` is not given."""


class BearerAuth:
    """ASGI middleware: 401 for a request without `Authorization: Bearer <key>`."""

    def __init__(self, app: Any, key: str):
        if not key:
            raise ValueError("the API key must not be empty")
        self.app = app
        self._key = key.encode("utf-8")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and not self._valid(scope):
            await _unauthorized()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _valid(self, scope: dict) -> bool:
        given = bearer_token(dict(scope.get("headers") or ()).get(b"authorization", b""))
        return given is not None and hmac.compare_digest(given, self._key)


def bearer_token(header: bytes) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized() -> JSONResponse:
    body = {
        "error": {
            "message": "missing or incorrect API key: send it as 'Authorization: Bearer <key>'",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
