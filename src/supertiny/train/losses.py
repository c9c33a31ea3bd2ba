"""Logit-level knowledge-distillation losses for a causal-LM student, as pure torch functions.

Dense teacher (full logits, same vocabulary): ``forward_kl``, ``reverse_kl``, ``generalized_jsd``.
Sparse teacher (top-K ids and their log-probabilities, e.g. from a served teacher):
``topk_forward_kl``, ``ckd`` (STAR's Constrained KD) and ``sparse_kd`` (reverse KL / JSD on the
teacher's support). ``kd_loss`` picks one by name from ``KD_LOSSES``; ``mix`` blends it with CE.

Written by hand because they are this project's own objectives: the KD losses of Ni et al. 2025
"From Large to Super-Tiny" and the Constrained KD of STAR (arXiv 2602.03022); no maintained
library ships the top-K teacher variants with these conventions.

Conventions: B batch, T time, V vocabulary, K teacher top-k, N = number of masked-in positions.
``mask`` [B, T] is True where a position counts; a loss is the mean over those positions of the
per-position divergence (summed over the vocabulary). With temperature tau both distributions
are softened by tau and the loss is multiplied by tau**2 (Hinton). Everything is computed in
float32 or wider; zero-probability entries (-inf logits or log-probs) contribute exactly 0.
Teacher tensors are detached: gradients reach the student logits only.

Run the tests: ``python -m pytest tests/unit/train/test_kd_losses.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

KD_LOSSES = ("forward_kl", "reverse_kl", "jsd", "ckd")
_SPARSE_KINDS = ("forward_kl", "reverse_kl", "jsd")
# log q is floored here: a target with zero mass where p has mass gives a huge but finite KL.
_LOG_FLOOR = -1e4


def _wide(x: Tensor) -> Tensor:
    """Upcast to float32 (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_common(s: Tensor, mask: Tensor, tau: float) -> None:
    if s.dim() != 3:
        raise ValueError(f"student_logits must be [B, T, V], got shape {tuple(s.shape)}")
    if mask.shape != s.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {tuple(s.shape[:2])}, got {tuple(mask.shape)}")
    if not tau > 0:
        raise ValueError(f"temperature must be > 0, got {tau}")


def _check_dense(s: Tensor, t: Tensor, mask: Tensor, tau: float) -> None:
    _check_common(s, mask, tau)
    if t.dim() != 3 or t.shape[:2] != s.shape[:2]:
        raise ValueError(
            f"teacher_logits must be [B, T, V] with B, T = {tuple(s.shape[:2])}, got {tuple(t.shape)}"
        )
    if s.shape[-1] != t.shape[-1]:
        raise ValueError(
            f"vocabulary mismatch: student has {s.shape[-1]} logits per token, teacher "
            f"{t.shape[-1]}; logit KD needs one shared vocabulary"
        )


def _check_sparse(s: Tensor, ids: Tensor, lp: Tensor, mask: Tensor, tau: float) -> None:
    _check_common(s, mask, tau)
    if ids.shape != lp.shape or ids.dim() != 3 or ids.shape[:2] != s.shape[:2]:
        raise ValueError(
            f"teacher_ids and teacher_logprobs must both be [B, T, K] with B, T = "
            f"{tuple(s.shape[:2])}, got {tuple(ids.shape)} and {tuple(lp.shape)}"
        )
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"teacher_ids must be an integer tensor, got {ids.dtype}")


def _mean_over_positions(per_position: Tensor) -> Tensor:
    """[N] -> scalar mean; 0 (still attached to the graph) when N == 0."""
    return per_position.sum() / max(per_position.numel(), 1)


def _kl_rows(logp: Tensor, logq: Tensor) -> Tensor:
    """KL(p || q) per row: [N, V] log-probs -> [N]. Entries with p == 0 contribute 0 (no NaN)."""
    p = logp.exp()
    live = p > 0
    term = p * (torch.where(live, logp, 0.0) - logq.clamp_min(_LOG_FLOOR))
    return torch.where(live, term, 0.0).sum(-1)


