"""Tests for supertiny.core.toolcalls (and its reading half, supertiny.core.toolcalls.read).

Run: python -m pytest tests/unit/core/test_toolcalls.py -q
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supertiny.core.toolcalls import (
    Parsed,
    Score,
    ToolCall,
    argument_prf,
    canonical_key,
    canonicalize,
    coerce,
    exact_match,
    parse,
    rouge_l_f,
    score,
    similarity,
    validate,
)
from supertiny.core.toolcalls.read import extract, loads_lenient


def _tool(name: str, properties: dict, required: list[str] | None = None, **extra) -> dict:
    parameters = {"type": "object", "properties": properties, **extra}
    if required:
        parameters["required"] = required
    return {
        "type": "function",
        "function": {"name": name, "description": name, "parameters": parameters},
    }


TOOLS = [
    _tool(
        "set_brightness",
        {
            "device_id": {"type": "string"},
            "level": {"type": "integer", "minimum": 0, "maximum": 100},
            "transition": {"type": "number", "default": 0},
        },
        ["device_id", "level"],
        additionalProperties=False,
    ),
    _tool(
        "set_temperature",
        {
            "device_id": {"type": "string"},
            "temperature": {"type": "number"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        },
        ["device_id", "temperature"],
    ),
    _tool("turn_on", {"device_id": {"type": "string"}, "code": {"type": "string"}}, ["device_id"]),
    _tool(
        "set_scene",
        {
            "name": {"type": "string"},
            "lights": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"device_id": {"type": "string"}, "on": {"type": "boolean"}},
                },
            },
            "delay": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
    ),
    {"type": "function", "function": {"name": "get_time", "description": "current time"}},
    {
        "name": "send_message",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
]

QWEN = (
    "<tool_call>\n"
    '{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}\n'
    "</tool_call>"
)
KITCHEN_30 = ToolCall("set_brightness", {"device_id": "light.kitchen", "level": 30})
TV_ON = ToolCall("turn_on", {"device_id": "media_player.tv"})


# --------------------------------------------------------------------------- parse: text


def test_parse_qwen_tag():
    assert parse(QWEN) == Parsed([KITCHEN_30], None)


def test_parse_several_tags_keep_order():
    text = (
        QWEN
        + '\n<tool_call>\n{"name": "turn_on", "arguments": {"device_id": "media_player.tv"}}\n</tool_call>'
    )
    assert parse(text).calls == [KITCHEN_30, TV_ON]


def test_parse_text_beside_call_becomes_content():
    parsed = parse("Sure, dimming the kitchen.\n" + QWEN + "\nDone.<|im_end|>")
    assert parsed.calls == [KITCHEN_30]
    assert parsed.content == "Sure, dimming the kitchen.\n\nDone."
    assert parsed.error is None


def test_parse_unclosed_final_tag():
    text = '<tool_call>\n{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}'
    assert parse(text) == Parsed([KITCHEN_30], None)


def test_parse_tags_without_closers_between_calls():
    text = (
        '<tool_call>{"name": "turn_on", "arguments": {"device_id": "media_player.tv"}}'
        '<tool_call>{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}'
    )
    assert parse(text).calls == [TV_ON, KITCHEN_30]


def test_parse_several_objects_in_one_tag():
    text = (
        "<tool_call>\n"
        '{"name": "turn_on", "arguments": {"device_id": "media_player.tv"}}\n'
        '{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}\n'
        "</tool_call>"
    )
    assert parse(text) == Parsed([TV_ON, KITCHEN_30], None)


def test_parse_truncated_call_in_tag_is_an_error():
    parsed = parse('<tool_call>\n{"name": "set_brightness", "arguments": {"device_id": "light.kit')
    assert parsed.calls == []
    assert "unbalanced" in parsed.error


def test_parse_invalid_json_in_tag_is_an_error():
    parsed = parse(
        '<tool_call>{"name": "set_brightness", "arguments": {"level": 30 "device_id": "x"}}</tool_call>'
    )
    assert parsed.calls == []
    assert "invalid JSON" in parsed.error


def test_parse_keeps_good_calls_beside_a_broken_one():
    parsed = parse(QWEN + '<tool_call>{"name": "turn_on", "arguments": {</tool_call>')
    assert parsed.calls == [KITCHEN_30]
    assert parsed.error.startswith("<tool_call> #2")


def test_parse_empty_tag_and_nameless_call_are_errors():
    assert "empty" in parse("<tool_call>\n</tool_call>").error
    assert "without a name" in parse('<tool_call>{"arguments": {"a": 1}}</tool_call>').error


def test_parse_fenced_json():
    text = 'Here is the call:\n```json\n{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}\n```\nAnything else?'
    parsed = parse(text)
    assert parsed.calls == [KITCHEN_30]
    assert parsed.content == "Here is the call:\n\nAnything else?"


def test_parse_fence_without_language_and_unclosed_fence():
    body = '{"name": "turn_on", "arguments": {"device_id": "media_player.tv"}}'
    assert parse(f"```\n{body}\n```").calls == [TV_ON]
    assert parse(f"```json\n{body}\n").calls == [TV_ON]


def test_parse_fence_with_non_call_json_stays_content():
    text = 'The state is:\n```json\n{"brightness": 30}\n```'
    assert parse(text) == Parsed([], text)


def test_parse_bare_object_and_list():
    assert parse('{"name": "turn_on", "arguments": {"device_id": "media_player.tv"}}') == Parsed(
        [TV_ON], None
    )
    text = '[{"name": "turn_on", "arguments": {"device_id": "media_player.tv"}}, {"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}]'
    assert parse(text).calls == [TV_ON, KITCHEN_30]


def test_parse_bare_object_inside_prose():
    parsed = parse(
        'I will call {"name": "turn_on", "arguments": {"device_id": "media_player.tv"}} now.'
    )
    assert parsed.calls == [TV_ON]
    assert parsed.content == "I will call  now."


def test_parse_doubled_braces():
    text = (
        '{{"name": "set_brightness", "arguments": {{"device_id": "light.kitchen", "level": 30}}}}'
    )
    assert parse(text).calls == [KITCHEN_30]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "set_brightness", "parameters": {"device_id": "light.kitchen", "level": 30}}',
        '{"function": {"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}}',
        '{"name": "set_brightness", "arguments": "{\\"device_id\\": \\"light.kitchen\\", \\"level\\": 30}"}',
        '{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30,},}',
        "{'name': 'set_brightness', 'arguments': {'device_id': 'light.kitchen', 'level': 30}}",
        '{"tool_calls": [{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}]}',
    ],
    ids=[
        "parameters",
        "function-wrapper",
        "string-arguments",
        "trailing-commas",
        "single-quotes",
        "tool_calls-wrapper",
    ],
)
def test_parse_common_variations(text):
    assert parse(text) == Parsed([KITCHEN_30], None)
    assert parse(f"<tool_call>{text}</tool_call>").calls == [KITCHEN_30]


def test_parse_python_literal_keywords():
    call = parse(
        "<tool_call>{'name': 'set_scene', 'arguments': {'lights': [{'device_id': 'a', 'on': True}], 'delay': None}}</tool_call>"
    )
    assert call.calls == [
        ToolCall("set_scene", {"lights": [{"device_id": "a", "on": True}], "delay": None})
    ]
    assert loads_lenient("{'on': true, 'off': false, 'x': null}") == {
        "on": True,
        "off": False,
        "x": None,
    }


def test_parse_plain_text_and_non_call_json():
    assert parse("It is 5 pm.") == Parsed([], "It is 5 pm.")
    text = 'Your profile: {"name": "Bob", "age": 3}.'
    assert parse(text) == Parsed([], text)
    assert parse("   ") == Parsed([], None)


def test_parse_truncated_bare_call_is_an_error():
    parsed = parse(
        'Calling: {"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 3'
    )
    assert parsed.calls == []
    assert "truncated" in parsed.error


def test_parse_broken_bare_call_is_an_error_but_prose_braces_are_not():
    assert (
        "invalid call JSON" in parse('{"name": "turn_on", "arguments": {"device_id" "tv"}}').error
    )
    assert parse("Use {curly} braces {like this}.").error is None


def test_parse_braces_and_apostrophes_inside_strings():
    text = "I don't know. " + json.dumps(
        {"name": "send_message", "arguments": {"text": "it's {late} [really]"}}
    )
    parsed = parse(text)
    assert parsed.calls == [ToolCall("send_message", {"text": "it's {late} [really]"})]
    assert parsed.content == "I don't know."


def test_parse_pathological_nesting_ends_with_an_error():
    parsed = parse('{"name":' * 5000 + "x" + "}" * 5000)
    assert parsed.calls == [] and parsed.error.startswith("invalid call JSON")
    assert parse("{" * 5000 + "}" * 5000) == Parsed([], "{" * 5000 + "}" * 5000)


def test_extract_reports_content_outside_markup():
    found = extract('a <tool_call>{"name": "get_time"}</tool_call> b')
    assert found.calls == [{"name": "get_time"}]
    assert found.content == "a  b"


# --------------------------------------------------------------------------- parse: structured


def test_parse_openai_message():
    message = {
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
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "turn_on", "arguments": {"device_id": "media_player.tv"}},
            },
        ],
    }
    assert parse(message) == Parsed([KITCHEN_30, TV_ON], None)


def test_parse_openai_message_with_calls_in_content_text():
    assert parse({"role": "assistant", "content": "OK.\n" + QWEN}) == Parsed([KITCHEN_30], "OK.")


def test_parse_label_dicts():
    label = {
        "tool_calls": [
            {"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": 30}}
        ],
        "content": None,
    }
    assert parse(label) == Parsed([KITCHEN_30], None)
    assert parse({"tool_calls": [], "content": " It is 5 pm. "}) == Parsed([], "It is 5 pm.")


def test_parse_lists_single_calls_and_instances():
    openai = {
        "type": "function",
        "function": {"name": "turn_on", "arguments": '{"device_id": "media_player.tv"}'},
    }
    assert parse([KITCHEN_30.to_dict(), openai]).calls == [KITCHEN_30, TV_ON]
    assert parse(openai) == Parsed([TV_ON], None)
    assert parse([KITCHEN_30]) == Parsed([KITCHEN_30], None)
    assert parse(None) == Parsed([], None)


def test_parse_bad_structures_are_errors_not_exceptions():
    assert "call 1" in parse([KITCHEN_30.to_dict(), "turn_on"]).error
    assert "arguments" in parse({"name": "turn_on", "arguments": "{not json"}).error
    assert "arguments must be an object" in parse({"name": "turn_on", "arguments": [1, 2]}).error
    assert "unsupported" in parse(42).error
    assert parse({"role": "assistant", "tool_calls": "oops"}).error == "tool_calls is not a list"


def test_toolcall_round_trips():
    assert ToolCall.from_dict(KITCHEN_30.to_dict()) == KITCHEN_30
    assert ToolCall.from_dict(KITCHEN_30.to_openai("call_0")) == KITCHEN_30
    assert (
        json.loads(KITCHEN_30.to_openai("call_0")["function"]["arguments"]) == KITCHEN_30.arguments
    )
    assert ToolCall.from_dict({"name": " get_time ", "arguments": ""}) == ToolCall("get_time", {})
    assert len({KITCHEN_30, ToolCall.from_dict(KITCHEN_30.to_dict())}) == 1  # hashable
    with pytest.raises(ValueError, match="without a name"):
        ToolCall.from_dict({"arguments": {}})


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_fragments = st.sampled_from(
    [
        "<tool_call>",
        "</tool_call>",
        "```json\n",
        "```",
        "{",
        "}",
        "{{",
        "}}",
        "[",
        "]",
        '"name"',
        '"arguments"',
        ": ",
        ", ",
        '"set_brightness"',
        "'x'",
        "30",
        "true",
        "None",
        "\\",
        '"',
        "'",
        "\n",
        "text ",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), st.lists(_fragments, max_size=40).map("".join)))
def test_parse_never_raises_on_text(text):
    parsed = parse(text)
    assert isinstance(parsed, Parsed)
    assert all(isinstance(c, ToolCall) and isinstance(c.arguments, dict) for c in parsed.calls)
    json.dumps([c.to_dict() for c in parsed.calls])  # plain JSON values only


@settings(max_examples=200, deadline=None)
@given(
    _json_values
    | st.dictionaries(
        st.sampled_from(["name", "arguments", "function", "tool_calls", "content", "role"]),
        _json_values,
    )
)
def test_parse_never_raises_on_structures(value):
    assert isinstance(parse(value), Parsed)


# --------------------------------------------------------------------------- validate


def test_validate_accepts_a_good_call():
    assert validate([KITCHEN_30], TOOLS) == ([KITCHEN_30], [])


def test_validate_coerces_where_the_schema_types_values():
    calls, errors = validate(
        [
            ToolCall(
                "set_brightness", {"device_id": "light.kitchen", "level": "30", "transition": "1.5"}
            ),
            ToolCall("set_temperature", {"device_id": "climate.hall", "temperature": "21"}),
            ToolCall("set_brightness", {"device_id": "light.kitchen", "level": 30.0}),
            ToolCall(
                "set_scene",
                {
                    "lights": [{"device_id": "a", "on": "true"}, {"device_id": "b", "on": "False"}],
                    "delay": "5",
                },
            ),
        ],
        TOOLS,
    )
    assert errors == []
    assert calls[0].arguments == {"device_id": "light.kitchen", "level": 30, "transition": 1.5}
    assert calls[1].arguments["temperature"] == 21
    assert type(calls[2].arguments["level"]) is int
    assert calls[3].arguments == {
        "lights": [{"device_id": "a", "on": True}, {"device_id": "b", "on": False}],
        "delay": 5,
    }


def test_validate_never_coerces_into_string_fields_or_across_kinds():
    calls, errors = validate(
        [ToolCall("turn_on", {"device_id": "media_player.tv", "code": "0042"})], TOOLS
    )
    assert calls[0].arguments["code"] == "0042" and errors == []
    calls, errors = validate([ToolCall("turn_on", {"device_id": 30})], TOOLS)
    assert calls[0].arguments["device_id"] == 30
    assert errors == ["call 0 'turn_on': argument 'device_id': 30 is not of type 'string'"]
    _, errors = validate([ToolCall("set_brightness", {"device_id": "x", "level": True})], TOOLS)
    assert "argument 'level'" in errors[0]  # a bool is not an integer
    _, errors = validate([ToolCall("set_brightness", {"device_id": "x", "level": 30.5})], TOOLS)
    assert "argument 'level'" in errors[0]
    assert coerce("thirty", {"type": "integer"}) == "thirty"
    assert coerce("1e999", {"type": "number"}) == "1e999"


def test_validate_reports_unknown_function_unknown_key_missing_and_range():
    calls = [
        ToolCall("open_garage", {}),
        ToolCall("set_brightness", {"device_id": "x", "level": 30, "colour": "red"}),
        ToolCall("set_brightness", {"device_id": "x"}),
        ToolCall("set_brightness", {"device_id": "x", "level": "300"}),
    ]
    _, errors = validate(calls, TOOLS)
    assert errors[0] == "call 0: unknown function 'open_garage'"
    assert (
        errors[1].startswith("call 1 'set_brightness'") and "'colour' was unexpected" in errors[1]
    )
    assert errors[2] == "call 2 'set_brightness': 'level' is a required property"
    assert (
        errors[3]
        == "call 3 'set_brightness': argument 'level': 300 is greater than the maximum of 100"
    )


def test_validate_tool_without_parameters_and_bare_tool_form():
    assert validate([ToolCall("get_time")], TOOLS)[1] == []
    assert "'tz' was unexpected" in validate([ToolCall("get_time", {"tz": "UTC"})], TOOLS)[1][0]
    assert validate([ToolCall("send_message", {"text": "hi"})], TOOLS)[1] == []


@pytest.mark.parametrize(
    "parameters",
    [
        "not a schema",
        {"type": 5},
        {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}},
        7,
    ],
)
def test_validate_malformed_schema_is_an_error_string(parameters):
    tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    calls, errors = validate([ToolCall("f", {"a": "1"})], tools)
    assert calls == [ToolCall("f", {"a": "1"})]
    assert len(errors) == 1 and errors[0].startswith("call 0 'f': invalid parameters schema")


# --------------------------------------------------------------------------- canonical form and exact match


def test_canonicalize_sorts_strips_and_normalises_numbers():
    call = ToolCall(
        "set_scene",
        {"name": "  movie night ", "lights": [{"on": True, "device_id": "a"}], "delay": 5.0},
    )
    canon = canonicalize(call)
    assert canon == ToolCall(
        "set_scene", {"delay": 5, "lights": [{"device_id": "a", "on": True}], "name": "movie night"}
    )
    assert list(canon.arguments) == ["delay", "lights", "name"]
    assert type(canon.arguments["delay"]) is int
    assert canonicalize(ToolCall("f", {"x": 2.5})).arguments == {"x": 2.5}


def test_canonicalize_with_tools_coerces_and_drops_defaults():
    call = ToolCall(
        "set_temperature", {"device_id": "climate.hall", "temperature": "21", "unit": "Celsius"}
    )
    assert canonicalize(call, TOOLS) == ToolCall(
        "set_temperature", {"device_id": "climate.hall", "temperature": 21}
    )
    assert canonicalize(call).arguments["unit"] == "Celsius"  # no tools: no schema, nothing dropped


def test_canonical_key_is_order_insensitive_and_discriminating():
    assert canonical_key([KITCHEN_30, TV_ON]) == canonical_key([TV_ON, KITCHEN_30])
    assert canonical_key([KITCHEN_30]) != canonical_key(
        [ToolCall("set_brightness", {"device_id": "light.kitchen", "level": 31})]
    )
    assert canonical_key([KITCHEN_30]) != canonical_key([KITCHEN_30, KITCHEN_30])
    assert canonical_key([]) == "[]"


def test_exact_match_rules():
    assert exact_match([TV_ON, KITCHEN_30], [KITCHEN_30, TV_ON])  # parallel calls in any order
    assert exact_match(
        [ToolCall("set_brightness", {"device_id": " Light.Kitchen", "level": 30.0})], [KITCHEN_30]
    )
    assert exact_match(
        [ToolCall("send_message", {"text": "see  you\nsoon"})],
        [ToolCall("send_message", {"text": "See you soon"})],
    )
    assert exact_match([], [])
    assert not exact_match([], [KITCHEN_30])
    assert not exact_match([KITCHEN_30, KITCHEN_30], [KITCHEN_30])
    assert not exact_match(
        [ToolCall("turn_on", {"device_id": "light.kitchen"})],
        [ToolCall("turn_off", {"device_id": "light.kitchen"})],
    )
    assert not exact_match(
        [ToolCall("set_brightness", {"device_id": "light.kitchen", "level": 40})], [KITCHEN_30]
    )


def test_exact_match_lists_are_order_sensitive():
    a = ToolCall("set_scene", {"lights": [{"device_id": "a"}, {"device_id": "b"}]})
    b = ToolCall("set_scene", {"lights": [{"device_id": "b"}, {"device_id": "a"}]})
    assert not exact_match([a], [b])


def test_exact_match_coercion_needs_the_schema():
    pred = [ToolCall("set_brightness", {"device_id": "light.kitchen", "level": "30"})]
    assert exact_match(pred, [KITCHEN_30], TOOLS)
    assert not exact_match(pred, [KITCHEN_30])


def test_exact_match_defaults_may_be_omitted():
    stated = [
        ToolCall(
            "set_temperature", {"device_id": "climate.hall", "temperature": 21, "unit": "celsius"}
        )
    ]
    omitted = [ToolCall("set_temperature", {"device_id": "climate.hall", "temperature": 21})]
    other = [
        ToolCall(
            "set_temperature",
            {"device_id": "climate.hall", "temperature": 21, "unit": "fahrenheit"},
        )
    ]
    assert exact_match(stated, omitted, TOOLS)
    assert not exact_match(stated, omitted)  # without the schema the default is unknown
    assert not exact_match(other, omitted, TOOLS)


_names = st.sampled_from(["turn_on", "set_brightness", "send_message"])
_args = st.dictionaries(
    st.sampled_from(["device_id", "level", "text", "code"]),
    st.integers(-5, 5) | st.text("ab ", max_size=5) | st.booleans(),
    max_size=3,
)
_calls = st.lists(st.builds(ToolCall, _names, _args), max_size=3)


@settings(max_examples=200, deadline=None)
@given(_calls, _calls)
def test_canonical_key_agrees_with_exact_match_and_similarity(a, b):
    assert (canonical_key(a) == canonical_key(b)) == exact_match(a, b)
    if exact_match(a, b):
        assert similarity(a, b) == 1.0
        assert argument_prf(a, b) == (1.0, 1.0, 1.0)
    assert exact_match(a, list(reversed(a)))
    assert -1.0 <= similarity(a, b) <= 1.0


# --------------------------------------------------------------------------- argument P/R/F1


def test_argument_prf_hand_computed():
    # one of two arguments right: TP=1, P=1/2, R=1/2, F1=1/2
    wrong_level = ToolCall("set_brightness", {"device_id": "light.kitchen", "level": 40})
    assert argument_prf([wrong_level], [KITCHEN_30]) == (0.5, 0.5, 0.5)
    # pred states 1 of gold's 3 arguments: P=1/1, R=1/3, F1=2*(1*1/3)/(1+1/3)=0.5
    gold = [
        ToolCall(
            "set_temperature",
            {"device_id": "climate.hall", "temperature": 21, "unit": "fahrenheit"},
        )
    ]
    assert argument_prf(
        [ToolCall("set_temperature", {"device_id": "climate.hall"})], gold
    ) == pytest.approx((1.0, 1 / 3, 0.5))
    # gold has 2 calls (2 + 1 triples), pred the first exactly: P=2/2, R=2/3, F1=0.8
    assert argument_prf([KITCHEN_30], [KITCHEN_30, TV_ON]) == pytest.approx((1.0, 2 / 3, 0.8))
    # same arguments under another function name share nothing
    assert argument_prf([ToolCall("turn_off", {"device_id": "media_player.tv"})], [TV_ON]) == (
        0.0,
        0.0,
        0.0,
    )


def test_argument_prf_matches_same_name_calls_greedily():
    a = ToolCall("turn_on", {"device_id": "light.a"})
    b = ToolCall("turn_on", {"device_id": "light.b"})
    assert argument_prf([b, a], [a, b]) == (1.0, 1.0, 1.0)


def test_argument_prf_conventions():
    assert argument_prf([], []) == (1.0, 1.0, 1.0)
    assert argument_prf([], [KITCHEN_30]) == (0.0, 0.0, 0.0)
    assert argument_prf([KITCHEN_30], []) == (0.0, 0.0, 0.0)
    # a call without arguments counts as one pseudo-triple
    assert argument_prf([ToolCall("get_time")], [ToolCall("get_time")]) == (1.0, 1.0, 1.0)
    assert argument_prf([ToolCall("get_time")], [ToolCall("get_date")]) == (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- ROUGE-L and the Sim-RL reward


def test_rouge_l_f_hand_computed():
    # [kitchen, lamp] vs [kitchen, light]: LCS 1, P = R = 1/2, F = 1/2
    assert rouge_l_f("kitchen lamp", "kitchen light") == 0.5
    # [the, kitchen, light] vs [kitchen, light]: LCS 2, P = 2/3, R = 1, F = 2*(2/3)/(5/3) = 0.8
    assert rouge_l_f("The kitchen light", "kitchen  LIGHT") == pytest.approx(0.8)
    # punctuation is a token: [light, ., kitchen] vs [light, kitchen] -> 0.8 as above
    assert rouge_l_f("light.kitchen", "light kitchen") == pytest.approx(0.8)
    # [a, b, c, d] vs [d, c, b, a]: LCS 1, F = 1/4
    assert rouge_l_f("a b c d", "d c b a") == 0.25
    assert rouge_l_f("", "") == 1.0
    assert rouge_l_f("", "x") == 0.0
    assert rouge_l_f("x", "y") == 0.0


def test_similarity_hand_computed_string_half_right():
    # One call, two shared keys: device_id ROUGE-L("kitchen lamp", "kitchen light") = 0.5,
    # level 30 == 30 -> 1. Pair = (0.5 + 1) / (2 pred keys + 0 gold-only keys) = 0.75.
    # Total = 0.75 / (1 pred call + 0 unmatched gold) = 0.75.
    pred = [ToolCall("set_brightness", {"device_id": "kitchen lamp", "level": 30})]
    gold = [ToolCall("set_brightness", {"device_id": "kitchen light", "level": 30})]
    assert similarity(pred, gold, TOOLS) == pytest.approx(0.75)


def test_similarity_hand_computed_extra_and_missing_keys():
    # pred {device_id: exact (1.0), code: "1234"}; gold {device_id}. Shared: device_id -> 1.
    # Pair = 1 / (2 pred keys + 0 gold-only keys) = 0.5; total = 0.5 / 1 = 0.5.
    pred = [ToolCall("turn_on", {"device_id": "media_player.tv", "code": "1234"})]
    assert similarity(pred, [TV_ON], TOOLS) == pytest.approx(0.5)
    # pred {device_id: exact, temperature: 20 (gold 21 -> 0)}, gold also has unit "fahrenheit".
    # Pair = (1 + 0) / (2 pred keys + 1 gold-only key) = 1/3; total = 1/3.
    pred = [ToolCall("set_temperature", {"device_id": "climate.hall", "temperature": 20})]
    gold = [
        ToolCall(
            "set_temperature",
            {"device_id": "climate.hall", "temperature": 21, "unit": "fahrenheit"},
        )
    ]
    assert similarity(pred, gold, TOOLS) == pytest.approx(1 / 3)


def test_similarity_hand_computed_call_counts():
    # gold: 2 calls; pred: the first one exactly. Sum = 1.0; denominator = 1 pred + 1 unmatched gold.
    assert similarity([KITCHEN_30], [KITCHEN_30, TV_ON], TOOLS) == pytest.approx(0.5)
    # pred: the right call plus a call of a function gold does not call (unmatched pred): 1 / (2 + 0).
    assert similarity([KITCHEN_30, ToolCall("get_time")], [KITCHEN_30], TOOLS) == pytest.approx(0.5)
    # parallel calls in swapped order: each predicted call takes its best gold call -> 2 / 2.
    a, b, c = (ToolCall("turn_on", {"device_id": f"light.{x}"}) for x in "abc")
    assert similarity([b, a], [a, b], TOOLS) == 1.0
    # greedy, not optimal: pred [b, a] vs gold [a, c]. pred b scores
    # ROUGE-L("light.b", "light.a") = ROUGE-L("light.b", "light.c") = 2/3 (LCS 2 of 3 tokens
    # [light, ., x]) against both; the tie goes to the first gold call, a. pred a is then left
    # with c: 2/3. Total = (2/3 + 2/3) / (2 + 0) = 2/3 (the best assignment would give 5/6).
    assert similarity([b, a], [a, c], TOOLS) == pytest.approx(2 / 3)


def test_similarity_hand_computed_no_argument_calls_and_coercion():
    # Both calls without arguments: pair scores 1.0.
    assert similarity([ToolCall("get_time")], [ToolCall("get_time")], TOOLS) == 1.0
    # "30" is coerced to 30 by the integer schema, so both keys match: 2 / 2 = 1.
    pred = [ToolCall("set_brightness", {"device_id": "light.kitchen", "level": "30"})]
    assert similarity(pred, [KITCHEN_30], TOOLS) == 1.0
    # without the schema "30" != 30: (1 + 0) / 2 = 0.5
    assert similarity(pred, [KITCHEN_30]) == 0.5


def test_similarity_edge_cases_and_minus_one():
    assert similarity([], []) == 1.0
    assert similarity([], [KITCHEN_30], TOOLS) == 0.0
    assert similarity([KITCHEN_30], [], TOOLS) == 0.0
    assert similarity(None, [KITCHEN_30], TOOLS) == -1.0  # malformed
    assert (
        similarity([ToolCall("open_garage", {})], [KITCHEN_30], TOOLS) == -1.0
    )  # unknown function
    # unknown argument key: set_temperature's schema does not forbid extra keys, the reward still does
    bad_key = [
        ToolCall("set_temperature", {"device_id": "climate.hall", "temperature": 21, "fan": "on"})
    ]
    assert similarity(bad_key, bad_key, TOOLS) == -1.0
    assert similarity(bad_key, bad_key) == 1.0  # without tools nothing is checked


# --------------------------------------------------------------------------- score


def test_score_exact_qwen_output():
    result = score(QWEN, {"tool_calls": [KITCHEN_30.to_dict()], "content": None}, TOOLS)
    assert result == Score(True, True, 1.0, 1.0, 1.0, 1.0, None, [KITCHEN_30])
    assert json.loads(json.dumps(result.to_dict()))["calls"] == [KITCHEN_30.to_dict()]


def test_score_wrong_value_is_valid_not_exact():
    pred = QWEN.replace("30", "40")
    result = score(pred, [KITCHEN_30], TOOLS)
    assert result.valid and not result.exact
    assert result.reason == "set_brightness: 'level' is 40, expected 30"
    assert (result.precision, result.recall, result.f1, result.similarity) == (0.5, 0.5, 0.5, 0.5)


def test_score_coerced_prediction_is_exact():
    pred = '<tool_call>{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": "30"}}</tool_call>'
    result = score(pred, [KITCHEN_30], TOOLS)
    assert result.exact and result.calls == [KITCHEN_30]


def test_score_invalid_outputs():
    broken = score(
        '<tool_call>{"name": "set_brightness", "arguments": {"level": </tool_call>',
        [KITCHEN_30],
        TOOLS,
    )
    assert not broken.valid and not broken.exact and broken.similarity == -1.0
    assert "<tool_call> #1" in broken.reason
    schema = score(
        '{"name": "set_brightness", "arguments": {"device_id": "light.kitchen", "level": "high"}}',
        [KITCHEN_30],
        TOOLS,
    )
    assert not schema.valid and "argument 'level'" in schema.reason
    assert schema.similarity == 0.5  # a type error is still a soft match: (1 + 0) / 2
    unknown = score('{"name": "open_garage", "arguments": {}}', [KITCHEN_30], TOOLS)
    assert (
        not unknown.valid
        and unknown.similarity == -1.0
        and "unknown function 'open_garage'" in unknown.reason
    )
    empty = score("", [KITCHEN_30], TOOLS)
    assert (empty.valid, empty.reason, empty.similarity) == (False, "empty output", -1.0)


def test_score_text_answer_when_a_call_was_expected():
    result = score("I cannot do that.", [KITCHEN_30], TOOLS)
    assert result.valid and not result.exact
    assert result.reason == "no tool call (expected 1)"
    assert result.similarity == 0.0 and result.f1 == 0.0


def test_score_plain_answer_task():
    gold = {"tool_calls": [], "content": "It is five o'clock."}
    assert score("It's 5 pm.", gold, TOOLS).exact
    wrong = score(QWEN, gold, TOOLS)
    assert (
        wrong.valid and not wrong.exact and wrong.reason == "expected a plain answer, got 1 call(s)"
    )


def test_score_text_beside_the_call():
    pred = "Sure! " + QWEN
    strict = score(pred, [KITCHEN_30], TOOLS)
    assert strict.valid and not strict.exact and strict.reason == "text beside the tool call(s)"
    assert score(pred, [KITCHEN_30], TOOLS, allow_content=True).exact


def test_score_accepts_parsed_calls_and_messages():
    assert score([KITCHEN_30], [KITCHEN_30], TOOLS).exact
    assert score(Parsed([KITCHEN_30], None), [KITCHEN_30.to_dict()], TOOLS).exact
    message = {"role": "assistant", "content": None, "tool_calls": [KITCHEN_30.to_openai("c1")]}
    assert score(message, {"tool_calls": [KITCHEN_30.to_dict()]}, TOOLS).exact
    assert not score([KITCHEN_30, TV_ON], [TV_ON, KITCHEN_30, TV_ON], TOOLS).exact


def test_score_malformed_gold_does_not_raise():
    result = score(QWEN, "<tool_call>{broken", TOOLS)
    assert not result.valid and result.reason.startswith("scoring failed")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.text(max_size=120), st.lists(_fragments, max_size=30).map("".join), _json_values),
    st.sampled_from([[KITCHEN_30], {"tool_calls": [], "content": "hi"}, [KITCHEN_30, TV_ON]]),
    st.booleans(),
)
def test_score_never_raises(prediction, gold, allow_content):
    result = score(prediction, gold, TOOLS, allow_content)
    assert isinstance(result, Score)
    assert -1.0 <= result.similarity <= 1.0
    assert not (result.exact and not result.valid)
    assert all(
        0.0 <= x <= 1.0 and not math.isnan(x) for x in (result.precision, result.recall, result.f1)
    )
