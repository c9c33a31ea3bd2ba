"""Run the OpenAI-compatible server: `python -m supertiny.serve --model student --port 8000`.

The same as `supertiny serve` (same options; `serve.server.main`); `runtime/process.py`
starts servers this way.
"""

from __future__ import annotations

import sys

from supertiny.serve.server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
