"""The tool-call grammar: built from the tools' schemas, parsed by llama.cpp, None when no call
is forced. (Its effect on a real model is tested in tests/integration/test_serve_llamacpp.py.)"""

from __future__ import annotations

import re

import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from supertiny.runtime.grammar import (  # noqa: E402
    _bounded_number,
    _llama_escapes,
    call_schema,
    int_range,
    tool_call_grammar,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_level",
            "parameters": {
                "type": "object",
                "properties": {
                    "device_id": {"type": "string", "enum": ["light.a", "light.b"]},
                    "room": {"type": "string", "pattern": "^[a-z]+\\.[a-z_]+$"},
                    "level": {"type": "integer"},
                },
                "required": ["device_id", "level"],
            },
        },
    },
    {"type": "function", "function": {"name": "ping"}},  # no parameters at all
]


def test_no_grammar_unless_a_call_is_forced():
    assert tool_call_grammar(TOOLS, "auto") is None
    assert tool_call_grammar(TOOLS, "none") is None
    assert tool_call_grammar(None, "required") is None


def test_required_admits_any_tool_and_repeated_calls():
    gbnf = tool_call_grammar(TOOLS, "required")
    assert gbnf.startswith("root ::= tool-call (")  # one or more calls
    assert '"\\"set_level\\""' in gbnf and '"\\"ping\\""' in gbnf
    assert '"\\"light.a\\""' in gbnf  # enums survive the conversion
    llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)  # llama.cpp parses it


def test_a_named_function_admits_that_function_once():
    gbnf = tool_call_grammar(TOOLS, "ping")
    assert gbnf.startswith('root ::= tool-call "\\n</tool_call>"')
    assert "set_level" not in gbnf
    llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)
    with pytest.raises(ValueError, match="not in tools"):
        tool_call_grammar(TOOLS, "nope")


def test_a_tool_without_parameters_takes_an_empty_object():
    assert call_schema(TOOLS[1])["properties"]["arguments"] == {
        "type": "object",
        "properties": {},
    }


def test_string_patterns_are_in_the_grammar_with_escapes_llama_cpp_reads():
    # the converter writes the regex escape "\." that llama.cpp's parser rejects: it
    # becomes "\x2E", the same character in an escape llama.cpp knows
    gbnf = tool_call_grammar(TOOLS, "set_level")
    assert "\\." not in gbnf and "\\x2E" in gbnf
    assert "pattern" in str(call_schema(TOOLS[0]))
    assert "pattern" not in str(call_schema(TOOLS[0], patterns=False))
    assert "\\x2E" not in tool_call_grammar(TOOLS, "set_level", patterns=False)


def test_unknown_escapes_are_rewritten_and_known_ones_kept():
    assert _llama_escapes('"a\\.b" [\\-x] "\\"" "\\n" "\\\\."') == (
        '"a\\x2Eb" [\\x2Dx] "\\"" "\\n" "\\\\."'
    )


@pytest.mark.parametrize(
    ("low", "high"),
    [(0, 100), (1, 86400), (10, 30), (-5, 5), (-120, -3), (0, 0), (7, 7), (3, 1000), (-999, 12)],
)
def test_integer_ranges_match_exactly_the_integers_in_range(low, high):
    # the expression uses only quoted digits, classes, {n} and alternation: a regex reads it
    pattern = re.compile(int_range(low, high).replace('"', "").replace(" ", ""))
    for n in range(low - 1200, high + 1200):
        assert bool(pattern.fullmatch(str(n))) == (low <= n <= high), n
    for padded in ("01", "-0", "007", "00", "-01"):
        assert not pattern.fullmatch(padded)


def test_bounded_integers_are_in_the_tool_grammar():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "set_timer",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
                        "level": {"type": "integer", "exclusiveMaximum": 101, "minimum": 0},
                    },
                    "required": ["seconds"],
                },
            },
        }
    ]
    gbnf = tool_call_grammar(tools, "required")
    assert int_range(1, 86400) in gbnf and int_range(0, 100) in gbnf
    with pytest.raises(ValueError, match="no integer"):
        tools[0]["function"]["parameters"]["properties"]["level"]["minimum"] = 200
        tool_call_grammar(tools, "required")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "number", "minimum": 10, "maximum": 30, "multipleOf": 0.5},
        {"type": "number", "minimum": -5, "maximum": 5},
        {"type": "number", "minimum": 0, "maximum": 1},
    ],
)
def test_bounded_numbers_only_admit_values_in_range(schema):
    pattern = re.compile(
        _bounded_number(schema).replace('"', "").replace(" ", "").replace(".", "\\.")
    )
    admitted = 0
    for tenths in range(-800, 800):
        for text in {str(tenths / 10), str(tenths // 10)}:
            if pattern.fullmatch(text):
                admitted += 1
                assert schema["minimum"] <= float(text) <= schema["maximum"], text
                steps = float(text) / schema.get("multipleOf", 0.1)
                assert abs(steps - round(steps)) < 1e-9, text
    assert admitted > 2
    assert pattern.fullmatch(str(schema["maximum"]))
