"""The Task: one YAML file that defines a function-calling feature, shared by every stage.

A task names its final tools (OpenAI ``tools`` JSON schemas), optional helper tools with
Python implementations, the teacher's long prompt and few-shot examples, the student's short
prompt, and its datasets. ``Task.evaluate`` and ``Task.reward`` are the single definition of
"correct" that labelling, rejection sampling, RL and evaluation all call.

    supertiny label examples/smart_home/task.yaml      # loads the task, labels its data

See examples/smart_home/task.yaml for a complete task and docs/task.md for every key.

A task folder is code
---------------------

A task file can name a Python module (``helpers.module``), and loading the task imports it:
whatever that file, and every file it imports, does at import time runs with your rights
(reading and writing files, opening connections, starting programs). Its helper functions
then run with arguments that the teacher model wrote, and the teacher writes them from the
input texts it labels. supertiny does not sandbox any of it. This is what Hugging Face's
``trust_remote_code=True`` means for a model repository: **only run tasks whose folder you
trust**, because you wrote it or read it, as you would a package before ``pip install``.

What runs when:

- ``supertiny label`` (and ``supertiny run``; ``supertiny eval`` with ``teacher_rerun:
  true``): the module is imported at load, and again in a helper process that the first
  helper call starts. Every helper call the teacher makes runs there, with the teacher's
  arguments, one call at a time. A call that raises, runs past ``helpers.timeout_s`` (the
  process is killed and started again for the next call) or ends the process becomes an
  ``error: ...`` tool result that goes back to the teacher and into the record's trace.
  With ``helpers.dry_run: true`` the teacher's final calls are dry-run there too, by the
  module's functions named like the final tools, under the same timeout.
- every command that loads the task: a ``helpers.schemas`` hook runs once, in this process,
  and rewrites the final tools' schemas from the environment.
- ``supertiny serve --task``, ``train``, ``compress``, ``eval``: they load the task, so the
  module is imported (its import-time code runs); no helper is called.

The timeout bounds how long a call may take; it is not a sandbox. Write helpers as you
would a web handler: check their arguments, and give them no more reach than the task needs.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from pydantic import Field, field_validator

from supertiny.core import config as cfg
from supertiny.core import toolcalls
from supertiny.core.helpers import (  # noqa: F401  (import_file: the task modules' import)
    HelperProcess,
    ToolError,
    import_file,
)
from supertiny.core.runs import BadLine, iter_numbered

ToolList = list[dict[str, Any]]


class FewShot(cfg.Section):
    messages: list[dict[str, Any]] = Field(description="An example conversation (OpenAI messages).")


class TeacherPrompt(cfg.Section):
    system_prompt: str = Field(description="The teacher's system prompt (may be long).")
    few_shot: list[FewShot] = Field(
        default_factory=list, description="Example conversations prepended after the system prompt."
    )
    max_steps: int = Field(
        6, ge=1, le=50, description="Most assistant turns in the function-call pipeline."
    )


class StudentPrompt(cfg.Section):
    system_prompt: str = Field(description="The student's short system prompt.")
    tools_in_prompt: bool = Field(
        True, description="Render the final tools' schemas into the student's chat template."
    )


class Helpers(cfg.Section):
    module: str = Field(
        description="Python file (relative to the task file) with one function per helper tool."
    )
    tools: str | ToolList = Field(
        description="Helper tool schemas (OpenAI format): a JSON/YAML path or an inline list."
    )
    timeout_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="Longest one helper call may run, in seconds; past it the call is stopped "
        "and the teacher gets the error 'helper NAME timed out after N s'. Bounds the final "
        "tools' dry-runs too.",
    )
    dry_run: bool = Field(
        False,
        description="Check the teacher's final calls against the environment before they are "
        "accepted: a function in `module` named like a final tool dry-runs a call (in the "
        "helper process, bounded by `timeout_s`) and raises ValueError, with a message for the "
        "teacher, for one that cannot be carried out. The error goes back to the teacher, "
        "which may correct itself within `teacher.max_steps`; a call still invalid at the "
        "last step, or a dry-run that raises anything else or times out, rejects the sample "
        "(reason kind `dry_run`). Final tools without such a function are not checked.",
    )
    schemas: str | None = Field(
        None,
        description="Name of a function in `module` that takes the final tools (a copy of "
        "the OpenAI list) and returns them rewritten from the environment, e.g. an id "
        "argument made an `enum` of the ids that exist. Applied once at load and validated "
        "again; the teacher's and student's grammars, their prompts and the scorer all see "
        "the result. Tool names and their order must stay as they are.",
    )


class Data(cfg.Section):
    unlabeled: str = Field(description="JSONL of inputs to label (relative to the task file).")
    test: str | None = Field(None, description="JSONL of held-out inputs with human `gold` labels.")


class TaskSpec(cfg.Section):
    name: str = Field(
        description="Task name, used in reports and as the run folder `runs/<name>/`: a plain "
        "folder name (no '/', '\\' or ':', not '.' or '..')."
    )
    description: str = Field("", description="One line describing the feature.")
    tools: str | ToolList = Field(
        description="Final tools (OpenAI format): a JSON/YAML path or an inline list."
    )
    helpers: Helpers | None = Field(
        None, description="Helper tools the teacher may call before its final call."
    )
    allow_plain_answer: bool = Field(
        False, description="A text answer without a final call is an acceptable output."
    )
    teacher: TeacherPrompt = Field(description="The teacher's prompt and pipeline bounds.")
    student: StudentPrompt = Field(description="The student's one-stage prompt.")
    data: Data = Field(description="The task's datasets.")
    reward: Literal["similarity", "exact"] = Field(
        "similarity", description="Default RL reward: the Sim-RL soft score or exact match."
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        """The name is a folder (``runs/<name>/``): one plain path part that stays in ``runs/``."""
        if not value.strip():
            raise ValueError("must not be empty")
        if value in (".", "..") or any(c in value for c in "/\\:") or not value.isprintable():
            raise ValueError(
                "must be a plain folder name, as it names runs/<name>/: "
                "no '/', '\\' or ':', not '.' or '..'"
            )
        return value


def _check_tools(tools: Any, where: str) -> ToolList:
    if not isinstance(tools, list) or not tools:
        raise cfg.ConfigError(f"{where}: expected a non-empty list of tools")
    out = []
    for index, tool in enumerate(tools):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise cfg.ConfigError(
                f"{where}[{index}]: a tool needs {{'type': 'function', 'function': {{'name': ...}}}}"
            )
        params = fn.get("parameters", {"type": "object", "properties": {}})
        try:
            jsonschema.validators.validator_for(params).check_schema(params)
        except jsonschema.SchemaError as exc:
            raise cfg.ConfigError(
                f"{where}[{index}] ({fn['name']}): parameters is not a valid JSON schema: {exc.message}"
            ) from None
        out.append({"type": "function", "function": {**fn, "parameters": params}})
    names = [t["function"]["name"] for t in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise cfg.ConfigError(f"{where}: duplicate tool names {duplicates}")
    return out


def _load_tools(value: str | ToolList, base: Path, where: str) -> ToolList:
    if isinstance(value, str):
        path = base / value
        if not path.is_file():
            raise cfg.ConfigError(f"{where}: file not found: {path}")
        text = path.read_text(encoding="utf-8")
        try:
            value = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise cfg.ConfigError(f"{path}: cannot read tools: {exc}") from None
        where = str(path)
    return _check_tools(value, where)


def _rewrite_schemas(module: Any, hook_name: str, tools: ToolList, where: str) -> ToolList:
    """The final tools as the task module's schema hook rewrites them, validated again."""
    hook = getattr(module, hook_name, None)
    if not callable(hook):
        raise cfg.ConfigError(f"{where}: no function '{hook_name}' in {module.__file__}")
    where = f"{where} ({Path(module.__file__).name}:{hook_name})"
    try:
        rewritten = hook(copy.deepcopy(tools))
    except Exception as exc:  # a broken hook: say which one and why
        raise cfg.ConfigError(f"{where}: raised {type(exc).__name__}: {exc}") from exc
    out = _check_tools(rewritten, where)
    before, after = [t["function"]["name"] for t in tools], [t["function"]["name"] for t in out]
    if after != before:
        raise cfg.ConfigError(
            f"{where}: must keep the final tools' names and order {before}, returned {after}"
        )
    return out


