"""Configuration of the eval stage: which models to compare, and how to measure them.

Loaded by ``supertiny eval TASK.yaml --config FILE --preset NAME --set KEY=VALUE``; every key
is listed in docs/eval.md (generated from these classes). Without ``models`` the stage compares
the default line-up of the run: the teacher pipeline, the untrained student, the trained
student and the compressed student (each one that the run has):

    models:
      - {name: teacher, model: teacher}                 # the label stage's pipeline
      - {name: student (untrained), model: base}        # the train stage's starting model
      - {name: student (trained), model: train}         # the train stage's final model
      - {name: compressed (Q8_0), model: "compress:gguf"}
      - {name: my export, model: /path/to/model.gguf}
    concurrency: 4
    hourly_price_usd: 0.10
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from supertiny.core import config as cfg


class ModelEntry(cfg.Section):
    name: str = Field(description="The model's name in the table and the report.")
    model: str = Field(
        description=(
            "What to measure: 'teacher' (the label stage's function-call pipeline, measured "
            "as that stage runs it), 'base' (the train stage's starting student), 'train' "
            "(its final model), 'compress' / 'compress:gguf' / 'compress:torchao' / "
            "'compress:model' (the compress stage's final artifacts), a bundled alias "
            "('student', 'teacher'), a GGUF file or a checkpoint folder."
        )
    )
    n_threads: int | None = Field(
        None, ge=1, description="CPU threads of this model's server (default: the stage's)."
    )


class EvalConfig(cfg.Section):
    models: list[ModelEntry] | None = Field(
        None,
        description="The models to compare, in table order (default: teacher, base, train, compress, as far as the run has them).",
    )
    limit: int | None = Field(
        None, ge=1, description="Gold test records to use (default: all of them)."
    )
    max_tokens: int = Field(
        160, ge=1, description="Most tokens a local model may generate per answer."
    )
    tool_choice: Literal["task", "required", "auto"] = Field(
        "task",
        description="What local models are asked: 'task' is 'required' when the task allows no plain answer (decoding is then constrained to valid calls), else 'auto'.",
    )
    concurrency: int = Field(
        4, ge=1, description="Clients in flight for the requests-per-second measurement."
    )
    throughput_requests: int = Field(
        16,
        ge=0,
        description="Requests sent at `concurrency` to measure requests per second (0: skip).",
    )
    hourly_price_usd: float = Field(
        0.10,
        ge=0,
        description="Price per hour of the machine that serves local models (a 2-vCPU cloud VM costs about $0.09/h); cost per 1k requests = its seconds per request at `concurrency` x this price.",
    )
    n_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads of each local model's server (default: half the cores).",
    )
    teacher_rerun: bool = Field(
        False,
        description="Run the teacher pipeline on the test set again instead of reading the label stage's teacher_test.jsonl (same pipeline, fresh latency).",
    )
    errors_shown: int = Field(
        5, ge=0, description="Wrong answers per model kept in the report as examples."
    )


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"limit": 10, "concurrency": 2, "throughput_requests": 4, "max_tokens": 120},
    "small": {"limit": 40, "concurrency": 4, "throughput_requests": 16},
    "full": {"limit": None, "concurrency": 8, "throughput_requests": 64},
}


def load_config(
    path: str | Path | None, preset: str | None = None, overrides: dict[str, Any] | None = None
) -> EvalConfig:
    """Preset, then the file's keys, then ``--set`` overrides; validated as one ``EvalConfig``."""
    return cfg.compose(EvalConfig, PRESETS, path, preset, overrides, "eval config")
