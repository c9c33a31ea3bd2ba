"""Vocabulary pruning: keep only the tokens a task uses, so the embedding and LM head shrink.

Qwen2.5-0.5B spends 2 x 136M of its 630M parameters on a 151,936-token vocabulary; a narrow
task uses a few thousand of those tokens. ``kept_ids`` collects the ids the task needs from
its calibration texts (rendered chat turns), and ``prune_vocabulary`` cuts the model and the
tokenizer down to them. The result is exact on in-domain text: the new tokenizer produces the
same tokens (renumbered: new id ``i`` is old id ``keep[i]``) and the model's logits are the old
logits restricted to the kept ids.

    keep = kept_ids(tokenizer, texts)
    model, tokenizer, info = prune_vocabulary(model, tokenizer, keep)

Why exact: BPE applies, at every step, the lowest-ranked merge among adjacent pairs. The new
merge list is a subset of the old one in the same order, and it holds every merge that produces
a kept token (``kept_ids`` closes the keep set over merge parts). So on in-domain words every
merge the old tokenizer applies is still there and still the lowest-ranked applicable one.
All 256 byte tokens stay, so any other text still encodes (into shorter pieces).

Hand-written on purpose: no maintained library prunes a Hugging Face fast tokenizer (transformers
can only grow a vocabulary), so this edits the ``tokenizers`` JSON directly; only byte-level
BPE (Qwen2, Llama 3, GPT-2) is supported, where that edit is safe. Run its tests with
``pytest tests/unit/compress/test_compress_vocab.py``.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from supertiny.compress import CompressError

SPECIAL_ATTRS = tuple(f"{n}_token" for n in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"))
ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")
CARRIED = ("padding_side", "truncation_side", "model_max_length", "clean_up_tokenization_spaces")


def kept_ids(tokenizer, texts: list[str], extra_ids: Iterable[int] = ()) -> list[int]:
    """Sorted old ids to keep for ``texts`` (encoded without adding special tokens).

    The set holds every token of every text, all added/special tokens (and those the
    post-processor inserts), the 256 single-byte tokens, ``extra_ids``, and its closure over
    BPE merges (a kept merge result keeps both parts).
    """
    if not texts:
        raise CompressError(
            "calibration/keep set is empty: vocabulary pruning needs in-domain texts "
            "(rendered training prompts and answers) to know which tokens to keep"
        )
    spec = _tokenizer_json(tokenizer)
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    keep = {i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids}
    keep |= {t["id"] for t in spec["added_tokens"]} | set(tokenizer.all_special_ids)
    keep |= _processor_ids(spec.get("post_processor")) | set(extra_ids)
    from tokenizers.pre_tokenizers import ByteLevel

    keep |= {vocab[c] for c in ByteLevel.alphabet() if c in vocab}
    return sorted(_merge_closure(keep, vocab, model))


def prune_vocabulary(model, tokenizer, keep: list[int]) -> tuple[Any, Any, dict]:
    """Restrict ``model`` (in place) and ``tokenizer`` to ``keep``: new id ``i`` is old ``keep[i]``.

    Special ids of the config/generation config are added to ``keep``; ids with no embedding
    row or no token are dropped. ``info["keep"]`` is the list actually used. Returns
    ``(model, new_tokenizer, info)``.
    """
    spec = _tokenizer_json(tokenizer)
    embed, head = _embeddings(model)
    rows = embed.num_embeddings
    keep = _final_keep(keep, model, spec, rows)
    new_of = {old: new for new, old in enumerate(keep)}
    new_tokenizer = _prune_tokenizer(tokenizer, spec, new_of)
    info = {"vocab_before": rows, "vocab_after": len(keep), "params_before": _count(model)}
    _prune_model(model, embed, head, keep, new_of)
    return model, new_tokenizer, info | {"params_after": _count(model), "keep": keep}


# ---- tokenizer ---------------------------------------------------------------------------------


def _tokenizer_json(tokenizer) -> dict:
    """The fast tokenizer's ``tokenizers`` JSON, after checking it is a byte-level BPE."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        name = type(tokenizer).__name__
        raise CompressError(f"vocabulary pruning needs a fast (tokenizers) tokenizer; got {name}")
    spec = json.loads(backend.to_str())
    model = spec["model"]
    kind = model.get("type", "unknown")
    if kind == "BPE" and model.get("byte_fallback"):
        kind = "BPE with byte_fallback (SentencePiece style)"
    elif kind == "BPE" and not _has_byte_level(spec.get("pre_tokenizer")):
        kind = "BPE without a ByteLevel pre-tokenizer"
    if kind != "BPE":
        raise CompressError(
            "vocabulary pruning supports byte-level BPE tokenizers (Qwen2, Llama 3, GPT-2 style); "
            f"this tokenizer is {kind}. Leave the vocab step out of the compress config for it."
        )
    return spec


