"""GGUF for llama.cpp: write, quantize and check one file.

- ``export.py``: ``export_gguf``, the whole export (write F16, check the tokenizer, quantize);
- ``writer.py``: HF safetensors + config -> GGUF tensors and metadata (``write_gguf``);
- ``vocab.py``: the tokenizer half (tokens, merges, chat template) and ``verify_tokenizer``;
- ``llama_quantize.py``: llama.cpp's quantizer (``quantize_gguf``), with an importance matrix;
- ``calibrated.py``: calibration from the task: the importance matrix, and GPTQ rounding of
  the tensors stored in 32-weight blocks (``gptq.py``, in the formats of ``blocks.py``).

Arrows: export -> writer, vocab, llama_quantize, calibrated; calibrated -> writer,
llama_quantize, vocab, gptq, blocks; writer -> vocab; vocab, llama_quantize ->
``runtime/llama.py``. No circle.
"""
