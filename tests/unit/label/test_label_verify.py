"""Verified labels: the final calls are dry-run against the environment (``helpers.dry_run``),
an error goes back to the teacher, a call that stays invalid is rejected with the reason; a
turn that mixes helper and final calls runs the helpers and asks again. Tiny task, scripted
teacher."""

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
import yaml
from tests.scripted_server import ok, scripted_server, tool_call

from supertiny.core.runs import read_jsonl
from supertiny.core.task import Task
from supertiny.label import stage as label
from supertiny.label.client import TeacherClient
from supertiny.label.config import LabelConfig
from supertiny.label.prototype import DRY_RUN_OK, DRY_RUN_RETRY, run_pipeline

ASSETS = Path(__file__).parents[2] / "assets" / "tiny_task"
USER = [{"role": "user", "content": "table for 2 in Oslo"}]
CHECK_CITY = """
def book_table(city_id: str, people: int) -> None:
    if city_id not in CITIES.values():
        raise ValueError(f"unknown city_id {city_id!r}; look it up with find_city")
    if people > 12:
        raise ValueError("at most 12 people per table")
"""


def verified_task(tmp_path: Path, dry_run_code: str = CHECK_CITY, timeout_s: float = 5.0) -> Task:
    """The tiny task with ``book_table`` dry-run by ``dry_run_code`` (appended to helpers.py)."""
    folder = tmp_path / "task"
    shutil.copytree(ASSETS, folder)
    with (folder / "helpers.py").open("a") as handle:
        handle.write("\nimport time\n" + dry_run_code)
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    spec["helpers"].update(dry_run=True, timeout_s=timeout_s)
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))
    return Task.load(folder / "task.yaml")


def book(city_id: str, people: int = 2) -> dict:
    return tool_call("book_table", {"city_id": city_id, "people": people})


def run(task: Task, script):
    async def go(url):
        async with TeacherClient(url, "m", backoff_s=0.01) as client:
            return await run_pipeline(client, task, USER)

    with scripted_server(script, default=ok("out of script")) as server:
        return asyncio.run(go(server.url)), server.requests


def test_an_invalid_id_goes_back_to_the_teacher_which_corrects_it(tmp_path):
    task = verified_task(tmp_path)
    result, requests = run(task, [ok(tool_calls=[book("oslo")]), ok(tool_calls=[book("osl")])])
    assert result.ok and result.error_kind is None
    assert [c.to_dict() for c in result.calls] == [
        {"name": "book_table", "arguments": {"city_id": "osl", "people": 2}}
    ]
    reason = "book_table: unknown city_id 'oslo'; look it up with find_city"
    assert result.trace[0]["dry_run_errors"] == [reason]
    checked, feedback = requests[1]["messages"][-2:]
    assert checked["role"] == "assistant" and checked["tool_calls"][0]["id"] == "call_0_0"
    assert feedback == {
        "role": "tool",
        "tool_call_id": "call_0_0",
        "name": "book_table",
        "content": f"error: {reason}.{DRY_RUN_RETRY}",
    }


def test_each_call_of_a_turn_gets_its_verdict(tmp_path):
    task = verified_task(tmp_path)
    turn = [book("osl"), book("par", people=40)]
    result, requests = run(task, [ok(tool_calls=turn), ok(tool_calls=[book("osl"), book("par")])])
    assert result.ok and len(result.calls) == 2
    contents = [m["content"] for m in requests[1]["messages"][-2:]]
    assert contents[0] == DRY_RUN_OK
    assert contents[1].startswith("error: book_table: at most 12 people per table.")


def test_a_call_that_stays_invalid_is_rejected_with_the_reason(tmp_path):
    task = verified_task(tmp_path)
    result, requests = run(task, [ok(tool_calls=[book("atlantis")])] * 10)
    assert len(requests) == task.spec.teacher.max_steps == 4
    assert result.error == (
        "step 3: dry-run: book_table: unknown city_id 'atlantis'; look it up with find_city"
    )
    assert result.error_kind == "dry_run" and not result.ok


def test_final_tools_without_a_dry_run_are_not_checked(tmp_path):
    task = verified_task(tmp_path)
    assert set(task.dry_runs) == {"book_table"}
    result, requests = run(task, [ok(tool_calls=[tool_call("no_action", {"reason": "chit_chat"})])])
    assert result.ok and len(requests) == 1


def test_a_mixed_turn_runs_the_helpers_and_asks_again_without_its_final_calls(tmp_path):
    task = verified_task(tmp_path)
    mixed = [tool_call("find_city", {"name": "Oslo"}), book("oslo")]
    result, requests = run(task, [ok(tool_calls=mixed), ok(tool_calls=[book("osl")])])
    assert result.ok and result.calls[0].arguments["city_id"] == "osl"
    assert result.trace[0]["dropped_final_calls"] == [
        {"name": "book_table", "arguments": {"city_id": "oslo", "people": 2}}
    ]
    looked_up, answer = requests[1]["messages"][-2:]
    assert [c["function"]["name"] for c in looked_up["tool_calls"]] == ["find_city"]
    assert answer["content"] == '{"city_id": "osl"}'
    assert "dry_run_errors" not in result.trace[0]


def test_a_mixed_turn_on_the_last_step_is_the_answer(tmp_path):
    task = verified_task(tmp_path)
    lookup = ok(tool_calls=[tool_call("find_city", {"name": "Oslo"})])
    mixed = ok(tool_calls=[tool_call("find_city", {"name": "Oslo"}), book("osl")])
    result, requests = run(task, [lookup, lookup, lookup, mixed])
    assert result.ok and len(requests) == 4 and result.calls[0].arguments["city_id"] == "osl"
    assert result.trace[3]["ignored_helper_calls"][0]["name"] == "find_city"


