"""Constrained decoding for tool calls: a GBNF grammar that only admits valid calls.

When a request forces a call (`tool_choice` "required" or a named function) and the model's
chat template writes calls between `<tool_call>` tags (Qwen2.5, Hermes), the llama.cpp backend
pre-fills the opening tag and samples the rest under this grammar: one or more JSON objects
``{"name": <one of the tools>, "arguments": <that tool's parameter schema>}``, each closed by
``</tool_call>``. A tiny model then cannot emit a malformed call, a tool that does not exist,
a missing required argument, a value outside an enum or of the wrong type. (String
``pattern``s are left to the validator after decoding; see ``_without_patterns``.)

The JSON-schema-to-GBNF conversion is llama-cpp-python's (``json_schema_to_gbnf``); this module
only builds the call schema and wraps it in the template's tags.

    >>> gbnf = tool_call_grammar(tools, "required")     # None: no grammar for this request
"""

from __future__ import annotations

import json
import re
from typing import Any

OPEN, CLOSE = "<tool_call>\n", "\n</tool_call>"


def _without_patterns(schema: Any) -> Any:
    """``schema`` without ``pattern`` keys: the converter writes regex escapes (``\\.``) that
    llama.cpp's grammar parser rejects, so string patterns are checked after decoding (by
    the tool-call validator), not by the grammar."""
    if isinstance(schema, dict):
        return {k: _without_patterns(v) for k, v in schema.items() if k != "pattern"}
    if isinstance(schema, list):
        return [_without_patterns(v) for v in schema]
    return schema


def call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one call object of ``tool`` (an OpenAI ``tools`` entry)."""
    function = tool.get("function", tool)
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    parameters = _without_patterns(parameters)
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": parameters},
        "required": ["name", "arguments"],
    }


def tool_call_grammar(tools: list[dict[str, Any]] | None, choice: str) -> str | None:
    """GBNF for the text after the pre-filled ``<tool_call>\\n``; None when nothing is forced.

    ``choice`` is "required" (any of ``tools``, one or more calls) or a function name (that
    function, once). Raises ``ValueError`` for a schema the converter cannot express.
    """
    if not tools or choice in ("auto", "none"):
        return None
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    chosen = [t for t in tools if choice == "required" or t.get("function", t)["name"] == choice]
    if not chosen:
        raise ValueError(f"tool_choice names '{choice}', which is not in tools")
    schemas = [call_schema(t) for t in chosen]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    rules = json_schema_to_gbnf(json.dumps(schema))
    rules = re.sub(r"(?m)^root ::=", "tool-call ::=", rules)
    close, again = json.dumps(CLOSE), json.dumps(CLOSE + "\n" + OPEN)
    if choice == "required":
        root = f"root ::= tool-call ({again} tool-call)* {close}"
    else:
        root = f"root ::= tool-call {close}"
    return root + "\n" + rules
