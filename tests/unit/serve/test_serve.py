"""Unit tests of `supertiny serve` without a model: the HTTP layer, request
normalisation, tool-call extraction, stop sequences and `ServerProcess` failures.

The HTTP layer is exercised through the `Backend` interface with `CannedBackend`,
which returns fixed text; the real llama.cpp behaviour is tested in
`tests/integration/test_serve_llamacpp.py`.

    python -m pytest tests/unit/serve/test_serve.py -q
"""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from supertiny.runtime.backend import (
    ChatRequest,
    ContextLengthError,
    Generation,
    StopMatcher,
    token_logprob,
)
from supertiny.runtime.process import ServerProcess, ServerStartError
from supertiny.serve.app import create_app
from supertiny.serve.profile import TaskProfile
from supertiny.serve.protocol import ChatCompletionRequest, RequestError, to_backend_request
from supertiny.serve.responses import assistant_message, finish_reason

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_brightness",
            "description": "Set a light's brightness.",
            "parameters": {
                "type": "object",
                "properties": {
                    "device_id": {"type": "string"},
                    "level": {"type": "integer"},
                },
                "required": ["device_id", "level"],
            },
        },
    }
]
CALL_TEXT = (
    '<tool_call>\n{"name": "set_brightness", "arguments": '
    '{"device_id": "light.kitchen", "level": 30}}\n</tool_call>'
)
USER = [{"role": "user", "content": "dim the kitchen lights to 30%"}]


class CannedBackend:
    """Answers every request with `text`, one word per streamed delta; a prompt
    "costs" one token per word of its messages."""

    name = "canned"

    def __init__(self, text: str = "Hello there.", n_ctx: int = 64, finish: str = "stop"):
        self.text = text
        self.n_ctx = n_ctx
        self.finish = finish
        self.fail: Exception | None = None
        self.requests: list[ChatRequest] = []

    def count_tokens(self, messages, tools=None) -> int:
        return sum(len(str(m.get("content") or "").split()) for m in messages)

    def chat(self, request: ChatRequest, on_delta=None) -> Generation:
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail
        prompt = self.count_tokens(request.messages, request.tools)
        if prompt >= self.n_ctx:
            raise ContextLengthError(prompt, self.n_ctx)
        words = self.text.split(" ")
        logprobs = None
        if request.params.logprobs:
            logprobs = [token_logprob(w, w.encode(), -0.5, []) for w in words]
        if on_delta is not None:
            for i, word in enumerate(words):
                on_delta(word if i == 0 else " " + word, logprobs[i : i + 1] if logprobs else [])
        return Generation(
            text=self.text,
            finish_reason=self.finish,
            prompt_tokens=prompt,
            completion_tokens=len(words),
            logprobs=logprobs,
        )

    def close(self) -> None:
        pass


def client_for(backend: CannedBackend, **kwargs) -> TestClient:
    return TestClient(create_app(backend, "tiny", **kwargs), raise_server_exceptions=False)


def post(client: TestClient, **body):
    return client.post("/v1/chat/completions", json=body)


def assert_openai_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


# ---- routes and validation ------------------------------------------------------------


def test_health_and_models():
    client = client_for(CannedBackend())
    assert client.get("/health").json() == {"status": "ok"}
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    assert_openai_error(client.get("/v1/models/other"), 404, "model")
    assert_openai_error(client.get("/nowhere"), 404)


def test_malformed_json_is_a_400_openai_error():
    client = client_for(CannedBackend())
    response = client.post(
        "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "tiny"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"messages": USER, "max_completion_tokens": 0}, "max_completion_tokens"),
        ({"messages": USER, "max_tokens": 65}, "max_tokens"),  # more than the context
        ({"messages": USER, "temperature": 3}, "temperature"),
        ({"messages": USER, "n": 0}, "n"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": USER, "tool_choice": "maybe"}, "tool_choice"),
        ({"messages": USER, "tool_choice": "required"}, "tool_choice"),
        (
            {
                "messages": USER,
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice",
        ),
        ({"messages": USER, "top_logprobs": 3}, "top_logprobs"),
        ({"messages": USER, "response_format": {"type": "xml"}}, "response_format"),
        ({"messages": USER, "response_format": {"type": "json_schema"}}, "response_format"),
        (
            {
                "messages": USER,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
                },
            },
            "response_format.json_schema.schema",
        ),
        (
            {
                "messages": USER,
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}
                ],
            },
            "tools[0].function.parameters",
        ),
        ({"messages": USER, "stop": [""]}, "stop"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content",
        ),
    ],
)
def test_invalid_requests_are_400_naming_the_field(body, param):
    backend = CannedBackend()
    assert_openai_error(post(client_for(backend), **body), 400, param)
    assert backend.requests == []


