"""Load a torchao-quantized model folder (written by the compress stage's ``torchao`` step).

    model, tok = load_quantized("runs/demo/compress/05-torchao/model")   # if is_quantized_dir(...)

The folder holds the model's config and tokenizer, the quantized state dict as a plain
``torch.save`` (``quantized.pt``: torchao registers its tensor subclasses as safe for
``weights_only`` loading) and ``torchao.json`` naming the scheme. Used by the runners, the
PyTorch serving backend and the compress stage itself; writing such a folder is
``compress/quantize/torchao.py``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supertiny.core.errors import MissingExtra

WEIGHTS = "quantized.pt"
RECIPE = "torchao.json"


def require_torchao():
    try:
        import torchao
    except ImportError:
        raise MissingExtra(
            "torchao steps need torchao: pip install 'supertiny[compress]'"
        ) from None
    return torchao


def is_quantized_dir(path: Path) -> bool:
    return (Path(path) / RECIPE).is_file()


def load_quantized(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a folder written by ``compress.quantize.torchao.save_quantized``."""
    require_torchao()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_config(config, dtype=config.dtype or torch.float32)
    state = torch.load(path / WEIGHTS, map_location=device, weights_only=True)
    model.load_state_dict(state, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model.to(device).eval()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok
