"""Decoding state of the torch backend: the batch's model state and each request's row.

The torch backend (`runtime/torch_backend.py`) schedules requests into batches; this module
runs them. `Batch` holds the model state of one batch: a left-padded prefill of all the
prompts, then one token per row and step over a shared `DynamicCache`, dropping rows as
they finish. A `Row` owns everything that belongs to one request, so that nothing in it
depends on the other rows:

- its constraint: an xgrammar `GrammarMatcher` over the grammar that `compile_constraint`
  built for the request (tool calls, JSON), whose token bitmask the backend applies to the
  batch's logits before sampling. Stop tokens are allowed only where the grammar may end,
  and a grammar that can only end ends the row at once (finish "stop");
- its `Sampler`: repeat penalty, top-k, top-p, min-p, then temperature (llama.cpp's order,
  so both backends sample alike; transformers' warpers do the filtering), drawing from its
  own seeded `torch.Generator`;
- its text: `TextStream` decodes the growing token list incrementally (never half a UTF-8
  character), the shared `StopMatcher` cuts at stop sequences, `on_delta` streams;
- its logprobs: the raw distribution (before penalty, grammar and temperature), as the
  llama.cpp backend reports them.

Hand-written here is only the glue: the grammar engine is xgrammar's (JSON schema and
structural tags), the sampling filters are transformers', the model and cache too.
Exercised by `python -m pytest tests/unit/runtime/test_torch_backend.py -q`.

One file of ~400 lines: the constraint, the logits filters and the per-request sampling state
change together whenever the batch loop does.
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import xgrammar as xgr
from transformers import DynamicCache
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from xgrammar.structural_tag import (
    JSONSchemaFormat,
    StructuralTag,
    TagFormat,
    TagsWithSeparatorFormat,
    TriggeredTagsFormat,
)

from supertiny.runtime.backend import (
    ChatRequest,
    DeltaCallback,
    FinishReason,
    Generation,
    SamplingParams,
    StopMatcher,
    token_logprob,
)
from supertiny.runtime.grammar import CLOSE, OPEN

MAX_JSON_WHITESPACE = 20
"""Longest run of whitespace between JSON tokens (llama.cpp's JSON grammars allow about
as much): enough for indented JSON, too little for a model to loop on blanks in a call."""
CALL_WHITESPACE = 1
"""Whitespace between the JSON tokens of a tool call: at most one character, as in the GBNF
of `runtime/grammar.py` (``space ::= " "?``). Calls are written compactly by the chat templates
they were trained on; more room lets a small model pad a call with blanks until it is cut."""
REPEAT_WINDOW = 64
"""The repeat penalty looks at this many last tokens (prompt included), as llama.cpp does."""


# ---- constraints --------------------------------------------------------------------------


def compile_constraint(
    compiler: xgr.GrammarCompiler, request: ChatRequest, tool_tags: bool
) -> xgr.CompiledGrammar | None:
    """The grammar `request` decodes under, or None for free text. Raises what xgrammar
    raises for a schema it cannot compile.

    In order: a forced call (`tool_choice` "required" or a name, with a template that writes
    `<tool_call>` tags: `tool_tags`) is one or more call blocks and nothing else; a
    `response_format` is JSON (an object, or matching the schema); "auto" with tags is free
    text in which every `<tool_call>` block must be a valid call; otherwise nothing.
    """
    tools, choice = request.tools, request.tool_choice
    if tools and tool_tags and choice not in ("auto", "none"):
        return compiler.compile_structural_tag(StructuralTag(format=_calls_format(tools, choice)))
    form = request.response_format
    if form is not None and form.get("type") == "json_object":
        return compiler.compile_json_schema(
            {"type": "object"}, strict_mode=False, max_whitespace_cnt=MAX_JSON_WHITESPACE
        )
    if form is not None and form.get("type") == "json_schema":
        return compiler.compile_json_schema(form["schema"], max_whitespace_cnt=MAX_JSON_WHITESPACE)
    if tools and tool_tags and choice == "auto":
        return compiler.compile_structural_tag(StructuralTag(format=_calls_format(tools, choice)))
    return None


def _calls_format(tools: list[dict[str, Any]], choice: str) -> Any:
    """The structural tag of the answer: "auto" triggers a call block at `<tool_call>`;
    "required" is call blocks separated by newlines; a name is one call of that function.
    The tag strings are plain text, so `<tool_call>` may be one special token or several."""
    if choice == "auto":
        return TriggeredTagsFormat(triggers=[OPEN.strip()], tags=[_call_tag(t) for t in tools])
    if choice == "required":
        return TagsWithSeparatorFormat(
            tags=[_call_tag(t) for t in tools], separator="\n", at_least_one=True
        )
    chosen = [t for t in tools if t.get("function", t)["name"] == choice]
    if not chosen:
        raise ValueError(f"tool_choice names '{choice}', which is not in tools")
    return _call_tag(chosen[0])


def _call_tag(tool: dict[str, Any]) -> TagFormat:
    """`<tool_call>\\n{"name": N, "arguments": <N's parameters>}\\n</tool_call>`, the call
    shape of Qwen2.5's template (and of `runtime/grammar.py` for llama.cpp)."""
    function = tool.get("function", tool)
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return TagFormat(
        begin=OPEN + '{"name": ' + json.dumps(function["name"]) + ', "arguments": ',
        content=JSONSchemaFormat(json_schema=parameters, max_whitespace_cnt=CALL_WHITESPACE),
        end="}" + CLOSE,
    )


