"""Tool calls: parse, validate, canonicalise, match and score them.

The single definition of "a tool call" and of how two are compared. Teacher
labelling, quality voting, training rewards, evaluation and the server all call
this module, so that "right" means the same thing everywhere:

- :func:`parse` reads any output (an OpenAI assistant message, a label dict, a
  list of calls, or raw model text with ``<tool_call>`` tags, fenced or bare JSON,
  doubled braces, single quotes) into :class:`Parsed`; it never raises.
- :func:`validate` checks calls against the tools' JSON schemas (``jsonschema``),
  after coercing values the schema types (``"30"`` -> 30 for an integer).
- :func:`canonicalize` / :func:`canonical_key` / :func:`exact_match` define AST
  equality (order-insensitive calls, numbers by value, strings case- and
  whitespace-insensitive, schema defaults may be omitted).
- :func:`argument_prf` is per-argument precision/recall/F1; :func:`similarity` is
  the Sim-RL reward of STAR (arXiv 2602.03022); :func:`score` combines them.

Hand-written because no well-kept library parses all these output shapes and
implements the Sim-RL reward; schema validation itself is ``jsonschema``'s.
Reading outputs (``ToolCall``, ``Parsed``, ``parse``) lives in
:mod:`supertiny.toolcalls_parse` and is re-exported here.
Exercise it with ``python -m pytest tests/unit/test_toolcalls.py -q``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema.validators import validator_for
from referencing import Registry

from supertiny.toolcalls_parse import Parsed, ToolCall, dumps, parse

__all__ = [
    "Parsed",
    "Score",
    "ToolCall",
    "argument_prf",
    "canonical_key",
    "canonicalize",
    "coerce",
    "exact_match",
    "parse",
    "rouge_l_f",
    "score",
    "similarity",
    "validate",
]

_NO_ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": False,
}
_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_TOKEN = re.compile(r"\w+|[^\w\s]")


# --------------------------------------------------------------------------- schemas


def _schemas(tools: list[dict] | None) -> dict[str, Any]:
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
    for branch in _branches(schema):
        found += _types(branch)
    return found


def _branches(schema: dict) -> list:
    """The ``anyOf`` and ``oneOf`` alternatives of a schema (malformed ones ignored)."""
    out = []
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            out += schema[key]
    return out


def _branch(schema: Any, json_type: str) -> Any:
    """The (sub)schema that describes ``json_type`` values, for recursing into them."""
    if not isinstance(schema, dict):
        return None
    if json_type in _types({"type": schema.get("type")}):
        return schema
    implicit = {"object": "properties", "array": "items"}.get(json_type)
    if "type" not in schema and implicit in schema:
        return schema
    for branch in _branches(schema):
        if json_type in _types(branch):
            return _branch(branch, json_type)
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
        return _coerce_object(value, _branch(schema, "object"))
    if isinstance(value, list):
        return _coerce_array(value, _branch(schema, "array"))
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


def _allowed_keys(schema: Any) -> set[str] | None:
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
    schemas = _schemas(tools)
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
        return [f"invalid parameters schema: {_clip(first_line)}"]

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
    return f"argument '{path}': {_clip(error.message)}" if path else _clip(error.message)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- canonical form


def canonicalize(call: ToolCall, tools: list[dict] | None = None) -> ToolCall:
    """The canonical form of ``call``.

    With ``tools``: values coerced per schema and arguments equal to the schema's
    ``default`` dropped (so omitting a default and stating it compare equal).
    Always: keys sorted recursively, strings stripped, integral floats as ints.
    """
    schema = _schemas(tools).get(call.name) if tools is not None else None
    arguments = coerce(call.arguments, schema) if schema is not None else call.arguments
    return ToolCall(call.name.strip(), _canon(arguments, schema))


def _canon(value: Any, schema: Any) -> Any:
    if isinstance(value, dict):
        obj = _branch(schema, "object")
        props = obj.get("properties") if obj and isinstance(obj.get("properties"), dict) else {}
        out = {}
        for key in sorted(value, key=str):
            sub = props.get(key)
            item = _canon(value[key], sub)
            if (
                isinstance(sub, dict)
                and "default" in sub
                and _same(item, _canon(sub["default"], sub))
            ):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        arr = _branch(schema, "array")
        items = arr.get("items") if arr else None
        return [_canon(v, items) for v in value]
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _loose(value: Any) -> Any:
    """Match form: strings case-folded with whitespace collapsed (used for equality)."""
    if isinstance(value, dict):
        return {k: _loose(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_loose(v) for v in value]
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality of canonical values in match form (30 == 30.0, "A  b" == "a b")."""
    return dumps(_loose(_canon(a, None))) == dumps(_loose(_canon(b, None)))


def _match_json(call: ToolCall) -> str:
    return dumps({"name": call.name, "arguments": _loose(call.arguments)})


def canonical_key(calls: list[ToolCall], tools: list[dict] | None = None) -> str:
    """A deterministic, order-insensitive string for a list of calls (majority voting).

    Two lists get the same key exactly when :func:`exact_match` holds between them.
    """
    parts = sorted(_match_json(canonicalize(c, tools)) for c in calls)
    return "[" + ",".join(parts) + "]"


