"""``python -m supertiny.docs [--check]``: regenerate (or check) the reference pages in docs/."""

import sys

from supertiny.docs.generate import main

if __name__ == "__main__":
    sys.exit(main())
