"""Tests for examples/smart_home: registry, helper tools, generator, gold and task.yaml agree."""

from __future__ import annotations

import inspect
import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import jsonschema
import pytest
import yaml

from supertiny.core.task import import_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smart_home"


def _load(name: str):
    """Load an example file under the module name its siblings use, so they share one copy."""
    return import_file(EXAMPLE / f"{name}.py", f"smart_home_{name}")


home, tools, generate, timeparse = (
    _load("home"),
    _load("tools"),
    _load("generate"),
    _load("timeparse"),
)
CAPABILITY = {
    "set_power": "power",
    "set_brightness": "brightness",
    "set_color": "color",
    "set_temperature": "temperature",
    "media_control": "playback",
    "set_volume": "volume",
    "set_media_source": "source",
    "set_cover_position": "position",
    "set_lock": "lock",
}


@pytest.fixture(scope="module")
def splits():
    return generate.generate(0, 400, 120)


@pytest.fixture(scope="module")
def final_tools():
    return {
        t["function"]["name"]: t["function"]["parameters"]
        for t in json.loads((EXAMPLE / "tools.json").read_text())
    }


@pytest.fixture(scope="module")
def helper_tools():
    return {
        t["function"]["name"]: t["function"]["parameters"]
        for t in json.loads((EXAMPLE / "helper_tools.json").read_text())
    }


@pytest.fixture(scope="module")
def task_yaml():
    return yaml.safe_load((EXAMPLE / "task.yaml").read_text())


def _text(record) -> str:
    return record["messages"][0]["content"]


def _validate(schemas: dict, name: str, arguments: dict) -> None:
    assert name in schemas, f"unknown tool {name}"
    jsonschema.Draft202012Validator(
        schemas[name], format_checker=jsonschema.FormatChecker()
    ).validate(arguments)


# ----- generator ------------------------------------------------------------------------------
def test_generator_is_deterministic_and_seeded():
    assert generate.generate(0, 60, 30) == generate.generate(0, 60, 30)
    assert generate.generate(0, 60, 30) != generate.generate(1, 60, 30)


