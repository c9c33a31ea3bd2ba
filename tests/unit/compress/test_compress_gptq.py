"""GPTQ rounding onto llama.cpp's block grids, and GGUF files quantized with the task's calibration.

The block formats are checked against gguf-py's own reader (our bytes must decode to our grid
values) and writer; GPTQ against a float64 reference of the paper's algorithm; the GGUF path on
a tiny model in llama.cpp (the GPTQ blocks survive the quantizer byte for byte).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

from supertiny.compress import CompressError  # noqa: E402
from supertiny.compress.gguf.blocks import BLOCK, FORMATS  # noqa: E402
from supertiny.compress.gguf.gptq import gptq, input_hessians  # noqa: E402


def per_column(x):
    """[rows, blocks] -> [rows, blocks * 32]: each block's scale under each of its weights."""
    return x.repeat_interleave(BLOCK, 1)


def nearest(w, fmt):
    scale, offset = fmt.scales(w)
    codes = fmt.codes(w, per_column(scale), per_column(offset))
    return codes, scale, offset


def values(fmt, codes, scale, offset):
    return fmt.values(codes, per_column(scale), per_column(offset))


def correlated_inputs(n: int, dim: int, seed: int = 0):
    """Activations with a decaying spectrum in a random basis, like a transformer's."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0]
    return (torch.randn(n, dim, generator=g) * torch.logspace(0, -2, dim)) @ basis


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_blocks_decode_in_gguf_to_our_grid_and_match_its_rounding(name):
    fmt, qtype = FORMATS[name], gguf.GGMLQuantizationType[name.upper()]
    w = torch.randn(6, 4 * BLOCK, generator=torch.Generator().manual_seed(1)) * 0.05
    w[0, :BLOCK] = 0.0  # an all-zero block: scale 0
    codes, scale, offset = nearest(w, fmt)
    data = fmt.pack(codes, scale, offset)
    assert data.shape == (6, 4 * fmt.block_bytes) and data.dtype == np.uint8
    decoded = gguf.quants.dequantize(data, qtype)
    np.testing.assert_array_equal(decoded, values(fmt, codes, scale, offset).numpy())
    theirs = gguf.quants.dequantize(gguf.quants.quantize(w.numpy(), qtype), qtype)
    step = per_column(scale).abs().numpy()
    assert np.all(np.abs(theirs - decoded) <= step * 1.001)  # ties may round the other way
    assert np.mean(theirs == decoded) > 0.97


def reference_gptq(w, h, fmt, damp=0.01):
    """The paper's algorithm without its tricks: float64, the inverse Hessian updated by one
    Gaussian elimination step per column instead of the Cholesky rows, no lazy batches."""
    w, h = w.double().clone(), h.double().clone()
    scale, offset = fmt.scales(w.float())
    h.diagonal().add_(damp * h.diagonal().mean())
    hinv = torch.linalg.inv(h)
    codes = torch.empty_like(w)
    for i in range(w.shape[1]):
        s, o = scale[:, i // BLOCK].double(), offset[:, i // BLOCK].double()
        codes[:, i] = fmt.codes(w[:, i], s, o)
        error = (w[:, i] - fmt.values(codes[:, i], s, o)) / hinv[i, i]
        w[:, i:] -= error[:, None] * hinv[i, i:][None, :]
        hinv -= hinv[:, i : i + 1] @ hinv[i : i + 1, :] / hinv[i, i]
    return codes


@pytest.mark.parametrize("name", ["q4_0", "q5_0", "q5_1", "q8_0"])
def test_gptq_chooses_the_codes_of_a_float64_reference(name):
    fmt = FORMATS[name]
    w = torch.randn(24, 96, generator=torch.Generator().manual_seed(2)) * 0.05
    x = correlated_inputs(400, 96)
    h = x.T @ x / len(x)
    codes, scale, offset = gptq(w, h, fmt, block_columns=32)  # 3 lazy batches
    expected = reference_gptq(w, h, fmt)
    assert torch.equal(scale, fmt.scales(w)[0]) and torch.equal(offset, fmt.scales(w)[1])
    assert (codes == expected.float()).float().mean() > 0.99  # float32 vs float64 ties


def test_gptq_cuts_the_output_error_of_rounding_to_nearest():
    fmt = FORMATS["q4_0"]
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(3)) * 0.05
    x = correlated_inputs(2000, 128, seed=3)
    error = {
        "nearest": x @ (w - values(fmt, *nearest(w, fmt))).T,
        "gptq": x @ (w - values(fmt, *gptq(w, x.T @ x / len(x), fmt))).T,
    }
    assert error["gptq"].norm() < 0.6 * error["nearest"].norm()  # measured: 0.51


def test_gptq_keeps_a_fine_tune_smaller_than_a_grid_step():
    """Weights on a Q5_0 grid (a GGUF-born student) plus a low-rank update of about a fifth of
    a step: rounding to nearest snaps much of it back; GPTQ keeps its effect on the inputs."""
    fmt = FORMATS["q5_0"]
    g = torch.Generator().manual_seed(4)
    base = values(fmt, *nearest(torch.randn(128, 256, generator=g) * 0.02, fmt))
    update = torch.randn(128, 4, generator=g) @ torch.randn(4, 256, generator=g) * 4e-4
    tuned = base + update
    x = correlated_inputs(3000, 256, seed=4)
    effect = x @ update.T

    def kept(quantized):  # projection of the file's change from the base onto the update
        return float(((x @ (quantized - base).T) * effect).sum() / effect.norm() ** 2)

    assert kept(values(fmt, *nearest(tuned, fmt))) < 0.8
    assert kept(values(fmt, *gptq(tuned, x.T @ x / len(x), fmt))) > 0.95


def test_gptq_rounds_unused_columns_plainly_and_checks_shapes():
    fmt = FORMATS["q8_0"]
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(5))
    h = torch.zeros(64, 64)
    h[:32, :32] = torch.eye(32)  # the second block's inputs are always 0
    codes = gptq(w, h, fmt)[0]
    assert torch.equal(codes[:, 32:], nearest(w, fmt)[0][:, 32:])
    with pytest.raises(CompressError, match="divisible by 32"):
        gptq(torch.zeros(4, 40), torch.eye(40), fmt)
    with pytest.raises(CompressError, match="Hessian"):
        gptq(w, torch.eye(32), fmt)


def test_input_hessians_are_the_layers_input_moments(tmp_path):
    from tests.tiny_models import tiny_student, tiny_tokenizer
    from transformers import AutoModelForCausalLM

    from supertiny.compress.prune.importance import calibration_batches

    model = AutoModelForCausalLM.from_pretrained(tiny_student(tmp_path / "m"))
    tok = tiny_tokenizer()
    batches = calibration_batches(tok, ["turn on the kitchen light", "is the door locked?"], 64, 2)
    layer = "model.layers.1"
    names = [f"{layer}.self_attn.q_proj", f"{layer}.self_attn.k_proj", f"{layer}.mlp.down_proj"]
    full, tokens = input_hessians(model, batches, names)
    seen = []
    hook = model.model.layers[1].self_attn.q_proj.register_forward_hook(
        lambda module, args, out: seen.append(args[0])
    )
    for batch in batches:
        model.model(**batch)
    hook.remove()
    rows = torch.cat([x[b["attention_mask"].bool()] for x, b in zip(seen, batches, strict=True)])
    assert tokens == len(rows)
    torch.testing.assert_close(full[names[0]], rows.T @ rows / len(rows), rtol=1e-4, atol=1e-6)
    assert full[names[1]] is full[names[0]]  # q and k read the same input: one matrix
    assert full[names[2]].shape == (128, 128)
    diagonal, _ = input_hessians(model, batches, names, full=lambda name: False)
    torch.testing.assert_close(diagonal[names[2]], full[names[2]].diagonal())
    with pytest.raises(CompressError, match="no linear layer"):
        input_hessians(model, batches, ["model.layers.9.mlp.up_proj"])


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_a_calibrated_q4_k_m_keeps_the_gptq_blocks_and_runs_in_llama_cpp(tmp_path, arch):
    """llama.cpp copies a tensor that already has the type it picks: the file holds GPTQ's
    bytes (Llama q rows permuted), every linear got the importance matrix, and it runs."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from tests.tiny_models import tiny_student
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from supertiny.compress.gguf import export as ge
    from supertiny.compress.gguf import writer
    from supertiny.compress.gguf.calibrated import _gptq_blocks, _linear_plan, tensor_types
    from supertiny.compress.prune.importance import calibration_batches

    model_dir = tiny_student(tmp_path / arch, arch=arch, initializer_range=0.1)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = ["turn on the kitchen light", "is the front door locked?", "dim the lamp to 30%"]
    batches = calibration_batches(tok, texts, 64, 2)
    asked = []

    def moments(names, full):
        asked.append({full(name) for name in names})
        return input_hessians(model, batches, names, full)[0]

    out = tmp_path / "m.gguf"
    info = ge.export_gguf(model_dir, out, "q4_k_m", moments=moments, rounding="gptq")
    types = tensor_types(out)
    blocky = [name for name, kind in types.items() if kind in FORMATS and name.startswith("blk.")]
    assert asked == [{False}, {True}]  # diagonals for the importance matrix, then GPTQ's
    assert info["imatrix_tensors"] == 2 * 7 and info["gptq_tensors"] == len(blocky) > 0

    name = "blk.0.attn_q.weight"
    plan = _linear_plan(model_dir)[name]
    hessian = input_hessians(model, batches, ["model.layers.0.self_attn.q_proj"])[0]
    expected, _ = _gptq_blocks(plan, hessian["model.layers.0.self_attn.q_proj"], types[name])
    expected = writer.permute_rows(expected, plan.permute_heads)
    assert (plan.permute_heads > 0) == (arch == "llama")
    stored = next(t for t in gguf.GGUFReader(out).tensors if t.name == name)
    np.testing.assert_array_equal(np.asarray(stored.data).reshape(expected.shape), expected)

    llm = llama_cpp.Llama(model_path=str(out), n_ctx=128, n_threads=1, verbose=False)
    try:
        ids = tok(texts[0], add_special_tokens=False)["input_ids"]
        assert len(list(zip(range(3), llm.generate(ids, temp=0.0, top_k=1), strict=False))) == 3
    finally:
        llm.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([arch, "m.gguf"])  # no temp files


