"""The compression steps: each turns the current float model into a pruned model or a quantized file.

Every step is a function ``(ctx, step) -> (artifact, info)`` registered in ``STEPS``;
``artifact`` is what it wrote inside ``ctx.step_dir`` (``model`` folder or ``model.gguf``),
``info`` its step-specific figures. Pruning steps replace ``ctx.model``; quantization steps
read the float model folder ``ctx.float_dir`` and leave the float model alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertiny.compress import CompressError
from supertiny.core.progress import console
from supertiny.core.task import Task
from supertiny.runtime import hf as st
from supertiny.runtime.render import answer_text, prompt_text


@dataclass
class CompressContext:
    """The task, its data, and the float model as it stands (loaded from disk when first used)."""

    task: Task
    conf: Any
    labels: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    float_dir: Path
    step_dir: Path = Path()
    pruned_from: Path | None = None  # the float model before the first depth/width step since
    # the last recover step: the teacher that recovery distils from
    notes: list[str] = field(default_factory=list)
    _model: Any = None
    _tok: Any = None

    def load(self) -> tuple[Any, Any]:
        if self._model is None:
            self._model, self._tok = st.load(str(self.float_dir), self.conf.device, self.conf.dtype)
        return self._model, self._tok

    def replace(self, model, tokenizer, saved_to: Path) -> None:
        self._model, self._tok, self.float_dir = model, tokenizer, saved_to

    def warn(self, message: str) -> None:
        from supertiny.core.progress import warn

        warn(message, self.notes)


def labelled_texts(ctx: CompressContext, tok) -> list[str]:
    """Prompt + answer of every labelled example, rendered as the student sees them."""
    return [
        prompt_text(tok, ctx.task, r) + answer_text(tok, ctx.task, r, r["label"])
        for r in ctx.labels
    ]


def domain_texts(ctx: CompressContext, tok, step: Any) -> list[str]:
    """In-domain text whose tokens a pruned vocabulary keeps: labelled examples, every
    unlabeled input's prompt, the tool schemas, extra files (and test inputs if asked)."""
    task = ctx.task
    texts = labelled_texts(ctx, tok)
    texts += [prompt_text(tok, task, r) for r in task.records("unlabeled")]
    texts += [json.dumps(tool, ensure_ascii=False) for tool in task.tools]
    texts += [json.dumps(tool, ensure_ascii=False, indent=2) for tool in task.tools]
    if step.test_inputs:
        texts += [prompt_text(tok, task, r) for r in ctx.tests]
    for name in step.extra_files:
        path = (task.root / name).resolve()
        if not path.is_file():
            raise CompressError(f"{task.path}: vocab.extra_files: file not found: {path}")
        texts += path.read_text(encoding="utf-8").splitlines()
    return [t for t in texts if t]


def _save_float(ctx: CompressContext, model, tok) -> tuple[str, Path]:
    target = st.save(model, tok, ctx.step_dir / "model")
    ctx.replace(model, tok, target)
    return "model/config.json", target


def vocab_step(ctx: CompressContext, step: Any) -> tuple[str, dict[str, Any]]:
    """Keep only the task's tokens: those of the labelled examples, every input's prompt and
    the tool schemas, plus special and single-byte tokens and every token on the BPE merge
    path of a kept token, so in-domain text gets exactly the same tokens (renumbered). The
    embedding and LM-head rows shrink (tied stay tied); on in-domain text the model answers
    exactly as before. For Qwen2.5-0.5B this is the paper's 0.5B -> 0.4B.

    Writes model/ and kept_ids.json (new id i is old id kept_ids[i])."""
    from supertiny.compress.prune import vocab

    model, tok = ctx.load()
    texts = domain_texts(ctx, tok, step)
    keep = vocab.kept_ids(tok, texts)
    kept = set(keep)
    test_prompts = [
        tok(prompt_text(tok, ctx.task, r), add_special_tokens=False)["input_ids"] for r in ctx.tests
    ]
    covered = sum(all(i in kept for i in ids) for ids in test_prompts)
    model, tok, info = vocab.prune_vocabulary(model, tok, keep)
    kept_list = info.pop("keep")  # the ids actually kept (special ids added, rowless dropped)
    (ctx.step_dir / "kept_ids.json").write_text(json.dumps(kept_list), encoding="utf-8")
    artifact, _ = _save_float(ctx, model, tok)
    info["texts"] = len(texts)
    if test_prompts:
        info["test_prompts_covered"] = round(covered / len(test_prompts), 4)
        if covered < len(test_prompts):
            ctx.warn(
                f"{len(test_prompts) - covered} of {len(test_prompts)} test prompts use tokens "
                "outside the kept vocabulary; they are tokenised into smaller pieces (add "
                "in-domain text with vocab.extra_files to keep more)"
            )
    return artifact, info