def exact_match(
    pred: list[ToolCall], gold: list[ToolCall], tools: list[dict] | None = None
) -> bool:
    """AST match: the same multiset of canonical calls.

    Order-insensitive across calls, order-sensitive inside lists; numbers by value;
    strings case-insensitive with whitespace collapsed; with ``tools``, values
    coerced per schema and an argument at its schema default may be omitted.
    """
    return canonical_key(pred, tools) == canonical_key(gold, tools)


# --------------------------------------------------------------------------- soft scores


def _pair_greedily(
    pred: list[ToolCall], gold: list[ToolCall], pair_score: Callable[[ToolCall, ToolCall], float]
) -> list[tuple[int, int]]:
    """Match each predicted call, in order, to the best unmatched gold call of its name."""
    pairs, used = [], set()
    for i, p in enumerate(pred):
        best, best_score = None, float("-inf")
        for j, g in enumerate(gold):
            if j not in used and g.name == p.name:
                s = pair_score(p, g)
                if s > best_score:
                    best, best_score = j, s
        if best is not None:
            used.add(best)
            pairs.append((i, best))
    return pairs


def _triples(call: ToolCall) -> set[tuple[str, str]]:
    """(key, value) pairs of a canonical call; one pseudo-pair for a call without arguments."""
    if not call.arguments:
        return {("", "")}
    return {(k, dumps(_loose(v))) for k, v in call.arguments.items()}


def argument_prf(
    pred: list[ToolCall], gold: list[ToolCall], tools: list[dict] | None = None
) -> tuple[float, float, float]:
    """Per-argument precision, recall and F1.

    Each canonical call contributes one triple (function name, argument key,
    value in match form) per argument; a call with no arguments contributes one
    pseudo-triple, so choosing the right argument-less function counts. Predicted
    calls are matched greedily (in order, most shared triples first) to unmatched
    gold calls of the same name; true positives are the shared triples of matched
    pairs. P = TP / predicted triples, R = TP / gold triples, F1 their harmonic
    mean (0 when both are 0). Conventions: both empty -> (1, 1, 1); an empty side
    facing a non-empty one has P (or R) = 0, so (0, 0, 0).
    """
    p_calls = [canonicalize(c, tools) for c in pred]
    g_calls = [canonicalize(c, tools) for c in gold]
    n_pred = sum(len(_triples(c)) for c in p_calls)
    n_gold = sum(len(_triples(c)) for c in g_calls)
    if n_pred == 0 and n_gold == 0:
        return 1.0, 1.0, 1.0

    def overlap(p: ToolCall, g: ToolCall) -> int:
        return len(_triples(p) & _triples(g))

    tp = sum(overlap(p_calls[i], g_calls[j]) for i, j in _pair_greedily(p_calls, g_calls, overlap))
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def rouge_l_f(a: str, b: str) -> float:
    """ROUGE-L F1 of two strings over lowercased word and punctuation tokens (LCS).

    Both empty -> 1.0; one empty -> 0.0.
    """
    x, y = _TOKEN.findall(a.lower()), _TOKEN.findall(b.lower())
    if not x and not y:
        return 1.0
    if not x or not y:
        return 0.0
    row = [0] * (len(y) + 1)  # row[j] = LCS(x[:i], y[:j]) for the current i
    for token in x:
        diagonal = 0  # LCS(x[:i-1], y[:j-1])
        for j, other in enumerate(y, start=1):
            above = row[j]
            row[j] = diagonal + 1 if token == other else max(above, row[j - 1])
            diagonal = above
    lcs = row[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(x), lcs / len(y)
    return 2 * precision * recall / (precision + recall)


def _pair_similarity(p: ToolCall, g: ToolCall) -> float:
    """Sum over shared keys (ROUGE-L F for two strings, else equality) / (pred keys + gold-only keys)."""
    if not p.arguments and not g.arguments:
        return 1.0
    total = 0.0
    for key in p.arguments.keys() & g.arguments.keys():
        a, b = p.arguments[key], g.arguments[key]
        total += (
            rouge_l_f(a, b) if isinstance(a, str) and isinstance(b, str) else float(_same(a, b))
        )
    return total / (len(p.arguments) + len(g.arguments.keys() - p.arguments.keys()))


def _unknown_names(calls: list[ToolCall], tools: list[dict]) -> bool:
    schemas = _schemas(tools)
    for call in calls:
        if call.name not in schemas:
            return True
        allowed = _allowed_keys(schemas[call.name])
        if allowed is not None and not set(call.arguments) <= allowed:
            return True
    return False


def similarity(
    pred: list[ToolCall] | None, gold: list[ToolCall], tools: list[dict] | None = None
) -> float:
    """The Sim-RL reward (STAR, arXiv 2602.03022), in [-1, 1].

    -1 if ``pred`` is None (malformed output) or, when ``tools`` is given, a call
    names a function or an argument key the schemas do not declare. Otherwise a
    soft Jaccard: predicted calls, in order, are matched greedily to the
    best-scoring unmatched gold call of the same name; a pair scores the sum over
    shared keys (ROUGE-L F1 for strings, 1/0 equality otherwise) divided by
    (predicted keys + gold keys absent from the prediction), or 1.0 if neither
    has arguments. Total = sum of pair scores / (predicted calls + unmatched gold
    calls). Both empty -> 1.0; pred empty, gold not -> 0.0. Values are compared
    in canonical form (coerced and defaults dropped when ``tools`` is given).
    """
    if pred is None or (tools is not None and _unknown_names(pred, tools)):
        return -1.0
    if not pred and not gold:
        return 1.0
    p_calls = [canonicalize(c, tools) for c in pred]
    g_calls = [canonicalize(c, tools) for c in gold]
    pairs = _pair_greedily(p_calls, g_calls, _pair_similarity)
    total = sum(_pair_similarity(p_calls[i], g_calls[j]) for i, j in pairs)
    return total / (len(p_calls) + len(g_calls) - len(pairs))


# --------------------------------------------------------------------------- score


@dataclass
class Score:
    """How one prediction compares with its gold answer."""

    valid: bool
    """Parsed without error, passes the schemas, and is not empty."""
    exact: bool
    """Valid and an :func:`exact_match` (for a plain-answer task: makes no call)."""
    precision: float
    recall: float
    f1: float
    similarity: float
    """The Sim-RL reward; -1 for malformed or empty output."""
    reason: str | None
    """Why invalid or why not exact (short, human readable); None when exact."""
    calls: list[ToolCall] = field(default_factory=list)
    """The parsed prediction calls, coerced per schema."""

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "calls"}
        return out | {"calls": [c.to_dict() for c in self.calls]}


