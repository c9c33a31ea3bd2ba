"""llama.cpp backend: a GGUF model in process, through llama-cpp-python.

    python -m supertiny.serve --model student --port 8000

The prompt is rendered with the model's own chat template (`tokenizer.chat_template`
in the GGUF metadata) by llama-cpp-python's `Jinja2ChatFormatter`, which uses the same
sandboxed Jinja environment and `tojson` as transformers' `apply_chat_template` and
passes `tools` to the template: Qwen2.5's template puts them in the system message
and asks for `<tool_call>{"name": ..., "arguments": ...}</tool_call>` answers, and
renders tool results (role "tool") as `<tool_response>` blocks in a user turn.

Generation is a token loop over `Llama.generate` rather than `create_chat_completion`:
- logprobs: llama-cpp-python's completion API returns them only for a model loaded
  with `logits_all=True`, which keeps logits for every prompt position (n_ctx x
  151,936 floats, 2.5 GB at a 4,096 context) and slows prompt evaluation; here the
  logits of each sampled position are read from the context instead, so logprobs
  cost nothing when not asked for. They are the model's raw distribution (before
  temperature and top-p), as vLLM reports them;
- the prompt length is known before generating (context check, usage), and text is
  streamed token by token, cut at stop sequences by the shared `StopMatcher`.

Prefix cache: `Llama.generate` keeps the KV cache of the previous request and
evaluates only the tokens after the longest common prefix, so the long system prompt
(with the tool schemas) that every teacher request shares is evaluated once. The
number of reused tokens is reported as `usage.prompt_tokens_details.cached_tokens`.

llama.cpp is not thread-safe: every use of the model holds `self._lock`, so this backend
runs one generation at a time (`supertiny serve` admits one request at a time to it).

Failures: an exception out of llama.cpp's token loop (`Llama.generate`: `llama_decode`
returned an error, which leaves the KV cache in an unknown state) is raised as
`BackendFailure`, which marks the server failed (`/health` answers 503). A grammar llama.cpp
cannot parse is checked before it is used (`_check_grammar`), and the request limits of
`serve/limits.py` keep grammars small enough to build (a `maxLength` of 100,000,000 once
crashed the process while its grammar was parsed).

Seeds: the same seed and the same cache state give the same sample. A prompt
evaluated cold and the same prompt reusing the cache can differ in the last bits of
the logits (different batch shapes), which at temperature > 0 may change a token.

One file of ~410 lines: every method works on the one llama.cpp handle under its one lock
(prompt, token loop, grammars, logprobs); split, they would share private state.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import random
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from supertiny.runtime.backend import (
    BackendFailure,
    ChatRequest,
    ContextLengthError,
    DeltaCallback,
    FinishReason,
    Generation,
    PromptError,
    SamplingParams,
    StopMatcher,
    available_cores,
    token_logprob,
)
from supertiny.runtime.grammar import OPEN, json_grammar, tool_call_grammar
from supertiny.runtime.llama import import_llama_cpp, load_llama

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Half the cores this process may use (at least 1), for prompt and generation.

    llama.cpp's worker threads busy-wait at every barrier, so a thread that shares its
    core with another busy process stalls all the others: on 2 cores with one other
    busy process, 2 threads made a 0.5B tool call 5-15x slower than 1 thread (while
    on idle cores 2 threads are about 1.5x faster). The label stage runs the pipeline
    beside the server, so the default leaves room; `n_threads` overrides it.
    """
    return max(1, available_cores() // 2)


class LlamaCppBackend:
    """A GGUF model loaded with llama-cpp-python (CPU, or GPU layers if built for it)."""

    name = "llamacpp"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        verbose: bool = False,
    ):
        llama_cpp = import_llama_cpp("the llama.cpp backend needs", "llama")
        import numpy as np
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF model not found: {path}")
        self._lib, self._np = llama_cpp, np
        threads = n_threads or default_threads()
        self._llm = load_llama(
            path,
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=n_gpu_layers,
            verbose=verbose,
        )
        self.n_ctx = self._llm.n_ctx()
        self.model_path = path
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._n_vocab = self._llm.n_vocab()
        template = self._llm.metadata.get("tokenizer.chat_template")
        self._template = template or ""
        if not template:
            self._llm.close()
            raise ValueError(f"{path} has no tokenizer.chat_template in its metadata")
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._special_text(self._llm.token_eos()),
            bos_token=self._special_text(self._llm.token_bos()),
            add_generation_prompt=True,
        )
        self._lock = threading.Lock()
        self._grammars: dict[tuple[str, str], Any] = {}

    # ---- the Backend interface --------------------------------------------------------

    def chat(self, request: ChatRequest, on_delta: DeltaCallback | None = None) -> Generation:
        with self._lock:
            self._check_open()
            shown = request.tools if request.render_tools else None
            prompt = self._prompt_ids(request.messages, shown)
            grammar = self._grammar(request)
            lazy = bool(request.tools) and request.tool_choice == "auto" and grammar is not None
            opening = "" if lazy else self._call_opening(request, constrained=grammar is not None)
            if opening:
                prompt += self._tokens(opening)
                if on_delta is not None:
                    on_delta(opening, [])
            if len(prompt) >= self.n_ctx:
                raise ContextLengthError(len(prompt), self.n_ctx)
            cached = min(self._cached_prefix(prompt), len(prompt) - 1)
            if lazy:
                generation = self._generate_lazily(prompt, request.params, grammar, on_delta)
            else:
                generation, _ = self._generate(prompt, request.params, grammar, on_delta)
            generation.text = opening + generation.text
            generation.cached_tokens = cached
            return generation

    def _generate_lazily(
        self, prompt: list[int], params: SamplingParams, grammar: Any, on_delta
    ) -> Generation:
        """``tool_choice`` "auto": free text until the model opens ``<tool_call>``; from there
        the call is sampled under the tool-call grammar (prompt + text so far + the opening
        are re-read from the KV cache, so the switch costs one short prompt evaluation)."""
        first, ids = self._generate(prompt, params, None, on_delta, trigger=OPEN.strip())
        if first.finish_reason != "trigger":
            return first
        newline = OPEN[len(OPEN.strip()) :]  # the grammar starts after "<tool_call>\n"
        rest_prompt = prompt + ids + self._tokens(newline)
        budget = None if params.max_tokens is None else params.max_tokens - len(ids)
        if len(rest_prompt) >= self.n_ctx or (budget is not None and budget <= 0):
            first.finish_reason = "length"
            return first
        rest, _ = self._generate(rest_prompt, replace(params, max_tokens=budget), grammar, on_delta)
        return Generation(
            text=first.text + newline + rest.text,
            finish_reason=rest.finish_reason,
            prompt_tokens=len(prompt),
            completion_tokens=first.completion_tokens + rest.completion_tokens,
            logprobs=None if first.logprobs is None else first.logprobs + (rest.logprobs or []),
        )

    def _tokens(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> int:
        with self._lock:
            self._check_open()
            return len(self._prompt_ids(messages, tools))

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    # ---- prompt ------------------------------------------------------------------------

    def render(self, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> str:
        """The prompt text, from the model's chat template."""
        try:
            return self._formatter(messages=messages, tools=tools).prompt
        except Exception as exc:  # jinja2 errors and the template's raise_exception
            raise PromptError(
                f"the model's chat template cannot render this conversation: {exc}"
            ) from exc

    def _prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict] | None) -> list[int]:
        # The template writes any BOS itself (llama-cpp-python's `added_special=True`).
        text = self.render(messages, tools)
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _cached_prefix(self, prompt: list[int]) -> int:
        """Tokens at the start of `prompt` already in the KV cache."""
        np = self._np
        held = self._llm.input_ids[: self._llm.n_tokens]
        n = min(len(held), len(prompt))
        if n == 0:
            return 0
        diff = np.flatnonzero(held[:n] != np.asarray(prompt[:n], dtype=held.dtype))
        return int(diff[0]) if diff.size else n

    def _call_opening(self, request: ChatRequest, constrained: bool = False) -> str:
        """Text the answer is forced to start with when a call is required.

        With `tool_choice` "required" (or a named function) and a chat template that uses
        `<tool_call>` tags (Qwen2.5, Hermes), the assistant turn is pre-filled with the
        opening tag (and, for a named function, the call object up to its arguments' opening brace): small models
        otherwise sometimes end the turn at once or answer in prose. The model writes the
        rest; the pre-filled text is part of the returned message but not of the counted or
        log-prob'd completion tokens. Other templates get no pre-fill. Under a grammar
        (``constrained``) only the tag is pre-filled: the grammar fixes the name.
        """
        if not request.tools or request.tool_choice in ("auto", "none"):
            return ""
        if "<tool_call>" not in self._template:
            return ""
        if request.tool_choice == "required" or constrained:
            return OPEN
        return '<tool_call>\n{"name": ' + json.dumps(request.tool_choice) + ', "arguments": {'

    def _grammar(self, request: ChatRequest) -> Any | None:
        """The grammar the answer is sampled under (see ``runtime.grammar``), or None.

        Tool calls: for templates that write ``<tool_call>`` tags, when a call is forced
        (the whole answer) or, under "auto", once the model opens one. Otherwise a
        ``response_format`` asking for JSON. Built once per (tools, choice, format). A
        schema the converter cannot express is served unconstrained, with a warning.
        """
        if request.tools and "<tool_call>" in self._template:
            choice = "required" if request.tool_choice == "auto" else request.tool_choice
            key = (choice, json.dumps(request.tools, sort_keys=True))
            build = lambda p: tool_call_grammar(request.tools, choice, patterns=p)  # noqa: E731
        elif request.response_format is not None and not request.tools:
            key = ("json", json.dumps(request.response_format, sort_keys=True))
            build = lambda p: json_grammar(request.response_format, patterns=p)  # noqa: E731
        else:
            return None
        if key not in self._grammars:
            if len(self._grammars) >= 64:
                self._grammars.clear()
            self._grammars[key] = self._compile(build)
        return self._grammars[key]

    def _compile(self, build) -> Any | None:
        """``build(patterns=True)`` parsed by llama.cpp; else without string patterns (the
        validator still checks them after decoding); else None (unconstrained, warned)."""
        problems = []
        for patterns in (True, False):
            try:
                text = build(patterns)
                self._check_grammar(text)
                return self._lib.LlamaGrammar.from_string(text, verbose=False)
            except Exception as exc:  # noqa: BLE001 - any conversion failure: try the next way
                problems.append(str(exc))
        log.warning("no grammar for this request, decoding unconstrained: %s", problems[-1])
        return None

    def _check_grammar(self, text: str) -> None:
        """Parse ``text`` with llama.cpp now: a grammar it rejects would crash the sampler."""
        lib = self._lib
        sampler = lib.llama_sampler_init_grammar(self._vocab, text.encode("utf-8"), b"root")
        if not sampler:
            raise ValueError("llama.cpp could not parse the tool-call grammar")
        lib.llama_sampler_free(sampler)

    # ---- generation --------------------------------------------------------------------

    def _generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        grammar: Any | None,
        on_delta: DeltaCallback | None,
        trigger: str | None = None,
    ) -> tuple[Generation, list[int]]:
        """Sample from ``prompt``; returns the generation and its token ids. With ``trigger``,
        stop as soon as the text ends with it (finish reason "trigger")."""
        llm = self._llm
        budget = self.n_ctx - len(prompt)
        if params.max_tokens is not None:
            budget = min(budget, params.max_tokens)
        llm.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(params.stop)
        parts: list[str] = []
        logprobs: list[dict[str, Any]] | None = [] if params.logprobs else None
        pending: list[dict[str, Any]] = []  # logprob entries not yet sent with a delta
        finish: FinishReason = "length"
        n_out = 0
        ids: list[int] = []
        raw = b""
        tokens = llm.generate(
            prompt,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            typical_p=1.0,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
            grammar=grammar,
        )
        try:
            for token in _native(tokens):
                if self._lib.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                n_out += 1
                ids.append(token)
                if logprobs is not None:
                    entry = self._logprob_entry(token, params)
                    logprobs.append(entry)
                    pending.append(entry)
                text = stops.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    parts.append(text)
                    if on_delta is not None:
                        keep_going = on_delta(text, pending)
                        pending = []
                        if keep_going is False:
                            finish = "stop"
                            break
                if stops.stopped:
                    finish = "stop"
                    break
                if trigger is not None:
                    raw += llm.detokenize([token])
                    if raw.endswith(trigger.encode("utf-8")):
                        finish = "trigger"  # type: ignore[assignment]
                        break
                if n_out >= budget:
                    break
        finally:
            tokens.close()
        tail = stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        if tail:
            parts.append(tail)
        if on_delta is not None and (tail or pending):
            on_delta(tail, pending)
        generation = Generation(
            text="".join(parts),
            finish_reason=finish,
            prompt_tokens=len(prompt),
            completion_tokens=n_out,
            logprobs=logprobs,
        )
        return generation, ids

    def _logprob_entry(self, token: int, params: SamplingParams) -> dict[str, Any]:
        """Logprob of the sampled `token` and the top alternatives, from the logits of
        the position it was sampled at (still the context's last output)."""
        np = self._np
        pointer = self._lib.llama_get_logits_ith(self._llm.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        peak = logits.max()
        logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
        top: list[tuple[str, bytes, float]] = []
        k = min(params.top_logprobs, self._n_vocab)
        if k:
            best = np.argpartition(-logprobs, k - 1)[:k]
            best = best[np.argsort(-logprobs[best], kind="stable")]
            top = [(*self._token_text(int(t), params), float(logprobs[t])) for t in best]
        text, raw = self._token_text(token, params)
        return token_logprob(text, raw, float(logprobs[token]), top)

    def _token_text(self, token: int, params: SamplingParams) -> tuple[str, bytes]:
        raw = self._llm.detokenize([token], special=True)
        if params.token_ids_as_text:
            return f"token_id:{token}", raw
        return raw.decode("utf-8", errors="replace"), raw

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _check_open(self) -> None:
        if self._llm is None:
            raise RuntimeError("the llama.cpp backend is closed")


def _native(tokens):
    """The tokens of `Llama.generate`, with any exception llama.cpp raises while decoding or
    sampling them as `BackendFailure` (the caller's own errors, raised between tokens, are
    not touched)."""
    while True:
        try:
            token = next(tokens)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - llama_decode and sampling errors
            raise BackendFailure(f"llama.cpp failed while generating: {exc}") from exc
        yield token
