"""Prometheus metrics of `supertiny serve`, at `GET /metrics`.

    curl -s localhost:8000/metrics | grep supertiny_

Every app has its own `CollectorRegistry` (no process-global state, so tests can build many
apps). Series, all labelled with the served `model` and `backend`:

- `supertiny_requests_total{route, status}`: finished HTTP requests;
- `supertiny_request_seconds{route}`: their latency (histogram; a streamed response is timed
  until its headers are sent, its generation by the token counters);
- `supertiny_requests_in_flight`: HTTP requests being answered now (a stream until its end);
- `supertiny_requests_running`, `supertiny_requests_waiting`: chat requests holding an
  admission place, and waiting for one (`serve/admission.py`; the names are vLLM's);
- `supertiny_requests_refused_total{reason}`: chat requests refused before they ran:
  "queue_full" (429) or "backend_failed" (503);
- `supertiny_requests_stopped_total{reason}`: generations stopped early: "disconnected" (the
  client hung up) or "timeout" (the request's deadline passed);
- `supertiny_prompt_tokens_total`, `supertiny_completion_tokens_total`: tokens of finished
  chat completions.

`MetricsMiddleware` is plain ASGI (not Starlette's `BaseHTTPMiddleware`, which buffers the
stream and hides a client's disconnect from the app).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Latency buckets in seconds: from a cached health check to a long CPU generation."""


class Metrics:
    """The counters of one app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str, backend: str):
        self.registry = CollectorRegistry()
        labels = {"model": model, "backend": backend}
        names = list(labels)
        self._labels = labels
        self.requests = Counter(
            "supertiny_requests",
            "Finished HTTP requests.",
            [*names, "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "supertiny_request_seconds",
            "HTTP request latency in seconds.",
            [*names, "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "supertiny_requests_in_flight",
            "Requests being answered.",
            names,
            registry=self.registry,
        ).labels(**labels)
        self.running = Gauge(
            "supertiny_requests_running",
            "Chat requests holding an admission place (generating).",
            names,
            registry=self.registry,
        ).labels(**labels)
        self.waiting = Gauge(
            "supertiny_requests_waiting",
            "Chat requests waiting for an admission place.",
            names,
            registry=self.registry,
        ).labels(**labels)
        self._refused = Counter(
            "supertiny_requests_refused",
            "Chat requests refused before they ran (queue_full: 429, backend_failed: 503).",
            [*names, "reason"],
            registry=self.registry,
        )
        self._stopped = Counter(
            "supertiny_requests_stopped",
            "Generations stopped early (disconnected: the client hung up; timeout).",
            [*names, "reason"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "supertiny_prompt_tokens",
            "Prompt tokens of chat completions.",
            names,
            registry=self.registry,
        ).labels(**labels)
        self.completion_tokens = Counter(
            "supertiny_completion_tokens",
            "Completion tokens of chat completions.",
            names,
            registry=self.registry,
        ).labels(**labels)

    def admission(self, running: int, waiting: int) -> None:
        """The admission counts now (called by `serve/admission.py` on every change)."""
        self.running.set(running)
        self.waiting.set(waiting)

    def refused(self, reason: Literal["queue_full", "backend_failed"]) -> None:
        self._refused.labels(**self._labels, reason=reason).inc()

    def stopped(self, reason: Literal["disconnected", "timeout"]) -> None:
        self._stopped.labels(**self._labels, reason=reason).inc()

    def tokens(self, generations: list[Any]) -> None:
        """Count the tokens of finished generations."""
        self.prompt_tokens.inc(sum(g.prompt_tokens for g in generations))
        self.completion_tokens.inc(sum(g.completion_tokens for g in generations))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: time and count every HTTP request into `metrics`."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics, route = self.metrics, _route(scope["path"])
        labels = {**metrics._labels, "route": route}
        started = time.perf_counter()
        status: int | None = None

        async def send_timed(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                metrics.latency.labels(**labels).observe(time.perf_counter() - started)
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_timed)
        finally:
            metrics.in_flight.dec()
            if status is None:  # an exception before any answer: the outer layer sends a 500
                status = 500
                metrics.latency.labels(**labels).observe(time.perf_counter() - started)
            metrics.requests.labels(**labels, status=str(status)).inc()


def _route(path: str) -> str:
    """A bounded label: known routes as is, anything else "other" (no label per bad URL)."""
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    if path in ("/v1/chat/completions", "/v1/models", "/health", "/metrics"):
        return path
    return "other"
