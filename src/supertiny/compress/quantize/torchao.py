"""PyTorch quantization with torchao: int8 / int4 weights (and int8 activations), saved and loaded.

    model = quantize(model, "int8_weight")
    save_quantized(model, tokenizer, "runs/demo/compress/05-torchao/model", "int8_weight", 32)
    model, tok = load_quantized("runs/demo/compress/05-torchao/model")   # runtime/torchao.py

Schemes (torchao's configs):
- ``int8_weight``: ``Int8WeightOnlyConfig``, per-channel int8 weights, float activations;
- ``int8_dynamic``: ``Int8DynamicActivationInt8WeightConfig``, activations quantized per token
  at run time (int8 matmuls where the backend has them);
- ``int4_weight``: on CUDA ``Int4WeightOnlyConfig`` (tinygemm tile-packed kernels); on other
  devices ``IntxWeightOnlyConfig(int4, per group)``, which keeps int4 values unpacked in int8,
  so the file is int8-sized there: the llama.cpp path (``gguf`` steps) is the small int4 file
  on a CPU.

The quantized weights are torchao tensor subclasses; they are saved as a plain ``torch.save``
of the state dict (torchao registers them as safe for ``weights_only`` loading) next to the
model's config and tokenizer, with ``torchao.json`` naming the scheme.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from supertiny.compress import CompressError
from supertiny.runtime.torchao import RECIPE, WEIGHTS, require_torchao


def _config(scheme: str, group_size: int, device: str):
    import torch
    from torchao.quantization import (
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerGroup

    if scheme == "int8_weight":
        return Int8WeightOnlyConfig()
    if scheme == "int8_dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    if scheme == "int4_weight":
        if device == "cuda":
            return Int4WeightOnlyConfig(
                group_size=group_size, int4_packing_format="tile_packed_to_4d"
            )
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
    raise CompressError(f"torchao: unknown scheme '{scheme}'")


def quantize(model, scheme: str, group_size: int = 32):
    """Quantize every linear layer of ``model`` in place (embeddings stay float); returns it."""
    require_torchao()
    from torchao.quantization import quantize_

    hidden = model.config.hidden_size
    if scheme == "int4_weight" and hidden % group_size:
        raise CompressError(
            f"torchao int4_weight: group_size {group_size} does not divide the hidden size "
            f"{hidden}; choose a divisor such as 32 or 64"
        )
    quantize_(model, _config(scheme, group_size, model.device.type))
    return model


def save_quantized(model, tokenizer, path: Path, scheme: str, group_size: int) -> Path:
    """Write config, tokenizer, quantized state dict and recipe (aside, then renamed)."""
    import torch
    import torchao

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.config.save_pretrained(partial)
    model.generation_config.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    torch.save(model.state_dict(), partial / WEIGHTS)
    recipe = {"scheme": scheme, "group_size": group_size, "torchao": torchao.__version__}
    (partial / RECIPE).write_text(json.dumps(recipe, indent=2), encoding="utf-8")
    if path.exists():
        shutil.rmtree(path)
    partial.rename(path)
    return path
