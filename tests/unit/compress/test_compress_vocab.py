"""Vocabulary pruning on tiny Qwen2 / Llama models: same tokens and logits, reload, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.tiny_models import tiny_student  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from supertiny.compress import CompressError  # noqa: E402
from supertiny.compress.prune.vocab import kept_ids, prune_vocabulary  # noqa: E402

ASSETS = Path("tests/assets/tiny_task")
VOCAB = 1000  # the tiny corpus yields ~630 tokens; the task texts below use about half


def records() -> list[dict]:
    lines = (ASSETS / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def in_domain(tok) -> list[str]:
    """A few user lines plus full chat renders (tools in the system turn, gold tool calls)."""
    tools = json.loads((ASSETS / "tools.json").read_text(encoding="utf-8"))
    rows = records()[:4]
    texts = [r["messages"][0]["content"] for r in rows]
    for row in rows[:2]:
        answer = {"role": "assistant", "content": "", "tool_calls": row["gold"]["tool_calls"]}
        texts.append(
            tok.apply_chat_template(row["messages"] + [answer], tools=tools, tokenize=False)
        )
    return texts


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    return {
        "untied": tiny_student(root / "untied", vocab_size=VOCAB),
        "tied": tiny_student(root / "tied", vocab_size=VOCAB, tie_word_embeddings=True),
        "llama": tiny_student(root / "llama", vocab_size=VOCAB, arch="llama", bos_token_id=1),
    }


def load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def pruned(path: Path, extra_ids=()):
    """``(old model, old tok, new model, new tok, info, old->new id map, texts)``."""
    old_model, old_tok = load(path)
    texts = in_domain(old_tok)
    keep = kept_ids(old_tok, texts, extra_ids)
    model, tok = load(path)
    model, tok, info = prune_vocabulary(model, tok, keep)
    new_of = {old: new for new, old in enumerate(info["keep"])}
    return old_model, old_tok, model.eval(), tok, info, new_of, texts


def logits(model, ids: list[int]):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("name", ["untied", "tied", "llama"])
def test_same_tokens_and_logits(paths, name):
    old_model, old_tok, model, tok, info, new_of, texts = pruned(paths[name])
    assert info["vocab_after"] < info["vocab_before"] == old_model.config.vocab_size
    assert info["params_after"] < info["params_before"]
    assert model.config.vocab_size == len(tok) == info["vocab_after"]
    for text in texts:
        old_ids = old_tok(text).input_ids
        ids = tok(text).input_ids
        assert ids == [new_of[i] for i in old_ids]
        assert tok.decode(ids) == old_tok.decode(old_ids) == text
    ref = logits(old_model, old_tok(texts[-1]).input_ids)[:, info["keep"]]
    torch.testing.assert_close(logits(model, tok(texts[-1]).input_ids), ref, atol=1e-6, rtol=0)


def test_text_outside_the_domain_still_encodes(paths):
    *_, tok, _info, _new_of, _texts = pruned(paths["untied"])
    text = "Zürich 🚀 qwxz"
    assert tok.decode(tok(text).input_ids) == text


def test_special_ids_are_remapped(paths):
    _, old_tok, model, tok, _info, new_of, _ = pruned(paths["untied"])
    assert tok.eos_token == old_tok.eos_token and tok.pad_token == old_tok.pad_token
    assert model.config.eos_token_id == tok.eos_token_id == new_of[old_tok.eos_token_id]
    assert model.generation_config.pad_token_id == tok.pad_token_id == new_of[old_tok.pad_token_id]
    assert (
        tok.convert_tokens_to_ids("<tool_call>")
        == new_of[old_tok.convert_tokens_to_ids("<tool_call>")]
    )
    assert tok.padding_side == old_tok.padding_side


def test_greedy_generation_is_unchanged(paths):
    old_model, old_tok = load(paths["untied"])
    messages = records()[0]["messages"]
    prompt = old_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = old_tok(prompt, add_special_tokens=False, return_tensors="pt")
    settings = dict(max_new_tokens=12, do_sample=False, min_new_tokens=12)
    old_out = old_model.generate(**prompt, **settings)[0, prompt.input_ids.shape[1] :]
    # The random model may emit any token; keep what it emits so greedy decoding can match.
    _, _, model, tok, _, new_of, _ = pruned(paths["untied"], extra_ids=old_out.tolist())
    ids = torch.tensor([[new_of[i] for i in prompt.input_ids[0].tolist()]])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings)[
        0, ids.shape[1] :
    ]
    assert out.tolist() == [new_of[i] for i in old_out.tolist()]
    assert tok.decode(out) == old_tok.decode(old_out)


def test_tied_stays_tied_and_untied_stays_untied(paths):
    *_, tied, _, _, _, _ = pruned(paths["tied"])
    assert tied.get_input_embeddings().weight is tied.get_output_embeddings().weight
    assert tied.config.tie_word_embeddings
    old_model, _, untied, _, info, _, _ = pruned(paths["untied"])
    assert untied.get_input_embeddings().weight is not untied.get_output_embeddings().weight
    assert not untied.config.tie_word_embeddings
    head = old_model.get_output_embeddings().weight[info["keep"]]
    assert torch.equal(untied.get_output_embeddings().weight, head)


@pytest.mark.parametrize("name", ["untied", "tied", "llama"])
def test_save_and_reload(paths, name, tmp_path):
    _, old_tok, model, tok, _info, _new_of, texts = pruned(paths[name])
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model2, tok2 = load(tmp_path)
    assert len(tok2) == len(tok)
    for text in texts + ["Zürich 🚀"]:
        assert tok2(text).input_ids == tok(text).input_ids
    ids = tok(texts[-1]).input_ids
    torch.testing.assert_close(logits(model2, ids), logits(model, ids), atol=1e-6, rtol=0)
    messages = records()[0]["messages"]
    rendered = tok2.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == old_tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    if name == "tied":
        assert model2.get_input_embeddings().weight is model2.get_output_embeddings().weight


def with_json(tok, edit) -> PreTrainedTokenizerFast:
    """``tok`` rebuilt from its tokenizers JSON after ``edit(json)``."""
    from tokenizers import Tokenizer

    spec = json.loads(tok.backend_tokenizer.to_str())
    edit(spec)
    new = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        eos_token=tok.eos_token,
        pad_token=tok.pad_token,
    )
    new.chat_template = tok.chat_template
    return new


def string_merges(spec):
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]


def ignore_merges(spec):
    spec["model"]["ignore_merges"] = True


def bos_template(spec):
    """A Llama-3 style post-processor that prepends a token: the last, so it gets renumbered."""
    token, old_id = max(spec["model"]["vocab"].items(), key=lambda item: item[1])
    special = {"id": token, "ids": [old_id], "tokens": [token]}
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": token, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
        ],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {token: special},
    }


@pytest.mark.parametrize("edit", [string_merges, ignore_merges, bos_template])
def test_tokenizer_variants(paths, edit):
    model, tok = load(paths["untied"])
    old_tok = with_json(tok, edit)
    texts = in_domain(old_tok)
    _, new, info = prune_vocabulary(model, old_tok, kept_ids(old_tok, texts))
    new_of = {old: new_id for new_id, old in enumerate(info["keep"])}
    for text in texts + ["hi"]:
        assert new(text).input_ids == [new_of[i] for i in old_tok(text).input_ids]
    if edit is bos_template:
        first = old_tok("hi").input_ids[0]
        assert first == len(tok) - 1 and new("hi").input_ids[0] == new_of[first] < first


def test_empty_texts_are_refused(paths):
    _, tok = load(paths["untied"])
    with pytest.raises(CompressError, match="calibration/keep set is empty"):
        kept_ids(tok, [])


def non_bpe(kind: str) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models

    if kind == "WordPiece":
        core = models.WordPiece({"[UNK]": 0, "turn": 1, "on": 2}, unk_token="[UNK]")
    elif kind == "Unigram":
        core = models.Unigram([("<unk>", 0.0), ("turn", -1.0), ("on", -2.0)], unk_id=0)
    else:
        core = models.BPE({"<unk>": 0, "a": 1}, [], unk_token="<unk>", byte_fallback=True)
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(core))


@pytest.mark.parametrize("kind", ["WordPiece", "Unigram", "byte_fallback"])
def test_non_byte_level_tokenizers_are_refused(paths, kind):
    tok = non_bpe(kind)
    with pytest.raises(CompressError, match=f"supports byte-level BPE.*this tokenizer is.*{kind}"):
        kept_ids(tok, ["turn on"])
    model, _ = load(paths["untied"])
    with pytest.raises(CompressError, match="byte-level BPE"):
        prune_vocabulary(model, tok, [0, 1])


def test_model_without_embeddings_is_refused(paths):
    class Odd(torch.nn.Module):
        pass

    _, tok = load(paths["untied"])
    with pytest.raises(CompressError, match="Odd"):
        prune_vocabulary(Odd(), tok, [0, 1, 2])


def test_ids_without_rows_or_tokens_are_dropped(paths):
    model, tok = load(paths["untied"])
    rows = model.config.vocab_size
    model.resize_token_embeddings(rows + 8)  # rows with no token, as in Qwen checkpoints
    keep = kept_ids(tok, in_domain(tok), extra_ids=[rows + 3, rows + 100])
    _, _, info = prune_vocabulary(model, tok, keep)
    assert max(info["keep"]) < rows and info["vocab_before"] == rows + 8
