"""Teacher client against the scripted misbehaving server: run
`PYTHONPATH=src python -m pytest tests/unit/label/test_label_client.py -q`."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import logging
import time
from pathlib import Path

import pytest
from tests.scripted_server import (
    drop,
    garbage,
    hang,
    ok,
    raw,
    scripted_server,
    status,
    tool_call,
)

from supertiny.label.client import (
    Completion,
    Prices,
    TeacherClient,
    TeacherError,
    parse_retry_after,
)

KEY_ENV = "SUPERTINY_TEST_TEACHER_KEY"
KEY = "sk-test-5ecret-a1b2c3d4e5"
MESSAGES = [{"role": "user", "content": "dim the kitchen lights to 30%"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_brightness",
            "parameters": {
                "type": "object",
                "properties": {"device_id": {"type": "string"}, "level": {"type": "integer"}},
            },
        },
    }
]


def fast_client(url: str, **kwargs) -> TeacherClient:
    """A client with millisecond backoff so retry tests take no time."""
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("max_backoff_s", 0.05)
    kwargs.setdefault("timeout_s", 5.0)
    return TeacherClient(url, "teacher-model", **kwargs)


async def chat_once(client: TeacherClient, **kwargs) -> Completion:
    async with client:
        return await client.chat(MESSAGES, **kwargs)


def test_tool_call_completion_and_request_body():
    call = tool_call("set_brightness", {"device_id": "light.kitchen", "level": 30})
    with scripted_server([ok(tool_calls=[call])]) as srv:
        client = fast_client(srv.url + "/", extra_body={"top_k": 20})
        done = asyncio.run(
            chat_once(client, tools=TOOLS, tool_choice="auto", seed=7, stop=["</s>"])
        )
    assert done.message == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert done.finish_reason == "tool_calls"
    assert done.cached is False and done.logprobs is None
    assert done.raw["choices"][0]["message"]["tool_calls"] == [call]
    assert srv.paths == ["/v1/chat/completions"]
    body = srv.requests[0]
    assert body == {
        "model": "teacher-model",
        "messages": MESSAGES,
        "tools": TOOLS,
        "tool_choice": "auto",
        "temperature": 0.0,
        "max_tokens": 512,
        "seed": 7,
        "stop": ["</s>"],
        "top_k": 20,
    }
    assert "authorization" not in srv.headers[0]


def test_plain_request_omits_optional_fields_and_returns_logprobs():
    lps = [{"token": "ok", "logprob": -0.1, "top_logprobs": [{"token": "ok", "logprob": -0.1}]}]
    with scripted_server([ok("hello"), ok("again", logprobs=lps)]) as srv:

        async def main():
            async with fast_client(srv.url) as client:
                first = await client.chat(MESSAGES)
                second = await client.chat(MESSAGES, top_logprobs=5)
            return first, second

        first, second = asyncio.run(main())
    assert first.message == {"role": "assistant", "content": "hello"}
    assert first.finish_reason == "stop"
    assert set(srv.requests[0]) == {"model", "messages", "temperature", "max_tokens"}
    assert srv.requests[1]["logprobs"] is True and srv.requests[1]["top_logprobs"] == 5
    assert second.logprobs == lps


def test_usage_and_cost_accounting():
    prices = Prices(input_per_million=2.0, output_per_million=8.0)
    script = [
        ok("a", prompt_tokens=1000, completion_tokens=200),
        ok("b", prompt_tokens=3000, completion_tokens=100),
        ok("c", usage=False),
    ]
    with scripted_server(script) as srv:

        async def main():
            async with fast_client(srv.url, prices=prices) as client:
                done = [await client.chat(MESSAGES, sample=i) for i in range(3)]
            return client, done

        client, (a, b, c) = asyncio.run(main())
    assert (a.prompt_tokens, a.completion_tokens) == (1000, 200)
    assert a.cost_usd == pytest.approx(1000 * 2.0 / 1e6 + 200 * 8.0 / 1e6)
    assert b.cost_usd == pytest.approx(3000 * 2.0 / 1e6 + 100 * 8.0 / 1e6)
    assert (c.prompt_tokens, c.completion_tokens, c.cost_usd) == (0, 0, 0.0)
    u = client.usage.to_dict()
    assert u["requests"] == 3 and u["cached"] == 0 and u["retries"] == 0 and u["failures"] == 0
    assert (u["prompt_tokens"], u["completion_tokens"]) == (4000, 300)
    assert u["cost_usd"] == pytest.approx(a.cost_usd + b.cost_usd)
    assert u["latency_s"] == pytest.approx(a.latency_s + b.latency_s + c.latency_s)
    assert all(x.latency_s > 0 for x in (a, b, c))


def test_retry_on_5xx_then_success():
    with scripted_server([status(500), status(502), ok("fine")]) as srv:
        client = fast_client(srv.url)
        done = asyncio.run(chat_once(client))
    assert done.message["content"] == "fine"
    assert len(srv.requests) == 3
    assert client.usage.retries == 2 and client.usage.failures == 0
    assert client.usage.requests == 1


def test_429_retry_after_is_honoured():
    with scripted_server([status(429, retry_after=0.5), ok()]) as srv:
        client = fast_client(srv.url, max_backoff_s=5.0)
        start = time.perf_counter()
        asyncio.run(chat_once(client))
        waited = time.perf_counter() - start
    assert len(srv.requests) == 2
    assert waited >= 0.45  # backoff alone would be ~0.01 s


def test_retry_after_is_capped_at_max_backoff():
    with scripted_server([status(503, retry_after=30), ok()]) as srv:
        client = fast_client(srv.url, max_backoff_s=0.1)
        start = time.perf_counter()
        asyncio.run(chat_once(client))
        assert time.perf_counter() - start < 5
    assert len(srv.requests) == 2


def test_parse_retry_after():
    now = 1_700_000_000.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_garbage_and_missing_choices_are_retried():
    script = [garbage(), raw({"object": "chat.completion", "choices": []}), ok("fine")]
    with scripted_server(script) as srv:
        client = fast_client(srv.url)
        done = asyncio.run(chat_once(client))
    assert done.message["content"] == "fine"
    assert len(srv.requests) == 3 and client.usage.retries == 2


def test_timeouts_retried_then_clear_error():
    with scripted_server(default=hang(10)) as srv:
        client = fast_client(srv.url, timeout_s=0.2, max_retries=2)
        start = time.perf_counter()
        with pytest.raises(TeacherError) as info:
            asyncio.run(chat_once(client))
        assert time.perf_counter() - start < 3
    message = str(info.value)
    assert srv.url + "/chat/completions" in message
    assert "3 attempt" in message and "no response within 0.2 s" in message
    assert len(srv.requests) == 3
    assert client.usage.retries == 2 and client.usage.failures == 1
    assert client.usage.requests == 0


def test_dropped_connection_is_retried():
    with scripted_server([drop(), ok("after drop")]) as srv:
        client = fast_client(srv.url)
        done = asyncio.run(chat_once(client))
    assert done.message["content"] == "after drop"
    assert len(srv.requests) == 2 and client.usage.retries == 1


def test_400_is_not_retried():
    with scripted_server([status(400, "tools[0] is not a valid schema")]) as srv:
        client = fast_client(srv.url)
        with pytest.raises(TeacherError) as info:
            asyncio.run(chat_once(client))
    assert len(srv.requests) == 1
    assert info.value.status == 400
    message = str(info.value)
    assert "HTTP 400" in message and "tools[0] is not a valid schema" in message
    assert srv.url in message
    assert client.usage.retries == 0 and client.usage.failures == 1


def test_long_server_error_text_is_truncated():
    with scripted_server([status(422, "x" * 5000)]) as srv:
        with pytest.raises(TeacherError) as info:
            asyncio.run(chat_once(fast_client(srv.url)))
    assert "xxxx" in str(info.value) and len(str(info.value)) < 1000


def test_401_names_the_env_var_and_never_the_key(monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    script = [
        status(500, f"upstream rejected {KEY}"),  # a server that echoes the key
        status(401, f"Incorrect API key provided: {KEY}"),
    ]
    with scripted_server(script) as srv, caplog.at_level(logging.WARNING):
        client = fast_client(srv.url, api_key_env=KEY_ENV)
        with pytest.raises(TeacherError) as info:
            asyncio.run(chat_once(client))
    assert srv.headers[0]["authorization"] == f"Bearer {KEY}"
    message = str(info.value)
    assert "HTTP 401" in message and KEY_ENV in message
    assert KEY not in message and KEY not in repr(info.value)
    assert "upstream rejected" in caplog.text and KEY not in caplog.text
    assert KEY not in repr(client) and KEY_ENV in repr(client)


def test_missing_api_key_env_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(TeacherError, match=KEY_ENV):
        TeacherClient("http://127.0.0.1:1/v1", "m", api_key_env=KEY_ENV)


def test_cache_hit_and_resume_after_crash(tmp_path: Path):
    cache = tmp_path / "teacher.sqlite"
    with scripted_server([ok("first", delay=0.05)], default=ok("second")) as srv:

        async def main():
            # No aclose(): a crashed run. Its entry must already be on disk.
            crashed = fast_client(srv.url, cache_path=cache)
            a = await crashed.chat(MESSAGES, tools=TOOLS)
            b = await crashed.chat(MESSAGES, tools=TOOLS)
            async with fast_client(srv.url, cache_path=cache) as resumed:
                c = await resumed.chat(MESSAGES, tools=TOOLS)
            await crashed.aclose()
            return crashed, resumed, a, b, c

        crashed, resumed, a, b, c = asyncio.run(main())
    assert len(srv.requests) == 1
    assert a.cached is False and b.cached is True and c.cached is True
    assert a.message == b.message == c.message == {"role": "assistant", "content": "first"}
    assert a.latency_s >= 0.05 and b.latency_s == a.latency_s == c.latency_s
    assert b.cost_usd == a.cost_usd and c.prompt_tokens == a.prompt_tokens
    assert crashed.usage.requests == 2 and crashed.usage.cached == 1
    assert crashed.usage.prompt_tokens == a.prompt_tokens  # cache hits cost nothing
    assert resumed.usage.cached == 1 and resumed.usage.prompt_tokens == 0
    assert str(cache) in repr(resumed)


def test_cache_key_distinguishes_sample_index_and_request(tmp_path: Path):
    with scripted_server(default=lambda body: ok(f"answer {len(srv.requests)}")) as srv:

        async def main():
            async with fast_client(srv.url, cache_path=tmp_path / "c.sqlite") as client:
                s0 = await client.chat(MESSAGES, temperature=0.8, sample=0)
                s1 = await client.chat(MESSAGES, temperature=0.8, sample=1)
                again0 = await client.chat(MESSAGES, temperature=0.8, sample=0)
                other = await client.chat(MESSAGES, temperature=0.0, sample=0)
            return client, s0, s1, again0, other

        client, s0, s1, again0, other = asyncio.run(main())
    assert len(srv.requests) == 3
    assert s0.message["content"] != s1.message["content"]
    assert again0.cached and again0.message == s0.message
    assert not other.cached and client.usage.cached == 1


def test_failures_are_not_cached(tmp_path: Path):
    with scripted_server([status(400)], default=ok("good")) as srv:

        async def main():
            async with fast_client(srv.url, cache_path=tmp_path / "c.sqlite") as client:
                with pytest.raises(TeacherError):
                    await client.chat(MESSAGES)
                return await client.chat(MESSAGES)

        done = asyncio.run(main())
    assert len(srv.requests) == 2 and not done.cached and done.message["content"] == "good"


def test_bounded_concurrency():
    with scripted_server(default=ok("slow", delay=0.1)) as srv:

        async def main():
            # 12 x 0.1 s through 2 slots take 0.6 s: the timeout must not count the queue.
            async with fast_client(srv.url, concurrency=2, timeout_s=0.4) as client:
                done = await asyncio.gather(*(client.chat(MESSAGES, sample=i) for i in range(12)))
            return client, done

        client, done = asyncio.run(main())
    assert len(done) == 12 and len(srv.requests) == 12
    assert srv.max_in_flight == 2  # bounded, and the bound is actually used
    assert client.usage.retries == 0


def test_api_key_never_written_to_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    cache = tmp_path / "teacher.sqlite"
    with scripted_server([ok("cached-answer-marker")]) as srv:
        client = fast_client(srv.url, api_key_env=KEY_ENV, cache_path=cache)
        asyncio.run(chat_once(client))
        assert srv.headers[0]["authorization"] == f"Bearer {KEY}"
    files = sorted(tmp_path.glob("teacher.sqlite*"))
    data = b"".join(f.read_bytes() for f in files)
    assert b"cached-answer-marker" in data  # the entry is there: we read the right files
    assert KEY.encode() not in data


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_client_survives_a_new_event_loop_and_refuses_use_after_close():
    with scripted_server(default=ok("x")) as srv:
        client = fast_client(srv.url)
        first = asyncio.run(client.chat(MESSAGES))  # loop closed, client not
        second = asyncio.run(chat_once(client))
        with pytest.raises(RuntimeError, match="closed"):
            asyncio.run(client.chat(MESSAGES))
    gc.collect()  # the first loop's abandoned connections warn here, not at exit
    assert first.message == second.message and len(srv.requests) == 2
