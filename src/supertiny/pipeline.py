"""``supertiny run PIPELINE.yaml``: label -> train -> compress -> eval -> report in one run.

    supertiny run examples/shop_search/pipeline.yaml
    supertiny run examples/shop_search/pipeline.yaml --from compress   # redo compress and after
    supertiny run examples/shop_search/pipeline.yaml --only eval       # redo the eval stage

A pipeline file names the task and holds one section per stage, each an optional ``preset``
plus that stage's keys (every key: docs/label.md, train.md, compress.md, eval.md):

    task: task.yaml                 # relative to this file
    run_dir: runs/shop_search       # default: runs/<task name>
    label: {preset: quick, limit: 60}
    train: {preset: small}
    compress: {preset: small}
    eval: {preset: quick}

A stage set to ``null`` is skipped. Every stage resumes on its own (records, steps and
measurements already on disk are kept), so an interrupted run continues where it stopped
when the same command is given again. A stage whose outputs are complete and whose settings
are unchanged is skipped without loading anything, unless a stage before it ran in this
invocation (new labels retrain, a new model is measured again). ``--from STAGE`` sets that
stage and the ones after it aside (renamed, not deleted) and runs them again; ``--only
STAGE`` does so for one stage. At the end: the comparison table, the report's path and the
command that serves the result.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from supertiny import config as cfg
from supertiny.progress import console
from supertiny.runs import Run

STAGES = ("label", "train", "compress", "eval")


class PipelineConfig(cfg.Section):
    task: str = Field(description="The task file, relative to the pipeline file.")
    run_dir: str | None = Field(
        None,
        description="Run directory, relative to the working directory (default: runs/<task name>).",
    )
    label: dict[str, Any] | None = Field(
        default_factory=dict,
        description="The label stage: `preset` and keys of docs/label.md; null skips it.",
    )
    train: dict[str, Any] | None = Field(
        default_factory=dict,
        description="The train stage: `preset` and keys of docs/train.md; null skips it.",
    )
    compress: dict[str, Any] | None = Field(
        default_factory=dict,
        description="The compress stage: `preset` and keys of docs/compress.md; null skips it.",
    )
    eval: dict[str, Any] | None = Field(
        default_factory=dict,
        description="The eval stage: `preset` and keys of docs/eval.md; null skips it.",
    )
    report: bool = Field(True, description="Write RUN_DIR/report.html at the end.")


@dataclass
class Stage:
    """One stage of a pipeline: its typed settings and what it stores in the manifest."""

    name: str
    conf: Any
    stored: dict[str, Any]

    def run(self, task, run_dir: Path, restart: bool) -> dict[str, str]:
        return _runner(self.name)(task, self.conf, run_dir, restart=restart)


def load(path: str | Path) -> tuple[PipelineConfig, Path]:
    """The pipeline file's settings and the task path it names (checked to exist)."""
    path = Path(path)
    conf = cfg.load(PipelineConfig, path)
    task_path = (path.parent / conf.task).resolve()
    if not task_path.is_file():
        raise cfg.ConfigError(f"{path}: task: file not found: {task_path}")
    return conf, task_path


def stages(conf: PipelineConfig, task, path: Path) -> list[Stage]:
    """Every enabled stage with its settings, validated now (before anything runs)."""
    out = []
    for name in STAGES:
        section = getattr(conf, name)
        if section is None:
            continue
        keys = dict(section)
        preset = keys.pop("preset", None)
        try:
            stage_conf = _loader(name)(None, preset, keys)
        except cfg.ConfigError as exc:
            raise cfg.ConfigError(f"{path}: {name}: {exc}") from None
        _check_models(name, stage_conf, path)
        out.append(Stage(name, stage_conf, _stored(name, task, stage_conf)))
    return out


def _check_models(name: str, stage_conf, path: Path) -> None:
    """A model path that does not exist is an error now, not after the stages before it."""
    from supertiny.transfer.student import missing_model

    if name == "train":
        key, model = "student.model", stage_conf.student.model
    elif name == "compress":
        key, model = "model", stage_conf.model
    else:
        return
    problem = missing_model(model) if model else None
    if problem:
        raise cfg.ConfigError(f"{path}: {name}.{key}: {problem}")


def run(
    path: str | Path,
    from_stage: str | None = None,
    only: str | None = None,
    run_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the pipeline file at ``path``; returns {"run_dir", "ran", "skipped", "report"}."""
    from supertiny.task import Task

    conf, task_path = load(path)
    task = Task.load(task_path)
    planned = stages(conf, task, Path(path))
    names = [s.name for s in planned]
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            raise cfg.ConfigError(
                f"{flag} {value}: not a stage of {path} (its stages: {', '.join(names)})"
            )
    root = Path(run_dir or conf.run_dir or Path("runs") / task.name)
    the_run = Run(root)
    ran, skipped = [], []
    for index, stage in enumerate(planned):
        redo = stage.name == only or (from_stage is not None and index >= names.index(from_stage))
        if only is not None and stage.name != only:
            skipped.append(stage.name)
            continue
        if not redo and not ran and the_run.is_complete(stage.name, stage.stored):
            console.print(f"[bold]{stage.name}[/]: complete and unchanged, skipped")
            skipped.append(stage.name)
            continue
        restart = redo or _changed(the_run, stage)
        console.rule(f"[bold]{stage.name}")
        stage.run(task, root, restart)
        ran.append(stage.name)
    report = None
    if conf.report:
        from supertiny.report import write_report

        report = write_report(root)
    return {"run_dir": root, "ran": ran, "skipped": skipped, "report": report}


def _changed(the_run: Run, stage: Stage) -> bool:
    """The label stage refuses to mix records made under other settings: start it over
    (the old records are set aside). A change in how many inputs or how fast alone resumes
    it. The other stages keep what is still valid themselves."""
    if stage.name != "label":
        return False
    from supertiny.teacher.label import VOLATILE_KEYS

    return bool(the_run.changed_keys("label", stage.stored, VOLATILE_KEYS))


STAGE_MODULES = {
    "label": ("supertiny.teacher.label", "supertiny.teacher.label"),
    "train": ("supertiny.transfer.train_config", "supertiny.transfer.train"),
    "compress": ("supertiny.compress.compress_config", "supertiny.compress.compress"),
    "eval": ("supertiny.eval_config", "supertiny.evaluate"),
}
"""Stage -> (the module with its ``load_config``, the module with its ``run``)."""


def _loader(name: str):
    return importlib.import_module(STAGE_MODULES[name][0]).load_config


def _runner(name: str):
    return importlib.import_module(STAGE_MODULES[name][1]).run


def _stored(name: str, task, conf) -> dict[str, Any]:
    """The settings a stage records in the manifest (what `Run.is_complete` compares)."""
    if name == "label":
        from supertiny.teacher.label import stage_settings

        return stage_settings(task, conf)
    if name == "eval":
        from supertiny.evaluate import stage_settings

        return stage_settings(task, conf)
    return conf.model_dump(mode="json")
