"""supertiny: turn an expensive LLM feature into a super-tiny model that does the same job.

Stages (each a CLI verb, each reading and writing records in a run directory):
label (teacher pipeline + quality control) -> train -> compress -> eval -> serve.
Run `supertiny --help` for the verbs.

- ``cli.py``: the parser and the verb table; ``__main__.py``: ``python -m supertiny``;
- ``stages.py``: the ``Stage`` interface and the one ``STAGES`` table;
- ``pipeline.py``: ``supertiny run``, every stage of a pipeline file in order;
- ``core/``, ``runtime/``: the shared parts (no stage imported);
- ``label/``, ``train/``, ``compress/``, ``evaluate/``, ``report/``: the stages;
- ``serve/``, ``doctor/``: the other verbs; ``docs/``: the generator of docs/*.md.

The picture, the rules and where new things go: docs/architecture.md.
"""

__version__ = "0.1.0"