def _calibration(ctx: CompressContext, tok):
    from supertiny.compress.prune import importance

    cal = ctx.conf.calibration
    texts = labelled_texts(ctx, tok) or [
        prompt_text(tok, ctx.task, r) for r in ctx.task.records("unlabeled")
    ]
    return importance.calibration_batches(tok, texts[: cal.samples], cal.max_length, cal.batch_size)


def depth_step(ctx: CompressContext, step: Any) -> tuple[str, dict[str, Any]]:
    """Drop whole transformer blocks: the least important by block influence (1 - cosine
    similarity of a block's input and output hidden states on calibration examples from the
    labelled data), or the indices given in ``drop``. Follow with ``recover``."""
    from supertiny.compress.prune import importance, structural

    model, tok = ctx.load()
    before = ctx.float_dir
    layers = step.layers
    if step.params is not None:
        layers = structural.budget_target(model, step.params, "depth")
    scores = None
    if layers is not None:
        scores = importance.block_influence(model, _calibration(ctx, tok))
    info = structural.prune_depth(model, layers=layers, drop=step.drop, scores=scores)
    artifact, _ = _save_float(ctx, model, tok)
    ctx.pruned_from = ctx.pruned_from or before
    info["pruned_from"] = str(ctx.pruned_from)
    return artifact, info


def width_step(ctx: CompressContext, step: Any) -> tuple[str, dict[str, Any]]:
    """Narrow every block: keep the MLP channels with the largest mean activation and the
    query heads with the largest mean output norm on calibration examples. Heads are pruned
    inside each key/value group alike, so grouped-query attention stays valid. Follow with
    ``recover``."""
    from supertiny.compress.prune import importance, structural

    model, tok = ctx.load()
    before = ctx.float_dir
    batches = _calibration(ctx, tok)
    narrow = step.intermediate_size is not None or step.params is not None
    mlp = importance.mlp_channel_scores(model, batches) if narrow else None
    heads = importance.head_scores(model, batches) if step.heads else None
    size = step.intermediate_size
    if step.params is None:  # one call: every target is checked before anything changes
        info = structural.prune_width(
            model, intermediate_size=size, heads=step.heads, mlp_scores=mlp, head_scores=heads
        )
    else:  # heads first, then the MLP width that meets the budget
        first = {"params_before": structural.count_params(model)}
        if step.heads:
            first = structural.prune_width(model, heads=step.heads, head_scores=heads)
        size = structural.budget_target(model, step.params, "width")
        info = structural.prune_width(model, intermediate_size=size, mlp_scores=mlp)
        info |= {k: v for k, v in first.items() if k in ("params_before", "heads", "kept_heads")}
    artifact, _ = _save_float(ctx, model, tok)
    ctx.pruned_from = ctx.pruned_from or before
    info["pruned_from"] = str(ctx.pruned_from)
    return artifact, info