def _dry_run_functions(
    module: Any, final_names: list[str], where: str
) -> dict[str, Callable[..., Any]]:
    """The module's functions named like a final tool: the dry-runs ``helpers.dry_run`` asks for."""
    found = {n: getattr(module, n) for n in final_names if callable(getattr(module, n, None))}
    if not found:
        raise cfg.ConfigError(
            f"{where}: true, but {module.__file__} has no function named like a final tool "
            f"({', '.join(final_names)})"
        )
    return found


def _load_module(path: Path, module_name: str, where: str):
    if not path.is_file():
        raise cfg.ConfigError(f"{where}: helper module not found: {path}")
    try:
        return import_file(path, module_name, reuse=False)
    except Exception as exc:  # a broken user module: say which file and why
        raise cfg.ConfigError(
            f"{path}: importing the helper module failed: {type(exc).__name__}: {exc}"
        ) from exc


class Task:
    """A loaded task. Build with ``Task.load(path)``."""

    def __init__(self, spec: TaskSpec, path: Path):
        self.spec = spec
        self.path = Path(path)
        self.root = self.path.parent
        self.name = spec.name
        where = f"{self.path}: tools"
        self.tools: ToolList = _load_tools(spec.tools, self.root, where)
        self.helper_tools: ToolList = []
        self.helpers: dict[str, Callable[..., Any]] = {}
        self._helper_process: HelperProcess | None = None
        self.dry_runs: dict[str, Callable[..., Any]] = {}
        if spec.helpers is not None:
            self.helper_tools = _load_tools(
                spec.helpers.tools, self.root, f"{self.path}: helpers.tools"
            )
            module_path = self.root / spec.helpers.module
            module_name = f"supertiny_task_{spec.name}_{module_path.stem}"
            module = _load_module(module_path, module_name, f"{self.path}: helpers.module")
            self._helper_process = HelperProcess(module_path, module_name)
            for tool in self.helper_tools:
                name = tool["function"]["name"]
                fn = getattr(module, name, None)
                if not callable(fn):
                    raise cfg.ConfigError(
                        f"{self.path}: helpers.tools: '{name}' has no function of that name in {module.__file__}"
                    )
                self.helpers[name] = fn
            if spec.helpers.schemas is not None:
                self.tools = _rewrite_schemas(
                    module, spec.helpers.schemas, self.tools, f"{self.path}: helpers.schemas"
                )
            if spec.helpers.dry_run:
                self.dry_runs = _dry_run_functions(
                    module, self.final_names, f"{self.path}: helpers.dry_run"
                )
        clash = set(self.final_names) & set(self.helpers)
        if clash:
            raise cfg.ConfigError(f"{self.path}: {sorted(clash)} are both final and helper tools")
        for index, shot in enumerate(spec.teacher.few_shot):
            self._check_few_shot(shot.messages, f"{self.path}: teacher.few_shot[{index}]")

    @classmethod
    def load(cls, path: str | Path) -> Task:
        path = Path(path)
        return cls(cfg.load(TaskSpec, path), path)

    # ----- tools -------------------------------------------------------------------------
    @property
    def final_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def teacher_tools(self) -> ToolList:
        """What the teacher sees: helper tools first, then the final tools."""
        return self.helper_tools + self.tools

    def tools_for(self, record: dict[str, Any]) -> ToolList:
        """The final tools a record is answered with: its own ``tools`` if it has them."""
        return record.get("tools") or self.tools

    def is_final(self, name: str) -> bool:
        return name in self.final_names

    def run_helper(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run a helper tool in the helper process (see ``HelperProcess``); returns its JSON result.

        Any failure becomes a ``ToolError`` with a message for the teacher: an unknown tool,
        arguments that do not fit the function, an exception, a result that is not JSON, a
        call longer than ``helpers.timeout_s`` ("helper NAME timed out after N s").
        Blocks the calling thread: async code runs it with ``asyncio.to_thread``.
        """
        fn, settings, process = self.helpers.get(name), self.spec.helpers, self._helper_process
        if fn is None or settings is None or process is None:
            raise ToolError(f"unknown tool '{name}'; available: {', '.join(self.helpers)}")
        if not isinstance(arguments, dict):
            raise ToolError(f"{name}: arguments must be an object")
        try:
            inspect.signature(fn).bind(**arguments)
        except TypeError as exc:
            raise ToolError(f"{name}: {exc}") from None
        return process.call(name, arguments, settings.timeout_s)

    def dry_run(self, name: str, arguments: dict[str, Any]) -> str | None:
        """Check a final call against the environment without carrying it out.

        None when the call can be carried out (or the tool has no dry-run); the reason when it
        cannot: arguments that do not fit the function, or the ``ValueError`` it raised. Runs
        in the helper process, bounded by ``helpers.timeout_s``; a dry-run that fails in any
        other way (another exception, a timeout, a dead process) raises ``ToolError``, as the
        verdict is then unknown. Blocks: async code runs it with ``asyncio.to_thread``.
        """
        fn, settings, process = self.dry_runs.get(name), self.spec.helpers, self._helper_process
        if fn is None or settings is None or process is None:
            return None
        if not isinstance(arguments, dict):
            return f"{name}: arguments must be an object"
        try:
            inspect.signature(fn).bind(**arguments)
        except TypeError as exc:
            return f"{name}: {exc}"
        try:
            process.call(name, arguments, settings.timeout_s, what="dry-run of")
        except ToolError as exc:
            if not exc.invalid:
                raise
            # "NAME failed: ValueError: why" -> "NAME: why"
            detail = str(exc).removeprefix(f"{name} failed: ").partition(": ")[2]
            return f"{name}: {detail}"
        return None

    def _check_few_shot(self, messages: list[dict[str, Any]], where: str) -> None:
        known = {t["function"]["name"]: t for t in self.teacher_tools}
        for message in messages:
            for call in message.get("tool_calls") or []:
                parsed = toolcalls.ToolCall.from_dict(call)
                if parsed.name not in known:
                    raise cfg.ConfigError(f"{where}: calls unknown tool '{parsed.name}'")
                _, errors = toolcalls.validate([parsed], [known[parsed.name]])
                if errors:
                    raise cfg.ConfigError(f"{where}: {errors[0]}")

    # ----- prompts -----------------------------------------------------------------------
    def teacher_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """System prompt + few-shot conversations + the input's messages."""
        out = [{"role": "system", "content": self.spec.teacher.system_prompt}]
        for shot in self.spec.teacher.few_shot:
            out.extend(shot.messages)
        return out + list(messages)

    def student_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The student's one-stage prompt: short system prompt + the input's messages."""
        return [{"role": "system", "content": self.spec.student.system_prompt}, *messages]

    # ----- data --------------------------------------------------------------------------
    def data_path(self, split: Literal["unlabeled", "test"]) -> Path | None:
        value = getattr(self.spec.data, split)
        return None if value is None else self.root / value

    def records(
        self, split: Literal["unlabeled", "test"], bad: list[BadLine] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Input records of a split, normalised to the record shape; bad lines go to ``bad``."""
        path = self.data_path(split)
        if path is None:
            return
        if not path.is_file():
            raise cfg.ConfigError(f"{self.path}: data.{split}: file not found: {path}")
        for number, raw in iter_numbered(path, bad):
            record = normalise_record(raw, f"{path.stem}-{number:05d}")
            if isinstance(record, str):
                if bad is None:
                    raise cfg.ConfigError(f"{path}: record {number}: {record}")
                bad.append(BadLine(path, number, record))
                continue
            yield record

    # ----- what "correct" means ----------------------------------------------------------
    def evaluate(
        self, prediction: Any, gold: Any, tools: ToolList | None = None
    ) -> toolcalls.Score:
        """Score a prediction (raw text, an OpenAI message, a label, or calls) against gold.

        ``tools`` overrides the task's final tools for records that carry their own.
        """
        return toolcalls.score(
            prediction, gold, tools or self.tools, allow_content=self.spec.allow_plain_answer
        )

    def reward(
        self,
        prediction: Any,
        reference: Any,
        kind: str | None = None,
        tools: ToolList | None = None,
    ) -> float:
        """RL reward in [-1, 1]: the Sim-RL similarity (default) or exact match (1 / 0, -1 invalid)."""
        result = self.evaluate(prediction, reference, tools)
        kind = kind or self.spec.reward
        if kind == "exact":
            return 1.0 if result.exact else (0.0 if result.valid else -1.0)
        return result.similarity if result.valid else -1.0


def normalise_record(raw: dict[str, Any], fallback_id: str) -> dict[str, Any] | str:
    """Bring an input line to the record shape; return a reason string if it cannot be."""
    messages = raw.get("messages")
    if messages is None and isinstance(raw.get("input"), str):
        messages = [{"role": "user", "content": raw["input"]}]
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and "role" in m for m in messages)
    ):
        return "needs 'messages' (a list of {role, content}) or 'input' (a string)"
    gold = raw.get("gold")
    if gold is not None and not (
        isinstance(gold, dict) and ("tool_calls" in gold or "content" in gold)
    ):
        return "'gold' must be {tool_calls: [...], content: ...}"
    return {
        "id": str(raw.get("id") or fallback_id),
        "messages": messages,
        "tools": raw.get("tools"),
        "label": raw.get("label"),
        "gold": gold,
        "meta": dict(raw.get("meta") or {}),
    }


def input_text(record: dict[str, Any]) -> str:
    """The user text of a record (last user message), for de-duplication and reports."""
    for message in reversed(record["messages"]):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""
