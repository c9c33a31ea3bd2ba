"""PyTorch backend of `supertiny serve`: a transformers (or torchao-quantized) folder in
process, with grammar-constrained tool calls and batched decoding.

    supertiny serve --model runs/x/train/02-kd/model --port 8000   # a folder -> this backend

    backend = TorchBackend("runs/x/train/02-kd/model")
    backend.chat(ChatRequest(messages=[{"role": "user", "content": "hi"}], tools=TOOLS))

The folder is a transformers checkpoint (`config.json`: `AutoModelForCausalLM` and
`AutoTokenizer`) or a torchao-quantized one written by `supertiny.compress.quantize.torchao`
(`torchao.json`). The model runs in float32 on the CPU, in bfloat16 on a GPU that has it.
Prompts are rendered by the tokenizer's own chat template (`apply_chat_template`, tools
included), so the prompt is the one the model was trained on.

Batching. `chat` renders and checks the prompt in the caller's thread, then queues the
request and waits. One scheduler thread owns the model: it takes up to `max_batch_size`
queued requests (after the first, it waits `batch_wait_ms` for more) and decodes them
together until the last one finishes; requests that arrive meanwhile wait for the next
batch (no joining a running batch: simple, but a long answer delays the queue).
- Prefill is one left-padded forward pass over all the prompts (attention mask and position
  ids skip the padding; `torch_sampling.Batch`): one call keeps the code on public
  transformers API and the parallelism in the matrix multiplications; the price is compute
  spent on padding when prompt lengths differ (they differ little when requests share a
  system prompt with tools).
- Decoding steps all rows together over one shared `DynamicCache`. A finished row leaves
  the batch at once: its cache rows, mask row and position are dropped
  (`Cache.batch_select_indices`), so later steps cost only the rows still running.
- Each row samples on its own (`torch_sampling.Row`): its own seeded generator,
  grammar, stop sequences, budget and `on_delta`, so that a greedy (or seeded) request gives
  the same tokens alone and in a batch (up to float rounding of batched matmuls).
- `on_delta` runs on the scheduler thread: keep it quick. An exception in one request
  (its callback, its grammar) reaches only that request's caller. A failure of the model
  itself (its forward pass raised) fails that batch's requests with `BackendFailure`, which
  marks the server failed (`/health` 503); a CUDA out-of-memory error fails the batch only
  (a smaller one may fit). The scheduler thread survives all of these; should it ever die,
  callers get `BackendFailure` instead of waiting forever.

Constrained decoding (xgrammar), only when the chat template writes `<tool_call>` tags (as
Qwen2.5's does), see `torch_sampling.compile_constraint`: `tool_choice` "required" makes the
whole answer one or more valid `<tool_call>` blocks, a named choice one call of that function,
"auto" lets the model write free text but makes any `<tool_call>` block it opens a valid
call; `response_format` forces JSON (any object, or matching a schema). Grammars are
compiled once per (tools, choice, response_format) and cached (`GRAMMAR_CACHE` entries). A
schema xgrammar cannot compile is logged and decoded unconstrained.

Not supported: joining a running batch, prefix (KV) caching across requests
(`cached_tokens` is always 0), speculative decoding, multi-GPU, images and audio.

One file of ~440 lines: the scheduler thread, the batch it decodes and each request's state
are one object; the per-token sampling is already apart (``torch_sampling.py``).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supertiny.runtime.backend import (
    BackendFailure,
    ChatRequest,
    ContextLengthError,
    DeltaCallback,
    Generation,
    PromptError,
)

if TYPE_CHECKING:
    import torch

    from supertiny.runtime.torch_sampling import Row

log = logging.getLogger(__name__)

GRAMMAR_CACHE = 64
"""Compiled grammars kept (least recently used dropped first)."""
_POLL_S = 0.1


@dataclass
class _Job:
    """A queued request: the rendered prompt, its grammar, and the caller's future."""

    request: ChatRequest
    prompt: list[int]
    grammar: Any
    on_delta: DeltaCallback | None
    future: concurrent.futures.Future