def test_a_dry_run_that_raises_rejects_the_sample_with_the_reason(tmp_path):
    task = verified_task(tmp_path, "def book_table(city_id, people):\n    return {}[city_id]\n")
    result, requests = run(task, [ok(tool_calls=[book("osl")])] * 4)
    assert len(requests) == 1 and result.error_kind == "dry_run"
    assert result.error == "step 0: dry-run failed: book_table failed: KeyError: 'osl'"
    assert result.trace[0]["dry_run_failed"] == "book_table failed: KeyError: 'osl'"


def test_a_dry_run_that_hangs_is_stopped_by_the_timeout(tmp_path):
    code = "def book_table(city_id, people):\n    if city_id == 'osl':\n        time.sleep(60)\n"
    task = verified_task(tmp_path, code, timeout_s=0.5)
    started = time.monotonic()
    result, _ = run(task, [ok(tool_calls=[book("osl")])])
    assert time.monotonic() - started < 10 and result.error_kind == "dry_run"
    assert result.error == "step 0: dry-run failed: dry-run of book_table timed out after 0.5 s"
    assert task.dry_run("book_table", {"city_id": "par", "people": 2}) is None  # restarted


def test_arguments_that_do_not_fit_the_dry_run_are_a_verdict(tmp_path):
    task = verified_task(tmp_path)
    assert task.dry_run("book_table", {"city": "osl", "people": 2}) == (
        "book_table: missing a required argument: 'city_id'"
    )
    assert task.dry_run("book_table", ["osl"]) == "book_table: arguments must be an object"
    assert task.dry_run("book_table", {"city_id": "osl", "people": 2}) is None


def verifying_teacher(body: dict):
    """Writes the city's name as its id; after a dry-run error, the real id (never for Rome)."""
    messages = body["messages"]
    user = messages[-1]["content"] if messages[-1]["role"] == "user" else None
    user = user or next(m["content"] for m in reversed(messages) if m["role"] == "user")
    city = next((c for c in ("Paris", "Rome", "Lima", "Oslo", "oslo") if c in user), None)
    if city is None:
        return ok(tool_calls=[tool_call("no_action", {"reason": "chit_chat"})])
    corrected = messages[-1]["role"] == "tool" and messages[-1]["content"].startswith("error:")
    city_id = city.lower()[:3] if corrected and city != "Rome" else city.lower()
    people = int(next(w for w in user.split() if w.isdigit()))
    return ok(tool_calls=[book(city_id, people)])


def test_the_label_stage_accepts_corrected_calls_and_rejects_invalid_ones(tmp_path):
    task = verified_task(tmp_path)
    conf = LabelConfig.model_validate(
        {"teacher": {"model": "scripted", "timeout_s": 5}, "quality": {"samples": 2}}
    )
    with scripted_server(default=verifying_teacher) as server:
        conf.teacher.url = server.url
        label.run(task, conf.model_copy(update={"test_limit": 0}), tmp_path / "run")
    out = tmp_path / "run" / "label"
    labeled = {r["id"]: r for r in read_jsonl(out / "labeled.jsonl")}
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
    assert sorted(labeled) == ["t1", "t3", "t5", "t6"]
    assert labeled["t1"]["label"]["tool_calls"][0]["arguments"] == {"city_id": "par", "people": 4}
    assert labeled["t1"]["meta"]["trace"][0]["dry_run_errors"]
    assert rejected["t2"]["reason_kind"] == "dry_run"
    assert rejected["t2"]["reason"].startswith(
        "the environment rejected every sample: step 3: dry-run: book_table: unknown city_id 'rome'"
    )
    report = json.loads((out / "label_report.json").read_text())
    assert report["rejection_reasons"] == {"dry_run": 1, "duplicate": 1}


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"dry_run": "sometimes"},
            r"task\.yaml: helpers\.dry_run: Input should be a valid boolean",
        ),
        (
            {"dryrun": True},
            r"task\.yaml: helpers\.dryrun: unknown key \(did you mean 'dry_run'\?\)",
        ),
        ({"schemas": 3}, r"task\.yaml: helpers\.schemas: Input should be a valid string"),
        ({"schema": "x"}, r"task\.yaml: helpers\.schema: unknown key \(did you mean 'schemas'\?\)"),
    ],
)
def test_the_new_task_keys_are_validated(tmp_path, change, message):
    from supertiny.core.config import ConfigError

    folder = tmp_path / "task"
    shutil.copytree(ASSETS, folder)
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    spec["helpers"].update(change)
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=message) as err:
        Task.load(folder / "task.yaml")
    assert str(folder / "task.yaml") in str(err.value)


def test_dry_run_without_any_dry_run_function_is_refused(tmp_path):
    from supertiny.core.config import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"task\.yaml: helpers\.dry_run: true, but .*helpers\.py has no function named "
        r"like a final tool \(book_table, no_action\)",
    ):
        verified_task(tmp_path, "")


def test_the_teacher_is_sent_the_schemas_the_hook_generated(tmp_path):
    hook = (
        "\ndef city_enum(tools):\n"
        "    tools[0]['function']['parameters']['properties']['city_id']['enum'] = ['osl']\n"
        "    return tools\n"
    )
    folder = tmp_path / "task"
    verified_task(tmp_path, CHECK_CITY + hook)
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    spec["helpers"]["schemas"] = "city_enum"
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))
    task = Task.load(folder / "task.yaml")
    result, requests = run(task, [ok(tool_calls=[book("osl")])])
    sent = {t["function"]["name"]: t["function"] for t in requests[0]["tools"]}
    assert result.ok and sent["book_table"]["parameters"]["properties"]["city_id"]["enum"] == [
        "osl"
    ]
