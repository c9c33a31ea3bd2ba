"""Stage 3, ``supertiny compress``: prune (vocabulary, depth, width), recover by distillation,
quantize, export GGUF; every model it makes is measured.

    supertiny compress examples/smart_home/task.yaml --preset small

- ``stage.py``: the stage (``run``): the steps in order, resume, ``compress_report.json``;
- ``config.py``: ``CompressConfig``, one class per step kind, the presets (docs/compress.md);
- ``steps.py``: the ``STEPS`` registry, one function per step kind (``recover`` is the train
  stage's KD, through its public ``train.kd.distill``);
- ``prune/``: ``vocab.py`` (keep the task's tokens), ``structural.py`` (drop blocks, MLP
  channels, attention heads), ``importance.py`` (what to drop);
- ``quantize/``: ``torchao.py`` (int8/int4 for PyTorch);
- ``gguf/``: GGUF for llama.cpp (``export.py``, ``writer.py``, ``vocab.py``,
  ``llama_quantize.py``, ``calibrated.py`` with ``gptq.py`` and ``blocks.py``);
- ``summary.py``: the table ``supertiny compress`` prints.

Models are loaded, scored and timed through ``runtime/``.
"""

from supertiny.core.errors import SupertinyError


class CompressError(SupertinyError, RuntimeError):
    """A compression step cannot run as asked (unsupported architecture, bad target, ...)."""
