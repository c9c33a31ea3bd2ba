"""Tests for examples/shop_search: catalogue, helper tools, generator, gold, task and pipeline agree."""

from __future__ import annotations

import inspect
import json
import re
import sqlite3
from pathlib import Path

import pytest
import yaml

from supertiny.compress import config as compress_config
from supertiny.core import toolcalls
from supertiny.core.task import Task, import_file
from supertiny.evaluate import config as eval_config
from supertiny.label import config as label_config
from supertiny.train import config as train_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop_search"


def _load(name: str):
    """Load an example file under the module name its siblings use, so they share one copy."""
    return import_file(EXAMPLE / f"{name}.py", f"shop_search_{name}")


catalogue, tools, generate, prices = (
    _load("catalogue"),
    _load("tools"),
    _load("generate"),
    _load("prices"),
)
PRODUCTS = {p.id: p for p in catalogue.PRODUCTS}


@pytest.fixture(scope="module")
def task():
    return Task.load(EXAMPLE / "task.yaml")


@pytest.fixture(scope="module")
def splits():
    return generate.generate(0, 400, 120)


@pytest.fixture(scope="module")
def task_yaml():
    return yaml.safe_load((EXAMPLE / "task.yaml").read_text())


def _text(record) -> str:
    return record["messages"][0]["content"]


def _args(record) -> dict:
    return record["gold"]["tool_calls"][0]["arguments"]


# ----- task.yaml ------------------------------------------------------------------------------
def test_task_loads(task, task_yaml):
    assert task.name == "shop_search" and task.spec.allow_plain_answer is False
    assert set(task.helpers) == {
        "find_category",
        "find_brand",
        "parse_price",
        "list_attribute_values",
    }
    assert task.final_names == ["search_products", "not_a_product_search"]
    assert task.spec.student.tools_in_prompt is False
    assert len(task.spec.student.system_prompt) < 300
    assert 2 <= len(task.spec.teacher.few_shot) <= 3
    assert len(list(task.records("test"))) == 120 and len(list(task.records("unlabeled"))) == 400
    for name in tools.HELPERS:
        assert inspect.isfunction(getattr(tools, name, None)), name


def test_few_shot_helper_results_are_real(task, task_yaml):
    for shot in task_yaml["teacher"]["few_shot"]:
        messages = shot["messages"]
        calls = {c["id"]: c["function"] for m in messages for c in m.get("tool_calls") or []}
        for m in (m for m in messages if m["role"] == "tool"):
            fn = calls[m["tool_call_id"]]
            expected = task.run_helper(fn["name"], json.loads(fn["arguments"]))
            assert json.loads(m["content"]) == expected, fn
        final = messages[-1]["tool_calls"]
        assert len(final) == 1 and task.is_final(final[0]["function"]["name"])
        _, errors = toolcalls.validate([toolcalls.ToolCall.from_dict(final[0])], task.tools)
        assert not errors


def test_tool_enums_are_the_catalogue(task):
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in task.tools}
    search = schemas["search_products"]
    props, attrs = search["properties"], search["properties"]["attributes"]["properties"]
    assert props["category"]["enum"] == [c.id for c in catalogue.CATEGORIES]
    assert props["brand"]["enum"] == [b.id for b in catalogue.BRANDS]
    assert props["currency"]["enum"] == [c.code for c in catalogue.CURRENCIES]
    assert props["sort"]["enum"] == list(catalogue.SORTS)
    assert attrs["size"]["enum"] == list(catalogue.SIZE_VALUES)
    assert attrs["color"]["enum"] == [v.value for v in catalogue.COLORS]
    assert attrs["material"]["enum"] == [v.value for v in catalogue.MATERIALS]
    assert props["query"]["enum"] == [v.value for v in catalogue.FEATURES]
    assert props["price_min"]["exclusiveMinimum"] == props["price_max"]["exclusiveMinimum"] == 0
    for schema in (*schemas.values(), search["properties"]["attributes"]):
        assert schema["additionalProperties"] is False
    assert search["required"] == ["category"]
    assert len(catalogue.CATEGORIES) == 25 and len(catalogue.BRANDS) >= 60


def test_defaults_may_be_omitted(task):
    stated = {"category": "jackets", "currency": "EUR", "attributes": {}, "sort": "relevance"}
    pred = {"tool_calls": [{"name": "search_products", "arguments": stated}]}
    gold = {"tool_calls": [{"name": "search_products", "arguments": {"category": "jackets"}}]}
    assert task.evaluate(pred, gold).exact
    wrong = {**stated, "sort": "rating"}
    assert not task.evaluate(
        {"tool_calls": [{"name": "search_products", "arguments": wrong}]}, gold
    ).exact


# ----- helper tools ---------------------------------------------------------------------------
def test_every_category_and_brand_name_resolves():
    for c in catalogue.CATEGORIES:
        for surface in (c.name, c.id.replace("_", " "), *c.aliases, *c.test_aliases):
            found = tools.find_category(f"show me {surface} please")
            assert found and found[0]["category"] == c.id, surface
    for b in catalogue.BRANDS:
        for surface in (b.name, *b.aliases, *b.test_aliases):
            found = tools.find_brand(surface)
            assert found and found[0]["brand"] == b.id, surface
            assert found[0]["categories"] == list(b.categories)


