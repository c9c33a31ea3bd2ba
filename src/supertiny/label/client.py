"""Async client for a teacher LLM behind any OpenAI-compatible chat-completions endpoint.

`TeacherClient.chat` POSTs `{base_url}/chat/completions` (vLLM, SGLang, Ollama,
llama.cpp server, `supertiny serve`, a cloud API) and returns a `Completion`: the
assistant message (tool calls in OpenAI shape), token counts, cost, latency and,
when asked, per-token logprobs. The label stage fans requests out with
`asyncio.gather`; the client bounds how many are in flight with a semaphore.

What it adds over a bare HTTP call, because teacher labelling is long and costs money:
- retries with exponential backoff and jitter on timeouts, dropped connections,
  HTTP 408/429/5xx and 200 responses that are not a chat completion; `Retry-After`
  (seconds or HTTP-date) is honoured, capped at `max_backoff_s`. Other 4xx fail
  at once with a `TeacherError` that names the URL, the status and the server's text;
- no retrying a dead local server: on a timeout or connection error it first calls
  `check_server` (e.g. `ServerProcess.check_alive`), whose exception (`ServerDied`) stops
  the request at once;
- a persistent SQLite response cache (`label/cache.py`), written as each response
  arrives, so an interrupted run resumes without paying twice;
- running `Usage` totals (requests, cache hits, retries, failures, tokens, USD).

The API key is read once from the environment variable named by `api_key_env`; it
is sent only as the `Authorization` header and never appears in exceptions, logs,
`repr` or the cache (server error text is redacted in case it echoes the key).

The official `openai` package would give retries but not the cache, the per-call
accounting or Retry-After-aware backoff over every OpenAI-compatible server, so
this is written on httpx directly.

Exercised by `python -m pytest tests/unit/label/test_label_client.py -q` against the scripted
misbehaving server in `tests/scripted_server.py`.

One file of ~510 lines: retries, the response cache, prices, logprobs and the server check
all wrap the same request and are tested together against one scripted server.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from supertiny.core.errors import SupertinyError
from supertiny.label.cache import ResponseCache, cache_key

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429})  # plus every 5xx
RETRY_AFTER_STATUS = frozenset({429, 503})
ERROR_TEXT_LIMIT = 500  # characters of the server's error text kept in messages
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Prices:
    """Teacher prices in USD per million tokens (0 for a local server)."""

    input_per_million: float = 0.0  # USD per 1M prompt tokens
    output_per_million: float = 0.0  # USD per 1M completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_million / 1e6
            + completion_tokens * self.output_per_million / 1e6
        )


@dataclass
class Completion:
    """One chat completion (choice 0)."""

    message: dict  # assistant message: {"role", "content" (may be None), "tool_calls"?}
    finish_reason: str | None
    prompt_tokens: int  # 0 when the server reports no usage
    completion_tokens: int
    latency_s: float  # wall time of the successful HTTP call; the original one when cached
    cost_usd: float
    cached: bool
    logprobs: list | None  # choices[0].logprobs.content: [{token, logprob, top_logprobs}]
    raw: dict  # the full response JSON


@dataclass
class Usage:
    """Running totals of one client. Token, cost and latency sums count only
    requests that went over HTTP (this run's spend), not cache hits."""

    requests: int = 0  # chat() calls answered, from the server or the cache
    cached: int = 0  # of which answered from the cache
    retries: int = 0  # extra HTTP attempts after a retryable failure
    failures: int = 0  # chat() calls that raised TeacherError
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class TeacherError(SupertinyError, RuntimeError):
    """The teacher could not answer: retries exhausted or a non-retryable response."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _is_completion(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    choices = raw.get("choices")
    return (
        isinstance(choices, list)
        and len(choices) > 0
        and isinstance(choices[0], dict)
        and isinstance(choices[0].get("message"), dict)
    )


def _normalise_message(message: dict) -> dict:
    """Copy of the assistant message with `role` and `content` always present and
    empty extras (`tool_calls: []`, `refusal: null`, ...) dropped; tool calls are
    kept as returned (OpenAI shape, `arguments` a JSON string)."""
    out = {"role": message.get("role") or "assistant", "content": message.get("content")}
    for key, value in message.items():
        if key not in out and value not in (None, [], {}):
            out[key] = value
    return out


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class TeacherClient:
    """OpenAI-compatible chat client with bounded concurrency, retries, cache and accounting.

    Use it inside one event loop, as an async context manager or with `aclose()`. (Used
    from a second loop it opens new connections; those of the old loop are abandoned.)

        async with TeacherClient("http://127.0.0.1:8000/v1", "qwen") as teacher:
            done = await asyncio.gather(*(teacher.chat(m, tools=tools) for m in batch))
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 6,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        cache_path: Path | None = None,
        prices: Prices | None = None,
        extra_body: dict | None = None,
        extra_headers: dict | None = None,
        check_server: Callable[[], None] | None = None,
    ) -> None:
        """`check_server`, when given, is called after a timeout or connection error and
        before any retry: it raises (e.g. `ServerDied`) when the server is gone for good."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.prices = prices or Prices()
        self.extra_body = copy.deepcopy(extra_body or {})
        self.check_server = check_server
        self.usage = Usage()
        self._api_key = self._read_api_key(api_key_env)
        self._headers = dict(extra_headers or {})
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self.cache_path = None if cache_path is None else Path(cache_path)
        self._cache = ResponseCache(self.cache_path) if self.cache_path is not None else None
        self._rng = random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._warned_no_usage = False
        self._closed = False

    @staticmethod
    def _read_api_key(api_key_env: str | None) -> str | None:
        if api_key_env is None:
            return None
        key = os.environ.get(api_key_env)
        if not key:
            raise TeacherError(
                f"teacher API key: environment variable {api_key_env} is not set (or empty); "
                "export it, or leave api_key_env unset for a server without authentication",
                url="",
            )
        return key

    def __repr__(self) -> str:
        cache = None if self.cache_path is None else str(self.cache_path)
        return (
            f"TeacherClient(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency}, "
            f"timeout_s={self.timeout_s}, max_retries={self.max_retries}, cache={cache!r})"
        )

    async def __aenter__(self) -> TeacherClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections and the cache. Safe to call twice."""
        self._closed = True
        if self._http is not None:
            if self._loop is asyncio.get_running_loop():
                await self._http.aclose()
            self._http = None
            self._loop = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # ---- one request ----------------------------------------------------------------

    def request_body(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        tool_choice: str | dict | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        stop: list[str] | None = None,
    ) -> dict:
        """The JSON body `chat` sends (also what the cache key hashes).

        `extra_body` is merged last, so it may override any field (as in the openai SDK).
        `top_logprobs` implies `logprobs`."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if tools:
            body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if seed is not None:
            body["seed"] = seed
        if logprobs or top_logprobs is not None:
            body["logprobs"] = True
        if top_logprobs is not None:
            body["top_logprobs"] = top_logprobs
        if stop:
            body["stop"] = list(stop)
        body.update(copy.deepcopy(self.extra_body))
        return body

    async def chat(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        tool_choice: str | dict | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int | None = None,
        sample: int = 0,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        stop: list[str] | None = None,
    ) -> Completion:
        """One chat completion, from the cache when this exact request (and `sample`
        index) was answered before, otherwise over HTTP with retries.

        `sample` only distinguishes cache entries: draw n samples at temperature > 0
        with sample=0..n-1. Raises TeacherError when the teacher cannot answer."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        body = self.request_body(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            stop=stop,
        )
        key = cache_key(body, self.base_url, sample) if self._cache is not None else None
        if key is not None:
            entry = self._cache.get(key)
            if entry is not None and _is_completion(entry.get("response")):
                self.usage.requests += 1
                self.usage.cached += 1
                latency = float(entry.get("latency_s") or 0.0)
                return self._completion(entry["response"], latency, cached=True)
        try:
            raw, latency = await self._post_with_retries(body)
        except TeacherError:
            self.usage.failures += 1
            raise
        if key is not None and self._cache is not None:
            self._cache.put(key, {"response": raw, "latency_s": latency})
        done = self._completion(raw, latency, cached=False)
        self.usage.requests += 1
        self.usage.prompt_tokens += done.prompt_tokens
        self.usage.completion_tokens += done.completion_tokens
        self.usage.cost_usd += done.cost_usd
        self.usage.latency_s += latency
        return done

    def _completion(self, raw: dict, latency_s: float, *, cached: bool) -> Completion:
        choice = raw["choices"][0]
        usage = raw.get("usage") if isinstance(raw.get("usage"), dict) else {}
        if not usage and not self._warned_no_usage:
            self._warned_no_usage = True
            log.warning("teacher %s returns no token usage: tokens and cost count as 0", self.url)
        prompt_tokens = _as_int(usage.get("prompt_tokens"))
        completion_tokens = _as_int(usage.get("completion_tokens"))
        lp = choice.get("logprobs")
        return Completion(
            message=_normalise_message(choice["message"]),
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency_s,
            cost_usd=self.prices.cost(prompt_tokens, completion_tokens),
            cached=cached,
            logprobs=lp.get("content") if isinstance(lp, dict) else None,
            raw=raw,
        )

    # ---- HTTP with retries ----------------------------------------------------------

    def _bind_loop(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """HTTP client and semaphore of the running loop (made anew if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(
                    max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                ),
                # A loopback teacher never goes through a proxy from the environment.
                trust_env=urlparse(self.base_url).hostname not in _LOOPBACK,
            )
            self._sem = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        assert self._sem is not None
        return self._http, self._sem

    async def _post_with_retries(self, body: dict) -> tuple[dict, float]:
        """(response JSON, latency of the successful attempt) or TeacherError."""
        http, sem = self._bind_loop()
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            status: int | None = None
            retry_after: float | None = None
            try:
                async with sem:
                    start = time.perf_counter()
                    async with asyncio.timeout(self.timeout_s):
                        response = await http.post(self.url, json=body, headers=self._headers)
                    latency = time.perf_counter() - start
            except (httpx.TimeoutException, TimeoutError):
                self._check_server()
                problem = f"no response within {self.timeout_s:g} s"
            except httpx.TransportError as exc:
                self._check_server()
                problem = f"connection error ({type(exc).__name__}: {self._redact(str(exc))})"
            else:
                status = response.status_code
                if response.is_success:
                    try:
                        raw = response.json()
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        raw = None
                    if _is_completion(raw):
                        return raw, latency
                    problem = f"HTTP {status} but not a chat completion: {self._text(response)}"
                elif status in RETRYABLE_STATUS or status >= 500:
                    problem = f"HTTP {status}: {self._error_text(response)}"
                    if status in RETRY_AFTER_STATUS:
                        retry_after = parse_retry_after(response.headers.get("retry-after"))
                else:
                    raise TeacherError(self._fatal_message(response), url=self.url, status=status)
            if attempt + 1 == attempts:
                raise TeacherError(
                    f"teacher request to {self.url} failed after {attempts} attempt(s); "
                    f"last: {problem}",
                    url=self.url,
                    status=status,
                )
            wait = self._backoff(attempt, retry_after)
            self.usage.retries += 1
            log.warning(
                "teacher %s: %s (attempt %d/%d); retrying in %.2f s",
                self.url,
                problem,
                attempt + 1,
                attempts,
                wait,
            )
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _check_server(self) -> None:
        """Let `check_server` raise if the server is gone (its exception is not retried)."""
        if self.check_server is not None:
            self.check_server()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter in [0.5, 1] x base; at least Retry-After."""
        base = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        wait = base * (0.5 + 0.5 * self._rng.random())
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff_s))
        return wait

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _text(self, response: httpx.Response) -> str:
        text = response.text.strip() or "(empty body)"
        if len(text) > ERROR_TEXT_LIMIT:
            text = text[:ERROR_TEXT_LIMIT] + "..."
        return self._redact(text)

    def _error_text(self, response: httpx.Response) -> str:
        """The server's error message: OpenAI `error.message`, FastAPI `detail`, or the body."""
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._text(response)
        message: Any = None
        if isinstance(data, dict):
            error = data.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            message = message or data.get("detail") or data.get("message")
        if not message:
            return self._text(response)
        text = message if isinstance(message, str) else json.dumps(message)
        if len(text) > ERROR_TEXT_LIMIT:
            text = text[:ERROR_TEXT_LIMIT] + "..."
        return self._redact(text)

    def _fatal_message(self, response: httpx.Response) -> str:
        status = response.status_code
        message = (
            f"teacher request to {self.url} failed: HTTP {status}: {self._error_text(response)}"
        )
        if status in (401, 403):
            if self.api_key_env:
                message += (
                    f" (the API key comes from the environment variable {self.api_key_env}: "
                    f"check it is valid for this server)"
                )
            else:
                message += (
                    " (no API key was sent: set api_key_env to the name of the environment "
                    "variable that holds it)"
                )
        elif status == 404:
            message += f" (check base_url ends in /v1 and the model {self.model!r} is served)"
        return message