def test_committed_data_is_the_default_generation(splits):
    for name, records in zip(("train", "test"), splits, strict=True):
        lines = (EXAMPLE / "data" / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == records, (
            f"regenerate data/{name}.jsonl (see README)"
        )


def test_record_shape(splits):
    for records, split in zip(splits, ("train", "test"), strict=True):
        assert len({r["id"] for r in records}) == len(records)
        for r in records:
            assert r["id"].startswith(f"sh-{split}-")
            assert r["messages"][0]["role"] == "user" and _text(r).strip()
            assert r["gold"]["content"] is None and r["gold"]["tool_calls"]
            assert r["meta"]["category"] in generate.CATEGORY_WEIGHTS and r["meta"]["template"]


def test_every_category_in_both_splits(splits):
    for records in splits:
        assert {r["meta"]["category"] for r in records} == set(generate.CATEGORY_WEIGHTS)


def test_splits_share_no_text_templates_or_test_surfaces(splits):
    train, test = splits
    keys = [generate.normalise_text(_text(r)) for r in train + test]
    assert len(set(keys)) == len(keys), "a request text appears twice"
    train_templates = {t for r in train for t in r["meta"]["template"].split("+")}
    test_templates = {t for r in test for t in r["meta"]["template"].split("+")}
    assert not train_templates & test_templates
    assert all(".tr" in t for t in train_templates) and all(".te" in t for t in test_templates)
    held_out = generate.test_only_surfaces()
    assert not held_out & {s for r in train for s in r["meta"]["surfaces"]}
    train_text = "\n".join(_text(r).lower() for r in train)
    leaked = [s for s in held_out if re.search(rf"\b{re.escape(s)}\b", train_text)]
    assert not leaked
    with_held_out = [r for r in test if held_out & set(r["meta"]["surfaces"])]
    assert len(with_held_out) >= 0.3 * len(test)


# ----- gold -----------------------------------------------------------------------------------
def test_gold_validates_against_final_schemas(splits, final_tools):
    for r in splits[0] + splits[1]:
        for call in r["gold"]["tool_calls"]:
            _validate(final_tools, call["name"], call["arguments"])


def test_final_schemas_are_strict(final_tools):
    for name, schema in final_tools.items():
        assert schema["additionalProperties"] is False and set(schema["required"]) <= set(
            schema["properties"]
        )
        good = {"set_power": {"device_id": "light.office_ceiling", "on": True}}.get(name)
        if good:
            assert jsonschema.Draft202012Validator(schema).is_valid(good)
            assert not jsonschema.Draft202012Validator(schema).is_valid({**good, "extra": 1})
    temperature = jsonschema.Draft202012Validator(final_tools["set_temperature"])
    assert not temperature.is_valid({"device_id": "climate.office", "temperature": 35})
    assert not jsonschema.Draft202012Validator(final_tools["set_alarm"]).is_valid({"time": "7:30"})


def test_gold_devices_exist_and_support_the_call(splits):
    for r in splits[0] + splits[1]:
        for call in r["gold"]["tool_calls"]:
            args = call["arguments"]
            if "device_id" not in args:
                continue
            device = tools.get_device_state(args["device_id"])
            if call["name"] in CAPABILITY:
                assert CAPABILITY[call["name"]] in device["capabilities"], (call, _text(r))
            if call["name"] == "set_media_source":
                assert args["source"] in device["sources"]


def test_relative_gold_is_state_plus_step_clamped(splits, task_yaml):
    checked = 0
    for r in splits[0] + splits[1]:
        calls = {c["arguments"].get("device_id"): c["arguments"] for c in r["gold"]["tool_calls"]}
        for change in r["meta"].get("relative", []):
            state = tools.get_device_state(change["device_id"])["state"]
            lo, hi = (10, 30) if change["key"] == "target_temperature" else (0, 100)
            expected = min(hi, max(lo, state[change["key"]] + change["delta"]))
            argument = {
                "brightness": "level",
                "volume": "level",
                "position": "position",
                "target_temperature": "temperature",
            }[change["key"]]
            assert calls[change["device_id"]][argument] == expected, _text(r)
            checked += 1
    assert checked > 40
    prompt = task_yaml["teacher"]["system_prompt"]
    for words in ("brightness ±20", "volume ±10", "cover position ±20", "temperature ±1 °C"):
        assert words in prompt
    assert generate.STEPS == {
        "brightness": 20,
        "volume": 10,
        "position": 20,
        "target_temperature": 1,
    }


def test_time_gold_matches_resolve_time(splits):
    for r in splits[0] + splits[1]:
        for call in r["gold"]["tool_calls"]:
            if call["name"] in ("set_timer", "set_alarm"):
                resolved = tools.resolve_time(r["meta"]["time_expression"])
                key = "duration_seconds" if call["name"] == "set_timer" else "time"
                assert call["arguments"][key] == resolved[key]


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("in 20 minutes", {"duration_seconds": 1200}),
        ("an hour and a half", {"duration_seconds": 5400}),
        ("a quarter of an hour", {"duration_seconds": 900}),
        ("twelve minutes", {"duration_seconds": 720}),
        ("1 hour 20 minutes", {"duration_seconds": 4800}),
        ("20 secs", {"duration_seconds": 20}),
        ("half past seven", {"time": "07:30"}),
        ("quarter to seven", {"time": "06:45"}),
        ("6:45 pm", {"time": "18:45"}),
        ("12 am", {"time": "00:00"}),
        ("noon", {"time": "12:00"}),
        ("7.40", {"time": "07:40"}),
        ("ten past six", {"time": "06:10"}),
        ("21:45", {"time": "21:45"}),
    ],
)
def test_resolve_time(expression, expected):
    assert tools.resolve_time(expression) == expected


# ----- helper tools ---------------------------------------------------------------------------
def test_find_devices_filters():
    kitchen = [d["device_id"] for d in tools.find_devices(room="kitchen", device_type="light")]
    assert kitchen == [
        "light.kitchen_ceiling",
        "light.kitchen_under_cabinet",
        "light.kitchen_island",
    ]
    assert [
        d["device_id"] for d in tools.find_devices(room="lounge", device_type="thermostat")
    ] == ["climate.living_room"]
    assert (
        tools.find_devices(name="the lamp by the couch")[0]["device_id"]
        == "light.living_room_floor_lamp"
    )
    assert tools.find_devices(room="garage", name="lamp by the couch") == []
    assert len(tools.find_devices()) == len(home.DEVICES)
    main = [d for d in tools.find_devices(room="office", device_type="light") if d["main"]]
    assert [d["device_id"] for d in main] == ["light.office_ceiling"]


def test_every_name_and_alias_resolves():
    for device in home.DEVICES:
        for surface in (device.name, *device.aliases, *device.test_aliases):
            assert tools.find_devices(name=surface)[0]["device_id"] == device.id, surface
    rooms = {r["room_id"]: r for r in tools.list_rooms()}
    for room in home.ROOMS:
        assert set(rooms[room.id]["aliases"]) == set(room.aliases + room.test_aliases)
        for surface in (room.name, *room.aliases, *room.test_aliases):
            found = [d["device_id"] for d in tools.find_devices(room=surface)]
            assert found == [d.id for d in home.devices_in(room.id)], surface


