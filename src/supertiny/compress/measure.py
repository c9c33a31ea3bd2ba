"""What every compression step is measured by: parameters, bytes, accuracy, latency.

Two runners answer prompts the same way, so their figures compare: ``TorchRunner`` (a
transformers model, float or torchao-quantized) and ``LlamaCppRunner`` (a GGUF file in
llama.cpp). Both take the prompt as rendered by the model's own tokenizer, generate greedily
and decode with that tokenizer, keeping special tokens such as ``<tool_call>``.

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
import time
from pathlib import Path
from typing import Any

from supertiny.transfer.sampling import greedy


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


class TorchRunner:
    """Greedy answers and timings from a transformers model (float or torchao)."""

    backend = "pytorch"

    def __init__(self, model, tokenizer, max_new_tokens: int, batch_size: int = 8):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def generate(self, prompts: list[str]) -> list[str]:
        return greedy(self.model, self.tokenizer, prompts, self.max_new_tokens, self.batch_size)

    def timed(self, prompt: str, max_new_tokens: int) -> list[float]:
        """Time stamps: request start, then one per generated token."""
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList

        class Clock(LogitsProcessor):  # called once per generated token, after its forward
            def __call__(self, input_ids, scores):
                stamps.append(time.perf_counter())
                return scores

        tok = self.tokenizer
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        stamps = [time.perf_counter()]
        with torch.no_grad():
            self.model.generate(
                **enc,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                max_new_tokens=max_new_tokens,
                logits_processor=LogitsProcessorList([Clock()]),
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        stamps.append(time.perf_counter())
        return stamps


class LlamaCppRunner:
    """Greedy answers and timings from a GGUF file in llama.cpp (llama-cpp-python)."""

    backend = "llama.cpp"

    def __init__(self, path: Path, tokenizer, max_new_tokens: int, threads: int, n_ctx: int = 4096):
        try:
            from llama_cpp import Llama
        except ImportError:
            from supertiny.compress import CompressError

            raise CompressError(
                "gguf steps need llama-cpp-python: pip install 'supertiny[compress]'"
            ) from None
        self.llm = Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_batch=512, verbose=False
        )
        self.tokenizer, self.max_new_tokens = tokenizer, max_new_tokens
        self.stops = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}

    def _run(self, prompt: str, max_new_tokens: int, stamps: list[float] | None = None):
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        self.llm.reset()  # no prefix reuse between requests: each is timed cold
        out: list[int] = []
        for token in self.llm.generate(ids, temp=0.0, top_k=1, reset=True):
            if stamps is not None:
                stamps.append(time.perf_counter())
            if token in self.stops:
                break
            out.append(token)
            if len(out) >= max_new_tokens:
                break
        return out

    def generate(self, prompts: list[str]) -> list[str]:
        return [
            self.tokenizer.decode(
                self._run(p, self.max_new_tokens), skip_special_tokens=False
            ).strip()
            for p in prompts
        ]

    def timed(self, prompt: str, max_new_tokens: int) -> list[float]:
        stamps = [time.perf_counter()]
        self._run(prompt, max_new_tokens, stamps)
        stamps.append(time.perf_counter())
        return stamps

    def close(self) -> None:
        self.llm.close()


def open_runner(
    form: str,
    path: Path,
    max_new_tokens: int,
    threads: int,
    *,
    tokenizer=None,
    device: str = "cpu",
    batch_size: int = 8,
):
    """A runner for the model at ``path``: ``form`` is "gguf" (``tokenizer`` required: a GGUF's
    tokenizer is its float model's), "torchao" or "float" (a transformers folder)."""
    from supertiny.transfer import student as st

    if form == "gguf":
        return LlamaCppRunner(path, tokenizer, max_new_tokens, threads)
    if form == "torchao":
        from supertiny.compress.quantize import load_quantized

        model, tok = load_quantized(path, device)
    else:
        model, tok = st.load(str(path), device, "auto")
    return TorchRunner(model, tok, max_new_tokens, batch_size)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def latency(
    runner, prompts: list[str], max_new_tokens: int, title: str = "latency"
) -> dict[str, Any]:
    """Single-request latency over ``prompts`` (one warm-up request first, not counted)."""
    from supertiny.progress import bar

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
        "p95_s": round(_percentile(totals, 0.95), 4),
        "ttft_s": round(statistics.median(ttfts), 4) if ttfts else None,
        "decode_tok_s": round(decode_tokens / decode_seconds, 2) if decode_seconds > 0 else None,
        "tokens_per_request": round(tokens / len(prompts), 1),
    }
