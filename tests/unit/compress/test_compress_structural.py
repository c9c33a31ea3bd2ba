"""Structural pruning on tiny random Qwen2 (q/k/v biases) and Llama models: scores, depth and
width pruning, exactness of the slicing, save/reload + cached generation, and bad requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.tiny_models import tiny_config, tiny_student  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaForCausalLM,
)

from supertiny.compress import CompressError  # noqa: E402
from supertiny.compress.prune import importance as imp  # noqa: E402
from supertiny.compress.prune import structural as st  # noqa: E402

ASSETS = Path("tests/assets/tiny_task")
SIZES = dict(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2)  # head_dim 8


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return tiny_student(tmp_path_factory.mktemp("qwen") / "model", seed=0, **SIZES)


@pytest.fixture(scope="module")
def tokenizer(qwen_dir):
    return AutoTokenizer.from_pretrained(qwen_dir)


@pytest.fixture(scope="module")
def batches(tokenizer):
    texts = []
    for name in ("train.jsonl", "test.jsonl"):
        for line in (ASSETS / name).read_text(encoding="utf-8").splitlines():
            messages = json.loads(line)["messages"]
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
    return imp.calibration_batches(tokenizer, texts, max_length=48, batch_size=4)


@pytest.fixture(params=["qwen2", "llama"])
def model(request, qwen_dir, tokenizer):
    if request.param == "qwen2":
        return AutoModelForCausalLM.from_pretrained(qwen_dir).eval()
    torch.manual_seed(0)
    config = tiny_config(len(tokenizer), "llama", **SIZES)
    config.eos_token_id, config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def prompt(tokenizer):
    messages = [{"role": "user", "content": "table for 4 in Paris"}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")


def ids_of(prompt):
    return prompt["input_ids"] if hasattr(prompt, "keys") else prompt


def logits(model, prompt):
    with torch.no_grad():
        return model(ids_of(prompt)).logits


def assert_generates_consistently(model, prompt):
    """Greedy decoding with the KV cache equals decoding without it."""
    ids = ids_of(prompt)
    kwargs = dict(max_new_tokens=8, do_sample=False, min_new_tokens=8)
    cached = model.generate(ids, use_cache=True, **kwargs)
    uncached = model.generate(ids, use_cache=False, **kwargs)
    assert cached.shape[1] == ids.shape[1] + 8
    assert torch.equal(cached, uncached)


def make_identity(layer):
    """Zero the block's writes to the residual stream, so it returns its input exactly."""
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()


# ----- calibration -------------------------------------------------------------------------------
def test_calibration_batches_pad_on_the_right(tokenizer):
    texts = ["table for 4 in Paris", "hi", "book 2 seats in Rome please, at eight"]
    batches = imp.calibration_batches(tokenizer, texts, max_length=6, batch_size=2)
    assert [b["input_ids"].shape[0] for b in batches] == [2, 1]
    for batch in batches:
        mask = batch["attention_mask"]
        assert batch["input_ids"].shape == mask.shape and mask.dtype == torch.long
        lengths = mask.sum(1)
        assert lengths.max() <= 6
        for row, length in enumerate(lengths.tolist()):  # real tokens first, then padding
            assert mask[row, :length].all() and not mask[row, length:].any()


@pytest.mark.parametrize("texts", [[], ["", ""]])
def test_calibration_batches_refuse_an_empty_set(tokenizer, texts):
    with pytest.raises(CompressError, match="calibration set is empty"):
        imp.calibration_batches(tokenizer, texts, max_length=16, batch_size=2)


# ----- depth -------------------------------------------------------------------------------------
def test_block_influence_shape_range_and_identity_block(model, batches):
    scores = imp.block_influence(model, batches)
    assert len(scores) == 4 and all(0 <= s <= 2 for s in scores)
    make_identity(model.model.layers[2])
    scores = imp.block_influence(model, batches)
    assert scores[2] < 1e-6 and min(scores[:2] + scores[3:]) > 1e-4
    info = st.prune_depth(model, layers=3, scores=scores)
    assert info["dropped"] == [2] and info["params_after"] < info["params_before"]


def test_dropping_an_identity_block_keeps_logits(model, prompt):
    make_identity(model.model.layers[1])
    before = logits(model, prompt)
    st.prune_depth(model, drop=[1])
    torch.testing.assert_close(logits(model, prompt), before, rtol=1e-5, atol=1e-5)