def test_find_category_fuzzy_and_unsold():
    assert tools.find_category("runnign shoes")[0]["category"] == "running_shoes"
    assert tools.find_category("nike smart watches under 300")[0]["category"] == "smartwatches"
    assert tools.find_category("car tyres") == [] and tools.find_category("dog food") == []
    assert tools.find_brand("adiddas")[0]["brand"] == "adidas" and tools.find_brand("gucci") == []


def test_list_attribute_values_are_what_products_come_in():
    for c in catalogue.CATEGORIES:
        in_category = [p for p in catalogue.PRODUCTS if p.category == c.id]
        present = {
            "size": {s for p in in_category for s in p.sizes},
            "color": {x for p in in_category for x in p.colors},
            "material": {p.material for p in in_category},
            "feature": {f for p in in_category for f in p.features},
        }
        for attribute, values in present.items():
            listed = tools.list_attribute_values(c.id, attribute)
            assert {v["value"] for v in listed} == values, (c.id, attribute)
    grey = next(v for v in tools.list_attribute_values("sweaters", "color") if v["value"] == "grey")
    assert set(grey["also"]) == {"gray", "charcoal"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("under 50 quid", {"price_max": 50, "currency": "GBP"}),
        ("between $20 and 30", {"price_min": 20, "price_max": 30, "currency": "USD"}),
        ("around 100 euros", {"price_min": 90, "price_max": 110, "currency": "EUR"}),
        ("less than fifty bucks", {"price_max": 50, "currency": "USD"}),
        ("a hundred pounds or less", {"price_max": 100, "currency": "GBP"}),
        ("€300+", {"price_min": 300, "currency": "EUR"}),
        ("from 20 to 30 dollars", {"price_min": 20, "price_max": 30, "currency": "USD"}),
        ("no more than 75", {"price_max": 75, "currency": "EUR"}),
        ("more than 75", {"price_min": 75, "currency": "EUR"}),
        ("1.5k tops", {"price_max": 1500, "currency": "EUR"}),
        ("over 1,200 gbp", {"price_min": 1200, "currency": "GBP"}),
        ("about 45", {"price_min": 40.5, "price_max": 49.5, "currency": "EUR"}),
        ("two grand or so", {"price_min": 1800, "price_max": 2200, "currency": "EUR"}),
        ("starting at 99.99", {"price_min": 99.99, "currency": "EUR"}),
        (
            "500 us dollars to 600 us dollars",
            {"price_min": 500, "price_max": 600, "currency": "USD"},
        ),
        ("hoka running shoes size 42 under 80 euros", {"price_max": 80, "currency": "EUR"}),
        (
            "2 person tents in the 100 to 200 range",
            {"price_min": 100, "price_max": 200, "currency": "EUR"},
        ),
    ],
)
def test_parse_price(text, expected):
    assert tools.parse_price(text) == expected


