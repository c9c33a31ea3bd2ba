"""Terminal tables: the number formats and the table shape every stage's summary prints.

    table = numbers_table("eval: smart_home", "model", "runtime", "exact", "p50")
    table.add_row("student", "llama.cpp", pct(0.875), seconds(0.41))
    print_wide(table)

Used by each stage's ``summary.py`` (the CLI's tables) so that a rate, a time and a speed-up
look the same in every table.
"""

from __future__ import annotations

from supertiny.core.progress import console


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def speed(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def numbers_table(title: str, *columns: str):
    """A table of figures: the model and runtime columns left-aligned, numbers right."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "runtime") else "right")
    return table


def print_wide(table) -> None:
    width = console.width
    if not console.is_terminal:  # a log file or pipe gets whole rows, not 80 wrapped columns
        console.width = max(width, 170)
    try:
        console.print(table)
    finally:
        console.width = width
