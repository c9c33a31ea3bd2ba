"""Stage 3: compression. Prune (vocabulary, depth, width), recover by distillation, quantize, export.

    supertiny compress examples/smart_home/task.yaml --preset small

One module per algorithm: ``vocab`` (keep the task's tokens), ``structural`` (drop blocks,
MLP channels and attention heads by importance), ``quantize`` (torchao int8/int4),
``gguf_export`` (GGUF for llama.cpp, then llama.cpp's own quantizer); ``compress`` runs a
configured list of them as one stage and measures every step.
"""


class CompressError(RuntimeError):
    """A compression step cannot run as asked (unsupported architecture, bad target, ...)."""
