"""What a model is measured by besides accuracy: parameters, bytes on disk, latency.

``latency`` times a serving backend (``backends.py``, the one that scores the model) on single
requests, the scored requests under the same grammar; the counts read a
transformers folder's config (no weights loaded) or a GGUF file's tensor shapes. Used by the
compress stage (every model it makes) and the eval stage (parameters and size).

Latency is single requests, one at a time (no batching; llama.cpp reuses the prompt prefix
it shares with the previous request, as it does when served), timed at every piece of text: ``p50_s``/``p95_s`` are whole requests, ``ttft_s`` the median time to the
first token (prompt processing), ``decode_tok_s`` the tokens after the first over the time
they took.

    >>> backend = load_backend("model.gguf", n_threads=2)
    >>> latency(backend, [student_request(task, r, 64) for r in records])
    {'requests': 10, 'p50_s': 0.41, 'p95_s': 0.52, 'ttft_s': 0.09, 'decode_tok_s': 61.3, ...}
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from supertiny.core.metrics import percentile


def param_counts(model) -> dict[str, int]:
    """Total parameters, the embedding and LM-head share, and the rest (tied rows counted once)."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    embedding = emb.numel()
    if head is not None and head.weight is not emb:
        embedding += head.weight.numel()
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def config_param_counts(path: Path) -> dict[str, int]:
    """:func:`param_counts` of the model a folder's config.json describes, without its weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return param_counts(model)


def gguf_param_counts(path: Path) -> dict[str, int]:
    """The same counts read from a GGUF file's tensor shapes."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    total = embedding = 0
    for tensor in reader.tensors:
        n = int(tensor.n_elements)
        total += n
        if tensor.name in ("token_embd.weight", "output.weight"):
            embedding += n
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def artifact_bytes(path: Path) -> int:
    """Size on disk of a model file, or of the weight files of a model folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".pt", ".bin", ".gguf")]
    return sum(p.stat().st_size for p in weights)


RUNTIMES = {"llamacpp": "llama.cpp", "torch": "pytorch"}
"""A backend's name (``BACKENDS``) -> the runtime a latency report names."""


def timed(backend, request) -> tuple[list[float], int]:
    """Time stamps of one request (its start, one per streamed piece of text, its end) and
    the tokens it generated."""
    stamps = [time.perf_counter()]

    def on_delta(text: str, _logprobs) -> bool:
        if text:
            stamps.append(time.perf_counter())
        return True

    generation = backend.chat(request, on_delta)
    stamps.append(time.perf_counter())
    return stamps, generation.completion_tokens


def latency(backend, requests: list, title: str = "latency") -> dict[str, Any]:
    """Single-request latency of a serving backend over ``requests`` (``ChatRequest``s: the
    scored requests, under the same grammar); one warm-up request first, not counted."""
    from supertiny.core.progress import bar

    timed(backend, requests[0])  # warm-up: first-call allocations and lazy initialisation
    totals, ttfts, decode_tokens, decode_seconds, tokens = [], [], 0, 0.0, 0
    with bar(len(requests), title) as advance:
        for request in requests:
            stamps, generated = timed(backend, request)
            start, token_stamps, end = stamps[0], stamps[1:-1], stamps[-1]
            totals.append(end - start)
            tokens += generated
            if token_stamps:
                ttfts.append(token_stamps[0] - start)
                if generated > 1 and end > token_stamps[0]:
                    decode_tokens += generated - 1
                    decode_seconds += end - token_stamps[0]
            advance(1)
    return {
        "backend": RUNTIMES.get(backend.name, backend.name),
        "requests": len(requests),
        "p50_s": round(statistics.median(totals), 4),
        "p95_s": round(percentile(totals, 0.95), 4),
        "ttft_s": round(statistics.median(ttfts), 4) if ttfts else None,
        "decode_tok_s": round(decode_tokens / decode_seconds, 2) if decode_seconds > 0 else None,
        "tokens_per_request": round(tokens / len(requests), 1),
    }