def _jsd_rows(logp_t: Tensor, logp_s: Tensor, beta: float) -> Tensor:
    """Generalised JSD per row, 0 < beta < 1: [N, V] teacher/student log-probs -> [N]."""
    # Flooring first keeps logsumexp's gradient finite where both probabilities are 0.
    mixed = [
        logp_t.clamp_min(_LOG_FLOOR) + math.log(beta),
        logp_s.clamp_min(_LOG_FLOOR) + math.log(1.0 - beta),
    ]
    log_m = torch.logsumexp(torch.stack(mixed), dim=0)
    return beta * _kl_rows(logp_t, log_m) + (1.0 - beta) * _kl_rows(logp_s, log_m)


def _divergence_rows(kind: str, logp_t: Tensor, logp_s: Tensor, beta: float) -> Tensor:
    """Dispatch forward_kl / reverse_kl / jsd (GKD endpoints for beta 0 and 1) on [N, V] rows."""
    if kind == "forward_kl" or (kind == "jsd" and beta == 0.0):
        return _kl_rows(logp_t, logp_s)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1.0):
        return _kl_rows(logp_s, logp_t)
    return _jsd_rows(logp_t, logp_s, beta)


def _renormalise(x: Tensor, valid: Tensor) -> Tensor:
    """log_softmax of [N, K] over the valid entries only; invalid -> -inf, all-invalid rows -> -inf."""
    filled = torch.where(valid, x, torch.finfo(x.dtype).min)
    logp = filled - torch.logsumexp(filled, dim=-1, keepdim=True)
    return torch.where(valid, logp, -math.inf)


def _dense(kind: str, s: Tensor, t: Tensor, mask: Tensor, beta: float, tau: float) -> Tensor:
    """Dense loss ``kind`` on the masked positions of s, t [B, T, V] -> scalar (times tau**2)."""
    _check_dense(s, t, mask, tau)
    keep = mask.bool()
    logp_s = F.log_softmax(_wide(s[keep]) / tau, dim=-1)
    logp_t = F.log_softmax(_wide(t[keep].detach()) / tau, dim=-1)
    return _mean_over_positions(_divergence_rows(kind, logp_t, logp_s, beta)) * tau**2


def forward_kl(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float = 1.0
) -> Tensor:
    """Forward KL(p_t || p_s) = sum_v p_t (log p_t - log p_s), mean over masked positions.

    student_logits, teacher_logits: [B, T, V]; mask: [B, T]. Returns a scalar (times tau**2).
    """
    return _dense("forward_kl", student_logits, teacher_logits, mask, 0.0, temperature)


def reverse_kl(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float = 1.0
) -> Tensor:
    """Reverse KL(p_s || p_t), mean over masked positions.

    student_logits, teacher_logits: [B, T, V]; mask: [B, T]. Returns a scalar (times tau**2).
    A teacher log-prob of -inf where the student has mass counts as -1e4 (huge, finite).
    """
    return _dense("reverse_kl", student_logits, teacher_logits, mask, 0.0, temperature)


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")


def generalized_jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> Tensor:
    """Generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024), mean over masked positions.

    With m = beta p_t + (1 - beta) p_s: JSD_beta = beta KL(p_t || m) + (1 - beta) KL(p_s || m),
    log m taken by logsumexp. Endpoints follow GKD's (and TRL's) convention rather than the
    continuous limit (which is 0): beta = 0 is forward KL(p_t || p_s), beta = 1 is reverse
    KL(p_s || p_t). student_logits, teacher_logits: [B, T, V]; mask: [B, T]. Returns a scalar.
    """
    _check_beta(beta)
    return _dense("jsd", student_logits, teacher_logits, mask, beta, temperature)


