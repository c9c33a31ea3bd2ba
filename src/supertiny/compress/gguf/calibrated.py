"""Quantize a GGUF with calibration from the task: llama.cpp's importance matrix, and GPTQ
rounding for the tensors llama.cpp stores in 32-weight blocks.

    export_gguf(model_dir, out, "q4_k_m", moments=..., rounding="auto")   # calls this module

1. The diagonal of each linear layer's input moments (the mean squared input of every
   column, what ``llama-imatrix`` measures) goes to llama.cpp's quantizer as its importance
   matrix: K-quants then weigh each weight's error by how much its column is used on the
   task's text.
2. GPTQ (``rounding``): the tensors that llama.cpp stored in a block format (Q5_0, Q4_0, ...:
   in a K-quant file those whose rows are not a multiple of 256, such as all of
   Qwen2.5-0.5B's 896-wide ones; Q8_0 only with ``rounding="gptq"``) are rounded again by
   GPTQ on the full input moments, written into the F16 intermediate as ready blocks, and
   the quantizer runs again: it copies a tensor that already has the type it picks and
   quantizes the rest as before. Hessians are gathered a few layers at a time
   (``HESSIAN_BUDGET``), each pass stopping after the deepest layer it needs.

Why: a student fine-tuned from a quantized GGUF sits on that GGUF's grid plus an update
smaller than a step; rounding to nearest on the same grid snaps it back (the bundled student's
fine-tune at Q4_K_M: 0 of 40 answers left as the float model's; with GPTQ 21, Q8_0 34).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supertiny.compress import CompressError
from supertiny.compress.gguf.blocks import FORMATS
from supertiny.compress.gguf.llama_quantize import quantize_gguf
from supertiny.compress.gguf.vocab import read_json
from supertiny.compress.gguf.writer import gguf_arch, tensor_plan, write_gguf
from supertiny.core.progress import bar

# rounding -> the block formats GPTQ rounds. "auto": not Q8_0, whose grid is fine enough
# already (benchmarks/gguf_rounding.py: 34 vs 36 of 40 answers as the float model's, 4 s vs
# 209 s for the bundled student), while 5 bits to nearest erased its fine-tune (0 of 40).
ROUNDINGS = {
    "nearest": (),
    "auto": tuple(name for name in FORMATS if name != "q8_0"),
    "gptq": tuple(FORMATS),
}
HESSIAN_BUDGET = 2 << 30  # bytes of float32 X^T X sums gathered in one calibration pass


def calibrated_quantize(
    model_dir: Path,
    intermediate: Path,
    out: Path,
    quant: str,
    moments: Callable[[list[str], Callable[[str], bool]], dict[str, Any]],
    rounding: str,
    threads: int | None,
) -> dict:
    """Quantize the F16 GGUF ``intermediate`` (written from ``model_dir``) to ``out``; returns
    ``quantize_gguf``'s figures plus ``imatrix_tensors``, ``gptq_tensors`` and
    ``gptq_seconds``."""
    if rounding not in ROUNDINGS:
        raise CompressError(f"unknown GGUF rounding {rounding!r}; choose {', '.join(ROUNDINGS)}")
    linears = _linear_plan(model_dir)
    module = {name: p.hf_name.removesuffix(".weight") for name, p in linears.items()}
    diagonals = moments(list(module.values()), lambda name: False)
    imatrix = {name: diagonals[module[name]].numpy() for name in linears}
    info = quantize_gguf(intermediate, out, quant, threads, overwrite=True, imatrix=imatrix)
    info["imatrix_tensors"] = len(imatrix)
    if not ROUNDINGS[rounding]:
        return info
    start = time.perf_counter()
    types = tensor_types(out)
    chosen = [name for name in linears if types.get(name) in ROUNDINGS[rounding]]
    blocks: dict[str, tuple[Any, Any]] = {}
    with bar(len(chosen), f"gptq rounding ({quant})", enabled=bool(chosen)) as advance:
        for group in _groups(chosen, linears):
            hessians = moments([module[name] for name in group], lambda name: True)
            for name in group:
                blocks[name] = _gptq_blocks(linears[name], hessians[module[name]], types[name])
                advance(1)
    if blocks:
        rewritten = intermediate.with_name(f".{intermediate.name}.gptq.tmp")
        try:
            write_gguf(model_dir, rewritten, f16=True, progress=None, blocks=blocks)
            rewritten.replace(intermediate)
        finally:
            rewritten.unlink(missing_ok=True)
        rest = {name: values for name, values in imatrix.items() if name not in blocks}
        fallbacks = info["fallback_tensors"]
        info = quantize_gguf(intermediate, out, quant, threads, overwrite=True, imatrix=rest)
        info |= {"fallback_tensors": fallbacks, "imatrix_tensors": len(imatrix)}
        kept = tensor_types(out)
        changed = [name for name in blocks if kept.get(name) != types[name]]
        if changed:
            out.unlink()
            raise CompressError(
                f"llama.cpp re-quantized {changed[0]} (and {len(changed) - 1} more) instead of "
                "keeping its GPTQ blocks; use rounding: nearest"
            )
    seconds = round(time.perf_counter() - start, 2)
    return info | {"gptq_tensors": len(blocks), "gptq_seconds": seconds}


def tensor_types(path: Path) -> dict[str, str]:
    """GGUF tensor name -> its type in lower case (``q5_0``, ``q4_k``, ``f32``, ...)."""
    import gguf

    reader = gguf.GGUFReader(path)
    return {t.name: t.tensor_type.name.lower() for t in reader.tensors}


def _linear_plan(model_dir: Path) -> dict[str, Any]:
    """GGUF name -> TensorPlan of every 2-D weight inside the decoder blocks (the linears)."""
    import gguf

    config = read_json(model_dir / "config.json")
    arch = gguf.MODEL_ARCH[gguf_arch(config, model_dir)]
    plan = tensor_plan(model_dir, config, arch, f16=True)
    return {
        p.name: p
        for p in plan
        if len(p.shape) == 2 and p.name.startswith("blk.") and p.hf_name.endswith(".weight")
    }


def _groups(names: list[str], linears: dict[str, Any]) -> list[list[str]]:
    """Consecutive names whose ``[in, in]`` float32 sums fit ``HESSIAN_BUDGET`` together."""
    groups: list[list[str]] = []
    used = 0
    for name in names:
        size = linears[name].shape[1] ** 2 * 4
        if not groups or used + size > HESSIAN_BUDGET:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    return groups


def _gptq_blocks(plan: Any, hessian: Any, qtype: str) -> tuple[Any, Any]:
    """One tensor rounded by GPTQ into ``qtype``'s blocks: (bytes in HF row order, GGML type)."""
    import gguf
    import torch
    from safetensors import safe_open

    from supertiny.compress.gguf.gptq import gptq

    with safe_open(plan.file, framework="pt") as handle:
        weight = handle.get_tensor(plan.hf_name).to(torch.float32)
    fmt = FORMATS[qtype]
    codes, scale, offset = gptq(weight, hessian, fmt)
    return fmt.pack(codes, scale, offset), gguf.GGMLQuantizationType[qtype.upper()]
