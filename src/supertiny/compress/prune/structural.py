"""Structural pruning: drop decoder blocks (depth), MLP channels and attention heads (width).

Scores come from ``importance`` (a small calibration set, run once with forward hooks):
depth uses ShortGPT's Block Influence (Men et al., 2024, arXiv 2403.03853), the mean over
real tokens of ``1 - cos(hidden_in, hidden_out)`` per block; width uses activation magnitude
as in Minitron-style width pruning (Muralidharan et al., 2024, arXiv 2407.14679) over the
coupled structures of LLM-Pruner (Ma et al., 2023): an MLP channel scores the mean
``|act(gate(x)) * up(x)|`` (``down_proj``'s input), a query head the mean L2 norm of its slice
of ``o_proj``'s input. Head pruning is GQA-aware: every KV group keeps as many query heads,
k_proj/v_proj are untouched.

Pruning is in place and keeps the Hugging Face config consistent (``num_hidden_layers``,
``layer_types``, ``max_window_layers``, each attention's ``layer_idx``, ``intermediate_size``,
``num_attention_heads``, an explicit ``head_dim``), so the model saves, reloads with
``AutoModelForCausalLM`` and generates with its KV cache. Supported: Qwen2, Llama and the same
layout (``model.model.layers[i].self_attn.{q,k,v,o}_proj``, ``.mlp.{gate,up,down}_proj``).
Written by hand: no maintained library does this for transformers 5. Run by the stage:

    supertiny compress examples/smart_home/task.yaml --preset small

    >>> from supertiny.compress.prune.importance import calibration_batches, block_influence
    >>> batches = calibration_batches(tokenizer, texts, max_length=256, batch_size=4)
    >>> prune_depth(model, layers=20, scores=block_influence(model, batches))
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from supertiny.compress import CompressError

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


# ----- model layout ----------------------------------------------------------------------------
def decoder_layers(model: nn.Module, step: str) -> nn.ModuleList:
    """The decoder blocks of a supported model; ``CompressError`` naming ``step`` otherwise."""
    name = type(model).__name__
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise CompressError(
            f"{step} pruning: unsupported architecture {name}: expected decoder blocks at "
            "model.model.layers (Qwen2/Llama layout)"
        )
    for index, layer in enumerate(layers):
        for parent, names in (("self_attn", ATTENTION), ("mlp", MLP)):
            module = getattr(layer, parent, None)
            missing = [n for n in names if not isinstance(getattr(module, n, None), nn.Linear)]
            if missing:
                raise CompressError(
                    f"{step} pruning: unsupported architecture {name}: layer {index}.{parent} has "
                    f"no linear {', '.join(missing)} (Qwen2/Llama layout expected)"
                )
    if getattr(model.config, "is_heterogeneous", False):
        raise CompressError(
            f"{step} pruning: {name} has a per-layer (heterogeneous) config; not supported"
        )
    return layers


def count_params(model: nn.Module) -> int:
    """Parameters, tied weights counted once."""
    return sum(p.numel() for p in model.parameters())


def model_head_dim(model: nn.Module) -> int:
    config = model.config
    fallback = config.hidden_size // config.num_attention_heads
    return getattr(model.model.layers[0].self_attn, "head_dim", None) or fallback


# ----- depth -----------------------------------------------------------------------------------
def _depth_plan(
    n: int, layers: int | None, drop: list[int] | None, scores: list[float] | None
) -> list[int]:
    """Indices to drop, sorted; validates the request against ``n`` blocks."""
    if (layers is None) == (drop is None):
        raise CompressError(
            "depth pruning: give exactly one of `layers` (blocks to keep) or `drop`"
        )
    if drop is not None:
        bad = [i for i in drop if not isinstance(i, int) or not 0 <= i < n]
        if bad or len(set(drop)) != len(drop):
            raise CompressError(
                f"depth pruning: `drop` must hold distinct layer indices in 0..{n - 1}; got {drop}"
            )
        if len(drop) >= n:
            raise CompressError(
                f"depth pruning: dropping all {n} layers leaves no model; keep >= 1"
            )
        return sorted(drop)
    if not 1 <= layers <= n:
        raise CompressError(
            f"depth pruning: layers={layers} must be between 1 and the current {n} "
            "(pruning only removes blocks)"
        )
    if scores is None or len(scores) != n:
        got = "none" if scores is None else f"{len(scores)}"
        raise CompressError(
            f"depth pruning: `layers` needs one score per layer ({n}, got {got}); "
            "compute them with block_influence(model, batches)"
        )
    order = sorted(range(n), key=lambda i: (scores[i], i))
    return sorted(order[: n - layers])


def prune_depth(
    model: nn.Module,
    layers: int | None = None,
    drop: list[int] | None = None,
    scores: list[float] | None = None,
) -> dict:
    """Keep ``layers`` blocks (drop the lowest-scoring), or drop the given indices; in place.

    Returns ``{"dropped": [...], "scores": [...], "params_before", "params_after"}``.
    """
    blocks = decoder_layers(model, "depth")
    dropped = _depth_plan(len(blocks), layers, drop, scores)
    before = count_params(model)
    keep = [i for i in range(len(blocks)) if i not in dropped]
    if dropped:
        _keep_layers(model, keep)
    return {
        "dropped": dropped,
        "kept": keep,
        "scores": list(scores) if scores is not None else None,
        "params_before": before,
        "params_after": count_params(model),
    }


def _keep_layers(model: nn.Module, keep: list[int]) -> None:
    """Keep the blocks at ``keep`` (ascending); renumber ``layer_idx`` and fix the config."""
    old = model.model.layers
    model.model.layers = nn.ModuleList([old[i] for i in keep])
    for new_index, layer in enumerate(model.model.layers):
        for module in layer.modules():  # the KV cache is indexed by each attention's layer_idx
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    config = model.config  # shared by model.model and the attention modules
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list):
        config.layer_types = [layer_types[i] for i in keep]
    window = getattr(config, "max_window_layers", None)
    if isinstance(window, int):  # layers below this index use full attention
        config.max_window_layers = sum(1 for i in keep if i < window)
    config.num_hidden_layers = len(keep)
    if hasattr(model.model, "has_sliding_layers"):  # Qwen2 builds sliding masks only if needed
        model.model.has_sliding_layers = "sliding_attention" in (config.layer_types or [])


# ----- width -----------------------------------------------------------------------------------
def _slice_linear(
    linear: nn.Linear, rows: Tensor | None = None, cols: Tensor | None = None
) -> None:
    """Keep output features ``rows`` and input features ``cols`` of ``linear`` (in place)."""
    weight, bias = linear.weight.data, linear.bias
    if rows is not None:
        rows = rows.to(weight.device)
        weight = weight[rows]  # indexing copies
        if bias is not None:
            linear.bias = nn.Parameter(bias.data[rows], requires_grad=bias.requires_grad)
    if cols is not None:
        weight = weight[:, cols.to(weight.device)]
    linear.weight = nn.Parameter(weight.contiguous(), requires_grad=linear.weight.requires_grad)
    linear.out_features, linear.in_features = weight.shape


def _kept_heads(scores: Tensor, kv_heads: int, per_group: int) -> Tensor:
    """Query heads to keep: the top ``per_group`` of each KV group (query head h reads KV head
    h // (H / kv_heads)); ``scores`` is ``[H]``, the result ``[kv_heads * per_group]`` ascending."""
    groups = scores.view(kv_heads, -1)  # [kv, H / kv]
    top = groups.topk(per_group, dim=1).indices.sort(dim=1).values  # [kv, per_group]
    return (top + torch.arange(kv_heads)[:, None] * groups.shape[1]).flatten()


def _allowed_heads(model: nn.Module) -> list[int]:
    """Query-head counts width pruning can reach: multiples of the KV heads that the config class
    validates (LlamaConfig, unlike Qwen2Config, insists on hidden_size % heads == 0)."""
    config, head_dim = model.config, model_head_dim(model)
    kv_heads, allowed = config.num_key_value_heads, []
    for heads in range(kv_heads, config.num_attention_heads + 1, kv_heads):
        trial = copy.deepcopy(config)
        trial.head_dim, trial.num_attention_heads = head_dim, heads
        try:
            getattr(trial, "validate_architecture", lambda: None)()
        except ValueError:
            continue
        allowed.append(heads)
    return allowed


def _check_scores(step: str, scores, layers: int, size: int, fn: str) -> None:
    if scores is None or len(scores) != layers or any(s.shape != (size,) for s in scores):
        raise CompressError(
            f"width pruning: {step} needs one [{size}] score tensor per layer ({layers} layers); "
            f"compute them with {fn}(model, batches)"
        )


def prune_width(
    model: nn.Module,
    intermediate_size: int | None = None,
    heads: int | None = None,
    mlp_scores: list[Tensor] | None = None,
    head_scores: list[Tensor] | None = None,
) -> dict:
    """Keep the top ``intermediate_size`` MLP channels and the top ``heads`` query heads per layer.

    The same counts in every layer (HF configs hold one size). ``heads`` must be a multiple of
    ``num_key_value_heads``; each KV group keeps ``heads / num_key_value_heads`` query heads, so
    k_proj/v_proj and head_dim stay as they are. In place; returns ``{"intermediate_size":
    (before, after), "heads": (before, after), "kept_heads": [[...] per layer] | None,
    "params_before", "params_after"}``.
    """
    layers, config = decoder_layers(model, "width"), model.config
    channels = layers[0].mlp.down_proj.in_features
    num_heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    prune_mlp, prune_heads = _width_plan(model, intermediate_size, heads, mlp_scores, head_scores)
    before = count_params(model)
    if prune_mlp:
        for layer, scores in zip(layers, mlp_scores, strict=True):
            keep = scores.float().cpu().topk(intermediate_size).indices.sort().values
            _prune_mlp(layer.mlp, keep)  # the top channels, in their original order
    kept_heads = None
    if prune_heads:
        head_dim = model_head_dim(model)
        kept_heads = [
            _kept_heads(s.float().cpu(), kv_heads, heads // kv_heads) for s in head_scores
        ]
        for layer, keep in zip(layers, kept_heads, strict=True):
            _prune_heads(layer.self_attn, keep, head_dim, heads // kv_heads)
    if prune_mlp:
        config.intermediate_size = intermediate_size
    if prune_heads:
        config.head_dim = head_dim  # no longer hidden_size / num_attention_heads
        config.num_attention_heads = heads
    return {
        "intermediate_size": (channels, intermediate_size or channels),
        "heads": (num_heads, heads or num_heads),
        "kept_heads": None if kept_heads is None else [k.tolist() for k in kept_heads],
        "params_before": before,
        "params_after": count_params(model),
    }


def _width_plan(
    model: nn.Module,
    intermediate_size: int | None,
    heads: int | None,
    mlp_scores: list[Tensor] | None,
    head_scores: list[Tensor] | None,
) -> tuple[bool, bool]:
    """Validate a width request before anything changes; returns (prune MLP?, prune heads?)."""
    if intermediate_size is None and heads is None:
        raise CompressError("width pruning: give `intermediate_size`, `heads` or both")
    layers, config = model.model.layers, model.config
    channels = layers[0].mlp.down_proj.in_features
    num_heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    for what, target, low, current in (
        ("intermediate_size", intermediate_size, 1, channels),
        ("heads", heads, kv_heads, num_heads),
    ):
        if target is not None and not low <= target <= current:
            raise CompressError(
                f"width pruning: {what}={target} must be between {low} and the current "
                f"{current} (pruning only removes)"
            )
    allowed = _allowed_heads(model) if heads is not None else []
    if heads is not None and heads not in allowed:
        raise CompressError(
            f"width pruning: heads={heads} must be a multiple of num_key_value_heads={kv_heads} "
            f"(every KV group keeps as many query heads) that {type(config).__name__} accepts; "
            f"allowed: {allowed}"
        )
    prune_mlp = intermediate_size is not None and intermediate_size < channels
    prune_heads = heads is not None and heads < num_heads
    if prune_mlp:
        _check_scores("intermediate_size", mlp_scores, len(layers), channels, "mlp_channel_scores")
    if prune_heads:
        _check_scores("heads", head_scores, len(layers), num_heads, "head_scores")
    return prune_mlp, prune_heads


def _prune_mlp(mlp: nn.Module, keep: Tensor) -> None:
    """Keep the channels ``keep`` ``[k]``: rows of gate/up, columns of down."""
    _slice_linear(mlp.gate_proj, rows=keep)
    _slice_linear(mlp.up_proj, rows=keep)
    _slice_linear(mlp.down_proj, cols=keep)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = len(keep)


def _prune_heads(attn: nn.Module, keep: Tensor, head_dim: int, groups: int) -> None:
    """Keep query heads ``keep`` ``[h]``: their rows of q_proj, their columns of o_proj."""
    features = (keep[:, None] * head_dim + torch.arange(head_dim)).flatten()  # [h * head_dim]
    _slice_linear(attn.q_proj, rows=features)
    _slice_linear(attn.o_proj, cols=features)
    attn.num_key_value_groups = groups
    for name in ("num_heads", "num_attention_heads"):
        if hasattr(attn, name):
            setattr(attn, name, len(keep))


# ----- budget ----------------------------------------------------------------------------------
def budget_target(model: nn.Module, params: int, step: str, multiple_of: int = 64) -> int:
    """The largest ``layers`` (step "depth") or ``intermediate_size`` (step "width", rounded down
    to a multiple of ``multiple_of`` when above it) that brings ``count_params(model)`` (all
    parameters, embeddings included) to at most ``params``."""
    if step not in ("depth", "width"):
        raise CompressError(f"prune_to_budget: step must be 'depth' or 'width', not {step!r}")
    layers = decoder_layers(model, step)
    total = count_params(model)
    if step == "depth":
        unit, current = sum(p.numel() for p in layers[0].parameters()), len(layers)
    else:
        mlp = layers[0].mlp
        biases = sum(m.bias is not None for m in (mlp.gate_proj, mlp.up_proj))
        per_channel = (
            mlp.gate_proj.in_features + mlp.up_proj.in_features + mlp.down_proj.out_features
        )
        unit, current = len(layers) * (per_channel + biases), mlp.down_proj.in_features
    fixed = total - unit * current  # what this step cannot remove
    target = min(current, (params - fixed) // unit)
    if step == "width" and multiple_of < target < current:
        target -= target % multiple_of
    if target < 1:
        raise CompressError(
            f"{step} pruning: a budget of {params:,} parameters is out of reach; the smallest "
            f"this step can make the model is {fixed + unit:,}"
        )
    return target


def prune_to_budget(
    model: nn.Module, params: int, step: str, scores: list, multiple_of: int = 64
) -> dict:
    """Prune depth (``scores`` from block_influence) or MLP width (``scores`` from
    mlp_channel_scores) until the model has at most ``params`` parameters; info as the step's."""
    target = budget_target(model, params, step, multiple_of)
    if step == "depth":
        return prune_depth(model, layers=target, scores=scores)
    return prune_width(model, intermediate_size=target, mlp_scores=scores)
