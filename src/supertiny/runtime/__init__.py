"""Loading and running models: what the stages and the server share; it imports no stage.

- ``hf.py``: transformers models and tokenizers (aliases, GGUF dequantized once, LoRA, save);
- ``render.py``: a record as the student's prompt and answer text (its chat template);
- ``generate.py``: batched sampling and greedy answers from a transformers model;
- ``scoring.py``: a model's answers on the gold test set, scored by ``Task.evaluate``
  (train after every step, compress for every model), and their ``EvalSettings``;
- ``runners.py``: greedy answers and per-token timings, the same on PyTorch and llama.cpp;
  ``measure.py``: latency, parameters and bytes;
- ``torchao.py``: loading a torchao-quantized folder; ``llama.py``: llama-cpp-python (the
  import, ``Llama``, its native log);
- ``backend.py``: the ``Backend`` interface of ``supertiny serve`` and its shared helpers;
  ``backends.py``: the ``BACKENDS`` registry and ``load_backend``;
  ``llamacpp.py`` (+ ``grammar.py``, GBNF) and ``torch_backend.py`` (+ ``torch_sampling.py``,
  xgrammar): the two backends;
- ``process.py``: ``ServerProcess``, ``supertiny serve`` in a child process that never
  outlives its parent (the label stage's teacher, the eval stage's local models).

Three ways to run a model still coexist here (``scoring``/``generate`` free decoding,
``runners``, the serving backends under grammars); making them one is the next step.
"""
