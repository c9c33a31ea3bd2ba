"""The Task: loading and its errors, prompts, data, helper execution, evaluate() and reward()."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from supertiny.core.config import ConfigError
from supertiny.core.task import Task, ToolError

ASSETS = Path(__file__).parents[2] / "assets" / "tiny_task"


@pytest.fixture
def task_dir(tmp_path):
    shutil.copytree(ASSETS, tmp_path / "task")
    return tmp_path / "task"


def edit(task_dir, change):
    path = task_dir / "task.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_exposes_tools_prompts_and_data(task_dir):
    task = Task.load(task_dir / "task.yaml")
    assert task.name == "tiny" and task.final_names == ["book_table", "no_action"]
    assert [t["function"]["name"] for t in task.teacher_tools] == [
        "find_city",
        "book_table",
        "no_action",
    ]
    messages = task.teacher_messages([{"role": "user", "content": "x"}])
    assert messages[0]["role"] == "system" and messages[1]["content"] == "table for 2 in Oslo"
    assert messages[-1] == {"role": "user", "content": "x"}
    assert task.student_messages([{"role": "user", "content": "x"}]) == [
        {"role": "system", "content": "Book the table."},
        {"role": "user", "content": "x"},
    ]
    train = list(task.records("unlabeled"))
    assert len(train) == 6 and train[0]["gold"]["tool_calls"][0]["name"] == "book_table"
    assert {"id", "messages", "tools", "label", "gold", "meta"} <= set(train[0])


def test_input_shorthand(task_dir):
    (task_dir / "train.jsonl").write_text('{"input": "2 in Oslo"}\n')
    record = next(Task.load(task_dir / "task.yaml").records("unlabeled"))
    assert record["id"] == "train-00001" and record["messages"] == [
        {"role": "user", "content": "2 in Oslo"}
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(nmae="x"), r"task\.yaml: nmae: unknown key \(did you mean 'name'\?\)"),
        (lambda d: d["teacher"].update(max_steps="lots"), r"teacher\.max_steps: .*integer"),
        (lambda d: d.pop("student"), r"student: Field required"),
        (lambda d: d.update(tools="missing.json"), r"tools: file not found: .*missing\.json"),
        (lambda d: d["helpers"].update(module="nope.py"), r"helper module not found"),
        (
            lambda d: d["helpers"]["tools"][0]["function"].update(name="find_town"),
            r"'find_town' has no function of that name in .*helpers\.py",
        ),
        (
            lambda d: d["helpers"]["tools"][0]["function"]["parameters"].update(type="objekt"),
            r"find_city\): parameters is not a valid JSON schema",
        ),
        (
            lambda d: d["teacher"]["few_shot"][0]["messages"][1]["tool_calls"][0][
                "function"
            ].update(name="fly"),
            r"few_shot\[0\]: calls unknown tool 'fly'",
        ),
    ],
)
def test_typos_in_the_task_file_are_one_line_errors(task_dir, change, message):
    path = edit(task_dir, change)
    with pytest.raises(ConfigError, match=message) as err:
        Task.load(path)
    assert str(path) in str(err.value)


def test_broken_helper_module_names_the_file(task_dir):
    (task_dir / "helpers.py").write_text("import does_not_exist\n")
    with pytest.raises(
        ConfigError, match=r"helpers\.py: importing the helper module failed: ModuleNotFoundError"
    ):
        Task.load(task_dir / "task.yaml")


def test_missing_data_file(task_dir):
    (task_dir / "train.jsonl").unlink()
    task = Task.load(task_dir / "task.yaml")
    with pytest.raises(ConfigError, match=r"data\.unlabeled: file not found"):
        list(task.records("unlabeled"))


def test_run_helper_results_and_errors(task_dir):
    task = Task.load(task_dir / "task.yaml")
    assert task.run_helper("find_city", {"name": "Rome"}) == {"city_id": "rom"}
    with pytest.raises(ToolError, match="find_city failed: ValueError: no city named 'Atlantis'"):
        task.run_helper("find_city", {"name": "Atlantis"})
    with pytest.raises(ToolError, match="find_city: missing a required argument: 'name'"):
        task.run_helper("find_city", {"town": "Rome"})
    with pytest.raises(ToolError, match="unknown tool 'book_table'"):
        task.run_helper("book_table", {})


def test_evaluate_and_reward_share_one_definition(task_dir):
    task = Task.load(task_dir / "task.yaml")
    gold = {
        "tool_calls": [{"name": "book_table", "arguments": {"city_id": "par", "people": 4}}],
        "content": None,
    }
    text = '<tool_call>\n{"name": "book_table", "arguments": {"city_id": "par", "people": "4"}}\n</tool_call>'
    assert task.evaluate(text, gold).exact
    assert task.reward(text, gold) == 1.0 and task.reward(text, gold, kind="exact") == 1.0
    wrong = json.dumps({"name": "book_table", "arguments": {"city_id": "par", "people": 5}})
    assert not task.evaluate(wrong, gold).exact
    assert task.reward(wrong, gold) == pytest.approx(0.5)  # one of two keys right
    assert task.reward(wrong, gold, kind="exact") == 0.0
    assert task.reward('{"name": "fly", "arguments": {}}', gold) == -1.0
    assert task.reward("<tool_call>{broken", gold) == -1.0


# ----- helpers run in their own process, each call bounded -----------------------------------
MISBEHAVING = """
import os, sys, time
from pathlib import Path

