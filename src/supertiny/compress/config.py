"""Configuration of the compress stage: the model to compress, the steps, measurement, presets.

Loaded by ``supertiny compress TASK.yaml --config FILE --preset NAME --set KEY=VALUE``; every
key is listed in docs/compress.md (generated from these classes). Steps run in order. Pruning
steps (``vocab``, ``depth``, ``width``) and ``recover`` change the float model; quantization
steps (``torchao``, ``gguf``) each quantize the float model as it stands and come last:

    steps:
      - {kind: vocab}                         # keep the task's tokens: 0.63B -> ~0.38B
      - {kind: depth, layers: 20}             # drop the 4 least important blocks
      - {kind: recover, epochs: 1}            # distil from the model before pruning
      - {kind: gguf, quant: q4_k_m}           # llama.cpp file, quantized by llama.cpp
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from supertiny.core import config as cfg
from supertiny.runtime.hf import LoraConfig
from supertiny.runtime.scoring import EvalSettings
from supertiny.train.config import KdStep

GGUF_QUANTS = ("f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")
TORCHAO_SCHEMES = ("int8_weight", "int8_dynamic", "int4_weight")


class VocabStep(cfg.Section):
    kind: Literal["vocab"] = Field("vocab", description="Step type.")
    extra_files: list[str] = Field(
        default_factory=list,
        description="More in-domain text files whose tokens are kept (relative to the task file).",
    )
    test_inputs: bool = Field(
        False,
        description="Also keep the tokens of the held-out test inputs. Off by default: the test set then measures what unseen inputs do to the pruned vocabulary.",
    )


class DepthStep(cfg.Section):
    kind: Literal["depth"] = Field("depth", description="Step type.")
    layers: int | None = Field(
        None, ge=1, description="Blocks to keep; the least important (block influence) go."
    )
    drop: list[int] | None = Field(
        None, description="Or: the indices of the blocks to drop, chosen by hand."
    )
    params: int | None = Field(
        None,
        ge=1,
        description="Or: a budget of total parameters; the fewest blocks go that bring the model within it.",
    )

    @model_validator(mode="after")
    def _one_target(self):
        if sum(v is not None for v in (self.layers, self.drop, self.params)) != 1:
            raise ValueError(
                "give exactly one of 'layers' (blocks to keep), 'drop' (indices) or 'params' "
                "(a parameter budget)"
            )
        return self


class WidthStep(cfg.Section):
    kind: Literal["width"] = Field("width", description="Step type.")
    intermediate_size: int | None = Field(
        None, ge=1, description="MLP channels kept per block (by activation magnitude)."
    )
    heads: int | None = Field(
        None,
        ge=1,
        description="Query heads kept per block; a multiple of the key/value heads (GQA groups keep equal sizes).",
    )

    params: int | None = Field(
        None,
        ge=1,
        description="Or, instead of intermediate_size: a budget of total parameters met by narrowing the MLPs (after this step's head pruning).",
    )

    @model_validator(mode="after")
    def _some_target(self):
        if self.intermediate_size is None and self.heads is None and self.params is None:
            raise ValueError("give 'intermediate_size' or 'params', 'heads', or both")
        if self.intermediate_size is not None and self.params is not None:
            raise ValueError("give 'intermediate_size' or 'params', not both")
        return self


class RecoverStep(KdStep):
    """Distillation after structural pruning: the model before pruning is the teacher."""

    kind: Literal["recover"] = Field("recover", description="Step type.")  # type: ignore[assignment]
    teacher: str = Field(
        "before_pruning",
        description="'before_pruning' (the model as it was before the depth/width steps since the last recover step), or a model sharing the current vocabulary.",
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    alpha: float = Field(
        0.5, ge=0, le=1, description="Weight of the KD loss; 1 - alpha goes to cross-entropy."
    )
    top_k: int = Field(50, ge=1, description="Teacher top-k kept per token (the cache).")
    max_length: int = Field(
        256, ge=16, description="Longest prompt + answer in tokens; longer ones are dropped."
    )
    batch_size: int = Field(8, ge=1, description="Examples per device per optimiser step.")


class TorchaoStep(cfg.Section):
    kind: Literal["torchao"] = Field("torchao", description="Step type.")
    scheme: Literal[TORCHAO_SCHEMES] = Field(  # type: ignore[valid-type]
        "int8_weight",
        description="int8_weight (weight-only int8), int8_dynamic (int8 activations and weights), int4_weight (weight-only int4, groupwise).",
    )
    group_size: int = Field(32, description="Group size of int4 weights.")


class GgufStep(cfg.Section):
    kind: Literal["gguf"] = Field("gguf", description="Step type.")
    quant: Literal[GGUF_QUANTS] = Field(  # type: ignore[valid-type]
        "q4_k_m",
        description="GGUF type: f32/f16 written directly, the rest by llama.cpp's quantizer.",
    )
    calibrate: bool = Field(
        True,
        description="Measure every linear layer's inputs on the task's labelled examples "
        "(`calibration`) and give llama.cpp that importance matrix, so rounding favours the "
        "columns the task uses (Q8_0 has no use for it and skips it unless `rounding: gptq`).",
    )
    rounding: Literal["auto", "nearest", "gptq"] = Field(
        "auto",
        description="How tensors stored in llama.cpp's 32-weight block formats are rounded. "
        "`gptq` chooses the roundings of a row together so that the layer's output on the "
        "calibration inputs changes least, `nearest` rounds each weight alone, `auto` is gptq "
        "for the 4- and 5-bit formats (Q4_0, Q5_0, ...: also the fallback of K-quants for rows "
        "not a multiple of 256, all of Qwen2.5-0.5B's 896-wide ones) and nearest for Q8_0. "
        "`gptq` needs `calibrate`.",
    )

    @model_validator(mode="after")
    def _gptq_needs_calibration(self):
        if self.rounding == "gptq" and not self.calibrate and self.quant not in ("f32", "f16"):
            raise ValueError("rounding: gptq needs calibrate: true (or set rounding: nearest)")
        return self

    @property
    def calibrated(self) -> bool:
        """Whether this export needs the calibration pass at all."""
        if self.quant in ("f32", "f16") or not self.calibrate:
            return False
        return self.quant != "q8_0" or self.rounding == "gptq"


Step = Annotated[
    VocabStep | DepthStep | WidthStep | RecoverStep | TorchaoStep | GgufStep,
    Field(discriminator="kind"),
]
STEP_KINDS = ("vocab", "depth", "width", "recover", "torchao", "gguf")
PRUNING = ("vocab", "depth", "width", "recover")


class Calibration(cfg.Section):
    samples: int = Field(64, ge=1, description="Labelled examples scored by depth/width steps.")
    max_length: int = Field(256, ge=16, description="Tokens per calibration example, at most.")
    batch_size: int = Field(8, ge=1, description="Examples per forward pass.")


class LatencyConfig(cfg.Section):
    requests: int = Field(
        10, ge=1, description="Single requests timed per model (test inputs, one at a time)."
    )
    max_new_tokens: int = Field(64, ge=1, description="Longest answer generated when timing.")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for PyTorch and llama.cpp alike (default: torch's)."
    )


class CompressConfig(cfg.Section):
    model: str | None = Field(
        None,
        description="The model to compress (HF directory, GGUF or bundled alias); default: the train stage's final model in the run directory.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where to prune, recover and evaluate PyTorch models."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype of the float model; auto is float32 on CPU."
    )
    lora: LoraConfig | None = Field(
        default_factory=LoraConfig,
        description="LoRA adapters for recover steps (merged after); null = full fine-tuning.",
    )
    steps: list[Step] = Field(
        default_factory=lambda: [VocabStep(), GgufStep()],
        min_length=1,
        description="Run in order: vocab, depth, width, recover, then torchao / gguf.",
    )
    calibration: Calibration = Field(
        default_factory=Calibration, description="Data that scores blocks, channels and heads."
    )
    eval: EvalSettings = Field(
        default_factory=lambda: EvalSettings(limit=40, max_new_tokens=80),
        description="Exact-match evaluation of the input model (before) and after every step.",
    )
    latency: LatencyConfig = Field(
        default_factory=LatencyConfig, description="Single-request latency measurement."
    )
    labels: str | None = Field(
        None, description="Labeled records (default: RUN_DIR/label/labeled.jsonl)."
    )
    seed: int = Field(0, description="Seed for recovery training.")

    @model_validator(mode="after")
    def _quantization_last(self):
        seen_quant = None
        for index, step in enumerate(self.steps):
            if step.kind in PRUNING and seen_quant is not None:
                raise ValueError(
                    f"steps[{index}] ({step.kind}) comes after steps[{seen_quant}] "
                    f"({self.steps[seen_quant].kind}): quantization steps quantize the float "
                    "model and come last; move the pruning steps before them"
                )
            if step.kind not in PRUNING and seen_quant is None:
                seen_quant = index
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # A quick look: vocabulary pruning and a Q8_0 GGUF, measured on a few test records.
    "quick": {
        "steps": [{"kind": "vocab"}, {"kind": "gguf", "quant": "q8_0"}],
        "eval": {"limit": 8},
        "latency": {"requests": 4},
    },
    # The demo on a 2-core CPU: the task's vocabulary (0.63B -> <0.4B parameters, exact on
    # in-domain text), then llama.cpp files at Q4_K_M (GPTQ-rounded: the bundled student's
    # weights sit on a 5-bit grid that rounding to nearest snaps a fine-tune back onto) and
    # Q8_0, the closest to the float model and the stage's result.
    "small": {
        "steps": [
            {"kind": "vocab"},
            {"kind": "gguf", "quant": "q4_k_m"},
            {"kind": "gguf", "quant": "q8_0"},
        ],
    },
    # Everything: vocabulary, 4 fewer blocks, narrower MLPs, recovery by distillation from
    # the model before pruning, then torchao int8 and llama.cpp Q4_K_M and Q8_0.
    "full": {
        "steps": [
            {"kind": "vocab"},
            {"kind": "depth", "layers": 20},
            {"kind": "width", "intermediate_size": 3840},
            {"kind": "recover", "epochs": 2},
            {"kind": "torchao", "scheme": "int8_weight"},
            {"kind": "gguf", "quant": "q4_k_m"},
            {"kind": "gguf", "quant": "q8_0"},
        ],
    },
}


def load_config(
    path: str | Path | None, preset: str | None = None, overrides: dict[str, Any] | None = None
) -> CompressConfig:
    """Preset, then the file's keys, then ``--set`` overrides; validated as one ``CompressConfig``."""
    return cfg.compose(CompressConfig, PRESETS, path, preset, overrides, "compress config")
