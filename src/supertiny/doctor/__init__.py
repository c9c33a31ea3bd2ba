"""``supertiny doctor``: checks that this machine can run the pipeline, and the fixes.

- ``checks.py``: the checks and ``--fix``;
- ``probes.py``: the checks that load native code, each run in a child process;
- ``llama_build.py``: builds llama-cpp-python for this CPU without AMX or ``-march=native``
  (stdlib only: it runs before supertiny is installed);
- ``summary.py``: the table ``supertiny doctor`` prints.

A verb of its own, beside the stages: it imports only ``core/``.
"""

from supertiny.doctor.checks import Check, fix, run_checks

__all__ = ["Check", "fix", "run_checks"]
