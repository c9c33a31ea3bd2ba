"""A bounded load test of `supertiny serve` on loopback: a real server process, a tiny model.

200 requests at concurrency 8 through the official `openai` client (tool calls, plain chat,
streams, and bad requests mixed in), plus clients that hang up mid-stream. Every response is
checked, and afterwards the server is healthy, has nothing in flight, and counted them all.

    python -m pytest tests/unit/serve/test_serve_load.py -q
"""

from __future__ import annotations

import concurrent.futures
import json
import re

import httpx
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from supertiny.runtime.process import ServerProcess  # noqa: E402

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "book_table",
            "parameters": {
                "type": "object",
                "properties": {
                    "city_id": {"type": "string", "enum": ["osl", "rom", "lim"]},
                    "people": {"type": "integer", "minimum": 1, "maximum": 20},
                },
                "required": ["city_id", "people"],
                "additionalProperties": False,
            },
        },
    }
]
REQUESTS, CONCURRENCY = 200, 8


@pytest.fixture(scope="module", params=["llamacpp", "torch"])
def server(request, tmp_path_factory):
    """A tiny random model served as GGUF (llama.cpp) or as a checkpoint folder (torch)."""
    from tests.tiny_models import tiny_student

    root = tmp_path_factory.mktemp(f"load-{request.param}")
    model = tiny_student(root / "model", seed=11)
    if request.param == "llamacpp":
        from supertiny.compress.gguf.export import export_gguf

        model = root / "tiny.gguf"
        export_gguf(root / "model", model, "f32")
    else:
        pytest.importorskip("xgrammar")
    with ServerProcess(
        model, backend=request.param, n_ctx=512, n_threads=1, log_path=root / "serve.log"
    ) as proc:
        yield proc


def one(client, index: int) -> str:
    """One request of the mix; returns its kind after checking the response."""
    user = [{"role": "user", "content": f"table for {index % 7 + 1} in Rome"}]
    kind = ("call", "chat", "stream", "bad")[index % 4]
    if kind == "call":
        response = client.chat.completions.create(
            model="tiny",
            messages=user,
            tools=TOOLS,
            tool_choice="required",
            max_tokens=40,
            temperature=0,
            seed=index,
        )
        choice = response.choices[0]
        assert choice.finish_reason in ("tool_calls", "length")
        if choice.finish_reason == "tool_calls":  # a finished call is always valid
            call = choice.message.tool_calls[0].function
            arguments = json.loads(call.arguments)
            assert call.name == "book_table" and arguments["city_id"] in ("osl", "rom", "lim")
        assert response.usage.completion_tokens <= 40
    elif kind == "chat":
        response = client.chat.completions.create(model="tiny", messages=user, max_tokens=8)
        assert response.choices[0].finish_reason in ("stop", "length")
        assert response.usage.prompt_tokens > 0
    elif kind == "stream":
        pieces = client.chat.completions.create(
            model="tiny", messages=user, max_tokens=8, stream=True
        )
        finishes = [c.choices[0].finish_reason for c in pieces if c.choices]
        assert finishes[-1] in ("stop", "length")
    else:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny", messages=user, max_tokens=10**6)
        assert caught.value.body["param"] == "max_tokens"
    return kind


def test_200_requests_at_concurrency_8_all_answered_and_the_server_stays_healthy(server):
    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        kinds = list(pool.map(lambda i: one(client, i), range(REQUESTS)))
    assert kinds.count("call") == kinds.count("bad") == REQUESTS // 4

    # clients that hang up mid-stream: the server stops those generations and goes on
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 400, "stream": True}
    for _ in range(3):
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
            assert response.status_code == 200
            next(response.iter_lines())
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/health").json() == {"status": "ok"}
        bad = http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
        answered = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert answered.choices[0].message.content is not None
        metrics = http.get("/metrics").text
    ok = _counter(metrics, "/v1/chat/completions", "200")
    assert ok >= REQUESTS * 3 // 4 + 4  # every good request of the mix, the streams and the last
    assert _counter(metrics, "/v1/chat/completions", "400") >= REQUESTS // 4 + 1
    in_flight = re.search(r"supertiny_requests_in_flight\{[^}]*\} (\S+)", metrics)
    assert float(in_flight.group(1)) == 1.0  # only the /metrics request itself


def _counter(metrics: str, route: str, status: str) -> float:
    pattern = (
        rf'supertiny_requests_total\{{[^}}]*route="{re.escape(route)}",status="{status}"\}} (\S+)'
    )
    match = re.search(pattern, metrics)
    return float(match.group(1)) if match else 0.0
