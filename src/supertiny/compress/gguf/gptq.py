"""GPTQ rounding (Frantar et al., 2023, arXiv 2210.17323) onto llama.cpp's 32-weight block grids.

Rounding each weight to its nearest grid point ignores what the layer computes. GPTQ rounds
the columns of ``W [out, in]`` one at a time and moves each rounding error onto the columns
not yet rounded, weighted by the inverse of ``H = X^T X / n`` (the layer's inputs ``X`` on
calibration text), so that ``X @ W.T`` changes as little as the grid allows. For a student
fine-tuned from a quantized GGUF this matters: its weights are the old grid plus an update
smaller than a grid step, which rounding to nearest snaps back to the old grid, erasing the
fine-tune; GPTQ keeps the update's effect on the task's activations.

    hessians = input_hessians(model, batches, ["model.layers.0.mlp.up_proj", ...])
    codes, scale, offset = gptq(weight, hessians[name], FORMATS["q5_0"])

The block scales are fixed from ``W`` before rounding (llama.cpp's own choice of scale, the
"static groups" of the paper's implementation); only the codes change. Written here because no
maintained library writes GPTQ codes into GGUF blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from supertiny.compress import CompressError
from supertiny.compress.gguf.blocks import BLOCK, BlockFormat


def input_hessians(
    model: nn.Module,
    batches: list[dict[str, Tensor]],
    names: list[str],
    full: Callable[[str], bool] = lambda name: True,
) -> tuple[dict[str, Tensor], int]:
    """For each linear module in ``names``: ``X^T X / n`` over the real (unmasked) tokens of
    ``batches``, ``[in, in]`` float32, or only its diagonal ``[in]`` where ``full(name)`` is
    false (llama.cpp's importance matrix). Linears fed the same input tensor (q/k/v, gate/up)
    share one matrix; the forward pass stops after the deepest of them. Sums are float32: the
    damping GPTQ adds is far above their rounding. Returns (matrices by name, tokens seen)."""
    from supertiny.compress.prune.importance import masked_forward

    modules = dict(model.named_modules())
    missing = [name for name in names if not isinstance(modules.get(name), nn.Linear)]
    if missing:
        raise CompressError(f"GPTQ: no linear layer named {missing[0]!r} in the model")
    sums: dict[str, Tensor] = {}
    alias: dict[str, str] = {}  # a linear fed the same input as another -> that other
    # (input id, full?) -> (first name, the input): holding the input keeps its id unique
    seen: dict[tuple[int, bool], tuple[str, Tensor]] = {}

    def on_rows(index: int, x: Tensor, _y: Tensor, source: Tensor) -> None:
        name = names[index]
        if name in alias:
            return
        first, _ = seen.setdefault((id(source), full(name)), (name, source))
        if first != name:
            alias[name] = first
            return
        moment = x.T @ x if full(name) else (x * x).sum(0)
        sums[name] = sums[name] + moment if name in sums else moment

    order = {name: index for index, name in enumerate(modules)}
    deepest = modules[max(names, key=order.__getitem__)]
    tokens = masked_forward(
        model,
        batches,
        [modules[name] for name in names],
        on_rows,
        new_batch=seen.clear,
        stop_after=deepest,
    )
    means = {name: total / tokens for name, total in sums.items()}
    return {name: means[alias.get(name, name)] for name in names}, tokens


def gptq(
    weight: Tensor,
    hessian: Tensor,
    fmt: BlockFormat,
    damp: float = 0.01,
    block_columns: int = 128,
) -> tuple[Tensor, Tensor, Tensor]:
    """Round ``weight [out, in]`` onto ``fmt``'s grid with GPTQ under ``hessian [in, in]``.

    Returns ``codes [out, in]`` (integer-valued float32) and the per-block ``scale`` and
    ``offset`` ``[out, in // 32]``, ready for ``fmt.pack``. ``damp`` adds that share of the
    mean diagonal to the diagonal (a column no input ever reaches gets weight 0 and is
    rounded plainly); ``block_columns`` is the lazy-update width of the paper's algorithm.
    """
    rows, cols = weight.shape
    if cols % BLOCK or hessian.shape != (cols, cols):
        raise CompressError(
            f"GPTQ needs in-features divisible by {BLOCK} and a [{cols}, {cols}] Hessian; "
            f"got weight {tuple(weight.shape)} and Hessian {tuple(hessian.shape)}"
        )
    w = weight.detach().float().clone()
    scale, offset = fmt.scales(w)
    h = hessian.double().clone()
    dead = h.diagonal() <= 0
    h[dead, dead] = 1.0
    h.diagonal().add_(damp * h.diagonal().mean())
    upper = _inverse_cholesky(h).float()  # U with H^-1 = U^T U
    codes = torch.empty_like(w)
    for start in range(0, cols, block_columns):
        end = min(start + block_columns, cols)
        part, errors = w[:, start:end].clone(), torch.empty(rows, end - start)
        for i in range(end - start):
            col, group = start + i, (start + i) // BLOCK
            s, o = scale[:, group], offset[:, group]
            codes[:, col] = fmt.codes(part[:, i], s, o)
            error = (part[:, i] - fmt.values(codes[:, col], s, o)) / upper[col, col]
            part[:, i:] -= error[:, None] * upper[col, col:end][None, :]
            errors[:, i] = error
        w[:, end:] -= errors @ upper[start:end, end:]
    return codes, scale, offset


def _inverse_cholesky(h: Tensor) -> Tensor:
    """Upper Cholesky factor of ``h^-1``; more damping if ``h`` is not positive definite."""
    for extra in (0.0, 0.1, 1.0):
        damped = h + extra * h.diagonal().mean() * torch.eye(len(h), dtype=h.dtype)
        factor, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(factor)
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if int(info) == 0:
                return upper
    raise CompressError("GPTQ: the calibration Hessian is not positive definite even when damped")
