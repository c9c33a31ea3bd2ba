"""The registry of model backends, and loading a model into one (a GGUF, a checkpoint folder).

    engine = load_backend("student")                       # a bundled alias -> llama.cpp
    engine = load_backend("runs/x/train/01-sft/model")     # a folder -> the torch backend

A backend implements ``backend.Backend``; to add one, write the class (its constructor is
``cls(model_path, *, n_ctx, n_threads)``) and add ``"name": "module:Class"`` to ``BACKENDS``.
``supertiny serve`` (``serve/server.py``) loads its model through here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

BACKENDS: dict[str, str] = {
    "llamacpp": "supertiny.runtime.llamacpp:LlamaCppBackend",
    "torch": "supertiny.runtime.torch_backend:TorchBackend",
}
"""Backend name -> "module:Class"; each class is built as `cls(model_path, n_ctx=...,
n_threads=...)` and imports its runtime (llama-cpp-python, torch) only when built."""


def backend_class(name: str) -> type:
    """The class registered as `name` in `BACKENDS`."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def pick_backend(model: str, backend: str = "auto") -> str:
    """The backend for `model`: `backend` unless it is "auto"; then "torch" for a folder (a
    transformers or torchao checkpoint), "llamacpp" for a GGUF file or a bundled alias."""
    if backend != "auto":
        return backend
    return "torch" if Path(model).expanduser().is_dir() else "llamacpp"


def load_backend(
    model: str, backend: str = "auto", n_ctx: int = 4096, n_threads=None, **options: Any
):
    """Resolve `model` (alias, GGUF path or checkpoint folder) and load it into a backend."""
    from supertiny.core.models import resolve_gguf

    name = pick_backend(model, backend)
    cls = backend_class(name)
    path = Path(model).expanduser() if name == "torch" else resolve_gguf(model)
    return cls(path, n_ctx=n_ctx, n_threads=n_threads, **options)
