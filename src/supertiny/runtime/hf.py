"""Load, adapt and save the student (and a local teacher) with transformers and PEFT.

A model is named by a bundled alias (``student``, ``teacher``), a GGUF file, or a local
Hugging Face model directory (a hub id works too where the machine may download). GGUF
weights are dequantized by transformers once and kept as safetensors in the model cache
(``~/.cache/supertiny/models/hf/``), so the 30-100 s conversion is paid once.

    >>> model, tok = load("student", device="cpu", dtype=torch.float32)
    >>> model = add_lora(model, LoraConfig(r=16))
    >>> save(model, tok, "runs/demo/train/01-sft/model")      # LoRA merged first

The training steps, compression (pruning, recovery, quantization) and the scoring runners
load models through here (the PyTorch serving backend still loads its folder itself, in
``torch_backend._load``). ``LoraConfig`` is the train stage's ``student.lora`` section and
the compress stage's ``lora``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from supertiny.core import config as cfg
from supertiny.core import models
from supertiny.core.config import ConfigError
from supertiny.core.errors import SupertinyError


class StudentError(SupertinyError, RuntimeError):
    """A model cannot be used for training (no tool template, bad LoRA target, ...)."""


class LoraConfig(cfg.Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear",
        description="Module names to adapt (e.g. [q_proj, v_proj]) or 'all-linear'.",
    )
    head: bool = Field(
        True,
        description="Also train the output layer (LM head) fully. Needed to learn tokens the base model rarely emits, such as Qwen's <tool_call> (its head row is barely trained).",
    )


def resolve_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise StudentError("student.device is 'cuda' but no CUDA GPU is visible")
        return device
    if torch.cuda.is_available():
        # one GPU per process under accelerate launch / torchrun
        return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str):
    """float32 on CPU (bf16 matmuls are hundreds of times slower on most CPUs); bf16 on GPUs that have it."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _is_gguf_name(name: str) -> bool:
    return name in models.BUNDLED or name.endswith(".gguf")


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""``org/name``: how a model on the Hugging Face hub is named."""


def missing_model(name: str) -> str | None:
    """Why ``name`` names no model this machine can load, or None: a bundled alias, an
    existing GGUF file or folder, or a hub id (checked when it loads)."""
    if name in models.BUNDLED or Path(name).expanduser().exists():
        return None
    if name.endswith(".gguf") or not HUB_ID.match(name):
        return (
            f"model not found: {name} (give a bundled alias ({', '.join(models.BUNDLED)}), "
            "a GGUF file, a Hugging Face model folder or a hub id such as "
            "Qwen/Qwen2.5-0.5B-Instruct)"
        )
    return None


def model_dir(name: str, progress=None) -> Path | str:
    """A directory (or hub id) ``from_pretrained`` can read for ``name``; converts GGUF once."""
    if not _is_gguf_name(name):
        path = Path(name).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise StudentError(f"{path}: not a Hugging Face model directory (no config.json)")
            return path
        problem = missing_model(name)
        if problem:
            raise StudentError(problem)
        return name  # a hub id
    gguf = models.resolve_gguf(name, progress)
    target = models.cache_dir() / "hf" / f"{gguf.stem}-{gguf.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF into a float32 safetensors directory (atomic: written aside, then renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from supertiny.core.progress import console

    console.print(
        f"converting {gguf.name} to a transformers model (once; cached in {target.parent})"
    )
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    _forget_quantization(model)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tok.save_pretrained(partial)
    partial.rename(target)


def _forget_quantization(model) -> None:
    """A GGUF-loaded model is plain float weights; drop the marker that forbids saving and training."""
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False


def load_tokenizer(name: str, progress=None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir(name, progress))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load(name: str, device: str = "auto", dtype: str = "auto", progress=None):
    """``(model, tokenizer)`` on the resolved device and dtype."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    path = model_dir(name, progress)
    try:
        tok = load_tokenizer(name)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as exc:
        if not isinstance(path, str):
            raise
        raise StudentError(
            f"could not load '{name}' from the Hugging Face hub ({str(exc).splitlines()[0]}); "
            "check the name and the network, or give a local model folder"
        ) from None
    _forget_quantization(model)
    model.to(device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def vocab_size(model) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def check_same_vocab(student, teacher, teacher_name: str) -> None:
    """Logit KD compares distributions token by token: both models need the same vocabulary."""
    s, t = vocab_size(student), vocab_size(teacher)
    if s != t:
        raise StudentError(
            f"vocabulary mismatch: the student has {s:,} output rows, the teacher "
            f"'{teacher_name}' {t:,}; logit distillation needs one shared vocabulary. Use a "
            "teacher from the student's family, or drop the kd step (sft on the teacher's "
            "labels is sequence-level distillation)"
        )


def check_tool_template(tokenizer, name: str) -> None:
    """Refuse a tokenizer whose chat template cannot render an assistant tool call."""
    call = {"name": "probe_tool", "arguments": {"probe_arg": "probe_value"}}
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": call}]},
    ]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - any template error means the same thing here
        raise StudentError(f"{name}: the chat template failed on a tool call: {exc}") from None
    if not isinstance(text, str) or "probe_tool" not in text or "probe_value" not in text:
        raise StudentError(
            f"{name}: the tokenizer's chat template does not render tool calls; choose a "
            "tool-calling (instruct) model, or give the tokenizer such a template"
        )


def linear_names(model) -> list[str]:
    import torch

    names = {
        full.rsplit(".", 1)[-1]
        for full, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    names.discard(full_head_name(model))
    return sorted(names)


def full_head_name(model) -> str:
    head = model.get_output_embeddings()
    for name, module in model.named_modules():
        if module is head:
            return name.rsplit(".", 1)[-1]
    return "lm_head"


def add_lora(model, lora: Any):
    """Wrap ``model`` in PEFT LoRA adapters; an unknown target module is a clear error."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = lora.target_modules
    known = linear_names(model)
    if targets == "all-linear":
        targets = list(known)
    else:
        targets = [targets] if isinstance(targets, str) else list(targets)
        missing = [t for t in targets if t not in known]
        if missing:
            raise ConfigError(
                f"student.lora.target_modules: {', '.join(missing)} not in the model; "
                f"its linear layers are {', '.join(known)} (or use 'all-linear')"
            )
    head = full_head_name(model)
    targets = [t for t in targets if t != head]  # TRL computes the loss from the head's weight
    config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=[head] if lora.head else None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def merged(model):
    """The plain model: LoRA adapters folded into the weights (a no-op without adapters)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def save(model, tokenizer, path: Path) -> Path:
    """Save merged weights + tokenizer atomically (written aside, then renamed into place)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    plain = merged(model)
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if path.exists():
        shutil.rmtree(path)
    partial.rename(path)
    return path
