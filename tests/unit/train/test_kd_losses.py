"""KD losses against float64 references written out here: run
`python -m pytest tests/unit/train/test_kd_losses.py -q`."""

from __future__ import annotations

import math

import pytest
import torch

from supertiny.train.losses import (
    KD_LOSSES,
    ckd,
    forward_kl,
    generalized_jsd,
    kd_loss,
    mix,
    reverse_kl,
    sparse_from_dense,
    sparse_kd,
    topk_forward_kl,
)

B, T, V, K = 2, 3, 11, 4
DENSE = {"forward_kl": forward_kl, "reverse_kl": reverse_kl, "jsd": generalized_jsd}
MASK = torch.tensor([[True, False, True], [True, True, False]])


def logits(seed: int, v: int = V, scale: float = 2.0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(B, T, v) * scale


def sparse_teacher(seed: int, k: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """Random top-k ids (distinct per position) and their full-distribution log-probs."""
    full = torch.log_softmax(logits(seed).double(), -1)
    ids = torch.stack([torch.randperm(V)[:k] for _ in range(B * T)]).view(B, T, k)
    return ids, full.gather(-1, ids).float()


# ---- float64 references: explicit per-position formulas ------------------------------------


def ref_probs(x: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    z = x.detach().double() / tau
    e = torch.exp(z - z.max())
    return e / e.sum()


def ref_kl(p: torch.Tensor, q: torch.Tensor) -> float:
    return sum(float(pi * math.log(pi / qi)) for pi, qi in zip(p, q, strict=True) if pi > 0)


def ref_div(kind: str, pt: torch.Tensor, ps: torch.Tensor, beta: float) -> float:
    if kind == "forward_kl" or (kind == "jsd" and beta == 0):
        return ref_kl(pt, ps)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1):
        return ref_kl(ps, pt)
    m = beta * pt + (1 - beta) * ps
    return beta * ref_kl(pt, m) + (1 - beta) * ref_kl(ps, m)


def ref_mean(per_pos) -> float:
    vals = [per_pos(b, t) for b in range(B) for t in range(T) if MASK[b, t]]
    return sum(vals) / len(vals)


def ref_dense(kind, s, t, beta=0.5, tau=1.0) -> float:
    def one(b, i):
        return ref_div(kind, ref_probs(t[b, i], tau), ref_probs(s[b, i], tau), beta)

    return ref_mean(one) * tau**2


def ref_tail(s_row: torch.Tensor, ids_row, lp_row, m: int) -> float:
    p = ref_probs(s_row)
    teacher = {int(i) for i, lp in zip(ids_row, lp_row, strict=True) if lp > -math.inf}
    top = sorted(range(V), key=lambda j: -float(p[j]))[:m]
    return sum(float(p[j]) for j in top if j not in teacher)


def ref_topk_fkl(s, ids, lp, tau=1.0) -> float:
    def one(b, i):
        ps = ref_probs(s[b, i], tau)
        valid = [k for k in range(ids.shape[-1]) if lp[b, i, k] > -math.inf]
        pt = ref_probs(lp[b, i, valid], tau) if tau != 1 else lp[b, i, valid].double().exp()
        return sum(float(pt[j] * math.log(pt[j] / ps[ids[b, i, k]])) for j, k in enumerate(valid))

    return ref_mean(one) * tau**2


def ref_sparse_kd(kind, s, ids, lp, beta=0.5, tau=1.0) -> float:
    def one(b, i):
        valid = [k for k in range(ids.shape[-1]) if lp[b, i, k] > -math.inf]
        ps = ref_probs(s[b, i, ids[b, i, valid]], tau)
        return ref_div(kind, ref_probs(lp[b, i, valid], tau), ps, beta)

    return ref_mean(one) * tau**2


def with_padding(ids, lp):
    """Append a padding column: id 0 (possibly a real id too) with log-prob -inf."""
    pad_ids = torch.zeros(B, T, 1, dtype=ids.dtype)
    pad_lp = torch.full((B, T, 1), -math.inf)
    return torch.cat([ids, pad_ids], -1), torch.cat([lp, pad_lp], -1)


# ---- dense losses ----------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize(
    ("kind", "beta"),
    [("forward_kl", 0.5), ("reverse_kl", 0.5)] + [("jsd", b) for b in (0.0, 0.1, 0.5, 0.9, 1.0)],
)
def test_dense_losses_match_float64_reference(kind, beta, tau):
    s, t = logits(0), logits(1)
    kwargs = {"beta": beta} if kind == "jsd" else {}
    got = DENSE[kind](s, t, MASK, temperature=tau, **kwargs)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref_dense(kind, s, t, beta, tau), abs=1e-5)