def find_city(name: str) -> dict:
    print("looking up", name)  # a helper's prints must not break its reply
    if name == "Nowhere":
        Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
        while True:  # a pure-Python hang: no I/O, no sleep to interrupt
            pass
    if name == "Sleepy":
        time.sleep(3600)
    if name == "Quit":
        sys.exit(3)
    if name == "Crash":
        os._exit(7)
    return {"city_id": name[:3].lower()}
"""


def misbehaving_task(task_dir, timeout_s=0.5):
    (task_dir / "helpers.py").write_text(MISBEHAVING)
    return Task.load(edit(task_dir, lambda d: d["helpers"].update(timeout_s=timeout_s)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_hanging_helper_times_out_is_stopped_and_the_next_call_works(
    task_dir, tmp_path, monkeypatch
):
    pid_file = tmp_path / "helper.pid"
    monkeypatch.setenv("PID_FILE", str(pid_file))
    task = misbehaving_task(task_dir)
    assert task.run_helper("find_city", {"name": "Rome"}) == {"city_id": "rom"}
    for name in ("Nowhere", "Sleepy"):
        started = time.monotonic()
        with pytest.raises(ToolError, match=r"^helper find_city timed out after 0\.5 s$"):
            task.run_helper("find_city", {"name": name})
        assert time.monotonic() - started < 5
    pid = int(pid_file.read_text())
    assert pid != os.getpid() and not _alive(pid)  # the spinning loop really ended
    assert task.run_helper("find_city", {"name": "Lima"}) == {"city_id": "lim"}


def test_a_helper_that_exits_or_crashes_is_an_error_and_the_next_call_works(task_dir):
    task = misbehaving_task(task_dir)
    with pytest.raises(ToolError, match=r"^find_city failed: SystemExit: 3$"):
        task.run_helper("find_city", {"name": "Quit"})
    with pytest.raises(ToolError, match=r"find_city: the helper process ended \(exit code 7\)"):
        task.run_helper("find_city", {"name": "Crash"})
    assert task.run_helper("find_city", {"name": "Oslo"}) == {"city_id": "osl"}


def test_results_and_arguments_that_are_not_json_are_errors(task_dir):
    (task_dir / "helpers.py").write_text("def find_city(name):\n    return {name}\n")
    task = Task.load(task_dir / "task.yaml")
    with pytest.raises(ToolError, match="find_city failed: TypeError: .*set is not JSON"):
        task.run_helper("find_city", {"name": "Rome"})
    with pytest.raises(ToolError, match="find_city: arguments are not JSON: .*set"):
        task.run_helper("find_city", {"name": {"Rome"}})


@pytest.mark.parametrize(
    "value, message",
    [
        (0, r"helpers\.timeout_s: Input should be greater than 0"),
        (-1, r"helpers\.timeout_s: Input should be greater than 0"),
        (601, r"helpers\.timeout_s: Input should be less than or equal to 600"),
        ("soon", r"helpers\.timeout_s: Input should be a valid number"),
    ],
)
def test_the_helper_timeout_is_validated(task_dir, value, message):
    path = edit(task_dir, lambda d: d["helpers"].update(timeout_s=value))
    with pytest.raises(ConfigError, match=message) as err:
        Task.load(path)
    assert str(path) in str(err.value)


def test_a_misspelt_timeout_key_is_refused(task_dir):
    path = edit(task_dir, lambda d: d["helpers"].update(timeout=2))
    with pytest.raises(
        ConfigError, match=r"helpers\.timeout: unknown key \(did you mean 'timeout_s'\?\)"
    ):
        Task.load(path)


@pytest.mark.parametrize("name", ["../x", "..", ".", "/tmp/x", "a/b", "a\\b", "C:x", "a\nb"])
def test_names_that_would_leave_runs_are_refused(task_dir, name):
    path = edit(task_dir, lambda d: d.update(name=name))
    with pytest.raises(ConfigError, match=r"task\.yaml: name: .*must be a plain folder name"):
        Task.load(path)


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_name_is_refused(task_dir, name):
    path = edit(task_dir, lambda d: d.update(name=name))
    with pytest.raises(ConfigError, match=r"task\.yaml: name: .*must not be empty"):
        Task.load(path)


# ----- schemas generated from the environment (helpers.schemas) -------------------------------
CITY_ENUM = """

