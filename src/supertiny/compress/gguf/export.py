"""GGUF export for llama.cpp: write a Hugging Face Qwen2/Llama model as one GGUF file, then quantize.

    from supertiny.compress.gguf.export import export_gguf
    export_gguf(Path("runs/x/student"), Path("runs/x/student-q4_k_m.gguf"), quant="q4_k_m")

The HF -> GGUF writer is hand-written on top of gguf-py (``GGUFWriter``, ``TensorNameMap``,
``SpecialVocab``) because llama.cpp's own ``convert_hf_to_gguf.py`` is not shipped in any pip
package; it follows that script's conventions for the two dense architectures we train
(2-D weights F16, norms and biases F32, Llama q/k rows permuted for llama.cpp's rotary layout,
byte-level BPE vocabulary with token types, merges and the chat template). A head-pruned Qwen2
(heads * head_dim != hidden) is written as ``llama``, whose llama.cpp graph allows that. Tensors are
streamed one at a time from safetensors, so memory stays at about one tensor. Quantized types
(Q8_0, K-quants, ...) are made by llama.cpp's own quantizer through llama-cpp-python from an
F16 intermediate. Every export is checked: llama.cpp must tokenize a chat-rendered sample to
the same ids as the HF tokenizer, or the file is not kept.

This module runs the export; the layers under it: ``writer.py`` (HF tensors and metadata ->
GGUF), ``vocab.py`` (the tokenizer half and the tokenization check), ``llama_quantize.py``
(llama.cpp's quantizer) and ``calibrated.py`` (importance matrix and GPTQ rounding).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supertiny.compress.gguf.llama_quantize import QUANT_TYPES, check_target, quantize_gguf
from supertiny.compress.gguf.vocab import verify_tokenizer
from supertiny.compress.gguf.writer import Progress, write_gguf

__all__ = ["QUANT_TYPES", "Moments", "Progress", "export_gguf"]

# (linear layer names, which need the whole X^T X) -> moments by name (gptq.input_hessians)
Moments = Callable[[list[str], Callable[[str], bool]], dict[str, Any]]


def export_gguf(
    model_dir: Path,
    out: Path,
    quant: str = "f16",
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    keep_intermediate: bool = False,
    threads: int | None = None,
    moments: Moments | None = None,
    rounding: str = "auto",
) -> dict:
    """Write ``model_dir`` (config.json + safetensors + tokenizer) as one GGUF file at ``out``.

    ``quant`` is one of ``QUANT_TYPES``; f32/f16 are written directly, the others are quantized
    by llama.cpp from an F16 intermediate (kept as ``<out stem>.f16.gguf`` if
    ``keep_intermediate``). ``progress(done, total)`` is called after each tensor.

    ``moments(names, full)``, when given, returns each named linear layer's input moments
    on calibration text (``gptq.input_hessians``): their diagonals become llama.cpp's
    importance matrix, and ``rounding`` says which tensors llama.cpp stores in a 32-weight
    block format are rounded by GPTQ instead of to nearest: ``"gptq"`` all, ``"auto"`` the 4-
    and 5-bit ones (also the K-quants' fallbacks), ``"nearest"`` none (see ``calibrated.py``).
    Returns ``{"path", "bytes", "quant", "arch", "tensors", "seconds"}`` (+ ``"fallback_tensors"``,
    ``"imatrix_tensors"``, ``"gptq_tensors"`` when quantized).
    """
    start = time.perf_counter()
    model_dir, out = Path(model_dir), Path(out)
    check_target(quant, out, overwrite)
    direct = quant in ("f32", "f16")
    target = out if direct else out.with_name(f".{out.name}.f16.tmp")
    if keep_intermediate and not direct:
        target = out.with_name(f"{out.name.removesuffix('.gguf')}.f16.gguf")
        check_target("f16", target, overwrite)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        arch, n_tensors = write_gguf(model_dir, tmp, f16=quant != "f32", progress=progress)
        verify_tokenizer(tmp, model_dir)
        tmp.replace(target)
        if direct:
            quantized = {}
        elif moments is None:
            quantized = quantize_gguf(target, out, quant, threads, overwrite=True)
        else:
            from supertiny.compress.gguf.calibrated import calibrated_quantize  # imports torch

            quantized = calibrated_quantize(
                model_dir, target, out, quant, moments, rounding, threads
            )
    finally:
        tmp.unlink(missing_ok=True)
        if not direct and not keep_intermediate:
            target.unlink(missing_ok=True)
    info = {"path": str(out), "bytes": out.stat().st_size, "quant": quant, "arch": arch}
    keys = ("fallback_tensors", "imatrix_tensors", "gptq_tensors")
    extra = {key: quantized[key] for key in keys if key in quantized}
    return info | extra | {"tensors": n_tensors, "seconds": round(time.perf_counter() - start, 2)}
