"""Importance scores for structural pruning, from a small calibration set run once through the
model with forward hooks (only ``model.model``: the vocabulary logits are never built).

- blocks: ShortGPT's Block Influence (Men et al., 2024, arXiv 2403.03853), the mean over real
  tokens of ``1 - cos(hidden_in, hidden_out)``; low means the block barely changes its input;
- MLP channels: the mean ``|act(gate(x)) * up(x)|`` (``down_proj``'s input);
- query heads: the mean L2 norm of the head's slice of ``o_proj``'s input.

    >>> batches = calibration_batches(tokenizer, texts, max_length=256, batch_size=4)
    >>> block_influence(model, batches)          # [layers] floats in [0, 2]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from supertiny.compress import CompressError
from supertiny.compress.prune.structural import decoder_layers, model_head_dim


# ----- calibration -----------------------------------------------------------------------------
def calibration_batches(
    tokenizer, texts: list[str], max_length: int, batch_size: int
) -> list[dict[str, Tensor]]:
    """Tokenise texts (as the model sees them, e.g. chat-template renderings; no special tokens
    are added) into right-padded batches ``{"input_ids", "attention_mask"}``, each ``[B, T]``.

    Texts are sorted by length so that batches carry little padding.
    """
    if max_length < 1 or batch_size < 1:
        raise CompressError(
            f"calibration: max_length ({max_length}) and batch_size ({batch_size}) must be >= 1"
        )
    texts = [text for text in texts if text]
    encoded = []
    if texts:
        encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)
        encoded = sorted((ids for ids in encoded["input_ids"] if ids), key=len)
    if not encoded:
        raise CompressError(
            "calibration set is empty: give at least one non-empty text (e.g. rendered task inputs)"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, ids in enumerate(chunk):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask})
    return batches


def masked_forward(
    model: nn.Module,
    batches: list[dict[str, Tensor]],
    modules: list[nn.Module],
    on_rows: Callable[[int, Tensor, Tensor, Tensor], None],
    new_batch: Callable[[], None] = lambda: None,
    stop_after: nn.Module | None = None,
) -> int:
    """Run the batches through the decoder (``model.model``: the LM head's ``[B, T, vocab]``
    logits are never built); at each call of ``modules[i]``, ``on_rows(i, x, y, source)`` gets
    its input and output at the real tokens, ``x [N, D_in]`` and ``y [N, D_out]`` float32, and
    the input tensor itself. ``new_batch()`` runs before each batch; the forward pass of a
    batch ends once ``stop_after`` (one of ``modules``) has run. Returns the real tokens.
    """
    if not batches:
        raise CompressError("calibration set is empty: give at least one batch of texts")
    state: dict[str, Tensor] = {}

    def make_hook(index: int):
        def hook(module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, tuple) else output
            mask = state["mask"]
            on_rows(index, x[mask].float(), y[mask].float(), x)
            if module is stop_after:
                raise _Enough

        return hook

    handles = [
        m.register_forward_hook(make_hook(i), with_kwargs=True) for i, m in enumerate(modules)
    ]
    device = next(model.parameters()).device
    was_training, tokens = model.training, 0
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                mask = batch["attention_mask"].to(device)
                state["mask"] = mask.bool()
                tokens += int(mask.sum())
                new_batch()
                try:
                    model.model(
                        input_ids=batch["input_ids"].to(device),
                        attention_mask=mask,
                        use_cache=False,
                    )
                except _Enough:
                    pass
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if tokens == 0:
        raise CompressError("calibration set is empty: the batches hold no real (unmasked) tokens")
    return tokens


class _Enough(Exception):
    """Raised by a hook to end a forward pass whose remaining layers nobody reads."""


def _masked_means(
    model: nn.Module,
    batches: list[dict[str, Tensor]],
    modules: list[nn.Module],
    stat: Callable[[Tensor, Tensor], Tensor],
) -> list[Tensor]:
    """For each module the mean over real tokens of ``stat(x, y)``, with x its input
    ``[N, D_in]`` and y its output ``[N, D_out]`` at the N real tokens of a batch.

    ``stat`` returns ``[N, *S]``; the result per module is ``[*S]`` (float32).
    """
    sums: list[Tensor | None] = [None] * len(modules)

    def on_rows(index: int, x: Tensor, y: Tensor, _source: Tensor) -> None:
        total = stat(x, y).sum(0, dtype=torch.float64)
        sums[index] = total if sums[index] is None else sums[index] + total

    tokens = masked_forward(model, batches, modules, on_rows)
    return [(total / tokens).float() for total in sums]


# ----- scores ----------------------------------------------------------------------------------
def block_influence(model: nn.Module, batches: list[dict[str, Tensor]]) -> list[float]:
    """Per layer: mean over real (non-pad) tokens of 1 - cos(hidden_in, hidden_out) (ShortGPT's
    Block Influence); low = removable. Values lie in [0, 2]."""
    layers = decoder_layers(model, "depth")

    def influence(x: Tensor, y: Tensor) -> Tensor:  # [N, D] x2 -> [N]
        return 1 - nn.functional.cosine_similarity(x, y, dim=-1)

    return [float(s) for s in _masked_means(model, batches, list(layers), influence)]


def mlp_channel_scores(model: nn.Module, batches: list[dict[str, Tensor]]) -> list[Tensor]:
    """Per layer ``[intermediate]``: mean ``|act(gate(x)) * up(x)|`` over real tokens."""
    layers = decoder_layers(model, "width")
    return _masked_means(
        model, batches, [layer.mlp.down_proj for layer in layers], lambda x, y: x.abs()
    )


def head_scores(model: nn.Module, batches: list[dict[str, Tensor]]) -> list[Tensor]:
    """Per layer ``[num_heads]``: mean L2 norm of each head's attention output (its slice of
    ``o_proj``'s input ``[B, T, num_heads * head_dim]``) over real tokens."""
    layers = decoder_layers(model, "width")
    head_dim = model_head_dim(model)

    def norms(x: Tensor, y: Tensor) -> Tensor:  # [N, H * hd] -> [N, H]
        return x.unflatten(-1, (-1, head_dim)).norm(dim=-1)

    return _masked_means(model, batches, [layer.self_attn.o_proj for layer in layers], norms)
