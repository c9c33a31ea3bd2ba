"""llama.cpp's own quantizer (``llama-quantize``, through llama-cpp-python): an F16/F32 GGUF
to Q8_0, K-quants, ..., optionally weighted by an importance matrix.

    quantize_gguf(Path("model.f16.gguf"), Path("model.q4_k_m.gguf"), "q4_k_m", threads=2)
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

from supertiny.compress import CompressError
from supertiny.runtime.llama import import_llama_cpp, native_log

# f32/f16 are written directly, the rest by llama.cpp's quantizer (llama_cpp.LLAMA_FTYPE_MOSTLY_*)
QUANT_TYPES = ("f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")


def quantize_gguf(
    src: Path,
    dst: Path,
    quant: str,
    threads: int | None = None,
    *,
    overwrite: bool = False,
    imatrix: dict[str, Any] | None = None,
) -> dict:
    """Quantize the F16/F32 GGUF ``src`` to ``dst`` with llama.cpp's quantizer (``llama-quantize``).

    Row sizes not divisible by a type's block (32 for Q8_0/Q4_0, 256 for K-quants) make
    llama.cpp fall back to a compatible type for that tensor. A tensor ``src`` already holds
    in the type llama.cpp picks for it is copied as it is. ``imatrix`` maps GGUF tensor names
    to the mean squared input of each column (``[in]`` float32, ``llama-imatrix``'s values):
    llama.cpp then weighs each weight's rounding error by it. Returns ``{"path", "bytes",
    "quant", "fallback_tensors", "src_bytes", "seconds"}``.
    """
    llama_cpp = import_llama_cpp("GGUF needs", "compress")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise CompressError(f"cannot quantize {src}: no such file; write it with export_gguf")
    check_target(quant, dst, overwrite)
    start = time.perf_counter()
    params = llama_cpp.llama_model_quantize_default_params()
    ftype = "ALL_F32" if quant == "f32" else f"MOSTLY_{quant.upper()}"
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{ftype}")
    params.nthread = threads or os.cpu_count() or 1
    keep_alive = _imatrix_param(llama_cpp, params, imatrix or {})  # noqa: F841 - owns the arrays
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        with native_log() as log:
            status = llama_cpp.llama_model_quantize(
                str(src).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if status != 0 or not tmp.is_file():
            tail = "\n".join(log[-15:])
            raise CompressError(
                f"llama.cpp could not quantize {src} to {quant} (status {status}):\n{tail}"
            )
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    fallbacks = sum(
        "falling back" in line for line in log
    )  # row length not a multiple of the block
    info = {"path": str(dst), "bytes": dst.stat().st_size, "quant": quant}
    info |= {"fallback_tensors": fallbacks, "src_bytes": src.stat().st_size}
    return info | {"seconds": round(time.perf_counter() - start, 2)}


def _imatrix_param(llama_cpp: Any, params: Any, imatrix: dict[str, Any]) -> list[Any]:
    """Point ``params.imatrix`` at a name-terminated C array of ``imatrix``'s entries; returns
    the Python objects that own the memory (keep them until the quantizer returns)."""
    if not imatrix:
        return []
    import numpy as np

    entry = llama_cpp.llama_model_imatrix_data
    arrays = [np.ascontiguousarray(values, dtype=np.float32) for values in imatrix.values()]
    names = [name.encode() for name in imatrix]
    table = (entry * (len(arrays) + 1))()
    for slot, name, values in zip(table, names, arrays, strict=False):
        slot.name = name
        slot.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        slot.size = values.size
    params.imatrix = ctypes.cast(table, ctypes.POINTER(entry))
    return [table, names, arrays]


def check_target(quant: str, out: Path, overwrite: bool) -> None:
    if quant not in QUANT_TYPES:
        raise CompressError(f"unknown GGUF quant {quant!r}; choose one of {', '.join(QUANT_TYPES)}")
    if out.exists() and not overwrite:
        raise CompressError(f"{out} already exists; delete it or pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)
