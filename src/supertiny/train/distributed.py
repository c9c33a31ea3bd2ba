"""Training under ``accelerate launch`` (or ``torchrun``): every process trains, one writes.

``accelerate launch --num_processes N -m supertiny.cli train TASK.yaml`` starts the whole
stage in N processes. The transformers/TRL trainers spread each step's batches over them
(data parallel). Everything around the trainers happens once, on the main process, while
the others wait: the run manifest and step folders, sampling (rft, dpo), the teacher's
cached top-k (kd), saving the merged model, evaluation and the reports. Work that the
others need afterwards (samples, evaluation logs, the teacher cache) goes through
``main_first``: the main process does it and writes it to disk, then the others run the
same code, which finds everything on disk and only reads it.

With one process (no ``WORLD_SIZE`` in the environment, or 1) every helper here is a no-op
and accelerate is not touched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def world_size() -> int:
    """Processes in this run (``WORLD_SIZE``, set by accelerate launch and torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _state():
    import torch
    from accelerate import PartialState

    # Without a GPU, accelerate starts the processes' group (gloo) only when told it is a
    # CPU run; the trainers' `use_cpu` says the same later, to the same shared state.
    return PartialState(cpu=not torch.cuda.is_available())


def is_main() -> bool:
    """True in the process that writes (the only one when not launched in several)."""
    return world_size() == 1 or _state().is_main_process


def wait() -> None:
    """Every process waits here until all have arrived (nothing with one process)."""
    if world_size() > 1:
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first; the others run it after it finished."""
    if world_size() == 1:
        yield
        return
    with _state().main_process_first():
        yield
