"""GGUF export: tiny Qwen2/Llama models written by our writer must run in llama.cpp like in PyTorch.

The tiny models use initializer_range=0.1 instead of the default 0.02: with 0.02 the random
logits are nearly flat (std 0.16) and a real layout bug (Llama q/k rows not permuted) moves the
log-softmax by only 1e-2, inside any sensible tolerance; at 0.1 (logit std 0.8) the same bug moves
it by 2.5-3.7, a missing llama3 rope_freqs tensor by 2.6 and a wrong rope base by 0.4.
LOGPROB_ATOL = 2e-2 on log-softmax: llama.cpp keeps its KV cache in F16, so even F32 weights give
2e-3, and F16 weights (relative error 2^-11 through ~12 matmuls) give at most 5.8e-3 over the six
models here; the tolerance leaves 3x margin and is still 20x below the smallest bug above.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from tests.tiny_models import tiny_student, tiny_tokenizer  # noqa: E402

from supertiny.compress import CompressError  # noqa: E402
from supertiny.compress.gguf import export as ge  # noqa: E402
from supertiny.compress.gguf import llama_quantize, writer  # noqa: E402
from supertiny.compress.gguf import vocab as gv  # noqa: E402

LOGPROB_ATOL = 2e-2
INIT = {"initializer_range": 0.1}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_light",
            "description": "Switch a light.",
            "parameters": {"type": "object", "properties": {"room": {"type": "string"}}},
        },
    }
]
MESSAGES = [{"role": "user", "content": "Turn on the kitchen light at 07:30, please!"}]


def tiny_llama(directory: Path, **overrides) -> Path:
    return tiny_student(directory, seed=1, arch="llama", **INIT, **overrides)


def padded_student(directory: Path, extra: int = 13) -> Path:
    """Embedding rows beyond the tokenizer, as in Qwen's 151,936-row embedding (151,665 tokens)."""
    from transformers import AutoModelForCausalLM

    tiny_student(directory, **INIT)
    model = AutoModelForCausalLM.from_pretrained(directory)
    model.resize_token_embeddings(model.config.vocab_size + extra, mean_resizing=False)
    model.save_pretrained(directory)
    return directory


LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
MODELS = {  # name -> (builder, expected general.architecture)
    "qwen2": (lambda d: tiny_student(d, **INIT), "qwen2"),
    "qwen2_tied": (lambda d: tiny_student(d, tie_word_embeddings=True, **INIT), "qwen2"),
    # head-pruned shape: 2 heads of 16 in a hidden of 64 -> written as llama (see _gguf_arch)
    "qwen2_head_dim": (
        lambda d: tiny_student(d, num_attention_heads=2, head_dim=16, **INIT),
        "llama",
    ),
    "qwen2_padded": (lambda d: padded_student(d), "qwen2"),
    "llama": (lambda d: tiny_llama(d), "llama"),
    "llama3_rope_bias_head_dim": (
        lambda d: tiny_llama(d, rope_parameters=LLAMA3_ROPE, attention_bias=True, head_dim=8),
        "llama",
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (model dir, F16 gguf path, export info); each model built and exported once."""
    root = tmp_path_factory.mktemp("gguf")
    cache: dict[str, tuple[Path, Path, dict]] = {}

    def get(name: str) -> tuple[Path, Path, dict]:
        if name not in cache:
            model_dir = MODELS[name][0](root / name)
            out = root / f"{name}-f16.gguf"
            cache[name] = (model_dir, out, ge.export_gguf(model_dir, out, "f16"))
        return cache[name]

    return get


def prompt_ids(model_dir: Path) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    text = tok.apply_chat_template(
        MESSAGES, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    return tok(text, add_special_tokens=False)["input_ids"]


def load_llama(path: Path):
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=256, logits_all=True, n_threads=1, verbose=False
    )


def top2_gap(logp):
    """(..., V) log-probs -> (...) margin of the best token over the second."""
    top = logp.topk(2, -1).values
    return top[..., 0] - top[..., 1]


def torch_greedy(model, ids: list[int], n: int) -> tuple[list[int], list[float]]:
    """Greedy ids and, per step, PyTorch's own top-2 margin."""
    out, gaps = list(ids), []
    with torch.no_grad():
        for _ in range(n):
            logp = torch.log_softmax(model(torch.tensor([out])).logits[0, -1], -1)
            out.append(int(logp.argmax()))
            gaps.append(float(top2_gap(logp)))
    return out[len(ids) :], gaps


def llama_greedy(llm, ids: list[int], n: int) -> list[int]:
    import numpy as np

    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval(out[-1:])
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_f16_export_runs_in_llama_cpp_like_pytorch(built, name):
    from transformers import AutoModelForCausalLM

    model_dir, path, info = built(name)
    assert info["arch"] == MODELS[name][1] and info["quant"] == "f16"
    assert info["bytes"] == path.stat().st_size and not list(path.parent.glob(".*tmp"))
    ids = prompt_ids(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        want = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
    llm = load_llama(path)
    try:
        llm.eval(ids)
        got = torch.log_softmax(torch.tensor(llm.scores[: len(ids)]), -1)
        diff = float((got - want).abs().max())
        assert diff < LOGPROB_ATOL, f"{name}: max |log p diff| {diff:.2e}"
        # A random model has near-ties; where PyTorch's own top-2 margin is below the tolerance,
        # F16 rounding may legitimately swap them. Everywhere else the argmax must agree.
        clear = top2_gap(want) > LOGPROB_ATOL
        assert clear.float().mean() > 0.75
        assert torch.equal(got.argmax(-1)[clear], want.argmax(-1)[clear])
        generated = llama_greedy(llm, ids, 10)
    finally:
        llm.close()
    greedy, gaps = torch_greedy(model, ids, 10)
    same_until = next((i for i, gap in enumerate(gaps) if gap < LOGPROB_ATOL), len(gaps))
    assert generated[:same_until] == greedy[:same_until]
    with torch.no_grad():  # every llama.cpp choice is a PyTorch-greedy choice up to the tolerance
        logp = torch.log_softmax(
            model(torch.tensor([ids + generated])).logits[0, len(ids) - 1 : -1], -1
        )
    chosen = logp[torch.arange(len(generated)), generated]
    assert float((logp.max(-1).values - chosen).max()) < LOGPROB_ATOL


def test_metadata_vocab_and_template(built):
    from transformers import AutoTokenizer

    model_dir, path, _ = built("qwen2_padded")
    tok = AutoTokenizer.from_pretrained(model_dir)
    fields = gguf.GGUFReader(path).fields
    value = {k: f.contents() for k, f in fields.items()}
    assert value["general.architecture"] == "qwen2"
    assert value["tokenizer.ggml.model"] == "gpt2" and value["tokenizer.ggml.pre"] == "gpt-2"
    assert value["tokenizer.chat_template"] == tok.chat_template
    tokens, types = value["tokenizer.ggml.tokens"], value["tokenizer.ggml.token_type"]
    n_tok = len(tok)
    assert len(tokens) == len(types) == n_tok + 13
    assert tokens[n_tok:] == [f"[PAD{i}]" for i in range(n_tok, n_tok + 13)]
    assert set(types[n_tok:]) == {gguf.TokenType.UNUSED}
    assert types[tok.convert_tokens_to_ids("<|im_start|>")] == gguf.TokenType.CONTROL
    assert types[tok.convert_tokens_to_ids("a")] == gguf.TokenType.NORMAL
    assert value["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert value["tokenizer.ggml.add_bos_token"] is False
    assert len(value["tokenizer.ggml.merges"]) > 0
    assert value["qwen2.rope.freq_base"] == 10000.0 and value["qwen2.attention.key_length"] == 16
    kinds = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert kinds["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert (
        kinds["blk.0.attn_q.bias"] == kinds["output_norm.weight"] == gguf.GGMLQuantizationType.F32
    )


def test_llama_cpp_tokenizes_like_hf(built, tmp_path):
    from transformers import AutoTokenizer

    model_dir, path, _ = built("qwen2")
    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = [
        tok.apply_chat_template(MESSAGES, tools=TOOLS, add_generation_prompt=True, tokenize=False),
        gv.sample_text(tok),
        'x  =  {"a": 12345}\n\n\t<tool_call>ünïcode — 你好</tool_call>',
    ]
    gv.verify_tokenizer(path, model_dir, texts)  # raises on any difference
    tiny_tokenizer(300).save_pretrained(tmp_path)  # fewer merges: other ids for the same text
    with pytest.raises(CompressError, match="tokenizes differently"):
        gv.verify_tokenizer(path, tmp_path, texts[:1])


def test_q8_0_and_q4_k_m_are_smaller_and_load(built, tmp_path):
    model_dir, f16, info = built("qwen2")
    q8 = llama_quantize.quantize_gguf(f16, tmp_path / "q8.gguf", "q8_0", threads=1)
    assert q8["bytes"] < 0.6 * info["bytes"] and q8["fallback_tensors"] == 0
    q4 = ge.export_gguf(model_dir, tmp_path / "q4.gguf", "q4_k_m")
    assert q4["bytes"] < q8["bytes"]
    assert q4["fallback_tensors"] > 0  # 64-wide rows are shorter than a K-quant block (256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q4.gguf", "q8.gguf"]  # no intermediate
    ids = prompt_ids(model_dir)
    for path in (tmp_path / "q8.gguf", tmp_path / "q4.gguf"):
        llm = load_llama(path)
        try:
            assert len(llama_greedy(llm, ids, 3)) == 3
        finally:
            llm.close()


def test_keep_intermediate(built, tmp_path):
    model_dir = built("qwen2")[0]
    calls = []
    info = ge.export_gguf(
        model_dir,
        tmp_path / "m.gguf",
        "q8_0",
        keep_intermediate=True,
        progress=lambda *a: calls.append(a),
    )
    assert calls[-1] == (info["tensors"], info["tensors"]) and len(calls) == info["tensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.f16.gguf", "m.gguf"]


def test_existing_output_is_an_error_unless_overwrite(built, tmp_path):
    model_dir = built("qwen2")[0]
    out = tmp_path / "m.gguf"
    out.write_bytes(b"keep me")
    with pytest.raises(CompressError, match="already exists.*overwrite"):
        ge.export_gguf(model_dir, out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(CompressError, match="already exists"):
        llama_quantize.quantize_gguf(built("qwen2")[1], out, "q8_0")
    assert ge.export_gguf(model_dir, out, "f32", overwrite=True)["bytes"] == out.stat().st_size


def test_failed_export_leaves_no_file(built, tmp_path, monkeypatch):
    model_dir = built("qwen2")[0]
    calls = []

    def fail_on_third(plan):
        calls.append(plan.name)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(plan)

    real = writer._load_tensor
    monkeypatch.setattr(writer, "_load_tensor", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        ge.export_gguf(model_dir, tmp_path / "m.gguf", "q8_0")
    assert list(tmp_path.iterdir()) == []


def edited_copy(src: Path, dst: Path, file: str, edit) -> Path:
    shutil.copytree(src, dst)
    data = json.loads((dst / file).read_text(encoding="utf-8"))
    edit(data)
    (dst / file).write_text(json.dumps(data), encoding="utf-8")
    return dst


def test_unsupported_architecture_is_named(built, tmp_path):
    bad = edited_copy(
        built("qwen2")[0], tmp_path / "m", "config.json", lambda c: c.update(model_type="gpt_neox")
    )
    with pytest.raises(CompressError, match="gpt_neox"):
        ge.export_gguf(bad, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_unsupported_tokenizer_is_named(built, tmp_path):
    bad = edited_copy(
        built("qwen2")[0],
        tmp_path / "m",
        "tokenizer.json",
        lambda t: t["model"].update(type="Unigram"),
    )
    with pytest.raises(CompressError, match="Unigram"):
        ge.export_gguf(bad, tmp_path / "m.gguf")


def test_unknown_quant_and_rope(built, tmp_path):
    with pytest.raises(CompressError, match="q3_x.*q4_k_m"):
        ge.export_gguf(built("qwen2")[0], tmp_path / "m.gguf", "q3_x")
    with pytest.raises(CompressError, match="yarn"):
        writer._rope({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6}})


QWEN2_RE = next(k for k, v in gv.PRE_TOKENIZERS.items() if v == "qwen2")


@pytest.mark.parametrize(
    ("pre", "name"),
    [
        ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
        (
            {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": QWEN2_RE}, "behavior": "Isolated"},
                    {"type": "ByteLevel", "use_regex": False},
                ],
            },
            "qwen2",
        ),
        (
            {
                "type": "Sequence",
                "pretokenizers": [
                    {
                        "type": "Split",
                        "pattern": {"Regex": QWEN2_RE.replace(r"\p{N}|", r"\p{N}{1,3}|")},
                    },
                    {"type": "ByteLevel", "use_regex": False},
                ],
            },
            "llama-bpe",
        ),
    ],
)
def test_pre_tokenizer_names(pre, name):
    assert gv.pre_tokenizer_name(pre) == name


def test_unknown_pre_tokenizer_is_an_error():
    with pytest.raises(CompressError, match="unknown pre-tokenizer"):
        gv.pre_tokenizer_name(
            {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "x"}}]}
        )
