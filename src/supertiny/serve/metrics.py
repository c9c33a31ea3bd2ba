"""Prometheus metrics of `supertiny serve`, at `GET /metrics`.

    curl -s localhost:8000/metrics | grep supertiny_

Every app has its own `CollectorRegistry` (no process-global state, so tests can build many
apps). Series, all labelled with the served `model` and `backend`:

- `supertiny_requests_total{route, status}`: finished HTTP requests;
- `supertiny_request_seconds{route}`: their latency (histogram; a streamed response is timed
  until its headers are sent, its generation by the token counters);
- `supertiny_requests_in_flight`: requests being answered now;
- `supertiny_prompt_tokens_total`, `supertiny_completion_tokens_total`: tokens of finished
  chat completions.
"""

from __future__ import annotations

import time
from typing import Any

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

    async def observe(self, request: Any, call_next: Any) -> Any:
        """Starlette middleware body: time and count one request."""
        route = _route(request.url.path)
        started = time.perf_counter()
        self.in_flight.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            self.in_flight.dec()
            self.latency.labels(**self._labels, route=route).observe(time.perf_counter() - started)
            self.requests.labels(**self._labels, route=route, status=str(status)).inc()

    def tokens(self, generations: list[Any]) -> None:
        """Count the tokens of finished generations."""
        self.prompt_tokens.inc(sum(g.prompt_tokens for g in generations))
        self.completion_tokens.inc(sum(g.completion_tokens for g in generations))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _route(path: str) -> str:
    """A bounded label: known routes as is, anything else "other" (no label per bad URL)."""
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    if path in ("/v1/chat/completions", "/v1/models", "/health", "/metrics"):
        return path
    return "other"
