"""The OpenAI chat-completions request, validated, and turned into a backend request.

`ChatCompletionRequest` is the pydantic model of the POST body of
`/v1/chat/completions`. Unknown fields are ignored (clients and vendors send many);
known fields are checked, and a bad one is answered with a 400 naming it.
`to_backend_request` then normalises what the chat templates cannot take as is:

- text content parts (`[{"type": "text", "text": ...}]`) are joined into one string;
  other parts (images, audio) are refused with a 400;
- a `developer` message is a `system` message (the newer OpenAI name);
- an assistant tool call's `arguments`, a JSON *string* in the OpenAI format, is
  decoded to a dict: Hugging Face chat templates (Qwen2.5's among them) render it
  with `| tojson`, which would otherwise print a quoted string inside the call;
- `tool_choice: "none"` drops the tools from the prompt.

Before any of that, the request is held to the server's `Limits` (`serve/limits.py`): the
number of messages and tools, and the size, depth and repetition bounds of every schema in it,
so that nothing (not even the JSON-schema check) walks a schema that is too large.

Exercised by `python -m pytest tests/unit/serve/test_serve.py -q`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from supertiny.runtime.backend import ChatRequest, SamplingParams
from supertiny.serve.limits import DEFAULT_LIMITS, Limits, check_counts, check_schema

MAX_N = 16
"""Most choices one request may ask for (each is a full generation)."""
MAX_TOP_LOGPROBS = 20
"""As in the OpenAI API."""


class RequestError(ValueError):
    """A request that is well-formed JSON but cannot be served; answered with a 400."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionCall(_Lenient):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCall(_Lenient):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionSpec(_Lenient):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionSpec


class FunctionCallName(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionCallName


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """The fields of an OpenAI chat-completions body that this server reads.

    `response_format` (`json_object`, or `json_schema` with a schema) makes the answer
    JSON, decoded under a grammar;
    `top_k`, `min_p` and `repetition_penalty` are the vLLM extensions, defaulting to
    "off" so that sampling is plain temperature + top-p as in the OpenAI API;
    `return_tokens_as_token_ids` (also vLLM's) writes logprob tokens as
    `"token_id:<id>"`, which distillation needs to align vocabularies exactly.
    """

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: dict[str, Any] | None = None
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    return_tokens_as_token_ids: bool = False

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops

    def token_limit(self) -> int | None:
        """`max_completion_tokens` (the newer name) or `max_tokens`."""
        return self.max_completion_tokens or self.max_tokens


FIELD_NAMES = frozenset(
    name
    for model in (
        ChatCompletionRequest,
        Message,
        ToolCall,
        FunctionCall,
        Tool,
        FunctionSpec,
        NamedToolChoice,
        StreamOptions,
    )
    for name in model.model_fields
)
"""Every field name in the request models: what an error may name as its `param`."""


def to_backend_request(
    req: ChatCompletionRequest, n_ctx: int, limits: Limits = DEFAULT_LIMITS
) -> ChatRequest:
    """Check what pydantic cannot and build the backend's `ChatRequest`.

    Raises `LimitError` for a request over `limits`, else `RequestError` (both -> HTTP 400)
    naming the offending field.
    """
    check_limits(req, limits)
    limit = req.token_limit()
    if limit is not None and limit > n_ctx:
        param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise RequestError(
            f"{param} is {limit}, more than the model's context of {n_ctx} tokens", param
        )
    tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None
    choice = _tool_choice(req, tools)
    if choice == "none":
        tools = None
    if tools:
        for index, tool in enumerate(tools):
            _check_schema(tool["function"].get("parameters"), f"tools[{index}].function.parameters")
    response_format = _response_format(req.response_format)
    if req.top_logprobs and not req.logprobs:
        raise RequestError("top_logprobs requires logprobs to be true", "top_logprobs")
    params = SamplingParams(
        max_tokens=limit,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        min_p=req.min_p or 0.0,
        repeat_penalty=req.repetition_penalty or 1.0,
        seed=req.seed,
        stop=tuple(req.stop or ()),
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs or 0,
        token_ids_as_text=req.return_tokens_as_token_ids,
    )
    messages = [_message_dict(m, i) for i, m in enumerate(req.messages)]
    return ChatRequest(
        messages=messages,
        tools=tools,
        tool_choice=choice,
        params=params,
        response_format=response_format,
    )


def check_limits(req: ChatCompletionRequest, limits: Limits) -> None:
    """`LimitError` if `req` has too many messages or tools, or a schema over the limits (all
    the tools it sends are checked, also under `tool_choice` "none")."""
    check_counts(limits, len(req.messages), len(req.tools or ()))
    for index, tool in enumerate(req.tools or ()):
        check_schema(limits, tool.function.parameters, f"tools[{index}].function.parameters")
    spec = (req.response_format or {}).get("json_schema")
    if isinstance(spec, dict):
        check_schema(limits, spec.get("schema"), "response_format.json_schema.schema")


def _check_schema(schema: Any, param: str) -> None:
    """A 400 naming `param` unless `schema` is a valid JSON schema (None is "no arguments")."""
    if schema is None:
        return
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise RequestError(f"{param} is not a valid JSON schema: {exc.message}", param) from None


def _response_format(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI's `response_format` as None, {"type": "json_object"} or {"type": "json_schema",
    "schema": ...}; anything else is a 400 naming the field."""
    if value is None or value.get("type") == "text":
        return None
    kind = value.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise RequestError(
            f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}",
            "response_format",
        )
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise RequestError(
            "response_format of type 'json_schema' needs json_schema.schema (an object)",
            "response_format",
        )
    _check_schema(schema, "response_format.json_schema.schema")
    return {"type": "json_schema", "schema": schema}


def _tool_choice(req: ChatCompletionRequest, tools: list[dict] | None) -> str:
    """ "auto" | "none" | "required" | the forced function's name."""
    choice = req.tool_choice
    if choice is None:
        return "auto" if tools else "none"
    if isinstance(choice, str):
        if choice == "required" and not tools:
            raise RequestError("tool_choice 'required' needs a non-empty tools list", "tool_choice")
        return choice if tools else "none"
    names = [t["function"]["name"] for t in tools or []]
    if choice.function.name not in names:
        raise RequestError(
            f"tool_choice names function '{choice.function.name}', which is not in tools "
            f"({', '.join(names) or 'none given'})",
            "tool_choice",
        )
    return choice.function.name


def _message_dict(message: Message, index: int) -> dict[str, Any]:
    """One message as the plain dict a chat template expects."""
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": _text(message.content, index)}
    if role in ("user", "system", "tool") and out["content"] is None:
        raise RequestError(
            f"messages[{index}] ({role}) has no content", f"messages[{index}].content"
        )
    if message.name is not None:
        out["name"] = message.name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.function.name,
                    "arguments": _arguments(call.function.arguments),
                },
            }
            for call in message.tool_calls
        ]
    elif role == "assistant" and out["content"] is None:
        out["content"] = ""
    return out


def _text(content: str | list[dict[str, Any]] | None, index: int) -> str | None:
    if content is None or isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RequestError(
                f"messages[{index}]: only text content parts are supported, got "
                f"type {part.get('type')!r}",
                f"messages[{index}].content",
            )
        texts.append(part["text"])
    return "".join(texts)


def _arguments(arguments: str | dict[str, Any]) -> Any:
    """OpenAI sends arguments as a JSON string; templates want the decoded object."""
    if isinstance(arguments, dict):
        return arguments
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments  # rendered as the model wrote it
