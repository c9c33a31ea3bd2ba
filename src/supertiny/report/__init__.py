"""``supertiny report RUN_DIR``: one self-contained HTML page about a run, with plots.

- ``page.py``: what the page says (the verdict, the evaluation, the order of the sections)
  and ``write_report``;
- ``sections.py``: ``load_run`` (what the stages left in the run directory) and the sections
  on the run and the label, train and compress stages;
- ``format.py``: number formats, HTML tables, the stylesheet; ``plots.py``: matplotlib plots
  as inline SVG;
- ``command.py``: the verb (``add_arguments``, ``run_from_args``) and the PNG ``screenshot``.

It reads the stages' JSON reports from disk and imports only ``core/``.
"""