def _sparse_rows(s: Tensor, ids: Tensor, lp: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
    """Masked positions only: -> student [N, V], ids [N, K], teacher log-probs [N, K] (wide)."""
    keep = mask.bool()
    rows, ids, lp = _wide(s[keep]), ids[keep].long(), _wide(lp[keep].detach())
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= s.shape[-1]):
        raise ValueError(
            f"teacher_ids must lie in [0, {s.shape[-1]}) (the student vocabulary), "
            f"got ids from {int(ids.min())} to {int(ids.max())}"
        )
    return rows, ids, lp


def _teacher_topk(lp: Tensor, tau: float) -> Tensor:
    """[N, K] teacher log-probs: as given at tau == 1, else log_softmax(lp / tau) over K."""
    return lp if tau == 1.0 else _renormalise(lp / tau, ~torch.isneginf(lp))


def topk_forward_kl(
    student_logits: Tensor,
    teacher_ids: Tensor,
    teacher_logprobs: Tensor,
    mask: Tensor,
    temperature: float = 1.0,
) -> Tensor:
    """Forward KL restricted to the teacher's top-K: sum_k p_t(k) (log p_t(k) - log p_s(k)).

    student_logits: [B, T, V]; teacher_ids: [B, T, K] long; teacher_logprobs: [B, T, K], the
    log-probs under the FULL teacher distribution (-inf marks padding); mask: [B, T].
    p_s is the full-vocabulary student softmax. At tau != 1 the teacher's K log-probs are
    renormalised as log_softmax(teacher_logprobs / tau) over K. Because the teacher's mass S on
    the top-K may be below 1, the value can dip to S log S < 0; its gradient is still that of
    cross-entropy to the truncated teacher. Returns a scalar (times tau**2).
    """
    _check_sparse(student_logits, teacher_ids, teacher_logprobs, mask, temperature)
    s, ids, lp = _sparse_rows(student_logits, teacher_ids, teacher_logprobs, mask)
    return _mean_over_positions(_topk_fkl_rows(s, ids, lp, temperature))


def _topk_fkl_rows(s: Tensor, ids: Tensor, lp: Tensor, tau: float) -> Tensor:
    """[N, V] student, [N, K] ids and teacher log-probs -> [N] top-K forward KL (times tau**2)."""
    logp_s = F.log_softmax(s / tau, dim=-1).gather(-1, ids)
    return _kl_rows(_teacher_topk(lp, tau), logp_s) * tau**2


def _tail_mass(s: Tensor, ids: Tensor, lp: Tensor, top_m: int) -> Tensor:
    """[N] student (tau = 1) probability on its own top-m tokens outside the teacher's valid top-K."""
    top_logp, top_ids = F.log_softmax(s, dim=-1).topk(min(top_m, s.shape[-1]), dim=-1)
    valid = ~torch.isneginf(lp)
    hit = (top_ids[:, :, None] == ids[:, None, :]) & valid[:, None, :]  # [N, m, K]
    return torch.where(hit.any(-1), 0.0, top_logp.exp()).sum(-1)


def ckd(
    student_logits: Tensor,
    teacher_ids: Tensor,
    teacher_logprobs: Tensor,
    mask: Tensor,
    top_m: int = 100,
    lam: float = 10.0,
    temperature: float = 1.0,
) -> Tensor:
    """STAR's Constrained KD: topk_forward_kl + lam * mean tail mass.

    The tail mass at a position is the student's probability on its own top-m tokens that are
    not among the teacher's top-K (padding entries, logprob -inf, excluded): it suppresses
    confidently wrong tokens. It uses the untempered (tau = 1) student distribution, the one that
    is sampled, and is not scaled by tau**2. Shapes as in ``topk_forward_kl``; returns a scalar.
    """
    _check_sparse(student_logits, teacher_ids, teacher_logprobs, mask, temperature)
    if top_m < 1 or lam < 0:
        raise ValueError(f"ckd needs top_m >= 1 and lam >= 0, got top_m={top_m}, lam={lam}")
    s, ids, lp = _sparse_rows(student_logits, teacher_ids, teacher_logprobs, mask)
    rows = _topk_fkl_rows(s, ids, lp, temperature) + lam * _tail_mass(s, ids, lp, top_m)
    return _mean_over_positions(rows)


