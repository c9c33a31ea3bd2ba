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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, create_model

from supertiny.core import config as cfg
from supertiny.core.progress import console
from supertiny.core.runs import SERVED_OUTPUTS, Run, served_output
from supertiny.stages import STAGES, Stage


def _section(stage: Stage) -> tuple[Any, Any]:
    return (
        dict[str, Any] | None,
        Field(
            default_factory=dict,
            description=f"The {stage.name} stage: `preset` and keys of docs/{stage.name}.md; "
            "null skips it.",
        ),
    )


PipelineConfig = create_model(
    "PipelineConfig",
    __base__=cfg.Section,
    __doc__="A pipeline file: the task, the run directory and one section per stage of STAGES.",
    task=(str, Field(description="The task file, relative to the pipeline file.")),
    run_dir=(
        str | None,
        Field(
            None,
            description="Run directory, relative to the working directory (default: runs/<task name>).",
        ),
    ),
    **{name: _section(stage) for name, stage in STAGES.items()},
    report=(bool, Field(True, description="Write RUN_DIR/report.html at the end.")),
)


@dataclass
class PlannedStage:
    """One stage of a pipeline: its typed settings and what it stores in the manifest."""

    stage: Stage
    conf: Any
    stored: dict[str, Any]

    @property
    def name(self) -> str:
        return self.stage.name

    def run(self, task, run_dir: Path, restart: bool) -> dict[str, str]:
        return self.stage.run(task, self.conf, run_dir, restart=restart)


def load(path: str | Path) -> tuple[Any, Path]:
    """The pipeline file's settings and the task path it names (checked to exist)."""
    path = Path(path)
    conf = cfg.load(PipelineConfig, path)
    task_path = (path.parent / conf.task).resolve()
    if not task_path.is_file():
        raise cfg.ConfigError(f"{path}: task: file not found: {task_path}")
    return conf, task_path


def stages(conf: Any, task, path: Path) -> list[PlannedStage]:
    """Every enabled stage with its settings, validated now (before anything runs)."""
    out = []
    for name, stage in STAGES.items():
        section = getattr(conf, name)
        if section is None:
            continue
        keys = dict(section)
        preset = keys.pop("preset", None)
        try:
            stage_conf = stage.load_config(None, preset, keys)
        except cfg.ConfigError as exc:
            raise cfg.ConfigError(f"{path}: {name}: {exc}") from None
        _check_model(stage, stage_conf, path)
        out.append(PlannedStage(stage, stage_conf, stage.settings(task, stage_conf)))
    return out


def _check_model(stage: Stage, stage_conf, path: Path) -> None:
    """A model path that does not exist is an error now, not after the stages before it."""
    from supertiny.runtime.hf import missing_model

    model = stage.model(stage_conf)
    problem = missing_model(model) if model else None
    if problem:
        raise cfg.ConfigError(f"{path}: {stage.name}.{stage.model_key}: {problem}")


def run(
    path: str | Path,
    from_stage: str | None = None,
    only: str | None = None,
    run_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the pipeline file at ``path``; returns {"run_dir", "ran", "skipped", "report"}."""
    from supertiny.core.task import Task

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
        from supertiny.report.page import write_report

        report = write_report(root)
    return {"run_dir": root, "ran": ran, "skipped": skipped, "report": report}


def _changed(the_run: Run, planned: PlannedStage) -> bool:
    """A stage with ``restart_on_change`` (the label stage refuses to mix records made under
    other settings) starts over, its old outputs set aside; a change in its volatile keys
    alone (how many inputs, how fast) resumes it. The other stages keep what is still valid
    themselves."""
    stage = planned.stage
    if not stage.restart_on_change:
        return False
    return bool(the_run.changed_keys(stage.name, planned.stored, stage.volatile))


def print_outcome(result: dict) -> None:
    """The comparison table, the report, and the command that serves the result."""
    from supertiny.evaluate.summary import print_table

    run_dir = result["run_dir"]
    eval_report = run_dir / "eval" / "eval_report.json"
    if eval_report.is_file():
        print_table(eval_report)
    if result.get("report"):
        console.print(f"report: {result['report']}", soft_wrap=True)
    serve = serve_command(run_dir)
    if serve:
        console.print(f"serve the result: {serve}", soft_wrap=True)


def serve_command(run_dir: Path) -> str | None:
    """`supertiny serve ...` for the run's final model (compressed if there is one)."""
    the_run = Run(run_dir)
    task = ((the_run.stage("eval") or the_run.stage("label") or {}).get("config") or {}).get("task")
    for stage in SERVED_OUTPUTS:  # compress first, then train
        artifacts = (the_run.stage(stage) or {}).get("artifacts") or {}
        key = served_output(stage, artifacts)
        if key:
            command = f"supertiny serve --model {run_dir / artifacts[key]}"
            return command + (f" --task {task}" if task else "")
    return None
