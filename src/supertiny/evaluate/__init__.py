"""The eval stage, ``supertiny eval``: every model on the same gold test set, one table.

- ``stage.py``: the stage (``run``): the line-up of models, where each one is, its settings
  hash, one row per model into ``eval_report.json``;
- ``config.py``: ``EvalConfig``, ``ModelEntry`` and the presets (docs/eval.md);
- ``local.py``: a local model behind ``supertiny serve --task``, asked over HTTP;
- ``teacher.py``: the teacher pipeline as the label stage ran it (or runs it again);
- ``metrics.py``: one model's row from its scored answers (accuracy, latency, cost, size);
- ``summary.py``: the comparison table ``supertiny eval`` and ``supertiny run`` print.

``EvalError`` lives here, in the package root, because ``stage.py``, ``local.py`` and
``teacher.py`` all raise it (``stage.py`` imports the other two).
"""

from supertiny.core.errors import SupertinyError


class EvalError(SupertinyError, RuntimeError):
    """A model cannot be measured (missing stage output, a server that died)."""