def city_enum(tools):
    for tool in tools:
        properties = tool["function"]["parameters"]["properties"]
        if "city_id" in properties:
            properties["city_id"]["enum"] = sorted(CITIES.values())
    return tools
"""


def schema_task(task_dir, hook_code=CITY_ENUM, hook="city_enum"):
    with (task_dir / "helpers.py").open("a") as handle:
        handle.write(hook_code)
    return edit(task_dir, lambda d: d["helpers"].update(schemas=hook))


def test_a_schema_hook_makes_ids_an_enum_of_the_environment(task_dir):
    task = Task.load(schema_task(task_dir))
    city = {t["function"]["name"]: t for t in task.tools}["book_table"]["function"]
    assert city["parameters"]["properties"]["city_id"]["enum"] == ["lim", "osl", "par", "rom"]
    assert task.teacher_tools[-2]["function"] == city  # the teacher sees it too
    assert '"lim"' not in (task_dir / "tools.json").read_text()  # the file is not touched
    made_up = {"tool_calls": [{"name": "book_table", "arguments": {"city_id": "ber", "people": 2}}]}
    assert not task.evaluate(made_up, made_up).valid  # and the scorer
    real = {"tool_calls": [{"name": "book_table", "arguments": {"city_id": "osl", "people": 2}}]}
    assert task.evaluate(real, real).exact


def test_few_shot_examples_are_checked_against_the_generated_schemas(task_dir):
    path = schema_task(task_dir, CITY_ENUM.replace("sorted(CITIES.values())", '["par"]'))
    with pytest.raises(ConfigError, match=r"teacher\.few_shot\[0\]: .*'osl' is not one of"):
        Task.load(path)


@pytest.mark.parametrize(
    "hook_code, hook, message",
    [
        ("", "city_enum", r"helpers\.schemas: no function 'city_enum' in .*helpers\.py"),
        (
            "\ndef broken(tools):\n    raise KeyError('rooms')\n",
            "broken",
            r"helpers\.schemas \(helpers\.py:broken\): raised KeyError: 'rooms'",
        ),
        (
            "\ndef nothing(tools):\n    pass\n",
            "nothing",
            r"helpers\.schemas \(helpers\.py:nothing\): expected a non-empty list of tools",
        ),
        (
            "\ndef bad(tools):\n    tools[0]['function']['parameters']['type'] = 'strin'\n"
            "    return tools\n",
            "bad",
            r"helpers\.schemas \(helpers\.py:bad\)\[0\] \(book_table\): parameters is not a "
            r"valid JSON schema",
        ),
        (
            "\ndef renamed(tools):\n    tools[0]['function']['name'] = 'reserve'\n    return tools\n",
            "renamed",
            r"must keep the final tools' names and order \['book_table', 'no_action'\], "
            r"returned \['reserve', 'no_action'\]",
        ),
    ],
)
def test_a_broken_schema_hook_is_a_clear_error(task_dir, hook_code, hook, message):
    path = schema_task(task_dir, hook_code, hook)
    with pytest.raises(ConfigError, match=message) as err:
        Task.load(path)
    assert str(path) in str(err.value)
