"""Tool schemas: look up a function's parameter schema, coerce argument values where the
schema types them ("30" -> 30 only for integers), and validate calls with ``jsonschema``.

Part of ``supertiny.core.toolcalls`` (which re-exports ``coerce`` and ``validate``); exercised by
``python -m pytest tests/unit/core/test_toolcalls.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from jsonschema.validators import validator_for
from referencing import Registry

from supertiny.core.toolcalls.read import ToolCall

_NO_ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": False,
}
_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


# --------------------------------------------------------------------------- schemas


def schemas_by_name(tools: list[dict] | None) -> dict[str, Any]:
    """Function name -> its ``parameters`` schema, from OpenAI or bare tool entries."""
    out: dict[str, Any] = {}
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        name = function.get("name")
        if isinstance(name, str):
            params = function.get("parameters", function.get("input_schema"))
            out[name] = _NO_ARGS_SCHEMA if params is None else params
    return out


def _types(schema: Any) -> list[str]:
    """The JSON types a schema names, directly or through ``anyOf``/``oneOf`` branches."""
    if not isinstance(schema, dict):
        return []
    named = schema.get("type")
    found = [named] if isinstance(named, str) else []
    if isinstance(named, list):
        found = [t for t in named if isinstance(t, str)]
    for option in _branches(schema):
        found += _types(option)
    return found


def _branches(schema: dict) -> list:
    """The ``anyOf`` and ``oneOf`` alternatives of a schema (malformed ones ignored)."""
    out = []
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            out += schema[key]
    return out


def branch(schema: Any, json_type: str) -> Any:
    """The (sub)schema that describes ``json_type`` values, for recursing into them."""
    if not isinstance(schema, dict):
        return None
    if json_type in _types({"type": schema.get("type")}):
        return schema
    implicit = {"object": "properties", "array": "items"}.get(json_type)
    if "type" not in schema and implicit in schema:
        return schema
    for option in _branches(schema):
        if json_type in _types(option):
            return branch(option, json_type)
    return None


def _has_type(value: Any, json_type: str) -> bool:
    checks = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }
    return json_type in checks and checks[json_type](value)


def coerce(value: Any, schema: Any) -> Any:
    """``value`` with scalars converted where ``schema`` types them; never raises.

    ``"30"``/``30.0`` -> 30 for integer, ``"30.5"`` -> 30.5 for number,
    ``"true"``/``"false"`` -> bool for boolean; recurses into described objects
    and arrays. Nothing else is converted (a string field keeps ``"30"``).
    """
    types = _types(schema)
    if isinstance(value, dict):
        return _coerce_object(value, branch(schema, "object"))
    if isinstance(value, list):
        return _coerce_array(value, branch(schema, "array"))
    if any(_has_type(value, t) for t in types):
        return value
    for json_type in types:
        converted = _convert(value, json_type)
        if converted is not None:
            return converted
    return value


def _convert(value: Any, json_type: str) -> Any:
    """``value`` converted to ``json_type``, or None if it does not convert cleanly."""
    if isinstance(value, bool):
        return None
    if json_type == "integer":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and len(value) <= 64 and _INT_TEXT.fullmatch(value.strip()):
            return int(value.strip())
        number = _convert(value, "number") if isinstance(value, str) else None
        return int(number) if isinstance(number, float) and number.is_integer() else None
    if json_type == "number" and isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            return None
        if _INT_TEXT.fullmatch(text):
            return int(text)
        number = float(text) if _FLOAT_TEXT.fullmatch(text) else None
        return number if number is not None and math.isfinite(number) else None
    if json_type == "boolean" and isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _coerce_object(value: dict, schema: Any) -> dict:
    if not isinstance(schema, dict):
        return value
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    extra = schema.get("additionalProperties")
    return {
        k: coerce(v, props.get(k, extra if isinstance(extra, dict) else None))
        for k, v in value.items()
    }


def _coerce_array(value: list, schema: Any) -> list:
    if not isinstance(schema, dict):
        return value
    prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
    items = schema.get("items")
    return [coerce(v, prefix[i] if i < len(prefix) else items) for i, v in enumerate(value)]


def allowed_keys(schema: Any) -> set[str] | None:
    """Argument names a schema declares; None when it leaves them open.

    Stricter than JSON Schema on purpose (the Sim-RL rule "an argument not in the
    schema"): when ``properties`` is given, other keys count as unknown unless
    ``additionalProperties`` is explicitly true/a schema or ``patternProperties`` exists.
    """
    if not isinstance(schema, dict):
        return None
    extra = schema.get("additionalProperties")
    if extra is True or isinstance(extra, dict) or "patternProperties" in schema:
        return None
    props = schema.get("properties")
    if isinstance(props, dict):
        return set(props)
    return set() if extra is False else None


def validate(calls: list[ToolCall], tools: list[dict]) -> tuple[list[ToolCall], list[str]]:
    """Coerce each call per its function's schema and validate it with ``jsonschema``.

    Returns all calls (coerced where their function is known) and error strings
    naming the call index, function and argument. A malformed schema is reported
    as an error, never raised.
    """
    schemas = schemas_by_name(tools)
    checkers: dict[str, Callable[[dict], list[str]]] = {}
    out: list[ToolCall] = []
    errors: list[str] = []
    for index, call in enumerate(calls):
        if call.name not in schemas:
            out.append(call)
            errors.append(f"call {index}: unknown function '{call.name}'")
            continue
        schema = schemas[call.name]
        call = ToolCall(call.name, coerce(call.arguments, schema))
        out.append(call)
        if call.name not in checkers:
            checkers[call.name] = _checker(schema)
        errors += [f"call {index} '{call.name}': {e}" for e in checkers[call.name](call.arguments)]
    return out, errors


def _checker(schema: Any) -> Callable[[dict], list[str]]:
    """A function listing the schema errors of an arguments dict; a bad schema is one error."""

    def broken(exc: Exception) -> list[str]:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        return [f"invalid parameters schema: {clip(first_line)}"]

    try:
        cls = validator_for(schema)
        cls.check_schema(schema)
        # An empty registry: "$ref"s resolve inside the schema, never over the network.
        validator = cls(schema, registry=Registry())
    except Exception as exc:  # noqa: BLE001 - a bad schema is data, not a crash
        errors = broken(exc)
        return lambda arguments: errors

    def check(arguments: dict) -> list[str]:
        try:
            found = list(validator.iter_errors(arguments))
        except Exception as exc:  # noqa: BLE001 - e.g. an unresolvable "$ref"
            return broken(exc)
        found.sort(key=lambda e: [str(p) for p in e.absolute_path])
        return [_describe(error) for error in found]

    return check


def _describe(error: Any) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return f"argument '{path}': {clip(error.message)}" if path else clip(error.message)


def clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