class TorchBackend:
    """A causal LM loaded with transformers (or torchao), serving batched requests."""

    name = "torch"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        device: str | None = None,
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
    ):
        torch = _require_runtime()
        if n_threads:
            torch.set_num_threads(n_threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model_path = Path(model_path)
        self._model, self._tokenizer = _load(self.model_path, self.device)
        limit = getattr(self._model.config, "max_position_embeddings", None)
        self.n_ctx = min(n_ctx, limit) if limit else n_ctx
        self.max_batch_size = max(1, max_batch_size)
        self.batch_wait_ms = batch_wait_ms
        self._template = _template_text(self._tokenizer, self.model_path)
        self._tokenizer_lock = threading.Lock()  # HF fast tokenizers are not thread-safe
        self._vocab, self._compiler = self._grammar_setup()
        self._n_tokens = min(len(self._tokenizer), self._vocab.size)
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._grammar_lock = threading.Lock()
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._state_lock = threading.Lock()
        self._closed = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="torch-backend", daemon=True)
        self._thread.start()

    # ---- the Backend interface --------------------------------------------------------

    def chat(self, request: ChatRequest, on_delta: DeltaCallback | None = None) -> Generation:
        self._check_open()
        tools = request.tools if request.render_tools else None
        prompt = self._prompt_ids(request.messages, tools)
        if len(prompt) >= self.n_ctx:
            raise ContextLengthError(len(prompt), self.n_ctx)
        job = _Job(request, prompt, self._grammar(request), on_delta, concurrent.futures.Future())
        with self._state_lock:
            self._check_open()
            self._queue.put(job)
        return self._wait(job)

    def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> int:
        self._check_open()
        return len(self._prompt_ids(messages, tools))

    def close(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        self._thread.join()
        self._fail_queued()
        self._model = None
        _free_device_memory(self.device)

    def _wait(self, job: _Job) -> Generation:
        """The job's answer; `BackendFailure` if the scheduler thread died before giving it."""
        while True:
            try:
                return job.future.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if not self._thread.is_alive():
                    raise BackendFailure(
                        "the torch backend's scheduler thread has stopped"
                    ) from None

    # ---- prompt ------------------------------------------------------------------------

    def render(self, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> str:
        """The prompt text, from the model's chat template."""
        try:
            with self._tokenizer_lock:
                return self._tokenizer.apply_chat_template(
                    messages, tools=tools, add_generation_prompt=True, tokenize=False
                )
        except Exception as exc:  # jinja2 errors and the template's raise_exception
            raise PromptError(
                f"the model's chat template cannot render this conversation: {exc}"
            ) from exc

    def _prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict] | None) -> list[int]:
        # The template writes any BOS itself: no special tokens are added again.
        text = self.render(messages, tools)
        with self._tokenizer_lock:
            return self._tokenizer(text, add_special_tokens=False)["input_ids"]

    def _decode(self, ids: list[int]) -> str:
        with self._tokenizer_lock:
            return self._tokenizer.decode(
                ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
            )

    # ---- grammars ----------------------------------------------------------------------

    def _grammar_setup(self):
        """The rows' `Vocab` and an xgrammar compiler for this tokenizer and output layer."""
        import xgrammar as xgr

        from supertiny.runtime.torch_sampling import Vocab

        tok, model = self._tokenizer, self._model
        head = model.get_output_embeddings()
        size = getattr(head, "out_features", None) or model.config.vocab_size
        stops = {tok.eos_token_id, *_as_list(model.generation_config.eos_token_id)}
        stops = sorted(t for t in stops if t is not None and t < size)
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=size, stop_token_ids=stops)
        vocab = Vocab(size, frozenset(stops), info.decoded_vocab, self._decode)
        return vocab, xgr.GrammarCompiler(info, max_threads=1)

    def _grammar(self, request: ChatRequest) -> Any | None:
        """The compiled grammar for `request` (None: free text), cached; a schema xgrammar
        cannot compile is served unconstrained, with a warning."""
        from supertiny.runtime.torch_sampling import compile_constraint

        key = json.dumps(
            [request.tools, request.tool_choice, request.response_format], sort_keys=True
        )
        with self._grammar_lock:
            if key in self._grammars:
                self._grammars.move_to_end(key)
                return self._grammars[key]
            try:
                grammar = compile_constraint(
                    self._compiler, request, "<tool_call>" in self._template
                )
            except Exception as exc:  # noqa: BLE001 - any compile failure means "unconstrained"
                log.warning("grammar unavailable, decoding unconstrained: %s", exc)
                grammar = None
            self._grammars[key] = grammar
            if len(self._grammars) > GRAMMAR_CACHE:
                self._grammars.popitem(last=False)
            return grammar

    # ---- scheduler ---------------------------------------------------------------------

    def _serve(self) -> None:
        """The scheduler thread: take a batch, decode it, repeat until closed."""
        while not self._stopping.is_set():
            jobs = self._next_jobs()
            if not jobs:
                continue
            try:
                self._run_batch(jobs)
            except Exception as exc:  # noqa: BLE001 - the model failed: fail this batch
                log.exception("torch backend: a batch failed")
                for job in jobs:
                    _fail(job, _model_failure(exc))

    def _next_jobs(self) -> list[_Job]:
        """Up to `max_batch_size` queued jobs: the first one, then whatever arrives within
        `batch_wait_ms` of it. Empty after `_POLL_S` without any."""
        try:
            jobs = [self._queue.get(timeout=_POLL_S)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.batch_wait_ms / 1000
        while len(jobs) < self.max_batch_size:
            try:
                jobs.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return jobs

    def _run_batch(self, jobs: list[_Job]) -> None:
        import torch

        from supertiny.runtime.torch_sampling import Batch

        log.debug("decoding a batch of %d request(s)", len(jobs))
        active = []  # (row, job) pairs, in batch order
        for job in jobs:
            try:
                active.append((self._start_row(job), job))
            except Exception as exc:  # noqa: BLE001 - reaches only this request's caller
                _fail(job, exc)
        if not active:
            return
        with torch.inference_mode():
            batch = Batch(self._model, self.device, self._pad_id())
            logits = batch.prefill([row.prompt for row, _ in active])
            while active:
                keep = self._advance(active, logits)
                active = [active[i] for i in keep]
                if self._stopping.is_set():
                    for _, job in active:
                        _fail(job, RuntimeError("the torch backend is closed"))
                    return
                if active:
                    logits = batch.step([row.tokens[-1] for row, _ in active], keep)

    def _start_row(self, job: _Job) -> Row:
        from supertiny.runtime.torch_sampling import Row

        params = job.request.params
        budget = self.n_ctx - len(job.prompt)
        if params.max_tokens is not None:
            budget = min(budget, params.max_tokens)
        return Row(params, job.prompt, budget, self._vocab, job.grammar, job.on_delta)

    def _advance(self, active: list[tuple[Row, _Job]], logits: torch.Tensor) -> list[int]:
        """Sample one token for every row from `logits` ([rows, vocab], float32 CPU) and
        answer the rows that are done. Returns the indices of the rows still running."""
        import xgrammar as xgr

        rows = [row for row, _ in active]
        raw = logits.log_softmax(-1) if any(r.logprobs is not None for r in rows) else None
        logits[:, self._n_tokens :] = float("-inf")  # padded output rows: no such token
        masked = [i for i, row in enumerate(rows) if row.matcher is not None]
        if masked:
            bitmask = xgr.allocate_token_bitmask(len(rows), self._vocab.size)
            for i in masked:
                bitmask[i] = rows[i].mask[0]
            xgr.apply_token_bitmask_inplace(logits, bitmask, indices=masked)
        keep = []
        for i, (row, job) in enumerate(active):
            try:
                row.accept(
                    row.sampler.sample(logits[i], row.recent()), None if raw is None else raw[i]
                )
                if row.finish is None:
                    keep.append(i)
                else:
                    job.future.set_result(row.result(len(row.prompt)))
            except Exception as exc:  # noqa: BLE001 - reaches only this request's caller
                _fail(job, exc)
        return keep

    def _pad_id(self) -> int:
        tok = self._tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return pad or 0

    def _fail_queued(self) -> None:
        while True:
            try:
                _fail(self._queue.get_nowait(), RuntimeError("the torch backend is closed"))
            except queue.Empty:
                return

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the torch backend is closed")


# ---- loading ----------------------------------------------------------------------------


def _require_runtime():
    """torch (returned), transformers and xgrammar, or an ImportError saying what to install."""
    try:
        import torch
        import transformers  # noqa: F401
        import xgrammar  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"the torch backend needs torch, transformers and xgrammar ({exc.name} is "
            "missing): pip install 'supertiny[train]'"
        ) from exc
    return torch


