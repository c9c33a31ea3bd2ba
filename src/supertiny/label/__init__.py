"""Stage 1, ``supertiny label``: the teacher's function-call pipeline labels the task's inputs.

- ``stage.py``: the stage (``run``), its manifest settings, the ``Labeler`` (samples, vote,
  judge) and ``run_teacher``, the same pipeline for the eval stage's teacher re-run;
- ``config.py``: ``LabelConfig`` and its presets (docs/label.md);
- ``prototype.py``: the function-call pipeline itself (helper calls that really execute,
  dry-runs of the final calls, errors fed back to the teacher);
- ``quality.py``: sample checks, the vote, preference pairs, the LLM judge, de-duplication;
- ``inputs.py``: which inputs to label (bad lines, duplicates, ``limit``) and the gold tests;
- ``endpoint.py``: the teacher endpoint (a URL, or the bundled teacher served locally);
- ``client.py``: the OpenAI-compatible client (retries, concurrency, prices, the cache);
  ``cache.py``: its on-disk response cache;
- ``summary.py``: ``label_report.json`` from the records on disk, and the terminal table.
"""
