"""The tool-call grammar: built from the tools' schemas, parsed by llama.cpp, None when no call
is forced. (Its effect on a real model is tested in tests/integration/test_serve_llamacpp.py.)"""

from __future__ import annotations

import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from supertiny.serve.grammar import _llama_escapes, call_schema, tool_call_grammar  # noqa: E402

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
