"""Typed configuration: YAML files loaded into pydantic models that forbid unknown keys.

Every stage's settings are a ``Section`` subclass; ``load(cls, path)`` reads a YAML file and
turns any problem into one ``ConfigError`` line that names the file and the key, e.g.

    examples/smart_home/label.yaml: quality.sampels: unknown key (did you mean 'samples'?)

Field descriptions double as documentation (``supertiny label --help`` and docs/ list them).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supertiny.core.errors import SupertinyError

S = TypeVar("S", bound="Section")


class ConfigError(SupertinyError, ValueError):
    """A configuration file is missing, not YAML, or does not match its schema."""


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file (and line, for syntax errors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys at the top, got {type(data).__name__}"
        )
    return data


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model inside an annotation (through Optional, list, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, list]:
    """Follow ``loc`` through nested models; returns the innermost model and the printable path.

    A tagged union (``steps: [{kind: sft, ...}]``) puts its tag in the location; it selects
    the member and is left out of the printed path.
    """
    current: Any = model
    options: list[type[BaseModel]] = []
    parts: list[Any] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(item)
            continue
        tagged = [
            m for m in options if getattr(m.model_fields.get("kind"), "default", None) == item
        ]
        if tagged:
            current, options = tagged[0], []
            continue
        parts.append(item)
        fields = getattr(current, "model_fields", None) or {}
        if item not in fields:
            current = None
            continue
        options = _models_in(fields[item].annotation)
        current = options[0] if len(options) == 1 else None
    return current, parts


def _location(parts: list[Any]) -> str:
    out: list[str] = []
    for item in parts:
        if isinstance(item, int):
            out.append(f"[{item}]")
        else:
            out.append(("." if out else "") + str(item))
    return "".join(out) or "(top level)"


def _closest_key(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """For an unknown key, the nearest valid field name of the enclosing model, if any."""
    current, _ = _walk(model, loc[:-1])
    fields = getattr(current, "model_fields", {})
    match = difflib.get_close_matches(str(loc[-1]), list(fields), n=1)
    return match[0] if match else None


def format_error(exc: ValidationError, source: str | Path, model: type[BaseModel]) -> str:
    """One line per problem: ``file: key.path: message``."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            hint = _closest_key(model, loc)
            message = "unknown key" + (f" (did you mean '{hint}'?)" if hint else "")
        else:
            message = err["msg"]
            if "input" in err and err["type"] not in ("missing",):
                message += f" (got {err['input']!r})"[:200]
        lines.append(f"{source}: {_location(_walk(model, loc)[1])}: {message}")
    return "\n".join(lines)


def parse(cls: type[S], data: dict[str, Any], source: str | Path) -> S:
    """Validate ``data`` into ``cls``; errors become a ``ConfigError`` naming source and key."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_error(exc, source, cls)) from None


def load(cls: type[S], path: str | Path) -> S:
    """Read a YAML file into ``cls``."""
    return parse(cls, read_yaml(path), path)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: values in ``override`` win; nested mappings are merged."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_dotted(d, "quality.samples", 3)`` sets ``d["quality"]["samples"] = 3``."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["quality.samples=3", "limit=20"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. quality.samples=3")
        set_dotted(out, key.strip(), yaml.safe_load(raw))
    return out


__all__ = [
    "ConfigError",
    "Field",
    "Section",
    "format_error",
    "load",
    "merge",
    "parse",
    "parse_overrides",
    "read_yaml",
    "set_dotted",
]


def compose(
    cls: type[S],
    presets: dict[str, dict[str, Any]],
    path: str | Path | None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    what: str = "config",
) -> S:
    """A stage's settings: the preset, then the file's keys, then ``--set`` overrides."""
    data: dict[str, Any] = {}
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(presets)}")
        data = merge(data, presets[preset])
    source = what
    if path is not None:
        data = merge(data, read_yaml(path))
        source = str(path)
    if overrides:
        data = merge(data, overrides)
    return parse(cls, data, source)
