"""The reference pages in docs/, generated from the typed configs: ``python -m supertiny.docs``.

- ``generate.py``: ``pages()`` (one Markdown page per stage of ``stages.STAGES``, plus the
  task and pipeline files) and ``main(argv)`` (write them, or ``--check`` that they are
  current: the tests run it);
- ``__main__.py``: ``python -m supertiny.docs``.
"""

from supertiny.docs.generate import main, pages

__all__ = ["main", "pages"]
