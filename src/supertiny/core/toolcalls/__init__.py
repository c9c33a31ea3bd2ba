"""Tool calls, the one definition of "a call" and of "right": ``from supertiny.core import toolcalls``.

- ``read.py``: ``ToolCall``, ``Parsed``, ``parse`` (any model output -> calls; never raises),
  ``extract`` and ``loads_lenient`` (calls inside text, lenient JSON);
- ``schema.py``: a function's parameter schema, ``coerce`` (values the schema types) and
  ``validate`` (``jsonschema``);
- ``match.py``: canonical form, ``exact_match``, ``argument_prf``, the Sim-RL ``similarity``
  and ``score``, which the Task, voting, rewards, evaluation and the server all call.

This package re-exports the names of ``match.__all__`` (its public API). The files are not
named ``parse.py`` and ``score.py``: a module would then share its name with the function
the package re-exports, and ``import supertiny.core.toolcalls.parse as m`` would give the
function.

    python -m pytest tests/unit/core/test_toolcalls.py -q
"""

# The public names are match.py's; its __all__ is the one list of them.
from supertiny.core.toolcalls.match import *  # noqa: F403
from supertiny.core.toolcalls.match import __all__  # noqa: F401