def _has_byte_level(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("type") == "ByteLevel" or any(_has_byte_level(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_byte_level(v) for v in node)
    return False


def _split_merge(merge: str | list[str]) -> tuple[str, str]:
    """A merge as ``(left, right)``; tokenizers stores ``["a", "b"]`` (new) or ``"a b"`` (old)."""
    if isinstance(merge, str):
        left, right = merge.split(" ")
        return left, right
    return merge[0], merge[1]


def _merge_result(left: str, right: str, model: dict) -> str:
    prefix = model.get("continuing_subword_prefix") or ""
    return left + (right[len(prefix) :] if prefix and right.startswith(prefix) else right)


def _merge_closure(keep: set[int], vocab: dict[str, int], model: dict) -> set[int]:
    """``keep`` plus, recursively, both parts of every merge whose result is kept."""
    parts: dict[int, list[tuple[int, int]]] = {}
    for merge in model["merges"]:
        left, right = _split_merge(merge)
        result = vocab.get(_merge_result(left, right, model))
        if result is not None and left in vocab and right in vocab:
            parts.setdefault(result, []).append((vocab[left], vocab[right]))
    todo, seen = list(keep), set(keep)
    while todo:
        for pair in parts.get(todo.pop(), ()):
            for part in pair:
                if part not in seen:
                    seen.add(part)
                    todo.append(part)
    return seen


def _final_keep(keep: Iterable[int], model, spec: dict, rows: int) -> list[int]:
    """Sorted ``keep`` + the model's special ids, minus ids with no embedding row or no token."""
    tokens = set(spec["model"]["vocab"].values()) | {t["id"] for t in spec["added_tokens"]}
    ids = set(keep)
    for config in (model.config, getattr(model, "generation_config", None)):
        for field in ID_FIELDS:
            value = getattr(config, field, None)
            ids |= set(value) if isinstance(value, list) else {value} - {None}
    final = sorted(i for i in ids if 0 <= i < rows and i in tokens)
    if not final:
        raise CompressError(
            "calibration/keep set is empty after dropping ids with no token or embedding row"
        )
    return final


def _prune_tokenizer(tokenizer, spec: dict, new_of: dict[int, int]):
    """A ``PreTrainedTokenizerFast`` of the kept tokens, renumbered by ``new_of`` (old -> new)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    model = spec["model"]
    vocab = {tok: new_of[old] for tok, old in model["vocab"].items() if old in new_of}
    model["vocab"] = vocab
    model["merges"] = [m for m in model["merges"] if _keeps_merge(m, vocab, model)]
    spec["added_tokens"] = [
        dict(t, id=new_of[t["id"]]) for t in spec["added_tokens"] if t["id"] in new_of
    ]
    remap = functools.partial(_remap, new_of=new_of)
    if spec.get("padding") and "pad_id" in spec["padding"]:
        spec["padding"]["pad_id"] = remap(spec["padding"]["pad_id"], "padding.pad_id")
    spec["post_processor"] = _map_processor(spec.get("post_processor"), remap)
    backend = Tokenizer.from_str(json.dumps(spec))
    kept = set(backend.get_vocab())
    kwargs = {
        name: str(value)
        for name in SPECIAL_ATTRS
        if (value := getattr(tokenizer, name, None)) and str(value) in kept
    }
    extra = [str(t) for t in (getattr(tokenizer, "extra_special_tokens", None) or [])]
    kwargs["extra_special_tokens"] = [t for t in extra if t in kept]
    kwargs |= {name: getattr(tokenizer, name) for name in CARRIED if hasattr(tokenizer, name)}
    new = PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
    new.chat_template = getattr(tokenizer, "chat_template", None)
    return new


def _keeps_merge(merge: str | list[str], vocab: dict[str, int], model: dict) -> bool:
    left, right = _split_merge(merge)
    return left in vocab and right in vocab and _merge_result(left, right, model) in vocab


def _remap(old: int, where: str, new_of: dict[int, int]) -> int:
    if old not in new_of:
        raise CompressError(
            f"tokenizer {where} refers to id {old}, which is not kept; add it to extra_ids"
        )
    return new_of[old]


def _processor_ids(node: Any) -> set[int]:
    """Ids a post-processor inserts (e.g. Llama 3's ``<|begin_of_text|>``)."""
    ids: set[int] = set()
    _map_processor(copy.deepcopy(node), lambda old, where: ids.add(old) or old)
    return ids


def _map_processor(node: Any, fn: Callable[[int, str], int]) -> Any:
    """Post-processor JSON with every token id ``i`` replaced by ``fn(i, where)``, in place.

    Handles TemplateProcessing (Llama 3 BOS), Bert/RobertaProcessing and Sequence; others
    (ByteLevel) hold no ids.
    """
    kind = node.get("type") if isinstance(node, dict) else None
    if kind == "Sequence":
        node["processors"] = [_map_processor(p, fn) for p in node["processors"]]
    elif kind == "TemplateProcessing":
        for name, special in node.get("special_tokens", {}).items():
            special["ids"] = [fn(i, f"post_processor token {name}") for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for field in ("sep", "cls"):
            token, old = node[field]
            node[field] = [token, fn(old, f"post_processor {field}")]
    return node


# ---- model -------------------------------------------------------------------------------------


def _embeddings(model):
    """``(input embedding, output head)`` of a causal LM, or a CompressError naming the class."""
    from torch import nn

    arch = type(model).__name__
    try:
        embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError) as err:
        raise CompressError(
            f"vocabulary pruning cannot find the embeddings of {arch}: {err}"
        ) from err
    if not isinstance(embed, nn.Embedding) or not isinstance(head, nn.Linear):
        raise CompressError(
            f"vocabulary pruning needs an nn.Embedding input and an nn.Linear LM head; {arch} has "
            f"{type(embed).__name__} and {type(head).__name__}"
        )
    if head.out_features != embed.num_embeddings:
        raise CompressError(
            f"{arch} has {embed.num_embeddings} embedding rows but {head.out_features} LM-head "
            "rows; vocabulary pruning needs them equal"
        )
    return embed, head


def _prune_model(model, embed, head, keep: list[int], new_of: dict[int, int]) -> None:
    """Embedding ``[V, d] -> [len(keep), d]``, head weight (and bias) likewise; remap config ids."""
    import torch
    from torch import nn

    tied = head.weight is embed.weight
    rows, index = embed.num_embeddings, torch.tensor(keep, device=embed.weight.device)
    pad = new_of.get(embed.padding_idx)
    with torch.no_grad():
        new_embed = nn.Embedding(len(keep), embed.embedding_dim, padding_idx=pad, device="meta")
        new_embed.weight = _rows(embed.weight, index)
        new_head = nn.Linear(head.in_features, len(keep), bias=head.bias is not None, device="meta")
        new_head.weight = new_embed.weight if tied else _rows(head.weight, index)
        if head.bias is not None:
            new_head.bias = _rows(head.bias, index)
    model.set_input_embeddings(new_embed)
    model.set_output_embeddings(new_head)
    for module in model.modules():  # e.g. Qwen2Model.vocab_size / .padding_idx mirror the config
        if getattr(module, "vocab_size", None) == rows:
            module.vocab_size = len(keep)
            if hasattr(module, "padding_idx"):
                module.padding_idx = pad
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.vocab_size = len(keep)
    for config in (model.config, getattr(model, "generation_config", None)):
        for field in ID_FIELDS:
            if getattr(config, field, None) is not None:
                setattr(config, field, _remap_ids(getattr(config, field), new_of))


def _remap_ids(value: int | list[int], new_of: dict[int, int]) -> int | list[int] | None:
    """A config's special id(s) in new ids; ids that were dropped (no embedding row) disappear."""
    if isinstance(value, list):
        return [new_of[i] for i in value if i in new_of]
    return new_of.get(value)


def _rows(weight, index):
    """A new Parameter holding rows ``index`` of ``weight``: ``[V, ...] -> [len(index), ...]``."""
    from torch import nn

    return nn.Parameter(weight[index].clone(), requires_grad=weight.requires_grad)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())