def test_unknown_fields_and_any_model_name_are_accepted():
    client = client_for(CannedBackend())
    response = post(
        client,
        model="gpt-4o",
        messages=USER,
        user="abc",
        metadata={"x": 1},
        parallel_tool_calls=True,
        response_format={"type": "json_object"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "tiny"


def test_strict_model_rejects_other_names():
    client = client_for(CannedBackend(), strict_model=True)
    error = assert_openai_error(post(client, model="gpt-4o", messages=USER), 404, "model")
    assert error["code"] == "model_not_found"
    assert post(client, model="tiny", messages=USER).status_code == 200


def test_prompt_longer_than_context_is_400():
    long = [{"role": "user", "content": "word " * 100}]
    client = client_for(CannedBackend(n_ctx=64))
    for stream in (False, True):
        response = post(client, messages=long, stream=stream)
        error = assert_openai_error(response, 400, "messages")
        assert error["code"] == "context_length_exceeded"


def test_backend_failure_is_500_and_server_stays_healthy():
    backend = CannedBackend()
    backend.fail = RuntimeError("out of memory")
    client = client_for(backend)
    error = assert_openai_error(post(client, messages=USER), 500)
    assert error["type"] == "server_error"
    assert "out of memory" in error["message"]
    assert client.get("/health").json() == {"status": "ok"}
    backend.fail = None
    assert post(client, messages=USER).status_code == 200


# ---- responses --------------------------------------------------------------------------


def test_plain_chat_response_shape():
    backend = CannedBackend("Hello there.")
    body = post(client_for(backend), messages=USER, temperature=0, max_tokens=8, seed=7).json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hello there."}
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    usage = body["usage"]
    assert usage["prompt_tokens"] == 6
    assert usage["completion_tokens"] == 2
    assert usage["total_tokens"] == 8
    params = backend.requests[0].params
    assert (params.temperature, params.max_tokens, params.seed) == (0, 8, 7)
    assert backend.requests[0].tools is None


def test_tool_call_text_becomes_tool_calls():
    backend = CannedBackend("Sure. " + CALL_TEXT)
    body = post(client_for(backend), messages=USER, tools=TOOLS).json()
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == "Sure."
    (call,) = message["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "set_brightness"
    assert json.loads(call["function"]["arguments"]) == {"device_id": "light.kitchen", "level": 30}
    assert backend.requests[0].tools == TOOLS
    assert backend.requests[0].tool_choice == "auto"


def test_tool_choice_none_hides_tools_and_skips_parsing():
    backend = CannedBackend(CALL_TEXT)
    body = post(client_for(backend), messages=USER, tools=TOOLS, tool_choice="none").json()
    assert backend.requests[0].tools is None
    assert body["choices"][0]["message"] == {"role": "assistant", "content": CALL_TEXT}
    assert body["choices"][0]["finish_reason"] == "stop"


def test_named_tool_choice_reaches_the_backend():
    backend = CannedBackend(CALL_TEXT)
    choice = {"type": "function", "function": {"name": "set_brightness"}}
    post(client_for(backend), messages=USER, tools=TOOLS, tool_choice=choice)
    assert backend.requests[0].tool_choice == "set_brightness"


@pytest.mark.parametrize(
    ("text", "tools_active", "backend_reason", "calls", "content", "reason"),
    [
        (CALL_TEXT, True, "stop", 1, None, "tool_calls"),
        (CALL_TEXT, False, "stop", 0, CALL_TEXT, "stop"),  # no tools: text is content
        (
            '```json\n{"name": "set_brightness", "arguments": {}}\n```',
            True,
            "stop",
            1,
            None,
            "tool_calls",
        ),
        ("It is sunny.", True, "stop", 0, "It is sunny.", "stop"),
        ("It is", True, "length", 0, "It is", "length"),
        (CALL_TEXT + " and then", True, "length", 1, "and then", "length"),  # cut: length wins
        ("<tool_call>\n{not json", True, "stop", 0, "<tool_call>\n{not json", "stop"),
    ],
)
def test_extraction_and_finish_reason(text, tools_active, backend_reason, calls, content, reason):
    message = assistant_message(text, tools_active)
    assert len(message.get("tool_calls") or []) == calls
    assert message["content"] == content
    assert finish_reason(backend_reason, message) == reason


def test_n_choices_use_successive_seeds():
    backend = CannedBackend("ok")
    body = post(client_for(backend), messages=USER, n=3, seed=10, temperature=1.0).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert [r.params.seed for r in backend.requests] == [10, 11, 12]
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["prompt_tokens"] == 6  # the prompt counts once


def test_logprobs_pass_through():
    backend = CannedBackend("a b")
    body = post(client_for(backend), messages=USER, logprobs=True, top_logprobs=2).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in content] == ["a", "b"]
    assert content[0] == {"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": []}
    params = backend.requests[0].params
    assert (params.logprobs, params.top_logprobs) == (True, 2)


def test_max_completion_tokens_is_read():
    backend = CannedBackend()
    post(client_for(backend), messages=USER, max_completion_tokens=5)
    assert backend.requests[0].params.max_tokens == 5


# ---- streaming --------------------------------------------------------------------------


def sse_events(response) -> list:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_stream_sends_content_deltas_then_finish_and_usage():
    client = client_for(CannedBackend("one two three"))
    body = {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(d for d in deltas if d) == "one two three"
    assert len([d for d in deltas if d]) == 3  # streamed word by word
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_stream_with_tools_sends_tool_calls_in_one_delta():
    client = client_for(CannedBackend(CALL_TEXT))
    body = {"messages": USER, "tools": TOOLS, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        events = sse_events(response)
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    with_calls = [d for d in deltas if d.get("tool_calls")]
    assert len(with_calls) == 1
    (call,) = with_calls[0]["tool_calls"]
    assert call["index"] == 0 and call["function"]["name"] == "set_brightness"
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_backend_failure_is_reported_in_the_stream():
    backend = CannedBackend()
    backend.fail = RuntimeError("boom")
    client = client_for(backend)
    with client.stream(
        "POST", "/v1/chat/completions", json={"messages": USER, "stream": True}
    ) as r:
        events = sse_events(r)
    assert events[-1]["error"]["type"] == "server_error"


# ---- request normalisation ----------------------------------------------------------------


def test_history_is_normalised_for_chat_templates():
    body = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "dim "}, {"type": "text", "text": "it"}],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "set_brightness",
                                "arguments": '{"device_id": "light.kitchen", "level": 30}',
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": '{"ok": true}'},
            ],
            "tools": TOOLS,
        }
    )
    request = to_backend_request(body, n_ctx=4096)
    system, user, assistant, tool = request.messages
    assert system == {"role": "system", "content": "Be brief."}
    assert user == {"role": "user", "content": "dim it"}
    assert assistant["tool_calls"][0]["function"]["arguments"] == {
        "device_id": "light.kitchen",
        "level": 30,
    }
    assert tool == {"role": "tool", "content": '{"ok": true}', "tool_call_id": "call_1"}
    # OpenAI's defaults: plain temperature + top-p sampling, no vendor extras
    params = request.params
    assert (params.temperature, params.top_p, params.top_k, params.min_p) == (1.0, 1.0, 0, 0.0)
    assert params.repeat_penalty == 1.0 and params.max_tokens is None


