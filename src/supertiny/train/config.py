"""Configuration of the train stage: the student, the curriculum of steps, evaluation, presets.

Loaded by ``supertiny train TASK.yaml --config FILE --preset NAME --set KEY=VALUE``; every key
is listed in docs/train.md (generated from these classes). A curriculum is a list of steps run
in order, each starting from the model the previous one wrote:

    steps:
      - {kind: sft, epochs: 2}
      - {kind: rft, samples: 4}
      - {kind: kd, loss: ckd, teacher: teacher}
      - {kind: grpo, samples: 4, beta: 0.04}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from supertiny.core import config as cfg
from supertiny.runtime.hf import LoraConfig
from supertiny.runtime.scoring import EvalSettings
from supertiny.train.losses import KD_LOSSES


class StudentConfig(cfg.Section):
    model: str = Field(
        "student",
        description="Bundled alias (student, teacher), a GGUF file, or a local Hugging Face model directory.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where to train; auto picks CUDA, then MPS, then the CPU."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto is float32 on CPU, bfloat16 on a GPU that has it."
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, about a third slower.",
    )
    lora: LoraConfig | None = Field(
        default_factory=LoraConfig,
        description="LoRA adapters (merged into the weights after each step); null = full fine-tuning.",
    )


class Optim(cfg.Section):
    """Optimisation settings every step has."""

    epochs: float = Field(1.0, gt=0, description="Passes over the step's data.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(4, ge=1, description="Examples per device per optimiser step.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_length: int = Field(
        512, ge=16, description="Longest prompt + answer in tokens; longer ones are dropped."
    )
    max_examples: int | None = Field(
        None, ge=1, description="Use only the first N training examples (a quick look)."
    )
    save_steps: int = Field(
        20, ge=1, description="Checkpoint every N optimiser steps, so a crash loses little."
    )


class Sampling(cfg.Section):
    """How on-policy steps sample from the student."""

    samples: int = Field(4, ge=1, le=64, description="Candidates sampled per training input.")
    temperature: float = Field(0.8, ge=0, le=2, description="Sampling temperature.")
    max_new_tokens: int = Field(128, ge=1, description="Longest sampled answer in tokens.")
    sample_batch_size: int = Field(8, ge=1, description="Prompts per generate() call.")


class SftStep(Optim):
    kind: Literal["sft"] = Field("sft", description="Step type.")


class RftStep(Optim, Sampling):
    kind: Literal["rft"] = Field("rft", description="Step type.")
    min_reward: float = Field(
        1.0,
        ge=-1,
        le=1,
        description="Keep a sample whose Task.reward against the teacher label is at least this (1 = exact).",
    )
    keep_per_input: int = Field(
        1, ge=1, description="Most distinct correct samples kept per input."
    )
    teacher_fallback: bool = Field(
        True, description="Keep the teacher label for inputs where no sample is correct."
    )


class DpoStep(Optim, Sampling):
    kind: Literal["dpo"] = Field("dpo", description="Step type.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate.")
    beta: float = Field(0.1, gt=0, description="DPO temperature: how far from the reference model.")
    label_pairs: bool = Field(
        True, description="Use the label stage's preferences.jsonl (teacher disagreements)."
    )
    mine: bool = Field(
        True,
        description="Mine pairs from the student's own wrong samples (chosen = teacher label).",
    )
    pairs_per_input: int = Field(2, ge=1, description="Most mined pairs per training input.")


class GrpoStep(Optim, Sampling):
    kind: Literal["grpo"] = Field("grpo", description="Step type.")
    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
    samples: int = Field(4, ge=2, le=64, description="Group size: completions per prompt.")
    temperature: float = Field(1.0, gt=0, le=2, description="Sampling temperature.")
    beta: float = Field(0.04, ge=0, description="KL coefficient against the reference model.")
    reward: Literal["similarity", "exact"] | None = Field(
        None, description="Reward: Sim-RL similarity or exact match; unset = the task's choice."
    )


class KdStep(Optim):
    kind: Literal["kd"] = Field("kd", description="Step type.")
    loss: Literal[KD_LOSSES] = Field(
        "forward_kl", description="Divergence: " + ", ".join(KD_LOSSES) + "."
    )  # type: ignore[valid-type]
    teacher: str = Field(
        "teacher",
        description="Teacher logits: a model (bundled alias, GGUF, HF dir) sharing the student's vocabulary, run on the student's prompt (best when it was tuned for the task), or 'endpoint' for the top_logprobs captured by the label stage.",
    )
    teacher_cache: bool = Field(
        True,
        description="Cache the local teacher's top-k log-probs once (false: keep the teacher loaded and use its full distribution).",
    )
    temperature: float = Field(
        1.0, gt=0, description="Softmax temperature of both models (loss x T^2)."
    )
    alpha: float = Field(
        0.5, ge=0, le=1, description="Weight of the KD loss; 1 - alpha goes to cross-entropy."
    )
    beta: float = Field(0.5, ge=0, le=1, description="Generalised JSD interpolation (jsd only).")
    top_k: int = Field(100, ge=1, description="Teacher top-k kept per token (ckd, and the cache).")
    top_m: int = Field(100, ge=1, description="Student top-m checked by the CKD tail penalty.")
    lam: float = Field(10.0, ge=0, description="Weight of the CKD tail penalty.")


Step = Annotated[SftStep | RftStep | DpoStep | GrpoStep | KdStep, Field(discriminator="kind")]
STEP_KINDS = ("sft", "rft", "dpo", "grpo", "kd")


class TrainEvalSettings(EvalSettings):
    before: bool = Field(True, description="Also evaluate the untrained student first.")


class TrainConfig(cfg.Section):
    student: StudentConfig = Field(default_factory=StudentConfig, description="The student model.")
    steps: list[Step] = Field(
        default_factory=lambda: [SftStep()],
        min_length=1,
        description="The curriculum, run in order: sft, rft, dpo, grpo, kd.",
    )
    eval: TrainEvalSettings = Field(
        default_factory=TrainEvalSettings, description="Exact-match evaluation after every step."
    )
    labels: str | None = Field(
        None, description="Labeled records (default: RUN_DIR/label/labeled.jsonl)."
    )
    seed: int = Field(0, description="Seed for data order, sampling and initialisation.")


PRESETS: dict[str, dict[str, Any]] = {
    # A quick look: a few examples, one SFT pass, a small evaluation.
    "quick": {"steps": [{"kind": "sft", "max_examples": 16}], "eval": {"limit": 8}},
    # The demo on a 2-core CPU: SFT, then logit KD from the teacher's log-probs captured at
    # labelling time (`supertiny label --set top_logprobs=20`; without them: more SFT).
    "small": {
        "steps": [
            {"kind": "sft", "epochs": 2},
            {"kind": "kd", "teacher": "endpoint", "loss": "forward_kl", "top_k": 20},
        ],
        "eval": {"limit": 40},
    },
    # The paper's full curriculum.
    "full": {
        "steps": [
            {"kind": "sft", "epochs": 3},
            {"kind": "rft"},
            {"kind": "kd", "loss": "ckd"},
            {"kind": "dpo"},
            {"kind": "grpo"},
        ]
    },
}


def load_config(
    path: str | Path | None, preset: str | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Preset, then the file's keys, then ``--set`` overrides; validated as one ``TrainConfig``."""
    return cfg.compose(TrainConfig, PRESETS, path, preset, overrides, "train config")
