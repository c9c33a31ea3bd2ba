"""The Task: loading and its errors, prompts, data, helper execution, evaluate() and reward()."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from supertiny.config import ConfigError
from supertiny.task import Task, ToolError

ASSETS = Path(__file__).parents[1] / "assets" / "tiny_task"


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