def test_jsd_endpoints_are_forward_and_reverse_kl():
    s, t = logits(0), logits(1)
    assert torch.equal(generalized_jsd(s, t, MASK, beta=0.0), forward_kl(s, t, MASK))
    assert torch.equal(generalized_jsd(s, t, MASK, beta=1.0), reverse_kl(s, t, MASK))


@pytest.mark.parametrize("kind", DENSE)
def test_identical_distributions_give_zero(kind):
    s = logits(3)
    assert DENSE[kind](s, s + 5.0, MASK).item() == pytest.approx(0.0, abs=1e-6)


def test_jsd_symmetric_at_half_and_bounded_by_ln2():
    s, t = logits(0, scale=30.0), logits(1, scale=30.0)
    assert generalized_jsd(s, t, MASK).item() == pytest.approx(generalized_jsd(t, s, MASK).item())
    for b in range(B):
        for i in range(T):
            one = torch.zeros(B, T, dtype=torch.bool)
            one[b, i] = True
            got = generalized_jsd(s, t, one).item()
            assert 0.0 <= got <= math.log(2) + 1e-6
            ref = ref_div("jsd", ref_probs(t[b, i]), ref_probs(s[b, i]), 0.5)
            assert got == pytest.approx(ref, abs=1e-5)


def test_all_losses_nonnegative():
    s, t = logits(4), logits(5)
    ids, lp = sparse_teacher(6)
    for kind in DENSE:
        assert DENSE[kind](s, t, MASK).item() >= 0
        assert sparse_kd(s, ids, lp, MASK, kind).item() >= -1e-7
    assert ckd(s, *sparse_from_dense(t, K), MASK).item() >= 0  # >= S log S, S close to 1 here


def test_zero_probability_entries_and_garbage_at_masked_positions():
    s, t = logits(0).requires_grad_(), logits(1)
    s.data[0, 0, :3] = t[0, 0, :3] = -math.inf  # entries both forbid: p_t = p_s = m = 0
    t[0, 0, 3:5] = -math.inf  # entries only the teacher forbids
    t[0, 1] = math.nan  # masked-out positions: must not leak
    s.data[1, 2] = -math.inf
    for kind in DENSE:
        loss = DENSE[kind](s, t, MASK)
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), kind
        if kind != "reverse_kl":  # KL(p_s || p_t) is infinite here; it is floored instead
            assert loss.item() == pytest.approx(ref_dense(kind, s, t), abs=1e-5), kind
    assert reverse_kl(s, t, MASK).item() > 100.0


def test_vocabulary_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match=r"student has 11 logits per token, teacher 13"):
        forward_kl(logits(0), logits(1, v=13), MASK)
    with pytest.raises(ValueError, match="11.*13"):
        kd_loss("ckd", logits(0), MASK, teacher_logits=logits(1, v=13))


def test_shape_errors_state_expected_and_actual():
    s, t = logits(0), logits(1)
    with pytest.raises(ValueError, match=r"mask must be \[B, T\] = \(2, 3\), got \(3, 2\)"):
        forward_kl(s, t, MASK.T)
    with pytest.raises(ValueError, match=r"\[B, T, V\].*\(2, 3, 11, 1\)"):
        forward_kl(s[..., None], t, MASK)
    ids, lp = sparse_teacher(1)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) and \(2, 3, 3\)"):
        topk_forward_kl(s, ids, lp[..., :3], MASK)
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        topk_forward_kl(s, ids + V, lp, MASK)
    with pytest.raises(ValueError, match="temperature"):
        forward_kl(s, t, MASK, temperature=0.0)


