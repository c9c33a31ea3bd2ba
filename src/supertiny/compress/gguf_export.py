"""GGUF export for llama.cpp: write a Hugging Face Qwen2/Llama model as one GGUF file, then quantize.

    from supertiny.compress.gguf_export import export_gguf
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
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supertiny.compress import CompressError
from supertiny.compress.gguf_vocab import add_vocab, read_json, verify_tokenizer

# f32/f16 are written directly, the rest by llama.cpp's quantizer (llama_cpp.LLAMA_FTYPE_MOSTLY_*)
QUANT_TYPES = ("f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")

# HF model_type -> gguf.MODEL_ARCH member name (dense decoders only)
ARCHS = {"qwen2": "QWEN2", "llama": "LLAMA"}

Progress = Callable[[int, int], None]
# (linear layer names, which need the whole X^T X) -> moments by name (gptq.input_hessians)
Moments = Callable[[list[str], Callable[[str], bool]], dict[str, Any]]


@dataclass
class TensorPlan:
    """One GGUF tensor: where it comes from, its name and shape in GGUF, how it is stored."""

    hf_name: str
    file: Path
    name: str
    shape: tuple[int, ...]
    f16: bool
    permute_heads: int = 0  # >0: Llama q/k rows permuted for that many heads


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
    and 5-bit ones (also the K-quants' fallbacks), ``"nearest"`` none (see ``gguf_gptq``).
    Returns ``{"path", "bytes", "quant", "arch", "tensors", "seconds"}`` (+ ``"fallback_tensors"``,
    ``"imatrix_tensors"``, ``"gptq_tensors"`` when quantized).
    """
    start = time.perf_counter()
    model_dir, out = Path(model_dir), Path(out)
    _check_target(quant, out, overwrite)
    direct = quant in ("f32", "f16")
    target = out if direct else out.with_name(f".{out.name}.f16.tmp")
    if keep_intermediate and not direct:
        target = out.with_name(f"{out.name.removesuffix('.gguf')}.f16.gguf")
        _check_target("f16", target, overwrite)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        arch, n_tensors = _write_gguf(model_dir, tmp, f16=quant != "f32", progress=progress)
        verify_tokenizer(tmp, model_dir)
        tmp.replace(target)
        if direct:
            quantized = {}
        elif moments is None:
            quantized = quantize_gguf(target, out, quant, threads, overwrite=True)
        else:
            from supertiny.compress.gguf_gptq import calibrated_quantize

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
    llama_cpp = _llama_cpp()
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise CompressError(f"cannot quantize {src}: no such file; write it with export_gguf")
    _check_target(quant, dst, overwrite)
    start = time.perf_counter()
    params = llama_cpp.llama_model_quantize_default_params()
    ftype = "ALL_F32" if quant == "f32" else f"MOSTLY_{quant.upper()}"
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{ftype}")
    params.nthread = threads or os.cpu_count() or 1
    keep_alive = _imatrix_param(llama_cpp, params, imatrix or {})  # noqa: F841 - owns the arrays
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        with _native_log() as log:
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


# --- writer -----------------------------------------------------------------------------------


def _write_gguf(
    model_dir: Path,
    path: Path,
    *,
    f16: bool,
    progress: Progress | None,
    blocks: dict[str, tuple[Any, Any]] | None = None,
) -> tuple[str, int]:
    """Write metadata, vocabulary and tensors to ``path``; returns (arch name, tensor count).

    ``blocks`` maps GGUF tensor names to data already quantized in HF row order, ``(bytes
    [rows, row bytes] uint8, GGMLQuantizationType)``: written as they are (Llama q/k rows
    permuted like the float ones)."""
    import gguf
    import numpy as np

    config = read_json(model_dir / "config.json")
    arch = gguf.MODEL_ARCH[_gguf_arch(config, model_dir)]
    plan = _tensor_plan(model_dir, config, arch, f16=f16)
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch])
    _add_hparams(writer, config, model_dir.name, f16=f16)
    n_vocab = next(p.shape[0] for p in plan if p.name == "token_embd.weight")
    add_vocab(writer, model_dir, n_vocab)
    rope_freqs = _llama3_rope_freqs(config)
    if rope_freqs is not None:
        writer.add_tensor_info("rope_freqs.weight", rope_freqs.shape, np.float32, rope_freqs.nbytes)
    blocks = blocks or {}
    for p in plan:
        if p.name in blocks:
            data, qtype = blocks[p.name]
            writer.add_tensor_info(p.name, data.shape, data.dtype, data.nbytes, raw_dtype=qtype)
            continue
        dtype = np.dtype(np.float16 if p.f16 else np.float32)
        writer.add_tensor_info(p.name, p.shape, dtype, math.prod(p.shape) * dtype.itemsize)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    try:
        if rope_freqs is not None:
            writer.write_tensor_data(rope_freqs)
        for done, p in enumerate(plan, 1):
            if p.name in blocks:
                writer.write_tensor_data(permute_rows(blocks[p.name][0], p.permute_heads))
            else:
                writer.write_tensor_data(_load_tensor(p))
            if progress is not None:
                progress(done, len(plan))
    finally:
        writer.close()
    return gguf.MODEL_ARCH_NAMES[arch], len(plan) + (rope_freqs is not None)