def sparse_from_dense(teacher_logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k of a dense teacher: [B, T, V] -> (ids [B, T, k] long, logprobs [B, T, k] float32+).

    The log-probs are under the full distribution; k is clipped to V.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    logp = F.log_softmax(_wide(teacher_logits), dim=-1)
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return ids, values


def sparse_kd(
    student_logits: Tensor,
    teacher_ids: Tensor,
    teacher_logprobs: Tensor,
    mask: Tensor,
    kind: str,
    temperature: float = 1.0,
    beta: float = 0.5,
) -> Tensor:
    """forward_kl / reverse_kl / jsd on the teacher's top-K support only (an approximation).

    Both distributions are restricted to the teacher's K ids (student logits gathered there) and
    renormalised with log_softmax over the non-padding entries, then compared exactly as the
    dense loss ``kind`` would. Mass outside the top-K is ignored, so this is not the full-vocab
    divergence. Shapes as in ``topk_forward_kl``; returns a scalar (times tau**2).
    """
    if kind not in _SPARSE_KINDS:
        raise ValueError(
            f"unknown sparse KD kind {kind!r}; valid kinds: {', '.join(_SPARSE_KINDS)}"
        )
    _check_beta(beta)
    _check_sparse(student_logits, teacher_ids, teacher_logprobs, mask, temperature)
    s, ids, lp = _sparse_rows(student_logits, teacher_ids, teacher_logprobs, mask)
    valid = ~torch.isneginf(lp)
    logp_s = _renormalise(s.gather(-1, ids) / temperature, valid)
    logp_t = _renormalise(lp / temperature, valid)
    return _mean_over_positions(_divergence_rows(kind, logp_t, logp_s, beta)) * temperature**2


def kd_loss(
    kind: str,
    student_logits: Tensor,
    mask: Tensor,
    *,
    teacher_logits: Tensor | None = None,
    teacher_ids: Tensor | None = None,
    teacher_logprobs: Tensor | None = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    top_k: int = 100,
    top_m: int = 100,
    lam: float = 10.0,
) -> Tensor:
    """The KD loss ``kind`` (one of KD_LOSSES) against a dense or a sparse teacher.

    Give either teacher_logits [B, T, V] or both teacher_ids and teacher_logprobs [B, T, K].
    Dense: forward_kl / reverse_kl / jsd are exact; ckd first keeps the teacher's top_k.
    Sparse: forward_kl -> topk_forward_kl, ckd -> ckd, reverse_kl / jsd -> sparse_kd.
    student_logits: [B, T, V]; mask: [B, T]. Returns a scalar.
    """
    if kind not in KD_LOSSES:
        raise ValueError(f"unknown KD loss {kind!r}; valid kinds: {', '.join(KD_LOSSES)}")
    dense = teacher_logits is not None
    sparse = teacher_ids is not None or teacher_logprobs is not None
    if dense == sparse or (sparse and (teacher_ids is None or teacher_logprobs is None)):
        raise ValueError(
            "give exactly one teacher: teacher_logits, or both teacher_ids and teacher_logprobs"
        )
    if dense and kind != "ckd":
        if kind == "jsd":
            _check_beta(beta)
        return _dense(kind, student_logits, teacher_logits, mask, beta, temperature)
    if dense:
        _check_dense(student_logits, teacher_logits, mask, temperature)
        teacher_ids, teacher_logprobs = sparse_from_dense(teacher_logits, top_k)
    if kind == "ckd":
        return ckd(student_logits, teacher_ids, teacher_logprobs, mask, top_m, lam, temperature)
    if kind == "forward_kl":
        return topk_forward_kl(student_logits, teacher_ids, teacher_logprobs, mask, temperature)
    return sparse_kd(student_logits, teacher_ids, teacher_logprobs, mask, kind, temperature, beta)


def mix(ce: Tensor, kd: Tensor, alpha: float) -> Tensor:
    """(1 - alpha) * ce + alpha * kd for scalar losses; alpha must be in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return (1.0 - alpha) * ce + alpha * kd
