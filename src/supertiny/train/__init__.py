"""Stage 2, ``supertiny train``: the student learns the task from the teacher's labels.

- ``stage.py``: the stage (``run``): the curriculum in order, resume, ``train_report.json``,
  and ``STEPS``, the registry of step kinds;
- ``config.py``: ``TrainConfig``, one class per step kind, the presets (docs/train.md);
- one file per step, each ``run(ctx, step) -> metrics``: ``sft.py``, ``rft.py`` (rejection
  sampling), ``dpo.py``, ``grpo.py`` (Sim-RL reward), ``kd.py`` (logit distillation; its
  ``distill`` is the compress stage's recovery);
- ``losses.py``: the KD losses (forward/reverse KL, JSD, CKD), pure torch functions;
- ``trainers.py``: ``StepContext``, trainer settings, NaN guard, checkpoints and resume;
- ``data.py``: training examples (token ids, prompt masked); ``sampling.py``: on-policy
  samples from the student; ``distributed.py``: ``accelerate launch`` helpers;
- ``summary.py``: the table ``supertiny train`` prints.

Models are loaded, rendered and scored through ``runtime/``.
"""
