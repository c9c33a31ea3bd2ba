"""Loading and running models: what the stages and the server share; it imports no stage.

- ``hf.py``: transformers models and tokenizers (aliases, GGUF dequantized once, LoRA, save);
- ``render.py``: a record as the student's prompt and answer text (its chat template);
- ``generate.py``: batched sampling from a transformers model (the train stage's on-policy steps);
- ``scoring.py``: the one way a model is scored on the gold test set: the request (prompt,
  tools, ``tool_choice``, greedy, ``max_tokens``), a serving backend, the answer's reading and
  ``Task.evaluate`` (train after every step, compress for every model, eval over HTTP);
  ``measure.py``: latency (through the same backend), parameters and bytes;
- ``torchao.py``: loading a torchao-quantized folder; ``llama.py``: llama-cpp-python (the
  import, ``Llama``, its native log);
- ``backend.py``: the ``Backend`` interface of ``supertiny serve`` and its shared helpers;
  ``backends.py``: the ``BACKENDS`` registry and ``load_backend``;
  ``llamacpp.py`` (+ ``grammar.py``, GBNF) and ``torch_backend.py`` (+ ``torch_sampling.py``,
  xgrammar): the two backends;
- ``process.py``: ``ServerProcess``, ``supertiny serve`` in a child process that never
  outlives its parent (the label stage's teacher, the eval stage's local models).

One model on the same records gets the same numbers in the train, compress and eval reports:
all three score it through ``scoring.py`` and the serving backends.
"""
