"""The teacher's function-call pipeline: helper steps, final call, re-ask, step bound."""

import asyncio
from pathlib import Path

from tests.scripted_server import ok, scripted_server, tool_call

from supertiny.core.task import Task
from supertiny.label.client import TeacherClient
from supertiny.label.prototype import REASK, run_pipeline

TASK = Task.load(Path(__file__).parents[2] / "assets" / "tiny_task" / "task.yaml")
USER = [{"role": "user", "content": "table for 2 in Oslo"}]


def run(script, **kwargs):
    async def go(url):
        async with TeacherClient(url, "m", backoff_s=0.01) as client:
            return await run_pipeline(client, TASK, USER, **kwargs)

    with scripted_server(script, default=ok("out of script")) as server:
        return asyncio.run(go(server.url)), server.requests


def test_helper_then_final_call_with_trace():
    result, requests = run(
        [
            ok(tool_calls=[tool_call("find_city", {"name": "Oslo"})]),
            ok(tool_calls=[tool_call("book_table", {"city_id": "osl", "people": 2})]),
        ]
    )
    assert result.ok and [c.to_dict() for c in result.calls] == [
        {"name": "book_table", "arguments": {"city_id": "osl", "people": 2}}
    ]
    assert result.requests == 2 and len(result.trace) == 2
    assert result.trace[0]["tool_results"][0]["result"] == '{"city_id": "osl"}'
    second = requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "find_city"
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "call_0_0",
        "name": "find_city",
        "content": '{"city_id": "osl"}',
    }
    assert [t["function"]["name"] for t in requests[0]["tools"]] == [
        "find_city",
        "book_table",
        "no_action",
    ]


def test_empty_turn_is_reasked_once():
    result, requests = run(
        [
            ok(""),
            ok(tool_calls=[tool_call("book_table", {"city_id": "osl", "people": 2})]),
        ]
    )
    assert result.ok and result.trace[0]["reask"] == "no function call"
    assert requests[1]["messages"][-1] == {"role": "user", "content": REASK}
    failed, _ = run([ok(""), ok("still no call")])
    assert failed.error == "step 1: answered in text without a final call"
    no_reask, _ = run([ok("")], reasks=0)
    assert no_reask.error == "step 0: answered in text without a final call"


def test_calls_in_text_are_understood():
    text = '<tool_call>\n{"name": "book_table", "arguments": {"city_id": "osl", "people": 2}}\n</tool_call>'
    result, _ = run([ok(text)])
    assert result.ok and result.calls[0].arguments == {"city_id": "osl", "people": 2}


def test_step_bound():
    result, requests = run([ok(tool_calls=[tool_call("find_city", {"name": "Oslo"})])] * 10)
    assert result.error == "no final call within 4 steps" and len(requests) == 4


def test_unknown_tool_is_reported_back_to_the_model():
    result, requests = run(
        [
            ok(tool_calls=[tool_call("teleport", {"to": "Oslo"})]),
            ok(tool_calls=[tool_call("no_action", {"reason": "unsupported"})]),
        ]
    )
    assert result.ok and "unknown tool 'teleport'" in requests[1]["messages"][-1]["content"]