# ---- sparse teacher ----------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_topk_forward_kl_matches_reference(tau):
    s = logits(0)
    ids, lp = sparse_teacher(1)
    got = topk_forward_kl(s, ids, lp, MASK, temperature=tau).item()
    assert got == pytest.approx(ref_topk_fkl(s, ids, lp, tau), abs=1e-5)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_topk_forward_kl_equals_dense_when_k_is_v(tau):
    s, t = logits(0), logits(1)
    ids = torch.stack([torch.randperm(V) for _ in range(B * T)]).view(B, T, V)
    lp = torch.log_softmax(t, -1).gather(-1, ids)
    got = topk_forward_kl(s, ids, lp, MASK, temperature=tau)
    assert got.item() == pytest.approx(forward_kl(s, t, MASK, temperature=tau).item(), abs=1e-5)


@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize(("kind", "beta"), [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3)])
def test_sparse_kd_matches_reference(kind, beta, tau):
    s = logits(0)
    ids, lp = sparse_teacher(1)
    got = sparse_kd(s, ids, lp, MASK, kind, temperature=tau, beta=beta).item()
    assert got == pytest.approx(ref_sparse_kd(kind, s, ids, lp, beta, tau), abs=1e-5)


def test_ckd_equals_topk_forward_kl_when_student_top_m_inside_teacher_top_k():
    s = logits(0)
    ids = s.argsort(-1, descending=True)[..., :K]  # the teacher's top-K = the student's top-K
    lp = torch.log_softmax(logits(1), -1).gather(-1, ids)
    expected = topk_forward_kl(s, ids, lp, MASK)
    assert torch.allclose(ckd(s, ids, lp, MASK, top_m=3, lam=10.0), expected)


def test_ckd_adds_lambda_times_hand_computed_tail_mass():
    s = logits(0)
    ids, lp = sparse_teacher(1)
    ids[0, 0] = s[0, 0].argsort(descending=True)[-K:]  # teacher misses the student's favourites
    ids, lp = with_padding(ids, lp)
    ids[..., -1] = s.argmax(-1)  # a padding id is no teacher token, even if the student likes it
    base = topk_forward_kl(s, ids, lp, MASK).item()
    penalty = ref_mean(lambda b, i: ref_tail(s[b, i], ids[b, i], lp[b, i], 3))
    got = ckd(s, ids, lp, MASK, top_m=3, lam=2.5).item()
    assert penalty > 0.05 and got > base
    assert got == pytest.approx(base + 2.5 * penalty, abs=1e-5)


def test_padding_entries_contribute_nothing():
    s = logits(0).requires_grad_()
    ids, lp = sparse_teacher(1)
    pids, plp = with_padding(ids, lp)
    cases = [
        (topk_forward_kl, {}),
        (topk_forward_kl, {"temperature": 2.0}),
        (ckd, {"top_m": 5}),
        (sparse_kd, {"kind": "forward_kl"}),
        (sparse_kd, {"kind": "reverse_kl"}),
        (sparse_kd, {"kind": "jsd", "beta": 0.5, "temperature": 2.0}),
    ]
    for fn, kwargs in cases:
        plain, padded = fn(s, ids, lp, MASK, **kwargs), fn(s, pids, plp, MASK, **kwargs)
        (grad,) = torch.autograd.grad(padded, s)
        assert padded.item() == pytest.approx(plain.item(), abs=1e-6), fn.__name__
        assert torch.isfinite(grad).all(), fn.__name__


def test_position_with_only_padding_gives_no_nan():
    s = logits(0).requires_grad_()
    ids, lp = sparse_teacher(1)
    lp[0, 0] = -math.inf
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        loss = sparse_kd(s, ids, lp, MASK, kind)
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_sparse_from_dense_matches_reference():
    t = logits(1).to(torch.bfloat16)
    ids, lp = sparse_from_dense(t, K)
    assert ids.shape == lp.shape == (B, T, K) and lp.dtype == torch.float32
    full = torch.log_softmax(t.double(), -1)
    assert torch.equal(ids, full.argsort(-1, descending=True)[..., :K])
    assert torch.allclose(lp.double(), full.gather(-1, ids), atol=1e-6)
    assert sparse_from_dense(t, 1000)[0].shape[-1] == V


# ---- masks, gradients, dispatcher ----------------------------------------------------------


