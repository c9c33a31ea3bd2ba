"""PyTorch quantization: ``torchao.py`` quantizes a model's linear layers with torchao (int8
weights, int8 dynamic activations, int4 weights) and saves the folder; loading such a folder
is ``runtime/torchao.py``'s (the runners and the serving backend load it too).
"""