def _load(path: Path, device: str):
    """`(model, tokenizer)` from a transformers or torchao folder, in eval mode on `device`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from supertiny.runtime.torchao import is_quantized_dir, load_quantized

    expected = (
        "expected a transformers checkpoint folder (config.json) or a torchao-quantized "
        "folder (torchao.json, written by `supertiny compress`)"
    )
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path} ({expected})")
    if is_quantized_dir(path):
        try:
            import torchao  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"{path} is torchao-quantized: pip install 'supertiny[compress]'"
            ) from exc
        return load_quantized(path, device)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a model folder: {expected}")
    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(path)


def _template_text(tokenizer, path: Path) -> str:
    """The chat template's source (all of them, for a tokenizer with several)."""
    template = tokenizer.chat_template
    if not template:
        raise ValueError(
            f"{path}: the tokenizer has no chat template; the torch backend renders prompts "
            "with it (save the tokenizer of a chat model, or set tokenizer.chat_template)"
        )
    return template if isinstance(template, str) else "\n".join(template.values())


def _free_device_memory(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# ---- small helpers ------------------------------------------------------------------------


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _model_failure(exc: Exception) -> Exception:
    """What a failed forward pass means for the server: out of GPU memory is this batch's
    problem (the exception as is); anything else leaves the model unusable (`BackendFailure`)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return exc
    failure = BackendFailure(f"the torch model failed: {type(exc).__name__}: {exc}")
    failure.__cause__ = exc
    return failure


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
