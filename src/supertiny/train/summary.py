"""The table of ``supertiny train``, read from ``train_report.json``: the teacher, the untrained
student and every step side by side on the same gold test records.

    print_summary(run_dir, artifacts)     # prints once, on the main process
"""

from __future__ import annotations

import json
from pathlib import Path

from supertiny.core.progress import console
from supertiny.core.tables import pct


def print_summary(run_dir: Path, artifacts: dict[str, str]) -> None:
    """The table and the final model (on the main process only, under ``accelerate launch``)."""
    from supertiny.train import distributed

    if distributed.is_main():  # one table under accelerate launch
        print_table(run_dir / artifacts["report"], run_dir / artifacts["model"])


def print_table(report_path: Path, model_path: Path) -> None:
    from rich.table import Table

    report = json.loads(report_path.read_text())
    table = Table(title=f"train: {report['task']} ({report['test_n']} gold test records)")
    for column in ("model", "exact", "valid", "similarity", "gain", "tokens/s"):
        table.add_column(column)

    def row(name, ev, gain="", speed=""):
        ev = ev or {}
        table.add_row(
            name,
            pct(ev.get("exact")),
            pct(ev.get("valid")),
            pct(ev.get("similarity")),
            gain,
            speed,
        )

    row("teacher pipeline", report.get("teacher"))
    row("student, untrained", report.get("student_before"))
    for step in report["steps"]:
        gain = step.get("gain_exact")
        speed = step["metrics"].get("tokens_per_s")
        row(
            step["name"],
            step.get("eval"),
            "" if gain is None else f"{gain:+.1%}",
            "" if speed is None else f"{speed:,.0f}",
        )
    console.print(table)
    console.print(f"model: {model_path}")
