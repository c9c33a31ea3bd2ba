"""Generate the reference pages in docs/ from the typed configs, so they cannot drift.

python -m supertiny.docs            # rewrites docs/task.md, label.md, train.md, compress.md, eval.md, pipeline.md
python -m supertiny.docs --check    # exits 1 if a page is out of date (run by the tests)
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from supertiny.config import Section


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
    )  # supertiny.eval_config.ModelEntry -> ModelEntry
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


def pages() -> dict[str, str]:
    import supertiny.transfer.dpo
    import supertiny.transfer.grpo
    import supertiny.transfer.kd
    import supertiny.transfer.rft
    import supertiny.transfer.sft  # noqa: F401 - their docstrings go into train.md
    from supertiny import eval_config, evaluate, pipeline
    from supertiny.compress import compress, compress_config, steps
    from supertiny.task import TaskSpec
    from supertiny.teacher import label
    from supertiny.transfer import train, train_config

    train_steps = (
        train_config.SftStep,
        train_config.RftStep,
        train_config.DpoStep,
        train_config.GrpoStep,
        train_config.KdStep,
    )
    cc = compress_config
    compress_steps = (
        cc.VocabStep,
        cc.DepthStep,
        cc.WidthStep,
        cc.RecoverStep,
        cc.TorchaoStep,
        cc.GgufStep,
    )

    return {
        "task.md": "# The task file\n\n"
        + (sys.modules["supertiny.task"].__doc__ or "").strip()
        + "\n\n## Keys\n\nPaths are relative to the task file.\n\n"
        + table(TaskSpec)
        + "\n",
        "label.md": _stage_page("Stage 1: label", label.__doc__, label.PRESETS, label.LabelConfig),
        "train.md": _stage_page(
            "Stage 2: train",
            train.__doc__,
            train_config.PRESETS,
            train_config.TrainConfig,
            _step_tables(train_steps, lambda k: sys.modules[f"supertiny.transfer.{k}"].__doc__),
        ),
        "compress.md": _stage_page(
            "Stage 3: compress",
            compress.__doc__,
            compress_config.PRESETS,
            compress_config.CompressConfig,
            _step_tables(compress_steps, lambda k: steps.STEPS[k].__doc__),
        ),
        "eval.md": _stage_page(
            "Evaluate",
            evaluate.__doc__,
            eval_config.PRESETS,
            eval_config.EvalConfig,
            "\n## Model entries\n\nEach entry of `models`:\n\n"
            + table(eval_config.ModelEntry)
            + "\n",
        ),
        "pipeline.md": "# The pipeline file\n\n```\n"
        + (pipeline.__doc__ or "").strip()
        + "\n```\n\n## Keys\n\n"
        + table(pipeline.PipelineConfig)
        + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/ is out of date")
    parser.add_argument("--out", default=str(Path(__file__).parents[2] / "docs"))
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