def recover_step(ctx: CompressContext, step: Any) -> tuple[str, dict[str, Any]]:
    """Recover what structural pruning cost: logit distillation (the train stage's ``kd`` step,
    with its losses and teacher top-k cache) from the model as it was before the depth and
    width steps, on the labelled data. The report shows accuracy before and after."""
    from supertiny.train.kd import distill

    if not ctx.labels:
        raise CompressError(
            f"{ctx.step_dir.name}: recovery trains on the labelled data; run `supertiny label "
            f"{ctx.task.path}` first (or set labels:)"
        )
    teacher = step.teacher
    if teacher == "before_pruning":
        if ctx.pruned_from is None:
            raise CompressError(
                f"{ctx.step_dir.name}: 'recover' distils from the model before a depth or "
                "width step, and none came before it; add one, or set recover.teacher to a model"
            )
        teacher = str(ctx.pruned_from)
    model, tok = ctx.load()
    if ctx.conf.lora is not None:
        model = st.add_lora(model, ctx.conf.lora)
    student, metrics, notes = distill(
        ctx.task,
        model,
        tok,
        ctx.labels,
        ctx.step_dir,
        step.model_copy(update={"teacher": teacher}),
        seed=ctx.conf.seed,
    )
    ctx.notes += notes
    artifact, _ = _save_float(ctx, st.merged(student), tok)
    ctx.pruned_from = None
    return artifact, {"teacher": teacher, **metrics}


def torchao_step(ctx: CompressContext, step: Any) -> tuple[str, dict[str, Any]]:
    """Quantize the float model's linear layers with torchao (int8 weights, int8 dynamic
    activations, or int4 weights) for PyTorch serving on CPU or GPU. Writes model/ with the
    quantized state dict; the float model stays the input of later steps."""
    from supertiny.compress.quantize import torchao as quantize

    model, tok = st.load(str(ctx.float_dir), ctx.conf.device, ctx.conf.dtype)
    quantize.quantize(model, step.scheme, step.group_size)
    quantize.save_quantized(model, tok, ctx.step_dir / "model", step.scheme, step.group_size)
    return f"model/{quantize.RECIPE}", {"scheme": step.scheme, "from": str(ctx.float_dir)}


def gguf_step(ctx: CompressContext, step: Any) -> tuple[str, dict[str, Any]]:
    """Export the float model to GGUF with its tokenizer and chat template, quantized by
    llama.cpp's own quantizer (Q8_0, Q4_K_M, ...), and measure it in llama.cpp. Calibrated on
    the labelled examples (`calibrate`): every linear layer's input moments become llama.cpp's
    importance matrix, and the tensors stored in 32-weight blocks are rounded by GPTQ
    (`rounding`), which keeps a fine-tune smaller than the grid's step. Writes model.gguf,
    which `supertiny serve --model` serves."""
    from supertiny.compress.gguf import export as gguf_export

    out = ctx.step_dir / "model.gguf"
    moments = _moments(ctx, step) if step.calibrated else None
    info = gguf_export.export_gguf(
        ctx.float_dir, out, step.quant, overwrite=True, moments=moments, rounding=step.rounding
    )
    info = {k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()}
    return "model.gguf", {**info, "from": str(ctx.float_dir)}


def _moments(ctx: CompressContext, step: Any):
    """The gguf step's calibration: a function from linear layer names to their input moments
    on the calibration examples (``gptq.input_hessians``), for ``gguf_export.export_gguf``."""
    from supertiny.compress.gguf.gptq import input_hessians

    model, tok = ctx.load()
    batches = _calibration(ctx, tok)
    texts = sum(len(batch["input_ids"]) for batch in batches)
    console.print(
        f"gguf {step.quant}: the layers' inputs on {texts} calibration examples become "
        f"llama.cpp's importance matrix (rounding: {step.rounding})"
    )
    return lambda names, full: input_hessians(model, batches, names, full)[0]


# Explicit registry: step kind -> function.
STEPS = {
    "vocab": vocab_step,
    "depth": depth_step,
    "width": width_step,
    "recover": recover_step,
    "torchao": torchao_step,
    "gguf": gguf_step,
}
