"""Generate the reference pages in docs/ from the typed configs, so they cannot drift.

python -m supertiny.docs            # rewrites docs/task.md, label.md, train.md, compress.md, eval.md, pipeline.md
python -m supertiny.docs --check    # exits 1 if a page is out of date (run by the tests)

One page per stage of ``stages.STAGES`` (its stage module's docstring, presets and every
config key; step tables from its step registry), plus the task and pipeline files.
docs/architecture.md is written by hand.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from supertiny.core.config import Section
from supertiny.stages import Stage


def _type_name(annotation: typing.Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated and "discriminator" not in str(annotation):
        return _type_name(typing.get_args(annotation)[0])  # the constraint is in the meaning
    if origin is typing.Literal:
        return " | ".join(
            f'"{a}"' if isinstance(a, str) else repr(a) for a in typing.get_args(annotation)
        )
    if origin in (typing.Union, types.UnionType) and any(
        typing.get_origin(a) in (typing.Annotated, typing.Literal)
        for a in typing.get_args(annotation)
    ):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    if "Annotated[" in text and "discriminator='kind'" in text:
        return "list of steps (see Steps)"
    text = re.sub(
        r"\b(?:\w+\.)+(\w+)", r"\1", text
    )  # supertiny.evaluate.config.ModelEntry -> ModelEntry
    return text.replace("NoneType", "null").replace("dict[str, Any]", "mapping")


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return "`" + (text if len(text) < 40 else text[:37] + "...") + "`"


def _sections(model: type[Section], prefix: str = "") -> list[tuple[str, type[Section]]]:
    """The model and every nested Section, depth first, with their dotted prefixes."""
    out = [(prefix, model)]
    for name, field in model.model_fields.items():
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, Section):
                out += _sections(candidate, f"{prefix}{name}.")
    return out


def table(model: type[Section]) -> str:
    """A Markdown table of every key of ``model`` and its nested sections."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for prefix, section in _sections(model):
        for name, field in section.model_fields.items():
            kind = _type_name(field.annotation)
            if any(
                isinstance(a, type) and issubclass(a, Section)
                for a in (field.annotation, *typing.get_args(field.annotation))
            ):
                kind = "section"
            doc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| `{prefix}{name}` | {kind.replace('|', 'or')} | {_default(field)} | {doc} |"
            )
    return "\n".join(lines)


def _stage_page(
    title: str, doc: str | None, presets: dict, config: type[Section], extra: str = ""
) -> str:
    """A stage's page: its module docstring, its presets and every config key."""
    listed = "\n".join(
        f"- `{name}`: `{value or 'the defaults (all data)'}`" for name, value in presets.items()
    )
    return (
        f"# {title}\n\n```\n"
        + (doc or "").strip()
        + "\n```\n\n## Presets\n\n"
        + listed
        + "\n\n## Keys\n\nGiven with `--config FILE`, `--preset NAME` and `--set KEY=VALUE` "
        "(applied in that order: preset, file, overrides).\n\n" + table(config) + "\n" + extra
    )


def _step_tables(classes: tuple[type[Section], ...], describe) -> str:
    """One table per step kind, each under the first paragraph of ``describe(kind)``."""
    parts = ["\n## Steps\n\nEach entry of `steps` has a `kind` and that kind's keys.\n"]
    for cls in classes:
        kind = cls.model_fields["kind"].default
        doc = (describe(kind) or "").strip().split("\n\n")[0]
        parts.append(f"### `{kind}`\n\n{doc}\n\n{table(cls)}\n")
    return "\n".join(parts)


def _steps_of(stage: Stage) -> str:
    """The stage's step tables: one per class of its config's ``Step`` union, each under its
    step's docstring (the registry holds a function, or a module's dotted name)."""
    module, _, name = (stage.steps or "").partition(":")
    registry = getattr(importlib.import_module(module), name)
    step_union = typing.get_args(stage.module("config").Step)[0]

    def describe(kind: str) -> str | None:
        step = registry[kind]
        return (importlib.import_module(step) if isinstance(step, str) else step).__doc__

    return _step_tables(typing.get_args(step_union), describe)


def _entries_of(stage: Stage) -> str:
    heading, key, config = stage.entries or ("", "", "")
    entry = getattr(stage.module("config"), config)
    return f"\n## {heading}\n\nEach entry of `{key}`:\n\n" + table(entry) + "\n"


def pages() -> dict[str, str]:
    from supertiny import pipeline
    from supertiny.core import task
    from supertiny.stages import STAGES

    out = {
        "task.md": "# The task file\n\n"
        + (task.__doc__ or "").strip()
        + "\n\n## Keys\n\nPaths are relative to the task file.\n\n"
        + table(task.TaskSpec)
        + "\n"
    }
    for name, stage in STAGES.items():
        extra = (_steps_of(stage) if stage.steps else "") + (
            _entries_of(stage) if stage.entries else ""
        )
        out[f"{name}.md"] = _stage_page(
            stage.title, stage.doc, stage.presets, stage.config_class, extra
        )
    out["pipeline.md"] = (
        "# The pipeline file\n\n```\n"
        + (pipeline.__doc__ or "").strip()
        + "\n```\n\n## Keys\n\n"
        + table(pipeline.PipelineConfig)
        + "\n"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/ is out of date")
    parser.add_argument("--out", default=str(Path(__file__).parents[3] / "docs"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    stale = []
    for name, text in pages().items():
        path = out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run `python -m supertiny.docs`): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
