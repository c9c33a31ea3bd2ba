"""Runners: greedy answers and per-token timings from a model, the same way on every runtime.

Two runners answer prompts the same way, so their figures compare: ``TorchRunner`` (a
transformers model, float or torchao-quantized) and ``LlamaCppRunner`` (a GGUF file in
llama.cpp). Both take the prompt as rendered by the model's own tokenizer, generate greedily
and decode with that tokenizer, keeping special tokens such as ``<tool_call>``.

    >>> runner = open_runner("gguf", Path("model.gguf"), 64, threads=2, tokenizer=tok)
    >>> runner.generate(prompts)                  # what the scores are computed on
    >>> runner.timed(prompt, 64)                  # start, one stamp per token, end
"""

from __future__ import annotations

import time
from pathlib import Path

from supertiny.runtime.generate import greedy
from supertiny.runtime.llama import import_llama_cpp, load_llama


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
        import_llama_cpp("gguf steps need", "compress")
        self.llm = load_llama(path, n_ctx=n_ctx, n_threads=threads, n_batch=512)
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
    from supertiny.runtime import hf as st

    if form == "gguf":
        return LlamaCppRunner(path, tokenizer, max_new_tokens, threads)
    if form == "torchao":
        from supertiny.runtime.torchao import load_quantized

        model, tok = load_quantized(path, device)
    else:
        model, tok = st.load(str(path), device, "auto")
    return TorchRunner(model, tok, max_new_tokens, batch_size)