@pytest.mark.parametrize(
    "helper, arguments, message",
    [
        ("parse_price", {"text": "cheap please"}, "no price found"),
        ("parse_price", {"text": "$20 or £30"}, "several currencies"),
        ("parse_price", {"text": "10 20 30"}, "several amounts"),
        ("parse_price", {"text": " "}, "non-empty string"),
        ("find_category", {"text": ""}, "non-empty string"),
        ("find_brand", {"name": "!!"}, "non-empty string"),
        (
            "list_attribute_values",
            {"category": "jacket", "attribute": "color"},
            "Did you mean: jackets",
        ),
        ("list_attribute_values", {"category": "jackets", "attribute": "fit"}, "use one of: size"),
    ],
)
def test_helpers_reject_bad_input_readably(helper, arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(tools, helper)(**arguments)


def test_database_is_built_atomically_on_first_use(tmp_path, monkeypatch):
    path = tmp_path / "nested" / "catalogue.sqlite"
    monkeypatch.setenv("SHOP_SEARCH_DB", str(path))
    assert tools.find_brand("roomba")[0]["brand"] == "irobot"
    assert [p.name for p in path.parent.iterdir()] == ["catalogue.sqlite"]
    with sqlite3.connect(path) as conn:
        count = conn.execute("SELECT COUNT(*) FROM products").fetchone()[0]
        leaves = conn.execute("SELECT COUNT(*) FROM categories").fetchone()[0]
    assert count == len(catalogue.PRODUCTS) and leaves == len(catalogue.CATEGORIES)


# ----- generator ------------------------------------------------------------------------------
def test_generator_is_deterministic_and_seeded(tmp_path, capsys):
    for name in ("a", "b"):
        generate.main(
            ["--seed", "0", "--train", "400", "--test", "120", "--out", str(tmp_path / name)]
        )
    for name in ("train.jsonl", "test.jsonl"):
        first = (tmp_path / "a" / name).read_bytes()
        assert first == (tmp_path / "b" / name).read_bytes()
        assert first == (EXAMPLE / "data" / name).read_bytes(), f"regenerate data/{name} (README)"
    assert generate.generate(0, 60, 30) != generate.generate(1, 60, 30)
    capsys.readouterr()


def test_every_category_in_both_splits(splits):
    for records in splits:
        assert {r["meta"]["category"] for r in records} == set(generate.CATEGORY_WEIGHTS)


def test_splits_share_no_text_templates_or_test_surfaces(splits):
    train, test = splits
    train_keys = {generate.normalise_text(_text(r)) for r in train}
    assert len(train_keys) == len(train)
    assert not [r for r in test if generate.normalise_text(_text(r)) in train_keys]
    assert not {_text(r) for r in test} & {_text(r) for r in train}
    train_templates = {t for r in train for t in r["meta"]["template"].split("+")}
    test_templates = {t for r in test for t in r["meta"]["template"].split("+")}
    assert all(".tr" in t for t in train_templates) and all(".te" in t for t in test_templates)
    held_out = generate.test_only_surfaces()
    assert not held_out & {s for r in train for s in r["meta"]["surfaces"]}
    train_text = "\n".join(_text(r).lower() for r in train)
    assert not [s for s in held_out if re.search(rf"(?<!\w){re.escape(s)}(?!\w)", train_text)]
    assert len([r for r in test if held_out & set(r["meta"]["surfaces"])]) >= 0.3 * len(test)


# ----- gold -----------------------------------------------------------------------------------
def test_gold_validates_against_the_tools(task, splits):
    for r in splits[0] + splits[1]:
        calls = [toolcalls.ToolCall.from_dict(c) for c in r["gold"]["tool_calls"]]
        _, errors = toolcalls.validate(calls, task.tools)
        assert not errors, (_text(r), errors)
        assert task.evaluate(r["gold"], r["gold"]).exact, _text(r)


def test_gold_finds_the_product_it_was_built_from(splits):
    searches = 0
    for r in splits[0] + splits[1]:
        args = _args(r)
        if "product" not in r["meta"]:
            assert r["meta"]["category"] == "not_search" and set(args) == {"reason"}
            continue
        searches += 1
        p, attrs = PRODUCTS[r["meta"]["product"]], args.get("attributes", {})
        assert args["category"] == p.category and args.get("brand", p.brand) == p.brand
        assert args.get("query", p.features[0] if p.features else None) in (*p.features, None)
        assert attrs.get("color", p.colors[0]) in p.colors
        assert attrs.get("material", p.material) == p.material
        assert attrs.get("size") in (*p.sizes, None)
        price = p.price / catalogue.CURRENCIES_BY_CODE[args.get("currency", "EUR")].eur_per_unit
        assert args.get("price_min", 0) <= price <= args.get("price_max", 1e9), _text(r)
    assert searches > 400


def test_price_gold_matches_parse_price(splits):
    checked = 0
    for r in splits[0] + splits[1]:
        expression = r["meta"].get("price_expression")
        if expression is None:
            continue
        args = _args(r)
        expected = {k: args[k] for k in ("price_min", "price_max", "currency") if k in args}
        assert tools.parse_price(expression) == expected, expression
        checked += 1
    assert checked > 150


def test_brand_gold_is_a_brand_of_the_category(splits):
    for r in splits[0] + splits[1]:
        args = _args(r)
        if "brand" in args:
            assert args["category"] in catalogue.BRANDS_BY_ID[args["brand"]].categories


# ----- pipeline.yaml --------------------------------------------------------------------------
LOADERS = {
    "label": label_config.load_config,
    "train": train_config.load_config,
    "compress": compress_config.load_config,
    "eval": eval_config.load_config,
}


def test_pipeline_yaml_sections_load_with_their_stage_loaders():
    path = EXAMPLE / "pipeline.yaml"
    pipeline = yaml.safe_load(path.read_text())
    assert (path.parent / pipeline["task"]).is_file()
    assert set(LOADERS) <= set(pipeline)
    for stage, load_config in LOADERS.items():
        keys = dict(pipeline[stage])
        preset = keys.pop("preset", None)
        load_config(None, preset, keys)
    assert pipeline["label"]["limit"] == 60 and pipeline["label"]["preset"] == "quick"


# ----- README ---------------------------------------------------------------------------------
def test_readme_tool_commands(capsys):
    tools.main(["find_category", '{"text": "jogging shoes"}'])
    assert json.loads(capsys.readouterr().out)[0]["category"] == "running_shoes"
    tools.main(["parse_price", '{"text": "under 50 quid"}'])
    assert json.loads(capsys.readouterr().out) == {"price_max": 50, "currency": "GBP"}


def test_teacher_prompt_states_the_catalogue_rules(task):
    prompt = task.spec.teacher.system_prompt
    features = ", ".join(v.value for v in catalogue.FEATURES)
    assert f"written exactly so: {features}." in prompt
    assert "X - 10% .. X + 10%" in prompt and prices.AROUND == catalogue.AROUND == 0.10
    assert "no currency named → EUR" in prompt and catalogue.DEFAULT_CURRENCY == "EUR"
    for sort in catalogue.SORTS[1:]:
        assert f"→ {sort}" in prompt
