"""The HF -> GGUF writer: a Qwen2/Llama safetensors folder as one GGUF file (F16/F32 tensors,
or blocks already quantized), streamed one tensor at a time.

    arch, n_tensors = write_gguf(model_dir, Path("model.f16.gguf"), f16=True, progress=None)

Hand-written on top of gguf-py (``GGUFWriter``, ``TensorNameMap``) because llama.cpp's own
``convert_hf_to_gguf.py`` is not shipped in any pip package; it follows that script's
conventions (2-D weights F16, norms and biases F32, Llama q/k rows permuted for llama.cpp's
rotary layout). ``tensor_plan`` maps every tensor to its GGUF name without loading data;
``gguf_arch`` writes a head-pruned Qwen2 as ``llama``. The vocabulary is ``vocab.py``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supertiny.compress import CompressError
from supertiny.compress.gguf.vocab import add_vocab, read_json

# HF model_type -> gguf.MODEL_ARCH member name (dense decoders only)
ARCHS = {"qwen2": "QWEN2", "llama": "LLAMA"}

Progress = Callable[[int, int], None]


@dataclass
class TensorPlan:
    """One GGUF tensor: where it comes from, its name and shape in GGUF, how it is stored."""

    hf_name: str
    file: Path
    name: str
    shape: tuple[int, ...]
    f16: bool
    permute_heads: int = 0  # >0: Llama q/k rows permuted for that many heads


def write_gguf(
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
    arch = gguf.MODEL_ARCH[gguf_arch(config, model_dir)]
    plan = tensor_plan(model_dir, config, arch, f16=f16)
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


def gguf_arch(config: dict, model_dir: Path) -> str:
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


def tensor_plan(model_dir: Path, config: dict, arch: Any, *, f16: bool) -> list[TensorPlan]:
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