def test_state_and_scenes_come_from_the_registry(final_tools):
    for device in home.DEVICES:
        state = tools.get_device_state(device.id)
        assert state["state"] == device.state and state["room"] == device.room
        assert state["capabilities"] == list(device.capabilities)
    scene_ids = [s["scene_id"] for s in tools.list_scenes()]
    assert scene_ids == final_tools["activate_scene"]["properties"]["scene_id"]["enum"]


@pytest.mark.parametrize(
    "helper, arguments, message",
    [
        ("get_device_state", {"device_id": "light.kitchen"}, "Did you mean: light.kitchen_"),
        ("get_device_state", {"device_id": "toaster"}, "Use find_devices"),
        ("find_devices", {"room": "attic"}, "rooms are: kitchen"),
        ("find_devices", {"device_type": "toaster"}, "use one of: light"),
        ("find_devices", {"name": "  "}, "name must describe a device"),
        ("resolve_time", {"expression": "banana o'clock"}, "cannot read the time expression"),
        ("resolve_time", {"expression": "30 hours"}, "outside 1 second .. 24 hours"),
        ("resolve_time", {"expression": ""}, "non-empty string"),
    ],
)
def test_helpers_reject_bad_input_readably(helper, arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(tools, helper)(**arguments)


def test_database_is_built_atomically_on_first_use(tmp_path, monkeypatch):
    path = tmp_path / "nested" / "home.sqlite"
    monkeypatch.setenv("SMART_HOME_DB", str(path))
    assert tools.find_devices(name="roomba")[0]["device_id"] == "vacuum.hallway_robot"
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["home.sqlite"]
    with sqlite3.connect(path) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        assert {"rooms", "devices", "aliases", "state", "scenes", "timers"} <= tables
        assert conn.execute("SELECT COUNT(*) FROM devices").fetchone()[0] == len(home.DEVICES)
        assert conn.execute("SELECT COUNT(*) FROM rooms").fetchone()[0] == len(home.ROOMS)


# ----- task.yaml ------------------------------------------------------------------------------
def test_task_yaml_files_and_helpers(task_yaml, helper_tools):
    assert task_yaml["name"] == "smart_home" and task_yaml["allow_plain_answer"] is False
    for relative in (
        task_yaml["tools"],
        task_yaml["helpers"]["module"],
        task_yaml["helpers"]["tools"],
        task_yaml["data"]["unlabeled"],
        task_yaml["data"]["test"],
    ):
        assert (EXAMPLE / relative).is_file(), relative
    for name in helper_tools:
        assert inspect.isfunction(getattr(tools, name, None)), name
    assert len(task_yaml["student"]["system_prompt"]) < 300
    assert (
        1 <= len(task_yaml["teacher"]["few_shot"]) <= 2 and task_yaml["teacher"]["max_steps"] >= 3
    )


def test_few_shot_calls_validate_and_results_are_real(task_yaml, final_tools, helper_tools):
    schemas = {**final_tools, **helper_tools}
    for shot in task_yaml["teacher"]["few_shot"]:
        messages = shot["messages"]
        calls = {c["id"]: c["function"] for m in messages for c in m.get("tool_calls") or []}
        for fn in calls.values():
            _validate(schemas, fn["name"], json.loads(fn["arguments"]))
        for m in (m for m in messages if m["role"] == "tool"):
            fn = calls[m["tool_call_id"]]
            expected = getattr(tools, fn["name"])(**json.loads(fn["arguments"]))
            assert json.loads(m["content"]) == expected
        assert all(c["function"]["name"] in final_tools for c in messages[-1]["tool_calls"])


def test_task_loads_with_supertiny():
    task_module = pytest.importorskip("supertiny.core.task")
    task = task_module.Task.load(EXAMPLE / "task.yaml")
    assert set(task.helpers) == {
        "find_devices",
        "get_device_state",
        "list_rooms",
        "list_scenes",
        "resolve_time",
    }
    assert len(list(task.records("test"))) == 120


def test_readme_commands(tmp_path, capsys):
    generate.main(["--seed", "0", "--train", "400", "--test", "120", "--out", str(tmp_path)])
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / name).read_text() == (EXAMPLE / "data" / name).read_text()
    capsys.readouterr()
    tools.main(["find_devices", '{"room": "kitchen", "device_type": "light"}'])
    assert len(json.loads(capsys.readouterr().out)) == 3
    with pytest.raises(ValueError, match="light.kitchen_ceiling cannot do set_volume"):
        tools.main(["set_volume", '{"device_id": "light.kitchen_ceiling", "level": 5}'])
    tools.main(["set_volume", '{"device_id": "media.kitchen_speaker", "level": 5}'])
    assert json.loads(capsys.readouterr().out) is None


