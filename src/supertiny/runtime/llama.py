"""llama.cpp in this process (llama-cpp-python): the import with its install hint, the one
place a ``Llama`` is built, and the capture of llama.cpp's native log.

    llama_cpp = import_llama_cpp("gguf steps need", "compress")   # MissingExtra if absent
    llm = load_llama(path, n_ctx=4096, n_threads=2)                # keyword arguments of Llama
    with native_log() as lines:                                     # fds 1/2 and the callback
        llama_cpp.llama_model_quantize(...)

Used by the serving backend (``llamacpp.py``), the llama.cpp runner (``runners.py``) and the
GGUF export's quantizer and tokenizer check (``compress/gguf/``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from supertiny.core.errors import MissingExtra


def import_llama_cpp(needs: str = "llama.cpp needs", extra: str = "llama") -> Any:
    """The ``llama_cpp`` module, or ``MissingExtra``: "``needs`` llama-cpp-python: pip install
    'supertiny[``extra``]'" (e.g. ``needs="GGUF needs"``, ``extra="compress"``)."""
    try:
        import llama_cpp
    except ImportError as err:
        raise MissingExtra(f"{needs} llama-cpp-python: pip install 'supertiny[{extra}]'") from err
    return llama_cpp


def load_llama(path: str | os.PathLike[str], **settings: Any) -> Any:
    """``llama_cpp.Llama`` over the GGUF at ``path``, quiet (``verbose=False`` unless given);
    ``settings`` are ``Llama``'s keyword arguments (``n_ctx``, ``n_threads``,
    ``n_threads_batch``, ``n_batch``, ``n_gpu_layers``, ``vocab_only``). Call
    :func:`import_llama_cpp` first for an install hint that names your use."""
    llama_cpp = import_llama_cpp()
    settings.setdefault("verbose", False)
    return llama_cpp.Llama(model_path=str(path), **settings)


@contextmanager
def native_log() -> Iterator[list[str]]:
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