def score(prediction: Any, gold: Any, tools: list[dict], allow_content: bool = False) -> Score:
    """Score ``prediction`` (anything :func:`parse` reads) against ``gold``; never raises.

    ``gold`` is a label ``{"tool_calls": [...], "content": ...}``, a list of calls,
    or a :class:`Parsed`. A prediction with text but no call is valid (and wrong
    if gold has calls); one with neither is invalid ("empty output"). When
    ``allow_content`` is False, text beside otherwise-correct calls makes the
    prediction not exact; when True such text is ignored.
    """
    try:
        return _score(prediction, gold, tools, allow_content)
    except Exception as exc:  # noqa: BLE001 - scoring must never raise
        return Score(
            False, False, 0.0, 0.0, 0.0, -1.0, f"scoring failed: {type(exc).__name__}: {exc}"
        )


def _score(prediction: Any, gold: Any, tools: list[dict], allow_content: bool) -> Score:
    pred = parse(prediction)
    reference = parse(gold)
    if reference.error:
        raise ValueError(f"gold is malformed: {reference.error}")
    gold_calls = reference.calls
    calls, errors = validate(pred.calls, tools)
    precision, recall, f1 = argument_prf(calls, gold_calls, tools)

    def result(valid: bool, exact: bool, sim: float, reason: str | None) -> Score:
        return Score(valid, exact, precision, recall, f1, sim, reason, calls)

    if pred.error:
        return result(False, False, -1.0, pred.error)
    if not calls and not pred.content:
        return result(False, False, -1.0, "empty output")
    sim = similarity(calls, gold_calls, tools)
    if errors:
        return result(False, False, sim, "; ".join(errors))
    if not gold_calls:
        return result(
            True,
            not calls,
            sim,
            None if not calls else f"expected a plain answer, got {len(calls)} call(s)",
        )
    if not calls:
        return result(True, False, sim, f"no tool call (expected {len(gold_calls)})")
    if not exact_match(calls, gold_calls, tools):
        return result(True, False, sim, _mismatch(calls, gold_calls, tools))
    if pred.content and not allow_content:
        return result(True, False, sim, "text beside the tool call(s)")
    return result(True, True, sim, None)


def _mismatch(pred: list[ToolCall], gold: list[ToolCall], tools: list[dict] | None) -> str:
    """The first difference between two call lists, in words."""
    p_calls = [canonicalize(c, tools) for c in pred]
    g_calls = [canonicalize(c, tools) for c in gold]
    if len(p_calls) != len(g_calls):
        return f"expected {len(g_calls)} call(s), got {len(p_calls)}"
    p_names, g_names = sorted(c.name for c in p_calls), sorted(c.name for c in g_calls)
    if p_names != g_names:
        return f"called {', '.join(p_names)}; expected {', '.join(g_names)}"

    def overlap(p: ToolCall, g: ToolCall) -> int:
        return len(_triples(p) & _triples(g))

    for i, j in _pair_greedily(p_calls, g_calls, overlap):
        p, g = p_calls[i].arguments, g_calls[j].arguments
        for key in sorted(p.keys() | g.keys()):
            if key not in g:
                return f"{p_calls[i].name}: unexpected argument '{key}'"
            if key not in p:
                return f"{p_calls[i].name}: missing argument '{key}'"
            if not _same(p[key], g[key]):
                got, want = _clip(dumps(p[key]), 40), _clip(dumps(g[key]), 40)
                return f"{p_calls[i].name}: '{key}' is {got}, expected {want}"
    return "calls differ"
