"""What a model is measured by besides accuracy: parameters, bytes on disk, latency.

``latency`` times a runner (``runners.py``) on single requests; the counts read a
transformers folder's config (no weights loaded) or a GGUF file's tensor shapes. Used by the
compress stage (every model it makes) and the eval stage (parameters and size).

Latency is single requests, one at a time (no batching, no prefix cache), timed at every
generated token: ``p50_s``/``p95_s`` are whole requests, ``ttft_s`` the median time to the
first token (prompt processing), ``decode_tok_s`` the tokens after the first over the time
they took.

    >>> runner = LlamaCppRunner("model.gguf", tok, threads=2)
    >>> latency(runner, prompts, max_new_tokens=64)
    {'requests': 10, 'p50_s': 0.41, 'p95_s': 0.52, 'ttft_s': 0.09, 'decode_tok_s': 61.3, ...}
"""

from __future__ import annotations

import statistics
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


def latency(
    runner, prompts: list[str], max_new_tokens: int, title: str = "latency"
) -> dict[str, Any]:
    """Single-request latency over ``prompts`` (one warm-up request first, not counted)."""
    from supertiny.core.progress import bar

    runner.timed(prompts[0], 4)  # warm-up: first-call allocations and lazy initialisation
    totals, ttfts, decode_tokens, decode_seconds, tokens = [], [], 0, 0.0, 0
    with bar(len(prompts), title) as advance:
        for prompt in prompts:
            stamps = runner.timed(prompt, max_new_tokens)
            start, token_stamps, end = stamps[0], stamps[1:-1], stamps[-1]
            totals.append(end - start)
            if token_stamps:
                ttfts.append(token_stamps[0] - start)
                decode_tokens += len(token_stamps) - 1
                decode_seconds += token_stamps[-1] - token_stamps[0]
                tokens += len(token_stamps)
            advance(1)
    return {
        "backend": runner.backend,
        "requests": len(prompts),
        "p50_s": round(statistics.median(totals), 4),
        "p95_s": round(percentile(totals, 0.95), 4),
        "ttft_s": round(statistics.median(ttfts), 4) if ttfts else None,
        "decode_tok_s": round(decode_tokens / decode_seconds, 2) if decode_seconds > 0 else None,
        "tokens_per_request": round(tokens / len(prompts), 1),
    }
