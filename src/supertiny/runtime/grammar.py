"""Constrained decoding for tool calls and JSON answers: GBNF grammars for llama.cpp.

When the model's chat template writes calls between `<tool_call>` tags (Qwen2.5, Hermes), the
llama.cpp backend samples calls under this grammar: one or more JSON objects
``{"name": <one of the tools>, "arguments": <that tool's parameter schema>}``, each closed by
``</tool_call>``. With `tool_choice` "required" or a named function the whole answer is
sampled under it (after a pre-filled opening tag); under "auto" the model writes freely until
it opens a call, and the call is finished under it. A tiny model then cannot emit a malformed
call, a tool that does not exist, a missing required argument, a value outside an enum, of
the wrong type, an integer outside its ``minimum``/``maximum``, or a string that breaks its
``pattern``. ``json_grammar`` does the same for a
``response_format``.

The JSON-schema-to-GBNF conversion is llama-cpp-python's (``json_schema_to_gbnf``); this module
builds the call schema, wraps it in the template's tags, adds integer bounds (which the
converter leaves out; ``int_range``), and repairs the one thing llama.cpp's grammar parser
rejects in the converter's output: regex escapes such as ``\\.`` inside
literals and character classes (see ``_llama_escapes``). A schema whose patterns the converter cannot express is
built again without them (``patterns=False``): the validator still checks them after decoding.

    >>> gbnf = tool_call_grammar(tools, "required")     # None: no grammar for this request
"""

from __future__ import annotations

import json
import re
from typing import Any

OPEN, CLOSE = "<tool_call>\n", "\n</tool_call>"


def _without_patterns(schema: Any) -> Any:
    """``schema`` without ``pattern`` keys (the fallback when a pattern cannot be converted)."""
    if isinstance(schema, dict):
        return {k: _without_patterns(v) for k, v in schema.items() if k != "pattern"}
    if isinstance(schema, list):
        return [_without_patterns(v) for v in schema]
    return schema


_LLAMA_ESCAPES = set('xuUtrn\\"[]')
"""The escapes llama.cpp's GBNF parser knows; any other ``\\c`` is an error there."""


def _llama_escapes(gbnf: str) -> str:
    """Rewrite escapes llama.cpp does not know (``\\.`` -> ``\\x2E``): the regex escapes the
    converter copies from ``pattern``s mean the plain character, in literals and classes."""

    def fix(match: re.Match) -> str:
        char = match.group(1)
        if char in _LLAMA_ESCAPES:
            return match.group(0)
        return f"\\x{ord(char):02X}" if ord(char) < 256 else f"\\u{ord(char):04X}"

    return re.sub(r"\\(.)", fix, gbnf)


def _to_gbnf(schema: dict[str, Any]) -> str:
    """The converter's GBNF for ``schema``, with integer bounds and escapes llama.cpp reads."""
    from llama_cpp import llama_grammar

    class Converter(llama_grammar.SchemaConverter):
        """llama-cpp-python's converter, plus ``minimum``/``maximum`` on integers (its own
        ``visit`` leaves them out: a bounded integer would be any integer)."""

        def visit(self, schema, name):
            expression = _bounded_number(schema) if isinstance(schema, dict) else None
            if expression is None:
                return super().visit(schema, name)
            rule = name + "-" if name in llama_grammar.RESERVED_NAMES else name or "root"
            return self._add_rule(rule, f"({expression}) space")

    converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(json.loads(json.dumps(schema)), "stdin"), "")
    return _llama_escapes(converter.format_grammar())


MAX_DIGITS = 15
"""An integer bounded on one side only is given at most this many digits on the other."""


def _bounded_number(schema: dict[str, Any]) -> str | None:
    """GBNF for an integer, or a number with integer bounds on both sides, within its bounds;
    None for anything else (the converter's own rule is used then)."""
    kind = schema.get("type")
    if kind == "integer":
        bounds = _int_bounds(schema)
        return None if bounds is None else int_range(*bounds)
    if kind != "number" or not all(isinstance(schema.get(k), int) for k in ("minimum", "maximum")):
        return None
    low, high = schema["minimum"], schema["maximum"]
    if low >= high:
        return None
    fraction = _fraction(schema.get("multipleOf"))
    if fraction is None:
        return None
    exact = f'"{low}" | "{high}"'
    if high - low < 2 and low < 0:
        return exact
    inner = (low + 1, high - 1) if low < 0 else (low, high - 1)
    ends = exact if low < 0 else f'"{high}"'
    return f"({int_range(*inner)}) {fraction} | {ends}".replace(" ()", "")


