"""A scripted, misbehaving OpenAI-compatible server for tests.

Runs `http.server` on 127.0.0.1 (ephemeral port) in a background thread; it starts
in milliseconds and shuts down cleanly, closing hung and idle connections. Each
POST (any path; clients use `/v1/chat/completions`) consumes the next behaviour of
the script; after the script, `default` answers. `GET /v1/models` and `GET /health`
answer without consuming the script. Every POST body is recorded.

    from tests.scripted_server import drop, garbage, hang, ok, scripted_server, status, tool_call

    with scripted_server([status(500), status(429, retry_after=0.2), garbage(), ok("hi")]) as srv:
        ...  # client at srv.url ("http://127.0.0.1:PORT/v1")
        assert len(srv.requests) == 4 and srv.requests[-1]["model"] == "m"

Behaviours (each takes `delay=` seconds to wait before acting):
- `ok(message=None, *, tool_calls=None, finish_reason=None, prompt_tokens=10,
  completion_tokens=5, usage=True, logprobs=None)`: a proper chat completion.
  `message` is a str (the content) or an assistant-message dict;
  `tool_call(name, arguments)` builds one OpenAI-shape tool call.
- `status(code, message=None, *, retry_after=None)`: an OpenAI-style error body
  `{"error": {"message", "type", "code"}}`, with a `Retry-After` header if given.
- `garbage(body=...)`: 200 with a body that is not JSON.
- `raw(body, status=200, headers=None)`: any body (dict -> JSON, str/bytes as is),
  e.g. `raw({"object": "chat.completion"})` for JSON that lacks `choices`.
- `hang(seconds)`: say nothing for `seconds`, then close the connection.
- `drop()`: close the connection without a response.
- any callable `f(body: dict) -> behaviour`: decide from the request (echo, route).

Exercised by `python -m pytest tests/unit/label/test_label_client.py -q`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# ---- behaviours -------------------------------------------------------------------


@dataclass(frozen=True)
class Respond:
    """Send `status` with `body` (dict -> JSON; callable(request_body) -> dict)."""

    status: int
    body: Any
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Drop:
    """Wait `delay` seconds (interrupted by shutdown), then close without a response."""

    delay: float = 0.0


Behaviour = Respond | Drop | Callable[[dict], "Behaviour"]


def tool_call(name: str, arguments: dict | str, id: str | None = None) -> dict:
    """One tool call in OpenAI shape (`arguments` serialised to a JSON string)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": id or f"call_{name}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


_ids = itertools.count(1)


def ok(
    message: str | dict | None = None,
    *,
    tool_calls: list[dict] | None = None,
    finish_reason: str | None = None,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    usage: bool = True,
    logprobs: list | None = None,
    delay: float = 0.0,
) -> Respond:
    """A chat completion whose `model` echoes the request's."""
    if isinstance(message, dict):
        msg = {"role": "assistant", **message}
    elif message is None:
        msg = {"role": "assistant", "content": None if tool_calls else "ok"}
    else:
        msg = {"role": "assistant", "content": message}
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
        msg.setdefault("content", None)
    reason = finish_reason or ("tool_calls" if msg.get("tool_calls") else "stop")

    def render(request: dict) -> dict:
        choice: dict[str, Any] = {"index": 0, "message": msg, "finish_reason": reason}
        if logprobs is not None:
            choice["logprobs"] = {"content": logprobs}
        out: dict[str, Any] = {
            "id": f"chatcmpl-{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "scripted") if isinstance(request, dict) else "scripted",
            "choices": [choice],
        }
        if usage:
            out["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return out

    return Respond(200, render, delay=delay)


def status(
    code: int,
    message: str | None = None,
    *,
    retry_after: float | str | None = None,
    delay: float = 0.0,
) -> Respond:
    """An error response in the OpenAI shape, optionally with `Retry-After`."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    body = {"error": {"message": message or f"scripted {code}", "type": "scripted", "code": code}}
    return Respond(code, body, headers, delay)


def garbage(body: str = "<html><body>502 Bad Gateway</body></html>", delay: float = 0.0) -> Respond:
    """HTTP 200 whose body is not JSON."""
    return Respond(200, body, {"Content-Type": "text/html"}, delay)


def raw(body: Any, status: int = 200, headers: dict | None = None, delay: float = 0.0) -> Respond:
    """Any status and body: a dict is sent as JSON, str/bytes as they are."""
    return Respond(status, body, dict(headers or {}), delay)


def hang(seconds: float) -> Drop:
    """Say nothing for `seconds` (long enough to trip a client timeout), then close."""
    return Drop(seconds)


def drop(delay: float = 0.0) -> Drop:
    """Close the connection without sending a response."""
    return Drop(delay)


# ---- server -----------------------------------------------------------------------


class ScriptedServer:
    """The running server: `.url` (the /v1 base), `.requests` (POST bodies, parsed JSON
    or the raw text), `.headers` (their headers, lower-case names), `.paths`,
    `.max_in_flight` (most POSTs handled at once)."""

    def __init__(self, script: Iterable[Behaviour] = (), default: Behaviour | None = None):
        self._script: Iterator[Behaviour] = iter(script)
        self.default: Behaviour = default if default is not None else ok()
        self.requests: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # wake handlers blocked on idle keep-alive connections
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def _next(self, body: Any) -> Respond | Drop:
        with self._lock:
            behaviour = next(self._script, None)
        if behaviour is None:
            behaviour = self.default
        while callable(behaviour) and not isinstance(behaviour, Respond | Drop):
            behaviour = behaviour(body)
        return behaviour

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _make_handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._sockets.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._sockets.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes, headers: dict) -> None:
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                data = {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
                self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})
            elif self.path.rstrip("/") == "/health":
                self._send(200, b'{"status":"ok"}', {"Content-Type": "application/json"})
            else:
                self._send(404, b'{"error":{"message":"not found"}}', {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            text = self.rfile.read(length).decode("utf-8", errors="replace")
            try:
                body: Any = json.loads(text)
            except json.JSONDecodeError:
                body = text
            with server._lock:
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                server.paths.append(self.path)
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._act(server._next(body), body)
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _act(self, behaviour: Respond | Drop, body: Any) -> None:
            server._wait(behaviour.delay)
            if isinstance(behaviour, Drop) or server._stopping.is_set():
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            payload = behaviour.body(body) if callable(behaviour.body) else behaviour.body
            headers = dict(behaviour.headers)
            if isinstance(payload, dict | list):
                payload = json.dumps(payload).encode()
                headers.setdefault("Content-Type", "application/json")
            elif isinstance(payload, str):
                payload = payload.encode()
            with contextlib.suppress(OSError):
                self._send(behaviour.status, payload, headers)

    return Handler


@contextlib.contextmanager
def scripted_server(
    script: Iterable[Behaviour] = (), default: Behaviour | None = None
) -> Iterator[ScriptedServer]:
    """Run a `ScriptedServer` for the duration of a `with` block."""
    server = ScriptedServer(script, default).start()
    try:
        yield server
    finally:
        server.stop()