# ----- verified labels: the final tools' dry-runs and the generated schemas ---------------------
def test_the_dry_runs_cover_every_final_tool_with_a_device(final_tools):
    assert tools.CAPABILITY == CAPABILITY | {"get_status": None}
    with_device = {n for n, s in final_tools.items() if "device_id" in s["properties"]}
    assert with_device == set(tools.CAPABILITY)
    for name in tools.CAPABILITY:
        assert list(inspect.signature(getattr(tools, name)).parameters) == list(
            final_tools[name]["properties"]
        ), name


@pytest.mark.parametrize(
    "tool, arguments, message",
    [
        (
            "set_power",
            {"device_id": "light.porch_floor_lamp", "on": True},
            r"unknown device_id 'light\.porch_floor_lamp'\. Did you mean: "
            r"light\.living_room_floor_lamp, .*Use find_devices",
        ),
        ("get_status", {"device_id": "lock.front_door"}, r"unknown device_id 'lock\.front_door'"),
        (
            "set_volume",
            {"device_id": "light.kitchen_ceiling", "level": 5},
            r"light\.kitchen_ceiling cannot do set_volume \(its capabilities: power, brightness\); "
            r"in the same room, media\.kitchen_speaker can",
        ),
        (
            "set_lock",
            {"device_id": "light.office_ceiling", "locked": True},
            r"cannot do set_lock .*; nothing in that room can",
        ),
        (
            "set_media_source",
            {"device_id": "media.kitchen_speaker", "source": "hdmi"},
            r"media\.kitchen_speaker has no source 'hdmi'; its sources: ",
        ),
        (
            "set_temperature",
            {"device_id": "climate.office", "temperature": 35},
            r"temperature must be within 10-30 °C, got 35",
        ),
    ],
)
def test_dry_runs_reject_impossible_calls_with_a_reason(tool, arguments, message):
    with pytest.raises(ValueError, match=message):
        getattr(tools, tool)(**arguments)


def test_every_gold_call_passes_its_dry_run_and_the_generated_schemas(splits):
    schemas = {
        t["function"]["name"]: t["function"]["parameters"]
        for t in tools.tool_schemas(json.loads((EXAMPLE / "tools.json").read_text()))
    }
    for r in splits[0] + splits[1]:
        for call in r["gold"]["tool_calls"]:
            _validate(schemas, call["name"], call["arguments"])
            if call["name"] in tools.CAPABILITY:
                assert getattr(tools, call["name"])(**call["arguments"]) is None, _text(r)


def test_tool_schemas_make_ids_an_enum_of_the_capable_devices(final_tools):
    original = json.loads((EXAMPLE / "tools.json").read_text())
    rewritten = {t["function"]["name"]: t["function"] for t in tools.tool_schemas(original)}
    with closing(sqlite3.connect(tools.db_path())) as conn:
        rows = conn.execute("SELECT device_id, capabilities FROM devices").fetchall()
    capable = {
        name: sorted(d for d, caps in rows if need is None or need in json.loads(caps))
        for name, need in tools.CAPABILITY.items()
    }
    for name in tools.CAPABILITY:
        prop = rewritten[name]["parameters"]["properties"]["device_id"]
        assert sorted(prop["enum"]) == capable[name] and "pattern" not in prop
    assert len(capable["get_status"]) == 58
    assert capable["set_lock"] == [
        "lock.garage_side_door",
        "lock.hallway_front_door",
        "lock.kitchen_back_door",
    ]
    assert rewritten["set_timer"]["parameters"] == final_tools["set_timer"]


def test_the_task_turns_verification_on():
    from supertiny.core.task import Task

    task = Task.load(EXAMPLE / "task.yaml")
    assert task.spec.helpers.dry_run and task.spec.helpers.schemas == "tool_schemas"
    assert set(task.dry_runs) == set(tools.CAPABILITY)
    enum = {t["function"]["name"]: t["function"]["parameters"] for t in task.tools}
    assert len(enum["set_power"]["properties"]["device_id"]["enum"]) == 48
    assert task.dry_run("set_power", {"device_id": "light.kitchen_ceiling", "on": True}) is None
    assert task.dry_run("set_volume", {"device_id": "light.kitchen_ceiling", "level": 5}) == (
        "set_volume: light.kitchen_ceiling cannot do set_volume (its capabilities: power, "
        "brightness); in the same room, media.kitchen_speaker can"
    )
    invalid = {"tool_calls": [{"name": "set_power", "arguments": {"device_id": "x.y", "on": True}}]}
    assert not task.evaluate(invalid, invalid).valid  # the scorer sees the enum too
