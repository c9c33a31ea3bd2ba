"""The vocabulary half of GGUF export: tokens, token types, merges, special ids and the chat
template of a byte-level BPE tokenizer, and the check that llama.cpp tokenizes as the HF
tokenizer does. Used by ``export.py`` and ``writer.py``; works on vocab-pruned tokenizers (renumbered ids,
fewer tokens than Qwen's 151,936) because everything is read from the tokenizer files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supertiny.compress import CompressError

# tokenizer.json pre-tokenizer split regex -> llama.cpp ``tokenizer.ggml.pre`` name
PRE_TOKENIZERS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+": "gpt-2",
}

# A chat exercising specials, a tool call, digits, runs of spaces/newlines and non-ASCII text.
CALL = {"type": "function", "function": {"name": "set_light", "arguments": {"room": "kitchen"}}}
SAMPLE_CHAT = [
    {"role": "system", "content": "You control a smart home. Reply with a tool call."},
    {"role": "user", "content": "Turn on the kitchen light at 07:30,  please!\n\nMerci — danke."},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
]


def verify_tokenizer(path: Path, model_dir: Path, texts: list[str] | None = None) -> None:
    """Raise CompressError unless llama.cpp tokenizes ``texts`` (default: a chat-rendered sample)
    with the GGUF at ``path`` exactly as the HF tokenizer in ``model_dir`` does."""
    from transformers import AutoTokenizer

    from supertiny.runtime.llama import import_llama_cpp, load_llama, native_log

    import_llama_cpp("GGUF needs", "compress")
    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = texts if texts is not None else [sample_text(tok)]
    with native_log():
        llm = load_llama(path, vocab_only=True)
    try:
        for text in texts:
            want = tok(text, add_special_tokens=False)["input_ids"]
            got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if got != want:
                pairs = enumerate(zip(got, want, strict=False))
                at = next((i for i, (a, b) in pairs if a != b), min(len(got), len(want)))
                raise CompressError(
                    f"llama.cpp tokenizes differently from the HF tokenizer in {model_dir} at token "
                    f"{at}: llama.cpp {got[at : at + 5]} vs HF {want[at : at + 5]} for {text[:60]!r}; "
                    "the pre-tokenizer or added tokens are not supported by this exporter"
                )
    finally:
        llm.close()


def sample_text(tok: Any) -> str:
    """A chat rendered with the tokenizer's own template (plain text when it has none)."""
    plain = "\n".join(str(m["content"]) for m in SAMPLE_CHAT) + ' {"room": "kitchen"}'
    if not tok.chat_template:
        return plain
    try:
        return tok.apply_chat_template(SAMPLE_CHAT, tokenize=False)
    except Exception:  # noqa: BLE001 - templates that reject tool calls still get a plain chat
        return tok.apply_chat_template(SAMPLE_CHAT[:2], tokenize=False)


def add_vocab(writer: Any, model_dir: Path, n_vocab: int) -> None:
    """Byte-level BPE vocabulary, one token per embedding row, plus merges, special ids, template."""
    import gguf
    from transformers import AutoTokenizer

    tok_json = read_json(model_dir / "tokenizer.json")
    kind = tok_json.get("model", {}).get("type")
    if kind != "BPE" or "ByteLevel" not in json.dumps(tok_json.get("pre_tokenizer")):
        raise CompressError(
            f"GGUF export supports byte-level BPE tokenizers, not {kind!r} ({model_dir}/tokenizer.json)"
        )
    tok = AutoTokenizer.from_pretrained(model_dir)
    tokens, types = _token_table(tok, n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tok_json["pre_tokenizer"]))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab)
    ids = tok("x")["input_ids"]
    special.add_special_token = {
        "bos": tok.bos_token_id is not None and ids[:1] == [tok.bos_token_id],
        "eos": tok.eos_token_id is not None and ids[-1:] == [tok.eos_token_id],
    }
    special.chat_template = tok.chat_template
    special.add_to_gguf(writer, quiet=True)


def _token_table(tok: Any, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens in id order with llama.cpp token types; embedding rows past the tokenizer are padding."""
    import gguf

    by_id = {i: t for t, i in tok.get_vocab().items()}
    if max(by_id) >= n_vocab:
        raise CompressError(
            f"the tokenizer has ids up to {max(by_id)} but the embedding has {n_vocab} rows; "
            "prune the vocabulary and the embedding together"
        )
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        text = by_id.get(i, f"[PAD{i}]")
        if i in added:
            kind = gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED
        elif i not in by_id or text == f"[PAD{i}]":
            kind = gguf.TokenType.UNUSED
        else:
            kind = gguf.TokenType.NORMAL
        tokens.append(text)
        types.append(int(kind))
    return tokens, types


def pre_tokenizer_name(pre: dict) -> str:
    """llama.cpp pre-tokenizer name for tokenizer.json's ``pre_tokenizer``."""
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    regexes = [p.get("pattern", {}).get("Regex") for p in parts if p.get("type") == "Split"]
    if len(regexes) == 1 and regexes[0] in PRE_TOKENIZERS:
        return PRE_TOKENIZERS[regexes[0]]
    raise CompressError(
        f"unknown pre-tokenizer {json.dumps(pre)[:300]}; GGUF export knows {sorted(PRE_TOKENIZERS.values())}"
    )


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CompressError(f"{path} is missing; export needs a save_pretrained() model directory")
    return json.loads(path.read_text(encoding="utf-8"))