def test_request_error_names_param():
    body = ChatCompletionRequest.model_validate({"messages": USER, "max_tokens": 100})
    with pytest.raises(RequestError) as info:
        to_backend_request(body, n_ctx=50)
    assert info.value.param == "max_tokens"


# ---- stop sequences ----------------------------------------------------------------------


def test_stop_matcher_cuts_and_holds_back_partial_stops():
    matcher = StopMatcher(["</end>", "STOP"])
    emitted = [matcher.feed(p) for p in ["Hello </", "en", "d> never"]]
    assert emitted == ["Hello ", "", ""]
    assert matcher.stopped and matcher.flush() == ""


def test_stop_matcher_releases_false_alarms():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("ST") == ""
    assert matcher.feed("ART") == "START"
    assert matcher.feed("ok S") == "ok "
    assert matcher.flush() == "S"
    assert not matcher.stopped


def test_stop_matcher_without_stops_passes_through():
    matcher = StopMatcher([])
    assert matcher.feed("a") == "a" and matcher.flush() == ""


# ---- ServerProcess -----------------------------------------------------------------------


def test_server_process_fails_fast_for_a_missing_model(tmp_path):
    missing = tmp_path / "no-such-model.gguf"
    log = tmp_path / "serve.log"
    start = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        with ServerProcess(missing, log_path=log, startup_timeout_s=120):
            pass
    assert time.monotonic() - start < 60
    message = str(info.value)
    assert "exited with code 1" in message
    assert str(missing) in message  # the child's own error, from the log tail
    assert log.exists()


