"""Tiny random causal LMs with a real tokenizer and a tool-aware chat template, built in code.

The unit tests of stage 2 (and the training benchmark's smoke mode) need a model that behaves
like the bundled Qwen2.5 student (ChatML turns, ``<tool_call>`` blocks, tools rendered into
the system turn) but trains in milliseconds: 2 layers, hidden 64, a byte-level BPE vocabulary
of a few hundred tokens trained here on the tiny task's own text. Nothing is downloaded.

    >>> from tests.tiny_models import tiny_student
    >>> path = tiny_student(tmp_path)            # a directory AutoModelForCausalLM can load
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]

# A compact ChatML template in the shape of Qwen2.5's: tools go into the system turn, each
# assistant tool call is a JSON object between <tool_call> tags.
CHAT_TEMPLATE = """\
{%- set sys = messages[0].content if messages and messages[0].role == 'system' else 'You are a helpful assistant.' -%}
{{- '<|im_start|>system\\n' + sys -}}
{%- if tools -%}
{{- '\\n\\n# Tools\\n<tools>' -}}
{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}
{{- '\\n</tools>' -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- elif message.role == 'assistant' -%}
{{- '<|im_start|>assistant' -}}
{%- if message.content -%}{{- '\\n' + message.content -}}{%- endif -%}
{%- for call in (message.tool_calls or []) -%}
{%- set call = call.function if call.function is defined else call -%}
{{- '\\n<tool_call>\\n{"name": "' + call.name + '", "arguments": ' + (call.arguments | tojson) + '}\\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>\\n' -}}
{%- else -%}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}
"""

# Text the BPE merges are learned from: the tiny task's tools and inputs plus JSON punctuation.
_ASSETS = Path(__file__).parent / "assets" / "tiny_task"


def _corpus() -> list[str]:
    lines = [(_ASSETS / name).read_text(encoding="utf-8") for name in ("tools.json", "task.yaml")]
    for name in ("train.jsonl", "test.jsonl"):
        lines += (_ASSETS / name).read_text(encoding="utf-8").splitlines()
    lines.append('{"name": "x", "arguments": {"a": 1, "b": "c"}} system user assistant')
    return lines * 4


def tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ChatML special tokens and a tool template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[1:],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(vocab_size: int, arch: str = "qwen2", **overrides):
    """A 2-layer, hidden-64 config of ``arch`` ("qwen2", with q/k/v biases, or "llama")."""
    from transformers import LlamaConfig, Qwen2Config

    values = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    values.update(overrides)
    return {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch](**values)


def tiny_student(
    directory: Path, seed: int = 0, vocab_size: int = 400, arch: str = "qwen2", **overrides
) -> Path:
    """Save a tiny random model (Qwen2 unless ``arch="llama"``) + tokenizer under ``directory``."""
    import torch
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    tok = tiny_tokenizer(vocab_size)
    torch.manual_seed(seed)
    config = tiny_config(len(tok), arch, **overrides)
    config.eos_token_id = tok.eos_token_id
    config.pad_token_id = tok.pad_token_id
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    (directory / "tiny.json").write_text(json.dumps({"seed": seed}), encoding="utf-8")
    return directory
