"""The comparison table of ``supertiny eval`` (and of ``supertiny run`` at its end), read from
``eval_report.json``: accuracy, latency, throughput, size and cost of every model.

    print_table(run_dir / "eval" / "eval_report.json")
"""

from __future__ import annotations

import json
from pathlib import Path

from supertiny.core.progress import console
from supertiny.core.tables import numbers_table, pct, print_wide, seconds, speed


def print_summary(run_dir: Path, artifacts: dict[str, str]) -> None:
    """The table, then the command that draws the report."""
    print_table(run_dir / artifacts["report"])
    console.print(f"draw the report: supertiny report {run_dir}", soft_wrap=True)


def print_table(report_path: Path) -> None:
    """The comparison table: accuracy, latency, throughput, size and cost of every model."""
    report = json.loads(report_path.read_text())
    settings = report["settings"]
    title = (
        f"eval: {report['task']} ({report['test_n']} gold test records; "
        f"${settings['hourly_price_usd']}/h machine)"
    )
    table = numbers_table(
        title,
        "model",
        "runtime",
        "exact",
        "arg F1",
        "valid",
        "Sim",
        "p50",
        "p95",
        "p99",
        "req/s",
        "params",
        "size",
        "tok in/out",
        "$/1k",
        "p50 vs teacher",
    )
    teacher = next((m for m in report["models"] if m["kind"] == "teacher"), None)
    for m in report["models"]:
        lat = m["latency_s"]
        vs_teacher = None
        if teacher and teacher["latency_s"]["p50"] and lat["p50"]:
            vs_teacher = teacher["latency_s"]["p50"] / lat["p50"]
        rps = m.get("requests_per_s")
        table.add_row(
            m["name"],
            m["runtime"],
            pct(m["exact"]),
            pct(m["f1"]),
            pct(m["valid"]),
            pct(m["similarity"]),
            seconds(lat["p50"]),
            seconds(lat["p95"]),
            seconds(lat["p99"]),
            "-" if rps is None else f"{rps:.2f} @{m['concurrency']}",
            "-" if m.get("params") is None else f"{m['params'] / 1e6:,.0f}M",
            "-" if m.get("bytes") is None else f"{m['bytes'] / 2**20:,.0f} MiB",
            f"{m['tokens_in'] or 0:,.0f} / {m['tokens_out'] or 0:,.0f}",
            "-" if m.get("cost_per_1k_usd") is None else f"${m['cost_per_1k_usd']:.4f}",
            speed(vs_teacher) if m is not teacher else "",
        )
    print_wide(table)