# ---- tokens and text ----------------------------------------------------------------------


@dataclass(frozen=True)
class Vocab:
    """What rows need to know about the tokenizer and the model's output layer."""

    size: int
    """Width of the logits (rows of the output layer; may exceed the tokenizer's vocabulary)."""
    stop_ids: frozenset[int]
    """End-of-turn tokens: the tokenizer's EOS and the generation config's."""
    token_bytes: list[bytes]
    """The bytes of each token id (xgrammar's decoded vocabulary), for logprobs."""
    decode: Callable[[list[int]], str]
    """Token ids -> text, special tokens kept (so that `<tool_call>` stays in the text)."""

    def text(self, token: int, as_id: bool) -> tuple[str, bytes]:
        raw = self.token_bytes[token] if token < len(self.token_bytes) else b""
        if as_id:
            return f"token_id:{token}", raw
        return raw.decode("utf-8", errors="replace"), raw


class TextStream:
    """Incremental detokenization: decode a short window of the growing token list and emit
    what it adds, holding text back while it ends in an incomplete UTF-8 character (the
    window starts at the last emission, so tokenizers that strip a leading space behave)."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self._ids: list[int] = []
        self._start = 0  # window start
        self._read = 0  # tokens up to here are emitted

    def push(self, token: int) -> str:
        self._ids.append(token)
        done, text = self._window()
        if len(text) > len(done) and not text.endswith("\ufffd"):
            self._start, self._read = self._read, len(self._ids)
            return text[len(done) :]
        return ""

    def flush(self) -> str:
        """The rest, with replacement characters for bytes that never completed."""
        done, text = self._window()
        self._start = self._read = len(self._ids)
        return text[len(done) :]

    def _window(self) -> tuple[str, str]:
        if self._read == len(self._ids):
            return "", ""
        done = self._decode(self._ids[self._start : self._read]) if self._read > self._start else ""
        return done, self._decode(self._ids[self._start :])


# ---- sampling -----------------------------------------------------------------------------


class Sampler:
    """One request's sampling: repeat penalty -> top-k -> top-p -> min-p -> temperature
    (llama.cpp's order; 0 is greedy), from its own generator seeded with `params.seed`."""

    def __init__(self, params: SamplingParams):
        self.params = params
        seed = params.seed if params.seed is not None else random.randrange(2**63)
        self.generator = torch.Generator().manual_seed(seed)
        self.penalty = (
            RepetitionPenaltyLogitsProcessor(params.repeat_penalty)
            if params.repeat_penalty != 1.0
            else None
        )
        self.filters = []
        if params.top_k > 0:
            self.filters.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            self.filters.append(TopPLogitsWarper(params.top_p))
        if params.min_p > 0.0:
            self.filters.append(MinPLogitsWarper(params.min_p))

    def sample(self, logits: torch.Tensor, recent: list[int]) -> int:
        """A token from `logits` ([vocab] float32 on the CPU, already grammar-masked);
        `recent` are the last tokens of the row (for the repeat penalty)."""
        scores = logits[None]
        ids = torch.tensor([recent], dtype=torch.long)
        if self.penalty is not None:
            scores = self.penalty(ids, scores)
        if not torch.isfinite(scores).any():
            raise RuntimeError("no token is allowed here (the grammar and the vocabulary disagree)")
        if self.params.temperature == 0:
            return int(scores.argmax())
        for keep in self.filters:
            scores = keep(ids, scores)
        probs = torch.softmax(scores / self.params.temperature, dim=-1)
        return int(torch.multinomial(probs[0], 1, generator=self.generator))


def logprob_entry(
    raw: torch.Tensor, token: int, params: SamplingParams, vocab: Vocab
) -> dict[str, Any]:
    """The OpenAI logprob entry of `token`, from `raw` ([vocab] log-softmax of the logits)."""
    top: list[tuple[str, bytes, float]] = []
    k = min(params.top_logprobs, raw.shape[-1])
    if k:
        values, ids = raw.topk(k)
        top = [
            (*vocab.text(int(i), params.token_ids_as_text), float(v))
            for v, i in zip(values.tolist(), ids.tolist(), strict=True)
        ]
    text, raw_bytes = vocab.text(token, params.token_ids_as_text)
    return token_logprob(text, raw_bytes, float(raw[token]), top)


# ---- one request in a batch ---------------------------------------------------------------


class Row:
    """One request in a decoding batch: its prompt, sampler, grammar, text and budget.

    The backend calls `accept` with each sampled token until `finish` is set, then
    `result`. `mask` ([1, ceil(vocab / 32)] int32 bits) is the grammar's mask for the next
    token (all ones without a grammar).
    """

    def __init__(
        self,
        params: SamplingParams,
        prompt: list[int],
        budget: int,
        vocab: Vocab,
        grammar: xgr.CompiledGrammar | None = None,
        on_delta: DeltaCallback | None = None,
    ):
        self.params, self.prompt, self.budget, self.vocab = params, prompt, budget, vocab
        self.on_delta = on_delta
        self.sampler = Sampler(params)
        self.mask = xgr.allocate_token_bitmask(1, vocab.size)
        self.matcher = None
        if grammar is not None:
            self.matcher = xgr.GrammarMatcher(grammar, override_stop_tokens=sorted(vocab.stop_ids))
            self.matcher.fill_next_token_bitmask(self.mask)
        self.stops = StopMatcher(params.stop)
        self.stream = TextStream(vocab.decode)
        self.tokens: list[int] = []
        self.parts: list[str] = []
        self.logprobs: list[dict[str, Any]] | None = [] if params.logprobs else None
        self.pending: list[dict[str, Any]] = []  # logprob entries not yet sent with a delta
        self.finish: FinishReason | None = None

    def recent(self) -> list[int]:
        """The last `REPEAT_WINDOW` tokens of prompt + completion."""
        return (self.prompt[-REPEAT_WINDOW:] + self.tokens[-REPEAT_WINDOW:])[-REPEAT_WINDOW:]

    def accept(self, token: int, raw: torch.Tensor | None) -> None:
        """Take the sampled `token` (`raw`: the log-softmax it was sampled from, when
        logprobs are asked); sets `finish` when the row is done."""
        if token in self.vocab.stop_ids:
            self.finish = "stop"
            return
        self.tokens.append(token)
        if self.logprobs is not None and raw is not None:
            entry = logprob_entry(raw, token, self.params, self.vocab)
            self.logprobs.append(entry)
            self.pending.append(entry)
        grammar_done = self._advance_grammar(token)
        self._emit(self.stops.feed(self.stream.push(token)))
        if self.finish is None and (grammar_done or self.stops.stopped):
            self.finish = "stop"
        elif self.finish is None and len(self.tokens) >= self.budget:
            self.finish = "length"

    def result(self, prompt_tokens: int) -> Generation:
        """The finished `Generation` (flushes held-back text to `on_delta` first)."""
        tail = self.stops.feed(self.stream.flush()) + self.stops.flush()
        if tail:
            self.parts.append(tail)
        if self.on_delta is not None and (tail or self.pending):
            self.on_delta(tail, self.pending)
        self.pending = []
        return Generation(
            text="".join(self.parts),
            finish_reason=self.finish or "length",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(self.tokens),
            logprobs=self.logprobs,
        )

    def _advance_grammar(self, token: int) -> bool:
        """Feed `token` to the matcher and compute the next mask; True when the grammar
        can only end now."""
        if self.matcher is None:
            return False
        if not self.matcher.accept_token(token):
            raise RuntimeError(f"the grammar rejected token {token}, which its mask allowed")
        self.matcher.fill_next_token_bitmask(self.mask)
        return self.matcher.is_completed() and self._only_stops_allowed()

    def _only_stops_allowed(self) -> bool:
        bits = (self.mask[0, :, None] >> torch.arange(32, dtype=torch.int32)) & 1
        allowed = bits.flatten()[: self.vocab.size].bool()
        allowed[[t for t in self.vocab.stop_ids if t < self.vocab.size]] = False
        return not bool(allowed.any())

    def _emit(self, text: str) -> None:
        if not text:
            return
        self.parts.append(text)
        if self.on_delta is not None:
            keep_going = self.on_delta(text, self.pending)
            self.pending = []
            if keep_going is False:
                self.finish = "stop"


# ---- the batch -----------------------------------------------------------------------------


class Batch:
    """The model state of one decoding batch.

    Prompts are left-padded to one width, so that every row's last token is in the last
    column; `mask` ([rows, cache length], 1 for real tokens) hides the padding from
    attention and `positions` ([rows]) is each row's next position id (its own length, not
    the cache's). A row that finishes is dropped from the cache, mask and positions.
    """

    def __init__(self, model, device: str, pad_id: int):
        self.model, self.device, self.pad_id = model, device, pad_id
        # transformers renamed `past_key_values` to `cache` during 5.x
        names = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in names else "past_key_values"
        self.cache = None
        self.mask = None
        self.positions = None

    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        """Run the left-padded prompts; the last position's logits, [rows, vocab] float32 CPU."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        self.mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            self.mask[i, width - len(prompt) :] = 1
        self.mask = self.mask.to(self.device)
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.positions = self.mask.sum(-1)
        self.cache = DynamicCache(config=self.model.config)
        return self._forward(ids.to(self.device), positions)

    def step(self, tokens: list[int], keep: list[int]) -> torch.Tensor:
        """Drop the rows not in `keep`, then run one token per remaining row."""
        if len(keep) < self.mask.shape[0]:
            index = torch.tensor(keep, device=self.device)
            self.cache.batch_select_indices(index)
            self.mask, self.positions = self.mask[index], self.positions[index]
        ones = torch.ones((len(tokens), 1), dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=-1)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None]
        logits = self._forward(ids, self.positions[:, None])
        self.positions = self.positions + 1
        return logits

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=self.mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_arg: self.cache},
        )
        return out.logits[:, -1, :].float().cpu()
