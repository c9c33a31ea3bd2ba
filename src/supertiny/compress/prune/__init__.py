"""Pruning: a smaller float model that answers the task as before (or nearly, until ``recover``).

- ``vocab.py``: keep only the task's tokens (embedding and LM-head rows shrink, renumbered);
- ``structural.py``: drop whole blocks (depth), MLP channels and attention heads (width);
- ``importance.py``: calibration batches and the scores that say what to drop (block
  influence, channel activations, head output norms).
"""