def test_auto_rounding_leaves_q8_0_to_nearest(tmp_path):
    from tests.tiny_models import tiny_student
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from supertiny.compress.gguf import export as ge
    from supertiny.compress.gguf.calibrated import tensor_types
    from supertiny.compress.prune.importance import calibration_batches

    model_dir = tiny_student(tmp_path / "m", initializer_range=0.1)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    batches = calibration_batches(
        AutoTokenizer.from_pretrained(model_dir), ["a lamp", "a door"], 64, 2
    )

    def moments(names, full):
        return input_hessians(model, batches, names, full)[0]

    info = ge.export_gguf(model_dir, tmp_path / "q4.gguf", "q4_k_m", moments=moments)
    kinds = [kind for name, kind in tensor_types(tmp_path / "q4.gguf").items() if "blk." in name]
    assert "q8_0" in kinds  # Q4_K_M's Q6_K tensors fall back to Q8_0 in rows of 64
    assert info["gptq_tensors"] == sum(kind in ("q5_0", "q4_0") for kind in kinds) > 0


def test_gptq_rounding_needs_calibration_and_q8_0_skips_it_by_default():
    from supertiny.compress.config import load_config
    from supertiny.core.config import ConfigError

    steps = [{"kind": "gguf", "quant": "q4_k_m", "calibrate": False, "rounding": "gptq"}]
    with pytest.raises(ConfigError, match="rounding: gptq needs calibrate"):
        load_config(None, overrides={"steps": steps})
    steps[0]["rounding"] = "nearest"
    assert not load_config(None, overrides={"steps": steps}).steps[0].calibrated
    calibrated = {
        (quant, rounding): load_config(
            None, overrides={"steps": [{"kind": "gguf", "quant": quant, "rounding": rounding}]}
        )
        .steps[0]
        .calibrated
        for quant in ("f16", "q8_0", "q4_k_m")
        for rounding in ("auto", "gptq")
    }
    assert calibrated == {
        ("f16", "auto"): False,
        ("f16", "gptq"): False,
        ("q8_0", "auto"): False,
        ("q8_0", "gptq"): True,
        ("q4_k_m", "auto"): True,
        ("q4_k_m", "gptq"): True,
    }
