"""Configuration of the label stage: the teacher endpoint, quality control, presets.

Loaded by ``supertiny label TASK.yaml --config FILE --preset NAME --set KEY=VALUE``;
every key is listed in docs/label.md (generated from these classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from supertiny.core import config as cfg
from supertiny.label.quality import DEFAULT_RUBRIC


class EndpointConfig(cfg.Section):
    url: str | None = Field(
        None,
        description="OpenAI-compatible base URL (…/v1). Unset: serve the bundled teacher locally.",
    )
    model: str = Field(
        "teacher",
        description="Model name sent to the endpoint; for the local server, a bundled alias or GGUF path.",
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (never the key itself)."
    )
    concurrency: int = Field(1, ge=1, le=1024, description="Requests in flight at once.")
    timeout_s: float = Field(300.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(
        6, ge=0, description="Retries on timeouts, connection errors, 429 and 5xx."
    )
    price_input_per_million: float = Field(0.0, ge=0, description="USD per 1M prompt tokens.")
    price_output_per_million: float = Field(0.0, ge=0, description="USD per 1M completion tokens.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra fields merged into every request body."
    )
    n_ctx: int = Field(
        8192, ge=512, description="Context length of the local server (bundled teacher only)."
    )
    n_threads: Annotated[int, Field(ge=1)] | Literal["all"] | None = Field(
        None,
        description="CPU threads of the local server (bundled teacher only): a number, or"
        ' "all" when nothing else runs beside it; default: half the cores.',
    )
    max_tokens: int = Field(384, ge=1, description="Most tokens per teacher turn.")


class JudgeConfig(cfg.Section):
    enabled: bool = Field(False, description="Grade each accepted label with an LLM judge.")
    endpoint: EndpointConfig | None = Field(
        None, description="Judge endpoint; unset = the teacher's endpoint."
    )
    rubric: str = Field(
        DEFAULT_RUBRIC,
        description='The judge\'s system prompt; must ask for {"score": 0..1}.',
    )
    min_score: float = Field(
        0.5, ge=0, le=1, description="Reject labels the judge scores below this."
    )


class QualityConfig(cfg.Section):
    samples: int = Field(
        3, ge=1, le=64, description="Self-consistency samples per input (the first is greedy)."
    )
    temperature: float = Field(
        0.7, ge=0, le=2, description="Sampling temperature of samples after the first."
    )
    min_agreement: float = Field(
        0.6,
        gt=0,
        le=1,
        description="Accept when the voted call has at least this share of samples.",
    )
    early_stop: bool = Field(
        True, description="Stop sampling once more samples cannot change the decision."
    )
    dedup: Literal["near", "exact", "off"] = Field(
        "near",
        description="Drop duplicate inputs: identical after normalising (exact), or also up to typos (near).",
    )
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig, description="LLM-as-judge grading of accepted labels."
    )


class LabelConfig(cfg.Section):
    teacher: EndpointConfig = Field(
        default_factory=EndpointConfig, description="The teacher endpoint."
    )
    quality: QualityConfig = Field(
        default_factory=QualityConfig, description="Quality control of labels."
    )
    limit: int | None = Field(None, ge=1, description="Label only the first N unique inputs.")
    test_limit: int | None = Field(
        None, ge=0, description="Run the teacher on the first N gold test inputs (0 = skip)."
    )
    top_logprobs: int = Field(
        0,
        ge=0,
        le=20,
        description="Capture this many top log-probs per output token (for distillation).",
    )
    seed: int = Field(0, description="Base seed for sampling.")
    max_failures: int = Field(
        5, ge=1, description="Stop after this many inputs failed on transport errors."
    )


PRESETS: dict[str, dict[str, Any]] = {
    # A quick look: a few inputs, one greedy sample each.
    "quick": {"limit": 12, "test_limit": 6, "quality": {"samples": 1}},
    # The demo: enough labels to train a student on this 2-core CPU in minutes.
    "small": {"limit": 60, "test_limit": 30, "quality": {"samples": 3}},
    # Everything in the task's data files.
    "full": {},
}


def load_config(
    path: str | Path | None, preset: str | None = None, overrides: dict[str, Any] | None = None
) -> LabelConfig:
    """Preset, then the file's keys, then ``--set`` overrides; validated as one ``LabelConfig``."""
    return cfg.compose(LabelConfig, PRESETS, path, preset, overrides, "label config")