def test_depth_pruning_keeps_config_cache_and_generation_consistent(model, prompt):
    info = st.prune_depth(model, drop=[0, 2])
    assert info["dropped"] == [0, 2] and info["kept"] == [1, 3]
    assert model.config.num_hidden_layers == len(model.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    if hasattr(model.config, "layer_types"):
        assert model.config.layer_types == ["full_attention"] * 2
    assert_generates_consistently(model, prompt)


def test_equal_layer_count_is_a_no_op(model, batches):
    before = st.count_params(model)
    info = st.prune_depth(model, layers=4, scores=[0.1, 0.2, 0.3, 0.4])
    assert info["dropped"] == [] and info["params_after"] == before == st.count_params(model)


# ----- width -------------------------------------------------------------------------------------
def test_score_shapes(model, batches):
    channels, heads = imp.mlp_channel_scores(model, batches), imp.head_scores(model, batches)
    assert [c.shape for c in channels] == [(128,)] * 4 and all((c > 0).all() for c in channels)
    assert [h.shape for h in heads] == [(8,)] * 4 and all((h > 0).all() for h in heads)


def test_width_pruning_shapes_config_and_generation(model, batches, prompt):
    mlp, heads = imp.mlp_channel_scores(model, batches), imp.head_scores(model, batches)
    info = st.prune_width(model, intermediate_size=96, heads=4, mlp_scores=mlp, head_scores=heads)
    assert info["intermediate_size"] == (128, 96) and info["heads"] == (8, 4)
    assert info["params_after"] < info["params_before"]
    config = model.config
    assert (config.intermediate_size, config.num_attention_heads, config.head_dim) == (96, 4, 8)
    for layer, kept in zip(model.model.layers, info["kept_heads"], strict=True):
        attn, mlp_ = layer.self_attn, layer.mlp
        assert attn.q_proj.weight.shape == (32, 64) and attn.o_proj.weight.shape == (64, 32)
        assert attn.k_proj.weight.shape == attn.v_proj.weight.shape == (16, 64)
        assert attn.num_key_value_groups == 2
        assert [h // 4 for h in kept] == [0, 0, 1, 1]  # two query heads from each KV group
        assert mlp_.gate_proj.weight.shape == mlp_.up_proj.weight.shape == (96, 64)
        assert mlp_.down_proj.weight.shape == (64, 96)
        if attn.q_proj.bias is not None:
            assert attn.q_proj.bias.shape == (32,)
    assert_generates_consistently(model, prompt)


def test_pruning_dead_channels_keeps_logits(model, batches, prompt):
    dead = torch.tensor([0, 5, 17, 64, 100, 127])
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.up_proj.weight[dead] = 0  # act(gate(x)) * 0: the channel never fires
    before = logits(model, prompt)
    scores = imp.mlp_channel_scores(model, batches)
    assert all((s[dead] == 0).all() for s in scores)
    st.prune_width(model, intermediate_size=128 - len(dead), mlp_scores=scores)
    torch.testing.assert_close(logits(model, prompt), before, rtol=1e-5, atol=1e-5)


def test_pruning_silent_heads_keeps_logits(model, prompt):
    silent = [1, 2, 4, 7]  # two in each KV group (heads 0-3 read KV head 0, heads 4-7 KV head 1)
    with torch.no_grad():
        for layer in model.model.layers:
            for head in silent:
                layer.self_attn.o_proj.weight[:, head * 8 : (head + 1) * 8] = 0
    before = logits(model, prompt)
    scores = [torch.tensor([1.0 if h not in silent else 0.0 for h in range(8)])] * 4
    info = st.prune_width(model, heads=4, head_scores=scores)
    assert info["kept_heads"] == [[0, 3, 5, 6]] * 4
    torch.testing.assert_close(logits(model, prompt), before, rtol=1e-5, atol=1e-5)


def test_heads_are_chosen_inside_each_kv_group():
    scores = torch.tensor([9.0, 8.0, 7.0, 6.0, 1.0, 2.0, 3.0, 4.0])
    assert st._kept_heads(scores, kv_heads=2, per_group=2).tolist() == [0, 1, 6, 7]


# ----- both, saved and reloaded --------------------------------------------------------------------
def test_pruned_model_saves_reloads_and_generates(model, batches, prompt, tmp_path):
    st.prune_depth(model, layers=3, scores=imp.block_influence(model, batches))
    mlp, heads = imp.mlp_channel_scores(model, batches), imp.head_scores(model, batches)
    keep = 4 if isinstance(model, LlamaForCausalLM) else 6  # LlamaConfig: 64 % heads == 0
    st.prune_width(model, intermediate_size=64, heads=keep, mlp_scores=mlp, head_scores=heads)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    for key in ("num_hidden_layers", "intermediate_size", "num_attention_heads", "head_dim"):
        assert getattr(loaded.config, key) == getattr(model.config, key)
    torch.testing.assert_close(logits(loaded, prompt), logits(model, prompt))
    assert_generates_consistently(loaded, prompt)


def test_prune_to_budget(model, batches):
    total = st.count_params(model)
    block = sum(p.numel() for p in model.model.layers[0].parameters())
    info = st.prune_to_budget(model, total - block, "depth", imp.block_influence(model, batches))
    assert len(info["dropped"]) == 1 and info["params_after"] == total - block
    budget = info["params_after"] - 3 * 50 * 3 * 64  # 50 fewer channels in each of 3 layers
    info = st.prune_to_budget(model, budget, "width", imp.mlp_channel_scores(model, batches), 16)
    assert info["intermediate_size"] == (128, 64)  # 78 rounded down to a multiple of 16
    assert info["params_after"] <= budget
    with pytest.raises(CompressError, match="out of reach"):
        st.prune_to_budget(model, 1000, "depth", [0.0] * 3)


# ----- bad requests ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(layers=0, scores=[0.0] * 4), "between 1 and the current 4"),
        (dict(layers=5, scores=[0.0] * 5), "between 1 and the current 4"),
        (dict(layers=2), "one score per layer"),
        (dict(layers=2, scores=[0.0] * 3), "one score per layer"),
        (dict(drop=[0, 1, 2, 3]), "keep >= 1"),
        (dict(drop=[4]), "distinct layer indices in 0..3"),
        (dict(drop=[1, 1]), "distinct layer indices"),
        (dict(layers=2, drop=[1]), "exactly one of"),
        (dict(), "exactly one of"),
    ],
)
def test_depth_errors(model, kwargs, message):
    with pytest.raises(CompressError, match=message):
        st.prune_depth(model, **kwargs)
    assert len(model.model.layers) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(intermediate_size=0), "between 1 and the current 128"),
        (dict(intermediate_size=200), "between 1 and the current 128"),
        (dict(heads=1), r"between 2 and the current 8"),
        (dict(heads=10), r"between 2 and the current 8"),
        (dict(heads=3), r"multiple of num_key_value_heads=2.*allowed: \[2, 4, (6, )?8\]"),
        (dict(intermediate_size=64), "mlp_channel_scores"),
        (dict(heads=4, head_scores=[torch.ones(4)] * 4), "head_scores"),
        (dict(), "give `intermediate_size`, `heads` or both"),
    ],
)
def test_width_errors(model, kwargs, message):
    with pytest.raises(CompressError, match=message):
        st.prune_width(model, **kwargs)
    assert model.model.layers[0].mlp.up_proj.out_features == 128


def test_head_counts_the_config_class_rejects_are_refused(model):
    if isinstance(model, LlamaForCausalLM):  # LlamaConfig validates hidden_size % heads == 0
        with pytest.raises(CompressError, match=r"LlamaConfig accepts; allowed: \[2, 4, 8\]"):
            st.prune_width(model, heads=6, head_scores=[torch.ones(8)] * 4)
    else:
        st.prune_width(model, heads=6, head_scores=[torch.ones(8)] * 4)
        assert model.config.num_attention_heads == 6 and model.config.head_dim == 8


def test_width_equal_sizes_are_a_no_op(model):
    before = st.count_params(model)
    info = st.prune_width(model, intermediate_size=128, heads=8)
    assert info["params_after"] == before and info["kept_heads"] is None


def test_empty_batches_are_refused(model):
    with pytest.raises(CompressError, match="calibration set is empty"):
        imp.block_influence(model, [])


def test_unsupported_architecture_is_named():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(
        CompressError, match="depth pruning: unsupported architecture GPT2LMHeadModel"
    ):
        st.prune_depth(gpt2, drop=[0])
    with pytest.raises(CompressError, match="width pruning: unsupported architecture GPT2LMHead"):
        imp.mlp_channel_scores(gpt2, [])
