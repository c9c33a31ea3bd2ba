"""The table of ``supertiny doctor``: every check with its status, detail and fix.

exit_code = print_checks(run_checks())     # 1 when a check failed, else 0
"""

from __future__ import annotations

from supertiny.core.progress import console


def print_checks(checks) -> int:
    """Print the checks as a table (and the failed ones again); 1 if any failed, else 0."""
    from rich.table import Table

    table = Table(title="supertiny doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    for check in checks:
        status = f"[{colour[check.status]}]{check.status}[/]"
        table.add_row(check.name, status, check.detail, check.fix if check.status != "ok" else "")
    console.print(table)
    failed = [check.name for check in checks if check.status == "fail"]
    if failed:
        console.print(
            f"[red]{len(failed)} check(s) failed:[/] {', '.join(failed)}; run the fix shown"
        )
    return 1 if failed else 0