def every_loss(s, t, mask):
    ids, lp = sparse_teacher(2)
    yield from (DENSE[k](s, t, mask) for k in DENSE)
    yield topk_forward_kl(s, ids, lp, mask)
    yield ckd(s, ids, lp, mask)
    yield from (sparse_kd(s, ids, lp, mask, k) for k in ("forward_kl", "reverse_kl", "jsd"))
    yield from (kd_loss(k, s, mask, teacher_logits=t) for k in KD_LOSSES)


def test_all_false_mask_gives_zero_and_backward_works():
    s, t = logits(0).requires_grad_(), logits(1)
    for loss in every_loss(s, t, torch.zeros(B, T, dtype=torch.bool)):
        assert loss.item() == 0.0
        loss.backward()
        assert s.grad is not None and not s.grad.any()


def test_gradients_reach_the_student_only():
    s, t = logits(0).requires_grad_(), logits(1).requires_grad_()
    for loss in every_loss(s, t, MASK.long()):  # a 0-1 mask works too
        s.grad = None
        loss.backward()
        assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
        assert not s.grad[~MASK].any()  # masked-out positions get no gradient
    assert t.grad is None


def test_kd_loss_dispatches():
    s, t = logits(0), logits(1)
    ids, lp = sparse_teacher(2)
    sparse = {"teacher_ids": ids, "teacher_logprobs": lp}
    assert torch.equal(kd_loss("reverse_kl", s, MASK, teacher_logits=t), reverse_kl(s, t, MASK))
    jsd = kd_loss("jsd", s, MASK, teacher_logits=t, beta=0.2)
    assert torch.equal(jsd, generalized_jsd(s, t, MASK, beta=0.2))
    dense_ckd = kd_loss("ckd", s, MASK, teacher_logits=t, top_k=K, top_m=2, lam=1.0)
    assert torch.equal(dense_ckd, ckd(s, *sparse_from_dense(t, K), MASK, top_m=2, lam=1.0))
    assert torch.equal(kd_loss("forward_kl", s, MASK, **sparse), topk_forward_kl(s, ids, lp, MASK))
    assert torch.equal(kd_loss("ckd", s, MASK, **sparse), ckd(s, ids, lp, MASK))
    got = kd_loss("jsd", s, MASK, **sparse, beta=0.7)
    assert torch.equal(got, sparse_kd(s, ids, lp, MASK, "jsd", beta=0.7))


def test_kd_loss_rejects_unknown_kind_and_bad_teacher_forms():
    s, t = logits(0), logits(1)
    ids, lp = sparse_teacher(2)
    with pytest.raises(ValueError, match="forward_kl, reverse_kl, jsd, ckd"):
        kd_loss("kl", s, MASK, teacher_logits=t)
    with pytest.raises(ValueError, match="forward_kl, reverse_kl, jsd"):
        sparse_kd(s, ids, lp, MASK, "ckd")
    bad = [
        {},
        {"teacher_logits": t, "teacher_ids": ids, "teacher_logprobs": lp},
        {"teacher_ids": ids},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError, match="exactly one teacher"):
            kd_loss("forward_kl", s, MASK, **kwargs)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(s, t, MASK, beta=1.5)


def test_mix_blends_and_validates_alpha():
    ce, kd = torch.tensor(2.0), torch.tensor(4.0)
    assert mix(ce, kd, 0.25).item() == pytest.approx(2.5)
    assert mix(ce, kd, 0.0).item() == 2.0 and mix(ce, kd, 1.0).item() == 4.0
    for alpha in (-0.1, 1.1):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            mix(ce, kd, alpha)


def test_low_precision_inputs_are_computed_in_float32():
    s, t = logits(0), logits(1)
    low = forward_kl(s.bfloat16(), t.bfloat16(), MASK)
    assert low.dtype == torch.float32
    ref = ref_dense("forward_kl", s.bfloat16().float(), t.bfloat16().float())
    assert low.item() == pytest.approx(ref, abs=1e-5)


def test_adam_on_free_logits_drives_forward_kl_to_zero():
    t = logits(1)
    s = torch.zeros(B, T, V, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.3)
    for _ in range(200):
        opt.zero_grad()
        loss = forward_kl(s, t, MASK)
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
