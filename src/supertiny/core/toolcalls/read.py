"""Read model outputs into tool calls: the ToolCall type, parse(), lenient JSON.

The reading half of :mod:`supertiny.core.toolcalls` (import from there; it re-exports
``ToolCall``, ``Parsed`` and ``parse``):

- :class:`ToolCall` / :class:`Parsed`: a call, and what an output says.
- :func:`parse` reads an OpenAI assistant message, a label dict, a list of calls
  or raw text into :class:`Parsed`, and never raises.
- :func:`extract` finds call objects in text written as Qwen/Hermes
  ``<tool_call>...</tool_call>`` tags (the final tag may be unclosed), fenced code
  blocks, or bare JSON objects/lists, and returns the text outside them.
- :func:`loads_lenient` decodes a JSON snippet, falling back (in order) to
  removing trailing commas, un-doubling ``{{ ... }}`` braces (what prompt
  templates that escape braces teach small models), and a Python literal (single
  quotes, ``True``/``None``) through ``ast.literal_eval``, never ``eval``.

Hand-written because no well-kept library parses all these shapes. Exercise it
with ``python -m pytest tests/unit/core/test_toolcalls.py -q``.

One file of ~510 lines: the readers of each shape (tags, fences, bare JSON) share the bracket
scanner, the decode budget and ``loads_lenient``; the scorer is apart (``match.py``).
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_SNIPPET_CHARS = 200_000
"""Longer snippets are not decoded (guards ``ast.literal_eval`` and the time spent)."""
DECODE_BUDGET = 4
"""Bare-JSON scanning decodes at most this many times the text's length (plus 20k
characters), which bounds the time spent on pathological text such as thousands of
nested broken objects; scanning stops when it is spent."""

_TAG_OPEN = re.compile(r"<tool_call>", re.I)
_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|\Z)", re.S | re.I)
_TAG_STRAY = re.compile(r"</?tool_call>", re.I)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n`]*\n?(.*?)(?:```|\Z)", re.S)
_SPECIAL = re.compile(r"<\|(?:im_end|im_start|endoftext|eot_id|eom_id|end)\|>")
_NAME_KEY = re.compile(r"""["']name["']\s*:""")
_STRING = re.compile(r""""(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?""", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_PY_WORDS = {"true": "True", "false": "False", "null": "None"}
_PY_WORD = re.compile(r"\b(true|false|null)\b")
_CALL_KEYS = ("arguments", "parameters", "args")
_MESSAGE_KEYS = ("role", "content", "tool_calls", "function_call")


# --------------------------------------------------------------------------- calls


@dataclass(frozen=True)
class ToolCall:
    """One function call: a name and its arguments (plain JSON values)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, dumps(self.arguments)))

    def to_dict(self) -> dict:
        """``{"name": ..., "arguments": {...}}`` (a copy)."""
        return {"name": self.name, "arguments": copy.deepcopy(self.arguments)}

    def to_openai(self, call_id: str) -> dict:
        """The OpenAI ``tool_calls`` entry: arguments as a JSON string."""
        arguments = json.dumps(self.arguments, ensure_ascii=False)
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        }

    @classmethod
    def from_dict(cls, d: dict) -> ToolCall:
        """Read ``{"name", "arguments"}`` or OpenAI ``{"type": "function", "function": {...}}``.

        ``arguments`` may be a dict or a JSON string; ``parameters``/``args`` are
        accepted for it. Raises ``ValueError`` with the reason if ``d`` is no call.
        """
        if not isinstance(d, dict):
            raise ValueError(f"a tool call must be an object, not {type(d).__name__}")
        function = d.get("function")
        if isinstance(function, dict):
            d = {**{k: v for k, v in d.items() if k in ("arguments", "parameters")}, **function}
        name = d.get("name", function)
        if not isinstance(name, str) or not name.strip():
            raise ValueError("tool call without a name")
        raw = next((d[k] for k in ("arguments", "parameters", "args") if k in d), None)
        return cls(name.strip(), _arguments(raw))


def _arguments(raw: Any) -> dict[str, Any]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            raw = loads_lenient(raw)
        except ValueError as exc:
            raise ValueError(f"arguments string: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"arguments must be an object, not {type(raw).__name__}")
    return to_json_value(raw)


@dataclass
class Parsed:
    """What an output says: its calls, its plain text, and a parse error if any."""

    calls: list[ToolCall]
    content: str | None
    """Remaining plain text (the answer when there is no call), stripped; None if empty."""
    error: str | None = None
    """Set when the output looked like a tool call but could not be parsed; reason in words."""


# --------------------------------------------------------------------------- parse


def parse(output: str | dict | list | None) -> Parsed:
    """Read the tool calls and text of ``output``; never raises.

    Accepts an OpenAI assistant message, a label ``{"tool_calls", "content"}``,
    a list of calls (either form), a single call, a :class:`ToolCall` or
    :class:`Parsed`, or raw text (see :func:`supertiny.core.toolcalls.read.extract`).
    A message without structured calls has its ``content`` text parsed.
    """
    try:
        return _parse(output)
    except Exception as exc:  # noqa: BLE001 - parse must never raise
        return Parsed([], None, f"unparseable output: {type(exc).__name__}: {exc}")


def _parse(output: Any) -> Parsed:
    if output is None:
        return Parsed([], None)
    if isinstance(output, Parsed):
        return output
    if isinstance(output, ToolCall):
        return Parsed([output], None)
    if isinstance(output, str):
        found = extract(output)
        calls, errors = _to_calls(found.calls, "call")
        return Parsed(calls, found.content, _join(found.errors + errors))
    if isinstance(output, list):
        calls, errors = _to_calls(output, "call")
        return Parsed(calls, None, _join(errors))
    if isinstance(output, dict):
        if any(k in output for k in _MESSAGE_KEYS):
            return _parse_message(output)
        calls, errors = _to_calls([output], "call")
        return Parsed(calls, None, _join(errors))
    return Parsed([], None, f"unsupported output type {type(output).__name__}")


def _parse_message(message: dict) -> Parsed:
    raw = message.get("tool_calls")
    if not raw and isinstance(message.get("function_call"), dict):
        raw = [message["function_call"]]
    content = _content_text(message.get("content"))
    if raw:
        if not isinstance(raw, list):
            return Parsed([], _strip(content), "tool_calls is not a list")
        calls, errors = _to_calls(raw, "tool_calls")
        return Parsed(calls, _strip(content), _join(errors))
    if content is not None:
        return _parse(content)
    return Parsed([], None)


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(t for t in texts if isinstance(t, str))
    return None


def _to_calls(items: list, where: str) -> tuple[list[ToolCall], list[str]]:
    calls, errors = [], []
    for index, item in enumerate(items):
        if isinstance(item, ToolCall):
            calls.append(item)
            continue
        try:
            calls.append(ToolCall.from_dict(item))
        except (ValueError, TypeError, RecursionError) as exc:
            errors.append(f"{where} {index}: {exc}")
    return calls, errors


def _strip(text: str | None) -> str | None:
    return (text.strip() or None) if isinstance(text, str) else None


def _join(errors: list[str]) -> str | None:
    return "; ".join(errors) if errors else None


# --------------------------------------------------------------------------- text


@dataclass
class Extraction:
    """What :func:`extract` found in a text."""

    calls: list[dict] = field(default_factory=list)
    """Raw call dicts in order of appearance (shape not yet checked beyond a dict)."""
    content: str | None = None
    """The text outside the call markup, stripped; None if empty."""
    errors: list[str] = field(default_factory=list)
    """Why text that looked like a call could not be decoded."""


def extract(text: str) -> Extraction:
    """Find the calls in ``text``: tags first, then fenced blocks, then bare JSON."""
    text = _SPECIAL.sub("", text)
    if _TAG_OPEN.search(text):
        return _from_tags(text)
    if "```" in text:
        found = _from_fences(text)
        if found.calls or found.errors:
            return found
    return _from_bare(text)


def _clean(text: str) -> str | None:
    text = _TAG_STRAY.sub("", text).strip()
    return text or None


def _from_tags(text: str) -> Extraction:
    result = Extraction()
    outside: list[str] = []
    last = 0
    for number, match in enumerate(_TAG.finditer(text), start=1):
        outside.append(text[last : match.start()])
        last = match.end()
        body = _strip_fence(match.group(1).strip())
        where = f"<tool_call> #{number}"
        if not body:
            result.errors.append(f"{where} is empty")
            continue
        calls, error = _decode_body(body)
        result.calls.extend(calls)
        if error:
            result.errors.append(f"{where}: {error}")
    outside.append(text[last:])
    result.content = _clean("".join(outside))
    return result


def _strip_fence(body: str) -> str:
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rstrip().removesuffix("```")
    return body.strip()


def _decode_body(body: str) -> tuple[list[dict], str | None]:
    """Decode a tag body: one call, a list, or several objects one after another."""
    try:
        value = loads_lenient(body)
    except ValueError as exc:
        found = _from_bare(body, strict=False)
        if found.calls and not found.errors and found.content is None:
            return found.calls, None
        if _scan_brackets(body)[1] is not None:
            return found.calls, "unbalanced braces (output truncated?)"
        return found.calls, str(exc)
    calls = call_dicts(value, strict=False)
    if not calls:
        return [], "not a call object"
    return calls, None


def _from_fences(text: str) -> Extraction:
    result = Extraction()
    outside: list[str] = []
    last = 0
    for match in _FENCE.finditer(text):
        body = match.group(2).strip()
        found = _from_bare(body) if body else Extraction()
        if not (found.calls or found.errors):
            continue
        outside.append(text[last : match.start()])
        if found.content:
            outside.append(found.content)
        last = match.end()
        result.calls.extend(found.calls)
        result.errors.extend(found.errors)
    outside.append(text[last:])
    result.content = _clean("".join(outside))
    return result


def _from_bare(text: str, strict: bool = True) -> Extraction:
    """Calls written as bare JSON objects/lists anywhere in ``text``."""
    pairs, opener = _scan_brackets(text)
    result = Extraction()
    taken: list[tuple[int, int]] = []
    bad: list[tuple[int, int]] = []
    cursor, budget = 0, DECODE_BUDGET * len(text) + 20_000
    for start in sorted(pairs):
        end = pairs[start]
        if start < cursor:
            continue
        snippet = text[start:end]
        if "name" not in snippet and "function" not in snippet:
            cursor = end  # no call can be in here
            continue
        budget -= len(snippet)
        if budget < 0:
            break
        try:
            value = loads_lenient(snippet)
        except ValueError:
            if looks_like_call(snippet):
                bad.append((start, end))
            continue  # look inside: a valid call may be nested in broken text
        calls = call_dicts(value, strict)
        if calls:
            result.calls.extend(calls)
            taken.append((start, end))
        cursor = end
    for start, end in bad:
        broken_outer = not any(s <= start and end <= e for s, e in bad if (s, e) != (start, end))
        holds_call = any(start <= s and e <= end for s, e in taken)
        if broken_outer and not holds_call:
            result.errors.append(f"invalid call JSON: {_short(text[start:end])}")
    if opener is not None:
        tail = _cut(text, [(s, e) for s, e in taken if s > opener])[opener:]
        if looks_like_call(tail):
            result.errors.append(f"unbalanced braces (output truncated?): {_short(tail)}")
    result.content = _clean(_cut(text, taken))
    return result


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        last = end
    out.append(text[last:])
    return "".join(out)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scan_brackets(text: str) -> tuple[dict[int, int], int | None]:
    """Pair brackets in one linear pass.

    Returns a map from each ``{``/``[`` that closes properly to the index just past
    its closer, and the index of the outermost bracket still open at the end (a
    truncated output) or None. Quoted strings are skipped only inside brackets, so
    prose apostrophes stay harmless; a mismatched closer abandons the open brackets.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "{[":
            stack.append(i)
        elif char in "}]":
            if stack and text[stack[-1]] == ("{" if char == "}" else "["):
                pairs[stack.pop()] = i + 1
            else:
                stack.clear()
        elif char in "\"'" and stack:
            i = _string_end(text, i)
            continue
        i += 1
    return pairs, (stack[0] if stack else None)


# --------------------------------------------------------------------------- shapes


def call_dicts(value: Any, strict: bool) -> list[dict] | None:
    """The call dicts in a decoded value, or None if it is not call-shaped.

    Accepts a call, a list of calls, or ``{"tool_calls": [...]}``. ``strict``
    (bare JSON in prose) asks for a clear call: a ``name`` with arguments, or a
    ``function`` wrapper; otherwise (inside ``<tool_call>``) any object is taken,
    so that a broken one gets a precise error later.
    """
    if isinstance(value, dict):
        inner = value.get("tool_calls")
        if isinstance(inner, list) and all(isinstance(v, dict) for v in inner):
            return list(inner)
        return [value] if (not strict or _is_call_dict(value)) else None
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if not strict or all(_is_call_dict(v) for v in value):
            return list(value)
    return None


def _is_call_dict(d: dict) -> bool:
    function = d.get("function")
    if isinstance(function, dict):
        return isinstance(function.get("name"), str)
    name = d.get("name", function)
    return isinstance(name, str) and any(k in d for k in _CALL_KEYS)


def looks_like_call(text: str) -> bool:
    """Whether undecodable text was probably meant as a call (has a quoted ``name`` key)."""
    return bool(_NAME_KEY.search(text))


# --------------------------------------------------------------------------- JSON


def loads_lenient(snippet: str) -> Any:
    """Decode ``snippet`` as JSON, or as the near-JSON small models write.

    Raises ``ValueError`` with the strict JSON error when every fallback fails.
    """
    text = snippet.strip()
    if len(text) > MAX_SNIPPET_CHARS:
        raise ValueError(f"snippet longer than {MAX_SNIPPET_CHARS} characters")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        first_error = exc
    candidates = [text]
    if text.startswith("{{") or text.startswith("[{{"):
        candidates.append(_outside_strings(text, _undouble))
    for candidate in candidates:
        for decode in (_json_without_trailing_commas, _python_literal):
            try:
                return decode(candidate)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                continue
    raise ValueError(f"invalid JSON: {first_error}") from None


def dumps(value: Any) -> str:
    """Deterministic compact JSON (sorted keys); never raises (odd values become repr)."""
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _json_without_trailing_commas(text: str) -> Any:
    fixed = _outside_strings(text, lambda part: _TRAILING_COMMA.sub(r"\1", part))
    return json.loads(fixed, parse_constant=_reject_constant)


def _python_literal(text: str) -> Any:
    fixed = _outside_strings(text, lambda part: _PY_WORD.sub(lambda m: _PY_WORDS[m[1]], part))
    fixed = _outside_strings(fixed, lambda part: _TRAILING_COMMA.sub(r"\1", part))
    return to_json_value(ast.literal_eval(fixed))


def _undouble(part: str) -> str:
    return part.replace("{{", "{").replace("}}", "}")


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists); ``ValueError`` if impossible."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinity are not JSON values")
        return value
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("object keys must be strings")
        return {k: to_json_value(v) for k, v in value.items()}
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def _outside_strings(text: str, transform: Callable[[str], str]) -> str:
    """Apply ``transform`` to the parts of ``text`` that are not quoted string literals."""
    out: list[str] = []
    last = 0
    for match in _STRING.finditer(text):
        out.append(transform(text[last : match.start()]))
        out.append(match.group())
        last = match.end()
    out.append(transform(text[last:]))
    return "".join(out)


def _string_end(text: str, i: int) -> int:
    """Index just past the string literal opened by the quote at ``text[i]``."""
    quote, j = text[i], i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
        elif text[j] == quote:
            return j + 1
        else:
            j += 1
    return len(text)
