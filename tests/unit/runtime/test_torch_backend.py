"""Unit tests of the PyTorch serving backend on a tiny random model (CPU, seconds).

A random model writes garbage, which is what makes the grammar tests meaningful: whatever
it samples under a tool-call or JSON constraint must still parse and validate.

    python -m pytest tests/unit/runtime/test_torch_backend.py -q
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import jsonschema
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
xgr = pytest.importorskip("xgrammar")

from tests.tiny_models import tiny_student  # noqa: E402

from supertiny.core import toolcalls  # noqa: E402
from supertiny.runtime.backend import (  # noqa: E402
    ChatRequest,
    ContextLengthError,
    PromptError,
    SamplingParams,
)
from supertiny.runtime.torch_backend import TorchBackend  # noqa: E402
from supertiny.runtime.torch_sampling import compile_constraint  # noqa: E402

LOGGER = "supertiny.runtime.torch_backend"
USER = [{"role": "user", "content": "dim the kitchen lights to 30%"}]
PROMPTS = ["turn on the hall light", "what is the weather in Paris", "hi", "set level 5"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_brightness",
            "description": "Set a light's brightness.",
            "parameters": {
                "type": "object",
                "properties": {
                    "device_id": {"type": "string", "enum": ["light.kitchen", "light.hall"]},
                    "level": {"type": "integer", "minimum": 0, "maximum": 100},
                    "smooth": {"type": "boolean"},
                },
                "required": ["device_id", "level"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 8}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "description": "No arguments."}},
]
NAMES = {t["function"]["name"] for t in TOOLS}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["yes", "no"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 10},
    },
    "required": ["answer", "confidence"],
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_student(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def backend(model_dir):
    engine = TorchBackend(model_dir, n_threads=1, batch_wait_ms=5)
    yield engine
    engine.close()


def ask(content: str = USER[0]["content"], **params) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": content}], params=SamplingParams(**params)
    )


def greedy(content: str = USER[0]["content"], max_tokens: int = 24, **params) -> ChatRequest:
    return ask(content, temperature=0.0, max_tokens=max_tokens, **params)


def run_batched(backend: TorchBackend, calls: list[tuple[ChatRequest, object]]) -> list[Future]:
    """Submit `calls` while the scheduler is held by another request, so that they queue
    up and are then decoded as one batch."""
    started, release = threading.Event(), threading.Event()

    def hold(text, logprobs):
        started.set()
        release.wait(10)
        return False

    pool = ThreadPoolExecutor(len(calls) + 1)
    holder = pool.submit(backend.chat, greedy(max_tokens=8), hold)
    assert started.wait(10)
    futures = [pool.submit(backend.chat, request, on_delta) for request, on_delta in calls]
    deadline = time.monotonic() + 10
    while backend._queue.qsize() < len(calls) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    holder.result(timeout=10)
    pool.shutdown(wait=True)
    return futures


def calls_of(text: str):
    parsed = toolcalls.parse(text)
    calls, errors = toolcalls.validate(parsed.calls, TOOLS)
    return parsed, calls, errors


# ---- loading ------------------------------------------------------------------------------


def test_backend_reports_name_context_and_token_counts(backend):
    assert backend.name == "torch"
    assert backend.n_ctx == 1024  # the tiny model's max_position_embeddings caps 4096
    generation = backend.chat(greedy(max_tokens=2))
    assert backend.count_tokens(USER) == generation.prompt_tokens
    assert backend.count_tokens(USER, TOOLS) > generation.prompt_tokens


def test_loading_errors_say_what_was_expected(tmp_path, model_dir):
    with pytest.raises(FileNotFoundError, match="config.json"):
        TorchBackend(tmp_path / "missing")
    with pytest.raises(ValueError, match="torchao.json"):
        TorchBackend(tmp_path)
    bare = shutil.copytree(model_dir, tmp_path / "bare")
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match="chat template"):
        TorchBackend(bare)


def test_torchao_folder_loads_and_generates(tmp_path, model_dir):
    pytest.importorskip("torchao")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from supertiny.compress.quantize.torchao import quantize, save_quantized

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    quantize(model, "int8_weight")
    path = save_quantized(
        model, AutoTokenizer.from_pretrained(model_dir), tmp_path / "q", "int8_weight", 32
    )
    engine = TorchBackend(path, n_ctx=512)
    try:
        assert engine.n_ctx == 512
        generation = engine.chat(greedy(max_tokens=6))
        assert 1 <= generation.completion_tokens <= 6
        named = ChatRequest(USER, tools=TOOLS, tool_choice="get_time")
        assert calls_of(engine.chat(named).text)[1] == [toolcalls.ToolCall("get_time", {})]
    finally:
        engine.close()


def test_without_max_tokens_the_answer_fills_the_context_then_close(model_dir):
    engine = TorchBackend(model_dir, n_ctx=128)
    assert engine.n_ctx == 128
    generation = engine.chat(greedy(max_tokens=None))
    assert generation.finish_reason == "length"
    assert generation.prompt_tokens + generation.completion_tokens == 128
    engine.close()
    engine.close()  # twice is fine
    with pytest.raises(RuntimeError, match="the torch backend is closed"):
        engine.chat(greedy())
    with pytest.raises(RuntimeError, match="the torch backend is closed"):
        engine.count_tokens(USER)


# ---- generation ---------------------------------------------------------------------------


def test_greedy_and_seeded_requests_match_alone_and_batched(backend, caplog):
    requests = [greedy(PROMPTS[0]), greedy(PROMPTS[1], max_tokens=12)]
    requests += [ask(PROMPTS[2], seed=5, max_tokens=20), ask(PROMPTS[3], seed=6, max_tokens=16)]
    # a long prompt (tools in the system turn) under a grammar: most of the others is padding
    requests.append(
        ChatRequest(USER, tools=TOOLS, tool_choice="required", params=SamplingParams(seed=2))
    )
    alone = [backend.chat(r) for r in requests]
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        futures = run_batched(backend, [(r, None) for r in requests])
        batched = [f.result(timeout=30) for f in futures]
    assert "decoding a batch of 5 request(s)" in caplog.text
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in alone]


def test_same_seed_same_answer(backend):
    first, second = (backend.chat(ask(seed=11, max_tokens=16)) for _ in range(2))
    assert first.text == second.text


def test_streamed_deltas_join_to_the_text_with_logprobs(backend):
    deltas, entries = [], []

    def on_delta(text, logprobs):
        deltas.append(text)
        entries.extend(logprobs)

    generation = backend.chat(greedy(max_tokens=20, logprobs=True, top_logprobs=3), on_delta)
    assert len(deltas) > 1 and "".join(deltas) == generation.text
    assert len(generation.logprobs) == generation.completion_tokens == len(entries)
    for entry in generation.logprobs:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert len(entry["top_logprobs"]) == 3
        assert entry["logprob"] <= 0
        assert entry["logprob"] == entry["top_logprobs"][0]["logprob"]  # greedy: the best one
    as_ids = backend.chat(greedy(max_tokens=3, logprobs=True, token_ids_as_text=True))
    assert all(re.fullmatch(r"token_id:\d+", e["token"]) for e in as_ids.logprobs)


def test_on_delta_false_stops_early(backend):
    deltas = []

    def first_only(text, logprobs):
        deltas.append(text)
        return False

    generation = backend.chat(greedy(max_tokens=40), first_only)
    assert generation.finish_reason == "stop"
    assert deltas == [generation.text]
    assert generation.completion_tokens < 40


def test_stop_sequences_cut_the_text(backend):
    full = backend.chat(greedy(max_tokens=40)).text
    assert len(full) > 14
    stop = full[10:14]
    cut = backend.chat(greedy(max_tokens=40, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]


def test_max_tokens_one(backend):
    generation = backend.chat(greedy(max_tokens=1))
    assert (generation.completion_tokens, generation.finish_reason) == (1, "length")


def test_sampling_filters_run(backend):
    generation = backend.chat(
        ask(seed=3, max_tokens=10, top_k=5, top_p=0.9, min_p=0.05, repeat_penalty=1.3)
    )
    assert 1 <= generation.completion_tokens <= 10


def test_prompt_too_long_is_a_context_length_error(backend):
    with pytest.raises(ContextLengthError):
        backend.chat(ask("light " * 2000))


def test_template_failure_is_a_prompt_error(backend):
    with pytest.raises(PromptError):
        backend.chat(ChatRequest(messages=[{"role": "user", "content": None}]))


def test_a_failing_request_fails_alone(backend):
    def broken(text, logprobs):
        raise ValueError("callback broke")

    futures = run_batched(backend, [(greedy(max_tokens=10), broken), (greedy(PROMPTS[1]), None)])
    with pytest.raises(ValueError, match="callback broke"):
        futures[0].result(timeout=30)
    assert futures[1].result(timeout=30).completion_tokens > 0
    assert backend.chat(greedy(max_tokens=2)).completion_tokens > 0  # the scheduler lives on


# ---- constrained decoding -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_required_tool_choice_always_gives_valid_calls(backend, seed):
    request = ChatRequest(
        USER, tools=TOOLS, tool_choice="required", params=SamplingParams(seed=seed, max_tokens=600)
    )
    generation = backend.chat(request)
    assert generation.finish_reason == "stop", generation.text
    parsed, calls, errors = calls_of(generation.text)
    assert calls and not errors, (generation.text, errors)
    assert {c.name for c in calls} <= NAMES
    assert not parsed.content  # nothing but calls


@pytest.mark.parametrize("seed", range(3))
def test_named_tool_choice_gives_one_call_of_that_function(backend, seed):
    request = ChatRequest(
        USER,
        tools=TOOLS,
        tool_choice="set_brightness",
        params=SamplingParams(seed=seed, max_tokens=400),
    )
    generation = backend.chat(request)
    assert generation.finish_reason == "stop"  # the finished grammar ended the answer
    assert generation.text.startswith("<tool_call>") and generation.text.endswith("</tool_call>")
    _, calls, errors = calls_of(generation.text)
    assert [c.name for c in calls] == ["set_brightness"] and not errors


@pytest.mark.parametrize("seed", range(3))
def test_response_format_json_schema(backend, seed):
    request = ChatRequest(
        USER,
        params=SamplingParams(seed=seed, max_tokens=300),
        response_format={"type": "json_schema", "schema": ANSWER_SCHEMA},
    )
    generation = backend.chat(request)
    assert generation.finish_reason == "stop"
    jsonschema.validate(json.loads(generation.text), ANSWER_SCHEMA)


def test_tools_constrain_without_being_rendered(backend):
    request = ChatRequest(USER, tools=TOOLS, tool_choice="get_time", render_tools=False)
    generation = backend.chat(request)
    assert generation.prompt_tokens == backend.count_tokens(USER)  # no tools in the prompt
    assert calls_of(generation.text)[1] == [toolcalls.ToolCall("get_time", {})]


def test_response_format_json_object_starts_an_object(backend):
    request = ChatRequest(
        USER, params=SamplingParams(seed=1, max_tokens=8), response_format={"type": "json_object"}
    )
    assert backend.chat(request).text.lstrip().startswith("{")


def test_auto_tool_choice_any_call_block_is_valid(backend):
    blocks = []
    for seed in (0, 6, 15, 19, 23, 27):  # seeds under which the random model opens a call
        request = ChatRequest(USER, tools=TOOLS, params=SamplingParams(seed=seed, max_tokens=200))
        blocks += re.findall(r"<tool_call>(.*?)</tool_call>", backend.chat(request).text, re.S)
    assert blocks  # free text, then a call once the model writes <tool_call>
    for block in blocks:
        _, calls, errors = calls_of(f"<tool_call>{block}</tool_call>")
        assert len(calls) == 1 and not errors, block


def test_auto_grammar_allows_text_then_forces_a_valid_call(model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer))
    grammar = compile_constraint(compiler, ChatRequest(USER, tools=TOOLS), tool_tags=True)
    opened = 'Sure thing. <tool_call>\n{"name": "'
    matcher = xgr.GrammarMatcher(grammar)
    assert matcher.accept_string(opened) and matcher.accept_string('get_time", ')
    assert not xgr.GrammarMatcher(grammar).accept_string(opened + 'delete_all"')
    assert compile_constraint(compiler, ChatRequest(USER, tools=TOOLS), tool_tags=False) is None
    assert compile_constraint(compiler, ChatRequest(USER), tool_tags=True) is None


def test_uncompilable_schema_decodes_unconstrained(backend, caplog):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string", "pattern": "(?<=a)b"}},
                },
            },
        }
    ]
    request = ChatRequest(
        USER,
        tools=tools,
        tool_choice="required",
        params=SamplingParams(temperature=0, max_tokens=5),
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        generation = backend.chat(request)
    assert "decoding unconstrained" in caplog.text
    assert generation.completion_tokens >= 1


# ---- through the HTTP layer, with the official client -------------------------------------


def test_openai_client_tool_call_and_stream(backend):
    openai = pytest.importorskip("openai")
    from fastapi.testclient import TestClient

    from supertiny.serve.app import create_app

    client = openai.OpenAI(
        base_url="http://testserver/v1",
        api_key="x",
        http_client=TestClient(create_app(backend, "tiny")),
    )
    completion = client.chat.completions.create(
        model="tiny", messages=USER, tools=TOOLS, tool_choice="required", seed=2, max_tokens=600
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    for call in choice.message.tool_calls:
        assert call.function.name in NAMES
        _, errors = toolcalls.validate(
            [toolcalls.ToolCall(call.function.name, json.loads(call.function.arguments))], TOOLS
        )
        assert not errors

    whole = client.chat.completions.create(
        model="tiny", messages=USER, temperature=0, max_tokens=12
    )
    stream = client.chat.completions.create(
        model="tiny", messages=USER, temperature=0, max_tokens=12, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces) == whole.choices[0].message.content
