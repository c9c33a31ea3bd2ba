"""Limits, backpressure and the API key of `supertiny serve`, as a client meets them.

Most tests run a real uvicorn server on 127.0.0.1 in a thread and talk to it with the official
`openai` client or `httpx`: the key (401 / `openai.AuthenticationError`), admission (429 with
`Retry-After` while the admitted requests finish), clients that hang up (their generation
stops, streamed or not), the per-request deadline (504), and a backend that breaks (`/health`
503). Request limits (400 naming the limit) go through FastAPI's TestClient. Generations that
must last are written by `GatedBackend`, a test-only backend that writes one word per tick
until it is released or told to stop; grammars and a model failure use the tiny torch model.

    python -m pytest tests/unit/serve/test_serve_limits.py -q
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from supertiny.runtime.backend import BackendFailure, ChatRequest, Generation
from supertiny.serve.app import create_app
from supertiny.serve.limits import Limits, quantifier_bounds

openai = pytest.importorskip("openai")

USER = [{"role": "user", "content": "dim the kitchen lights"}]
KEY = "sk-test-3f9a"


class GatedBackend:
    """A test backend: each generation writes " w0 w1 ..." one word per `tick_s` through
    `on_delta` until `release` is set (then it finishes) or `on_delta` returns False (then it
    stops early); never more than `max_words`. Counts what its generations did."""

    name = "gated"

    def __init__(self, tick_s: float = 0.01, max_words: int = 3000, n_ctx: int = 512):
        self.tick_s, self.max_words, self.n_ctx = tick_s, max_words, n_ctx
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.calls = self.running = self.finished = self.stopped = 0
        self.fail: Exception | None = None

    def count_tokens(self, messages, tools=None) -> int:
        return sum(len(str(m.get("content") or "").split()) for m in messages)

    def chat(self, request: ChatRequest, on_delta=None) -> Generation:
        with self.lock:
            self.calls += 1
            self.running += 1
        try:
            if self.fail is not None:
                raise self.fail
            return self._generate(request, on_delta)
        finally:
            with self.lock:
                self.running -= 1

    def _generate(self, request: ChatRequest, on_delta) -> Generation:
        words: list[str] = []
        while len(words) < self.max_words and not self.release.wait(self.tick_s):
            words.append(f" w{len(words)}")
            if on_delta is not None and on_delta(words[-1], []) is False:
                with self.lock:
                    self.stopped += 1
                return self._generation(request, words, "stop")
        with self.lock:
            self.finished += 1
        return self._generation(request, words or [" done"], "stop")

    def _generation(self, request: ChatRequest, words: list[str], finish) -> Generation:
        return Generation("".join(words), finish, self.count_tokens(request.messages), len(words))

    def close(self) -> None:
        self.release.set()


# ---- a real server on 127.0.0.1 -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """`app` under uvicorn on a free loopback port, in a thread; yields the server URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def client(url: str, key: str = "none", retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=retries, timeout=30)


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of /metrics (0 if absent)."""
    text = httpx.get(f"{url}/metrics").text
    for line in text.splitlines():
        match = re.match(rf"{name}\{{([^}}]*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


def wait_until(check, timeout_s: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def ask(llm: openai.OpenAI, **extra):
    return llm.chat.completions.create(model="tiny", messages=USER, **extra)


# ---- the API key ---------------------------------------------------------------------------


def test_the_key_is_required_on_v1_and_health_and_metrics_stay_open():
    with serving(create_app(GatedBackend(tick_s=0.001, max_words=3), "tiny", api_key=KEY)) as url:
        with pytest.raises(openai.AuthenticationError) as wrong:
            ask(client(url, key="sk-wrong"))
        assert wrong.value.status_code == 401
        assert wrong.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client(url, key="sk-wrong").models.list()

        answer = ask(client(url, key=KEY))
        assert answer.choices[0].message.content == " w0 w1 w2"
        assert [m.id for m in client(url, key=KEY).models.list()] == ["tiny"]

        bare = httpx.post(f"{url}/v1/chat/completions", json={"messages": USER})
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        assert set(bare.json()["error"]) == {"message", "type", "param", "code"}
        assert httpx.get(f"{url}/v1/nowhere").status_code == 401  # no route is revealed
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        assert metric(url, "supertiny_requests_total", route="/v1/chat/completions", status="401")


def test_cli_reads_the_key_and_limits(monkeypatch, tmp_path):
    from supertiny.cli import build_parser
    from supertiny.serve import server

    captured = {}
    monkeypatch.setattr(server, "serve", lambda model, **kwargs: captured.update(kwargs))
    monkeypatch.setenv("SUPERTINY_API_KEY", "from-env")
    folder = tmp_path / "model"
    folder.mkdir()  # a folder: served by torch, so as many at once as it batches
    args = build_parser().parse_args(
        ["serve", "--model", str(folder), "--max-batch-size", "4", "--max-queue", "3"]
    )
    assert server.serve_from_args(args) == 0
    assert captured["api_key"] == "from-env"
    assert captured["limits"] == Limits(max_concurrency=4, max_queue=3)

    args = build_parser().parse_args(
        ["serve", "--model", "student", "--api-key", "given", "--request-timeout", "0"]
    )
    server.serve_from_args(args)
    assert captured["api_key"] == "given"  # the option wins over the environment
    limits = captured["limits"]
    assert limits.max_concurrency == 1  # llama.cpp runs one generation at a time
    assert limits.request_timeout_s is None


# ---- admission: 429 with Retry-After --------------------------------------------------------


def test_over_the_queue_is_429_with_retry_after_while_admitted_requests_finish():
    backend = GatedBackend()
    app = create_app(backend, "tiny", limits=Limits(max_concurrency=2, max_queue=1))
    with serving(app) as url, ThreadPoolExecutor(4) as pool:
        llm = client(url)
        admitted = [pool.submit(ask, llm) for _ in range(3)]  # 2 running, 1 waiting
        wait_until(
            lambda: (
                metric(url, "supertiny_requests_running") == 2
                and metric(url, "supertiny_requests_waiting") == 1
            ),
            what="2 running and 1 waiting",
        )
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as busy:
                ask(llm)
            assert busy.value.response.headers["retry-after"] == "1"
            assert busy.value.body["code"] == "max_queue"
            assert "max_queue 1" in busy.value.body["message"]
        # an OpenAI client with retries waits Retry-After and gets in once there is room
        patient = pool.submit(ask, client(url, retries=3))
        wait_until(lambda: metric(url, "supertiny_requests_refused_total") == 3, what="a refusal")
        backend.release.set()
        for future in [*admitted, patient]:
            assert future.result(timeout=30).choices[0].finish_reason == "stop"
        assert metric(url, "supertiny_requests_refused_total", reason="queue_full") == 3
        assert backend.calls == backend.finished == 4  # the refused never reached the backend
        assert metric(url, "supertiny_requests_running") == 0
        assert metric(url, "supertiny_requests_waiting") == 0


# ---- clients that hang up -------------------------------------------------------------------


def hang_up(url: str, body: dict, after_s: float = 0.5) -> None:
    """Send `body` and close the connection: after the first bytes of a stream, or after
    `after_s` of waiting for an answer."""
    with httpx.Client(timeout=after_s) as http:
        try:
            with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                next(response.iter_bytes())
        except httpx.ReadTimeout:
            pass


TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    }
]


@pytest.mark.parametrize(
    "extra",
    [{}, {"n": 3}, {"tools": TOOLS}, {"stream": True}, {"stream": True, "tools": TOOLS}],
    ids=["plain", "n=3", "tools", "stream", "stream-with-tools"],
)
def test_a_client_that_hangs_up_stops_its_generation(extra):
    backend = GatedBackend()  # never released: only a stop ends a generation
    with serving(create_app(backend, "tiny")) as url:
        hang_up(url, {"messages": USER, **extra})
        wait_until(lambda: backend.stopped == 1, what="the generation to stop")
        wait_until(lambda: metric(url, "supertiny_requests_running") == 0, what="the slot back")
        assert backend.calls == 1 and backend.running == 0  # n=3: the next choices never start
        assert metric(url, "supertiny_requests_stopped_total", reason="disconnected") == 1
        backend.release.set()
        assert ask(client(url)).choices[0].message.content  # the server serves on


def test_a_client_that_hangs_up_while_queued_never_runs():
    backend = GatedBackend()
    with serving(create_app(backend, "tiny", limits=Limits(max_concurrency=1))) as url:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(ask, client(url))
            wait_until(lambda: backend.running == 1, what="the first to run")
            hang_up(url, {"messages": USER})
            wait_until(lambda: metric(url, "supertiny_requests_waiting") == 0, what="queue empty")
            backend.release.set()
            assert first.result(timeout=30).choices[0].finish_reason == "stop"
        assert backend.calls == 1


# ---- the deadline -----------------------------------------------------------------------------


def test_a_request_over_its_deadline_is_stopped_and_answered_504():
    backend = GatedBackend()
    app = create_app(backend, "tiny", limits=Limits(max_concurrency=1, request_timeout_s=0.5))
    with serving(app) as url, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(ask, client(url))  # queued behind the first, past its deadline too
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as late:
            ask(client(url))
        assert late.value.status_code == 504
        assert late.value.body["code"] == "request_timeout_s"
        assert "0.5 s" in late.value.body["message"]
        assert time.monotonic() - started < 5
        with pytest.raises(openai.InternalServerError):
            waiting.result(timeout=30)
        wait_until(lambda: backend.running == 0, what="the generations to stop")
        assert backend.stopped >= 1 and backend.finished == 0
        assert metric(url, "supertiny_requests_stopped_total", reason="timeout") == 2
        assert metric(url, "supertiny_requests_running") == 0

        # in a stream the status is already 200: the deadline arrives as an error event
        stream = ask(client(url), stream=True)
        with pytest.raises(openai.APIError, match="request timeout"):
            for _ in stream:
                pass


# ---- request limits: a 400 naming the limit ---------------------------------------------------


def tool(parameters: dict, name: str = "f") -> dict:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def string_with(**bounds) -> dict:
    return {"type": "object", "properties": {"s": {"type": "string", **bounds}}}


def nested_arrays(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


# fmt: off
LIMIT_CASES = [
    pytest.param(Limits(max_body_bytes=1000),
                 {"messages": [{"role": "user", "content": "x" * 2000}]},
                 "max_body_bytes", "1000", id="body"),
    pytest.param(Limits(max_messages=3), {"messages": USER * 4}, "max_messages", "3",
                 id="messages"),
    pytest.param(Limits(max_tools=2),
                 {"messages": USER, "tools": [tool({}, f"f{i}") for i in range(3)]},
                 "max_tools", "2", id="tools"),
    pytest.param(Limits(max_schema_chars=200),
                 {"messages": USER, "tools": [tool(string_with(description="y" * 300))]},
                 "max_schema_chars", "200", id="schema-chars"),
    pytest.param(Limits(), {"messages": USER, "tools": [tool(nested_arrays(40))]},
                 "max_schema_depth", "32", id="schema-depth"),
    pytest.param(Limits(), {"messages": USER, "tools": [tool(string_with(maxLength=100_000_000))],
                            "tool_choice": "required"},
                 "max_schema_repeat", "4096", id="maxLength"),
    pytest.param(Limits(), {"messages": USER, "tools": [tool(string_with(minLength=5000))]},
                 "max_schema_repeat", "4096", id="minLength"),
    pytest.param(Limits(), {"messages": USER, "tools": [tool(
                     {"type": "object", "properties": {"a": {"type": "array", "maxItems": 1e6}}})]},
                 "max_schema_repeat", "4096", id="maxItems-as-float"),
    pytest.param(Limits(), {"messages": USER, "tools": [tool(
                     {"type": "array", "items": {"type": "integer"}, "minItems": 10**9})]},
                 "max_schema_repeat", "4096", id="minItems"),
    pytest.param(Limits(), {"messages": USER,
                            "tools": [tool(string_with(pattern="^[a-z]{2,99999}$"))]},
                 "max_schema_repeat", "4096", id="pattern"),
    pytest.param(Limits(), {"messages": USER, "tools": [tool(
                     {"type": "object", "patternProperties": {"^x{5000}$": {"type": "string"}}})]},
                 "max_schema_repeat", "4096", id="patternProperties"),
    pytest.param(Limits(), {"messages": USER, "response_format": {
                     "type": "json_schema",
                     "json_schema": {"name": "a", "schema": string_with(maxLength=10**6)}}},
                 "max_schema_repeat", "4096", id="response_format"),
    pytest.param(Limits(), {"messages": USER, "tools": [tool(string_with(maxLength=10**8))],
                            "tool_choice": "none"},
                 "max_schema_repeat", "4096", id="checked-under-tool_choice-none"),
]
# fmt: on


@pytest.mark.parametrize(("limits", "body", "limit", "allowed"), LIMIT_CASES)
def test_each_request_limit_is_a_400_naming_it(limits, body, limit, allowed):
    backend = GatedBackend()
    http = TestClient(create_app(backend, "tiny", limits=limits))
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == limit and error["type"] == "invalid_request_error"
    assert limit in error["message"] and allowed in error["message"]
    assert backend.calls == 0


def test_the_body_limit_counts_a_body_without_content_length():
    backend = GatedBackend()
    with serving(create_app(backend, "tiny", limits=Limits(max_body_bytes=4096))) as url:
        pieces = (b'{"messages": [{"role": "user", "content": "' + b"x" * 1024 for _ in range(8))
        response = httpx.post(f"{url}/v1/chat/completions", content=pieces)  # chunked
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "max_body_bytes"
        assert backend.calls == 0


@pytest.mark.parametrize(
    "schema",
    [
        string_with(pattern=r"^\{99999\}$"),  # an escaped brace is a character, no quantifier
        string_with(pattern="^[{]99999}$"),  # so is a brace in a character class
        string_with(default={"maxLength": 10**8}),  # data, not a schema keyword
        {"type": "object", "properties": {"maxLength": {"type": "integer"}}},  # a property name
        string_with(maxLength=4096, pattern="^a{1,4096}$"),  # at the limit
    ],
)
def test_what_only_looks_like_a_large_bound_is_served(schema):
    backend = GatedBackend(tick_s=0.001, max_words=2)
    http = TestClient(create_app(backend, "tiny"))
    response = http.post("/v1/chat/completions", json={"messages": USER, "tools": [tool(schema)]})
    assert response.status_code == 200, response.text


def test_quantifier_bounds():
    assert quantifier_bounds(r"^a{2,5}b{3}c{4,}\d{1,2}$") == [2, 5, 3, 4, 1, 2]
    assert quantifier_bounds(r"\{7\}[{}]{8}x{") == [8]
    assert quantifier_bounds("a{" + "9" * 40 + "}") == [10**18]


def test_a_schema_10000_levels_deep_is_a_400_not_a_crash():
    backend = GatedBackend()
    http = TestClient(create_app(backend, "tiny"), raise_server_exceptions=False)
    deep = '{"type": "array", "items": ' * 10_000 + "{}" + "}" * 10_000
    raw = '{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", '
    raw += f'"function": {{"name": "f", "parameters": {deep}}}}}]}}'
    response = http.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "max_schema_depth"
    assert http.get("/health").json() == {"status": "ok"}
    assert backend.calls == 0


# ---- a backend that breaks ---------------------------------------------------------------------


def test_a_backend_failure_marks_the_server_failed_and_a_400_does_not():
    backend = GatedBackend(tick_s=0.001, max_words=2)
    http = TestClient(create_app(backend, "tiny"), raise_server_exceptions=False)
    assert http.post("/v1/chat/completions", json={"messages": []}).status_code == 400
    backend.fail = RuntimeError("a request-level error")
    assert http.post("/v1/chat/completions", json={"messages": USER}).status_code == 500
    assert http.get("/health").json() == {"status": "ok"}  # neither broke the backend

    backend.fail = BackendFailure("llama_decode returned -1")
    response = http.post("/v1/chat/completions", json={"messages": USER})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "backend_failed"
    health = http.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "failed", "reason": "llama_decode returned -1"}
    calls = backend.calls
    backend.fail = None
    again = http.post("/v1/chat/completions", json={"messages": USER})
    assert again.status_code == 503 and "restart" in again.json()["error"]["message"]
    assert backend.calls == calls  # refused without touching the backend


def test_llamacpp_decode_errors_are_backend_failures():
    from supertiny.runtime.llamacpp import _native

    def tokens():
        yield 5
        raise RuntimeError("llama_decode returned -3")

    stream = _native(tokens())
    assert next(stream) == 5
    with pytest.raises(BackendFailure, match="llama_decode returned -3"):
        next(stream)


# ---- with the tiny torch model: grammars and a model failure ---------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.tiny_models import tiny_student

    return tiny_student(tmp_path_factory.mktemp("tiny") / "model", seed=11)


@pytest.fixture(scope="module")
def torch_backend(tiny_model):
    pytest.importorskip("xgrammar")
    from supertiny.runtime.torch_backend import TorchBackend

    engine = TorchBackend(tiny_model, n_threads=1)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def llamacpp_backend(tiny_model):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from supertiny.compress.gguf.export import export_gguf
    from supertiny.runtime.llamacpp import LlamaCppBackend

    path = tiny_model.parent / "tiny.gguf"
    export_gguf(tiny_model, path, "f32")
    engine = LlamaCppBackend(path, n_ctx=512, n_threads=1)
    yield engine
    engine.close()


@pytest.mark.parametrize("engine", ["torch_backend", "llamacpp_backend"])
@pytest.mark.parametrize(
    "bound",
    [{"maxLength": 100_000_000}, {"pattern": "^a{1,100000000}$"}],
    ids=["maxLength", "regex"],
)
def test_a_huge_bound_is_refused_before_any_grammar_and_health_stays_prompt(request, engine, bound):
    """The request that killed the server (a segfault while llama.cpp parsed its grammar; with
    xgrammar the regex would compile for hours) is a 400, and the server answers on."""
    backend = request.getfixturevalue(engine)
    body = {"messages": USER, "tools": [tool(string_with(**bound))], "tool_choice": "required"}
    with serving(create_app(backend, "tiny")) as url, ThreadPoolExecutor(8) as pool:
        refused = [pool.submit(httpx.post, f"{url}/v1/chat/completions", json=body, timeout=30)]
        refused += [pool.submit(httpx.post, f"{url}/v1/chat/completions", json=body, timeout=30)]
        for _ in range(5):
            started = time.monotonic()
            assert httpx.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
            assert time.monotonic() - started < 1.0
        for future in refused:
            response = future.result()
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "max_schema_repeat"
        built = [str(key) for key in backend._grammars]
        assert not [key for key in built if "100000000" in key]  # no grammar was built for it
        small = [tool(string_with(maxLength=8))]
        fine = ask(client(url), tools=small, tool_choice="required", max_tokens=40, seed=1)
        assert fine.choices[0].finish_reason in ("tool_calls", "length")


def test_a_torch_model_failure_reports_the_server_failed(torch_backend, monkeypatch):
    def broken_forward(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch_backend._model, "forward", broken_forward)
    with serving(create_app(torch_backend, "tiny")) as url:
        with pytest.raises(openai.InternalServerError) as failed:
            ask(client(url), max_tokens=4)
        assert failed.value.status_code == 503
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and "illegal memory access" in health.json()["reason"]