def _gguf_arch(config: dict, model_dir: Path) -> str:
    """GGUF architecture. llama.cpp's qwen2 graph assumes heads * head_dim == hidden_size, so a
    head-pruned Qwen2 is written as ``llama`` (same block, optional q/k/v biases, own head_dim)."""
    model_type = config.get("model_type")
    if model_type not in ARCHS:
        raise CompressError(
            f"GGUF export supports model_type {sorted(ARCHS)}, not {model_type!r} ({model_dir}/config.json)"
        )
    width = _head_dim(config) * config["num_attention_heads"]
    return (
        "LLAMA" if model_type == "qwen2" and width != config["hidden_size"] else ARCHS[model_type]
    )


def _tensor_plan(model_dir: Path, config: dict, arch: Any, *, f16: bool) -> list[TensorPlan]:
    """Map every safetensors tensor to its GGUF name, shape and storage type (no data loaded)."""
    import gguf
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise CompressError(f"no *.safetensors in {model_dir}; save it with save_pretrained()")
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    tied = config.get("tie_word_embeddings", False)
    heads = {"q_proj": config["num_attention_heads"], "k_proj": _kv_heads(config)}
    skip = {"lm_head.weight"} if tied else set()
    plan: list[TensorPlan] = []
    for file in files:
        with safe_open(file, framework="pt") as handle:
            for hf_name in handle.keys():  # noqa: SIM118 - safe_open is not a Mapping
                if hf_name in skip or hf_name.endswith("rotary_emb.inv_freq"):
                    continue
                name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise CompressError(f"{file}: tensor {hf_name!r} has no GGUF {arch.name} name")
                shape = tuple(handle.get_slice(hf_name).get_shape())
                proj = hf_name.split(".")[-2]
                permute = heads.get(proj, 0) if arch.name == "LLAMA" else 0
                plan.append(TensorPlan(hf_name, file, name, shape, f16 and len(shape) > 1, permute))
    missing = {"token_embd.weight", "output_norm.weight", *([] if tied else ["output.weight"])}
    missing -= {p.name for p in plan}
    if missing:
        raise CompressError(f"{model_dir} lacks tensors for {sorted(missing)}; is it complete?")
    return plan


def _load_tensor(p: TensorPlan) -> Any:
    """Read one tensor as float32, permute Llama q/k rows (HF rotate-half -> GGML interleaved)."""
    import numpy as np
    from safetensors import safe_open

    with safe_open(p.file, framework="pt") as handle:
        t = handle.get_tensor(p.hf_name).float()
    t = permute_rows(t.numpy(), p.permute_heads)
    return np.ascontiguousarray(t.astype(np.float16 if p.f16 else np.float32))


def permute_rows(t: Any, heads: int) -> Any:
    """Llama q/k rows from HF's rotate-half order to GGML's interleaved one (``heads`` > 0);
    rows move whole, so quantized rows ``[rows, row bytes]`` move the same way."""
    if not heads:
        return t
    shape = t.shape
    return t.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _add_hparams(writer: Any, config: dict, name: str, *, f16: bool) -> None:
    """Architecture metadata; head_dim comes from config when set (pruned heads break hidden/heads)."""
    import gguf

    heads, head_dim = config["num_attention_heads"], _head_dim(config)
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(_kv_heads(config))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(_rope(config).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    ftype = gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _rope(config: dict) -> dict:
    """Rope settings: transformers 5 keeps them in ``rope_parameters``, older configs at top level."""
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "llama3"):
        raise CompressError(f"GGUF export supports rope_type default and llama3, not {kind!r}")
    return rope | {"rope_type": kind}


def _llama3_rope_freqs(config: dict) -> Any:
    """Llama 3.x frequency factors (``rope_freqs.weight``), as llama.cpp's converter computes them."""
    import numpy as np

    rope = _rope(config)
    if rope["rope_type"] != "llama3":
        return None
    dim = _head_dim(config)
    factor, old_ctx = rope.get("factor", 8.0), rope.get("original_max_position_embeddings", 8192)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    wavelen = 2 * math.pi * rope["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    smooth = np.clip((old_ctx / wavelen - low) / (high - low), 0.0, 1.0)  # 0: long waves, 1: short
    return (1 / ((1 - smooth) / factor + smooth)).astype(np.float32)


def _head_dim(config: dict) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def _kv_heads(config: dict) -> int:
    return config.get("num_key_value_heads") or config["num_attention_heads"]


# --- helpers ----------------------------------------------------------------------------------


def _check_target(quant: str, out: Path, overwrite: bool) -> None:
    if quant not in QUANT_TYPES:
        raise CompressError(f"unknown GGUF quant {quant!r}; choose one of {', '.join(QUANT_TYPES)}")
    if out.exists() and not overwrite:
        raise CompressError(f"{out} already exists; delete it or pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as err:
        raise CompressError(
            "GGUF needs llama-cpp-python: pip install 'supertiny[compress]'"
        ) from err
    return llama_cpp


@contextmanager
def _native_log() -> Iterator[list[str]]:
    """Capture llama.cpp's log during the block, as lines: it writes both to fds 1/2 (native) and
    through llama-cpp-python's callback to ``sys.stderr``, so both are redirected to one file."""
    lines: list[str] = []
    with tempfile.TemporaryFile() as log, open(os.dup(log.fileno()), "w") as text:
        streams, saved = (sys.stdout, sys.stderr), (os.dup(1), os.dup(2))
        for stream in streams:
            stream.flush()
        sys.stdout = sys.stderr = text
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield lines
        finally:
            text.flush()
            sys.stdout, sys.stderr = streams
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            log.seek(0)
            lines.extend(log.read().decode("utf-8", "replace").splitlines())