def test_server_process_urls():
    server = ServerProcess("student", port=8123)
    assert server.base_url == "http://127.0.0.1:8123/v1"
    assert "--port" in server.command() and "8123" in server.command()
    assert not server.running()
    server.stop()  # stopping a server that never started is a no-op


# ---- response_format, task profile, metrics ----------------------------------------------


def test_response_format_reaches_the_backend():
    backend = CannedBackend('{"a": 1}')
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert post(client_for(backend), messages=USER, response_format=body).status_code == 200
    assert backend.requests[-1].response_format == {"type": "json_schema", "schema": schema}
    post(client_for(backend), messages=USER, response_format={"type": "json_object"})
    assert backend.requests[-1].response_format == {"type": "json_object"}
    post(client_for(backend), messages=USER, response_format={"type": "text"})
    assert backend.requests[-1].response_format is None


PROFILE = TaskProfile(
    system_prompt="You control a smart home.",
    tools=TOOLS,
    tools_in_prompt=False,
    require_call=True,
)


def test_a_task_profile_serves_the_student_prompt():
    backend = CannedBackend(CALL_TEXT)
    client = client_for(backend, profile=PROFILE)
    teacher_style = [{"role": "system", "content": "a very long teacher prompt"}, *USER]
    response = post(client, messages=teacher_style)
    assert response.json()["choices"][0]["message"]["tool_calls"]
    request = backend.requests[-1]
    assert request.messages == [{"role": "system", "content": "You control a smart home."}, *USER]
    assert request.tools == TOOLS and request.tool_choice == "required"
    assert request.render_tools is False
    # what the client asks explicitly is kept
    post(client, messages=USER, tools=TOOLS, tool_choice="auto")
    assert backend.requests[-1].tool_choice == "auto"
    post(client, messages=USER, tool_choice="none")
    assert backend.requests[-1].tools is None and backend.requests[-1].tool_choice == "none"


def test_a_profile_for_a_task_with_plain_answers_leaves_the_choice_to_the_model():
    backend = CannedBackend()
    profile = TaskProfile("Be brief.", TOOLS, tools_in_prompt=True, require_call=False)
    post(client_for(backend, profile=profile), messages=USER)
    assert backend.requests[-1].tool_choice == "auto" and backend.requests[-1].render_tools


def test_profile_loads_from_a_task_file():
    profile = TaskProfile.load("examples/smart_home/task.yaml")
    assert profile.require_call and not profile.tools_in_prompt
    assert "set_power" in [t["function"]["name"] for t in profile.tools]


def test_metrics_count_requests_status_and_tokens():
    client = client_for(CannedBackend("one two three"))
    post(client, messages=USER)
    post(client, messages=USER, max_tokens=0)  # a 400
    text = client.get("/metrics").text
    assert (
        'supertiny_requests_total{backend="canned",model="tiny",route="/v1/chat/completions",status="200"} 1.0'
        in text
    )
    assert 'status="400"} 1.0' in text
    assert 'supertiny_completion_tokens_total{backend="canned",model="tiny"} 3.0' in text
    assert "supertiny_request_seconds_bucket" in text
    assert 'supertiny_requests_in_flight{backend="canned",model="tiny"} 1.0' in text  # this one
