"""``python -m supertiny ...``: the same as the ``supertiny`` command."""

import sys

from supertiny.cli import main

if __name__ == "__main__":
    sys.exit(main())
