"""The table of ``supertiny compress``, read from ``compress_report.json``: every model's size,
accuracy and latency side by side, then the compressed model and how to serve it.

    print_summary(run_dir, artifacts)
"""

from __future__ import annotations

import json
from pathlib import Path

from supertiny.core.progress import console
from supertiny.core.tables import numbers_table, pct, print_wide, speed


def print_summary(run_dir: Path, artifacts: dict[str, str]) -> None:
    """The table, the final model and, for a GGUF, the command that serves it."""
    print_table(run_dir / artifacts["report"])
    final = artifacts.get("gguf") or artifacts.get("model")
    if final:
        console.print(f"compressed model: {run_dir / final}", soft_wrap=True)
        if final.endswith(".gguf"):
            console.print(f"serve it: supertiny serve --model {run_dir / final}", soft_wrap=True)


def print_table(report_path: Path) -> None:
    """The compression table: every model's size, accuracy and latency side by side."""
    report = json.loads(report_path.read_text())
    title = f"compress: {report['task']} ({report['test_n']} gold test records)"
    table = numbers_table(
        title,
        "model",
        "runtime",
        "params",
        "non-emb",
        "size",
        "exact",
        "valid",
        "p50",
        "p95",
        "tok/s",
        "p50 vs input",
    )
    for row in [report["input"], *report["steps"]]:
        ev, lat, params = row.get("eval") or {}, row["latency"], row["params"]
        speedup = (row.get("vs_input") or {}).get("p50_speedup")
        info = row.get("info") or {}
        detail = info.get("quant") or info.get("scheme") or ""
        table.add_row(
            f"{row['name']} {detail}".strip(),
            lat["backend"],
            f"{params['total'] / 1e6:,.0f}M",
            f"{params['non_embedding'] / 1e6:,.0f}M",
            f"{row['bytes'] / 2**20:,.0f} MiB",
            pct(ev.get("exact")),
            pct(ev.get("valid")),
            f"{lat['p50_s']:.2f} s",
            f"{lat['p95_s']:.2f} s",
            "" if lat.get("decode_tok_s") is None else f"{lat['decode_tok_s']:,.1f}",
            speed(speedup),
        )
    print_wide(table)
