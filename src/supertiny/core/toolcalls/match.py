"""Tool calls: validate, canonicalise, match and score them (and parse, re-exported).

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
:mod:`supertiny.core.toolcalls.read`, schema coercion and validation in
:mod:`supertiny.core.toolcalls.schema`; the package ``supertiny.core.toolcalls`` re-exports
the names of all three (``__all__`` here), and is what callers import.
Exercise it with ``python -m pytest tests/unit/core/test_toolcalls.py -q``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from supertiny.core.toolcalls.read import Parsed, ToolCall, dumps, parse
from supertiny.core.toolcalls.schema import (
    allowed_keys,
    branch,
    clip,
    coerce,
    schemas_by_name,
    validate,
)

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

_TOKEN = re.compile(r"\w+|[^\w\s]")


# --------------------------------------------------------------------------- canonical form


def canonicalize(call: ToolCall, tools: list[dict] | None = None) -> ToolCall:
    """The canonical form of ``call``.

    With ``tools``: values coerced per schema and arguments equal to the schema's
    ``default`` dropped (so omitting a default and stating it compare equal).
    Always: keys sorted recursively, strings stripped, integral floats as ints.
    """
    schema = schemas_by_name(tools).get(call.name) if tools is not None else None
    arguments = coerce(call.arguments, schema) if schema is not None else call.arguments
    return ToolCall(call.name.strip(), _canon(arguments, schema))


def _canon(value: Any, schema: Any) -> Any:
    if isinstance(value, dict):
        obj = branch(schema, "object")
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
        arr = branch(schema, "array")
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
    schemas = schemas_by_name(tools)
    for call in calls:
        if call.name not in schemas:
            return True
        allowed = allowed_keys(schemas[call.name])
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
                got, want = clip(dumps(p[key]), 40), clip(dumps(g[key]), 40)
                return f"{p_calls[i].name}: '{key}' is {got}, expected {want}"
    return "calls differ"
