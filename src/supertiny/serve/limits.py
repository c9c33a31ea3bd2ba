"""The limits of `supertiny serve`: what one request may ask for, and how many run at once.

    supertiny serve --model student --max-concurrency 1 --max-queue 64 --request-timeout 600

`Limits` is one frozen settings object: `server.py` builds it from the command line and hands
it to `create_app` (`serve/app.py`), which enforces it:

- admission (`serve/admission.py`): `max_concurrency` requests run at once, `max_queue` more
  wait for a place, any further one is answered 429 with `Retry-After: retry_after_s` (the
  OpenAI clients retry on 429); a request still unanswered `request_timeout_s` after it arrived
  is stopped and answered 504;
- request size, checked here before anything is built from the request: the body
  (`max_body_bytes`, counted before it is parsed), the number of messages and tools, and for
  every JSON schema in it (each tool's `parameters`, a `response_format` schema) its size in
  characters, its nesting depth, and every repetition bound inside it (`maxLength`,
  `minLength`, `maxItems`, `minItems`, `maxProperties`, `minProperties`, and the `{m,n}`
  quantifiers of its `pattern` regexes).

Why repetition bounds: both grammar engines expand a bound into grammar rules. llama-cpp-
python's JSON-schema converter writes ``maxLength: N`` as N nested optional groups, and
llama.cpp's GBNF parser recurses once per level: one tool with ``{"type": "string",
"maxLength": 100000000}`` made `supertiny serve --model student` die with a segfault in
libstdc++ 18 s into building that grammar. Measured with llama-cpp-python 0.3.36 on the tiny
test model: ``maxLength`` 100,000 and a ``{1,100000}`` pattern quantifier segfault the
process; 10,000 are refused by llama.cpp's parser ("exceeds sane defaults": the request is
then decoded unconstrained, with a warning), as is any ``maxLength`` above about 1,000.
xgrammar copes with a long ``maxLength`` but compiles a ``{1,N}`` regex quantifier in time
that grows with N squared (0.08 s at N = 1,024, 0.8 s at 4,096, 5.5 s at 10,000). A bound
above `max_schema_repeat` is a 400 before any grammar is built.

Every violation raises `LimitError`, answered as an OpenAI-style 400 whose `code` is the name of
the limit (e.g. "max_schema_repeat") and whose message gives the allowed maximum.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

REPEAT_KEYWORDS = (
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "maxContains",
    "minContains",
)
"""Schema keywords whose value is a repetition count a grammar expands."""
DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
"""Keywords whose value is data, not a schema: keys inside them are not keywords."""


@dataclass(frozen=True)
class Limits:
    """What `supertiny serve` admits. Each field has an option of `supertiny serve`
    (`--max-queue`, `--request-timeout`, ...: `server.add_arguments`)."""

    max_concurrency: int = 1
    """Requests running at once (validated and generating). llama.cpp runs one generation at a
    time, so 1 there; the torch backend decodes up to `--max-batch-size` together, so that
    many (`server.default_concurrency`)."""
    max_queue: int = 64
    """Requests that may wait for a running place; one more is refused with 429."""
    retry_after_s: int = 1
    """The `Retry-After` header (seconds) of a 429."""
    request_timeout_s: float | None = 600.0
    """Seconds from a request's arrival (queueing included) to its answer; a request still
    running then is stopped and answered 504 (in a stream: an error event). None: no deadline."""
    max_body_bytes: int = 4 * 2**20
    """Bytes of one request body, counted as it arrives, before it is parsed."""
    max_messages: int = 2048
    """Messages in one request (the OpenAI API's own limit)."""
    max_tools: int = 128
    """Tools in one request (the OpenAI API's own limit)."""
    max_schema_chars: int = 32768
    """Characters of one JSON schema (a tool's `parameters`, a `response_format` schema), as
    compact JSON."""
    max_schema_depth: int = 32
    """Nesting depth of one JSON schema: objects and arrays inside each other (a property of
    an object property is 5 levels deep: schema, properties, schema, properties, schema)."""
    max_schema_repeat: int = 4096
    """Largest repetition bound in a schema: `maxLength`, `maxItems` and the like, and the
    numbers of a regex quantifier `{m,n}` in a `pattern`."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is None:
                continue
            if name == "request_timeout_s" and value <= 0:
                raise ValueError(f"serve limit {name} must be positive (or None), got {value}")
            lowest = 0 if name in ("max_queue", "retry_after_s", "request_timeout_s") else 1
            if value < lowest:
                raise ValueError(f"serve limit {name} must be at least {lowest}, got {value}")


class LimitError(ValueError):
    """A request over one of the `Limits`; answered with a 400 whose code is `limit`."""

    def __init__(self, limit: str, message: str, param: str | None = None):
        super().__init__(message)
        self.limit, self.message, self.param = limit, message, param


def check_counts(limits: Limits, messages: int, tools: int) -> None:
    """`LimitError` if a request has more messages or tools than allowed."""
    if messages > limits.max_messages:
        raise LimitError(
            "max_messages",
            f"the request has {messages} messages; at most {limits.max_messages} are allowed "
            "(max_messages)",
            "messages",
        )
    if tools > limits.max_tools:
        raise LimitError(
            "max_tools",
            f"the request has {tools} tools; at most {limits.max_tools} are allowed (max_tools)",
            "tools",
        )


def check_schema(limits: Limits, schema: Any, param: str) -> None:
    """`LimitError` naming `param` if `schema` is too deep, too large or has a repetition
    bound over the limit. Iterative: a schema nested 10,000 levels deep is a 400, not a
    RecursionError. Depth is checked first, so that the size can be measured safely."""
    if schema is None:
        return
    depth = nesting_depth(schema, stop_after=limits.max_schema_depth)
    if depth > limits.max_schema_depth:
        raise LimitError(
            "max_schema_depth",
            f"{param} nests deeper than {limits.max_schema_depth} levels, the most allowed "
            "(max_schema_depth)",
            param,
        )
    chars = len(json.dumps(schema, separators=(",", ":")))
    if chars > limits.max_schema_chars:
        raise LimitError(
            "max_schema_chars",
            f"{param} is {chars} characters of JSON; at most {limits.max_schema_chars} "
            "are allowed (max_schema_chars)",
            param,
        )
    for keyword, bound in repetition_bounds(schema):
        if bound > limits.max_schema_repeat:
            raise LimitError(
                "max_schema_repeat",
                f"{param} has a {keyword} of {_number(bound)}; at most {limits.max_schema_repeat} is "
                "allowed for any repetition bound (max_schema_repeat): each repetition becomes "
                "a grammar rule",
                param,
            )


def _number(value: float) -> str:
    """1e8 as "100000000" (a bound is an integer, though JSON may write it as a float)."""
    if value >= _HUGE:
        return f"more than {_HUGE:.0e}"
    return str(int(value)) if float(value).is_integer() else str(value)


def nesting_depth(value: Any, stop_after: int | None = None) -> int:
    """Levels of dicts and lists in `value` (a scalar: 0, `{}`: 1, `{"a": []}`: 2). With
    `stop_after`, stops at the first level deeper than it (and returns that level)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        deepest = max(deepest, depth)
        if stop_after is not None and deepest > stop_after:
            return deepest
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def repetition_bounds(schema: Any) -> Iterator[tuple[str, float]]:
    """Every (keyword, bound) in `schema`: counts such as `maxLength`, and the numbers of the
    `{m,n}` quantifiers in `pattern`s and `patternProperties` names. Data (`enum`, `const`,
    `default`, `examples`) is not searched."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for keyword in REPEAT_KEYWORDS:
            value = node.get(keyword)
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield keyword, value
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += list(node["patternProperties"])
        for pattern in patterns:
            yield from (("pattern quantifier", n) for n in quantifier_bounds(pattern))
        stack.extend(v for k, v in node.items() if k not in DATA_KEYWORDS)


_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_HUGE = 10**18  # a quantifier written with more digits than this is simply "too large"


def quantifier_bounds(pattern: str) -> list[int]:
    """The numbers of the `{m}`, `{m,}` and `{m,n}` quantifiers in a regex (escaped braces and
    braces inside character classes are literal characters, not quantifiers)."""
    bounds: list[int] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "{" and (match := _QUANTIFIER.match(pattern, i)):
            bounds += [int(g) if len(g) < 18 else _HUGE for g in match.groups() if g]
            i = match.end()
            continue
        i += 1
    return bounds


DEFAULT_LIMITS = Limits()
"""The limits of a server started without options."""
