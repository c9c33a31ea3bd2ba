"""Progress bars and console output shared by every stage (rich).

``with bar(total, "labelling") as advance: advance(1, accepted=3)`` shows a bar with the
count, rate, elapsed time and ETA; extra keyword fields are shown after the description.
Bars are plain log lines when the output is not a terminal (CI logs stay readable).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)


class _RateColumn(ProgressColumn):
    """Items per minute (LLM work is slow: per-second rates read as 0.0)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "-- /min" if not speed else f"{speed * 60:.1f}/min", style="progress.data.speed"
        )


@contextmanager
def bar(total: int | None, description: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A progress bar; yields ``advance(n=1, **fields)``."""
    if not enabled:
        yield lambda n=1, **fields: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    last_log = [time.monotonic()]
    with progress:
        task_id = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: object) -> None:
            info = "  ".join(f"{k}={v}" for k, v in fields.items())
            progress.update(task_id, advance=n, info=info)
            if not console.is_terminal:  # no live bar: a log line every 10 s and at the end
                done = progress.tasks[0].completed
                if time.monotonic() - last_log[0] >= 10 or (total and done >= total):
                    last_log[0] = time.monotonic()
                    console.log(f"{description}: {done:.0f}/{total} {info}")

        yield advance


def warn(message: str, notes: list[str] | None = None) -> None:
    """Print a warning now and keep it in ``notes`` (a step's metrics carry them)."""
    console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)  # paths stay whole
    if notes is not None:
        notes.append(message)