def _fraction(step: Any) -> str | None:
    """The optional fraction of a number that is a multiple of ``step`` (None: not handled)."""
    if step is None:
        return '("." [0-9]{1,6})?'
    if step == 0.5:
        return '("." [05])?'
    if step in (0.1, 0.2, 0.25):
        return '("." [0-9])?' if step == 0.1 else "()"
    if isinstance(step, int) and step == 1:
        return "()"
    return None


def _int_bounds(schema: dict[str, Any]) -> tuple[int, int] | None:
    """(lowest, highest) allowed value of an integer schema with bounds, else None."""
    if schema.get("type") != "integer":
        return None
    keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    if not any(isinstance(schema.get(k), int | float) for k in keys):
        return None
    import math

    low, high = -(10**MAX_DIGITS - 1), 10**MAX_DIGITS - 1
    if isinstance(schema.get("minimum"), int | float):
        low = max(low, math.ceil(schema["minimum"]))
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = max(low, math.floor(schema["exclusiveMinimum"]) + 1)
    if isinstance(schema.get("maximum"), int | float):
        high = min(high, math.floor(schema["maximum"]))
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = min(high, math.ceil(schema["exclusiveMaximum"]) - 1)
    if low > high:
        raise ValueError(f"no integer satisfies {schema}")
    return low, high


def int_range(low: int, high: int) -> str:
    """A GBNF expression matching exactly the integers ``low``..``high`` as JSON writes them
    (no leading zeros, "-" for negatives)."""
    parts = []
    if low < 0:
        parts.append('"-" (' + _natural_range(max(1, -min(high, -1)), -low) + ")")
    if high >= 0:
        parts.append(_natural_range(max(low, 0), high))
    return " | ".join(parts)


def _natural_range(low: int, high: int) -> str:
    """Integers ``low``..``high`` (both >= 0), split by digit count."""
    alternatives = []
    for length in range(len(str(low)), len(str(high)) + 1):
        first = str(low) if length == len(str(low)) else "1" + "0" * (length - 1)
        last = str(high) if length == len(str(high)) else "9" * length
        alternatives.append(_same_length(first, last))
    return " | ".join(alternatives)


def _same_length(a: str, b: str) -> str:
    """Digit strings of one length from ``a`` to ``b`` (``a`` <= ``b``)."""
    if not a:
        return ""
    rest = len(a) - 1
    tail = f" [0-9]{{{rest}}}" if rest else ""
    if a[1:] == "0" * rest and b[1:] == "9" * rest:
        return f"[{a[0]}-{b[0]}]{tail}"
    if a[0] == b[0]:
        return f'"{a[0]}" ({_same_length(a[1:], b[1:])})'
    alternatives = [f'"{a[0]}" ({_same_length(a[1:], "9" * rest)})']
    if int(a[0]) + 1 <= int(b[0]) - 1:
        alternatives.append(f"[{int(a[0]) + 1}-{int(b[0]) - 1}]{tail}")
    alternatives.append(f'"{b[0]}" ({_same_length("0" * rest, b[1:])})')
    return "(" + " | ".join(alternatives) + ")"


def call_schema(tool: dict[str, Any], patterns: bool = True) -> dict[str, Any]:
    """The JSON schema of one call object of ``tool`` (an OpenAI ``tools`` entry)."""
    function = tool.get("function", tool)
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not patterns:
        parameters = _without_patterns(parameters)
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": parameters},
        "required": ["name", "arguments"],
    }


def tool_call_grammar(
    tools: list[dict[str, Any]] | None, choice: str, patterns: bool = True
) -> str | None:
    """GBNF for the text after the pre-filled ``<tool_call>\\n``; None when nothing is forced.

    ``choice`` is "required" (any of ``tools``, one or more calls) or a function name (that
    function, once). Raises ``ValueError`` for a schema the converter cannot express.
    """
    if not tools or choice in ("auto", "none"):
        return None
    chosen = [t for t in tools if choice == "required" or t.get("function", t)["name"] == choice]
    if not chosen:
        raise ValueError(f"tool_choice names '{choice}', which is not in tools")
    schemas = [call_schema(t, patterns) for t in chosen]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    rules = _to_gbnf(schema)
    rules = re.sub(r"(?m)^root ::=", "tool-call ::=", rules)
    close, again = json.dumps(CLOSE), json.dumps(CLOSE + "\n" + OPEN)
    if choice == "required":
        root = f"root ::= tool-call ({again} tool-call)* {close}"
    else:
        root = f"root ::= tool-call {close}"
    return root + "\n" + rules


def json_grammar(response_format: dict[str, Any], patterns: bool = True) -> str:
    """GBNF for a ``response_format``: ``{"type": "json_object"}`` (any JSON object) or
    ``{"type": "json_schema", "schema": S}`` (JSON matching S)."""
    schema = response_format.get("schema") or {"type": "object"}
    return _to_gbnf(schema if patterns else _without_patterns(schema))
