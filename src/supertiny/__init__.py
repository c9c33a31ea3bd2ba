"""supertiny: turn an expensive LLM feature into a super-tiny model that does the same job.

Stages (each a CLI verb, each reading and writing records in a run directory):
label (teacher pipeline + quality control) -> train -> compress -> eval -> serve.
Run `supertiny --help` for the verbs.
"""

__version__ = "0.1.0"
