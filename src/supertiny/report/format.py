"""How the run report (``supertiny.report.page``) writes numbers and HTML: formats, tables, the page.

    supertiny report runs/sh_demo          # every table of runs/sh_demo/report.html comes from here

Numbers are formatted for people the same way in tables and on plot axes (``pct``, ``seconds``,
``size``, ``usd``, ``times``; ``None`` is "—"); ``table`` builds an HTML table from ``Col``
specs and highlights the best value per column; ``kv_table``, ``heat_table``, ``tiles``,
``card`` and ``missing`` are the page's other building blocks; ``page`` wraps the body in the
one inline stylesheet ``CSS`` (no script, no external URL). HTML is f-strings over
``html.escape``: a few tables do not need a template engine.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# ----- numbers for people -------------------------------------------------------------------

DASH = "—"


def num(value: Any) -> float | None:
    """``value`` as a finite float, or None (null, missing, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def pct(value: Any, digits: int = 1) -> str:
    """0.275 -> "27.5%"."""
    v = num(value)
    return DASH if v is None else f"{v * 100:.{digits}f}%"


def points(gap: float | None) -> str:
    """A difference in percentage points, signed: -20.0 -> "−20.0 points"."""
    if gap is None:
        return DASH
    sign = "+" if gap > 0.05 else "−" if gap < -0.05 else "±"
    return f"{sign}{abs(gap):.1f} points"


def seconds(value: Any) -> str:
    """0.7925 -> "792 ms", 6.0 -> "6.00 s", 362 -> "6.0 min"."""
    v = num(value)
    if v is None:
        return DASH
    if v < 1:
        return f"{v * 1000:.0f} ms" if v >= 0.01 else f"{v * 1000:.1f} ms"
    if v < 60:
        return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"
    return f"{v / 60:.1f} min" if v < 3600 else f"{v / 3600:.1f} h"


def tick_seconds(value: float) -> str:
    """An axis tick: like ``seconds`` below a minute, then whole seconds (100 s, 200 s)."""
    return seconds(value) if value < 60 else f"{value:,.0f} s"


def size(value: Any, missing: str = DASH) -> str:
    """Bytes, binary units: 383336320 -> "366 MB", 1117320768 -> "1.04 GB"."""
    v = num(value)
    if v is None:
        return missing
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if v >= scale:
            x = v / scale
            return (
                f"{x:.2f} {unit}" if x < 10 else f"{x:.1f} {unit}" if x < 100 else f"{x:.0f} {unit}"
            )
    return f"{v:.0f} B"


def count(value: Any) -> str:
    """Parameters: 1540000000 -> "1.54B", 360532352 -> "360.5M"."""
    v = num(value)
    if v is None:
        return DASH
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}" if unit == "B" else f"{v / scale:.1f}{unit}"
    return f"{v:.0f}"


def usd(value: Any) -> str:
    """Dollars: 0.8 -> "$0.80", 0.22 -> "$0.22"; two significant digits below 10 cents."""
    v = num(value)
    if v is None:
        return DASH
    if v == 0 or v >= 0.1:
        return f"${v:,.2f}"
    return f"${v:.2g}" if v >= 1e-4 else f"${v:.1e}"


def times(value: Any) -> str:
    """A factor: 6.18 -> "6.2x", 40.3 -> "40x"."""
    v = num(value)
    if v is None:
        return DASH
    return f"{v:.2f}x" if v < 1 else f"{v:.1f}x" if v < 10 else f"{v:,.0f}x"


def decimal(value: Any, digits: int = 1) -> str:
    """A plain number with thousands separators: 7548.0 -> "7,548" (digits=0)."""
    v = num(value)
    return DASH if v is None else f"{v:,.{digits}f}"


def when(stamp: Any) -> str:
    """An ISO timestamp as "2026-11-24 22:49" (as written: no time-zone conversion)."""
    if not stamp:
        return DASH
    text = str(stamp).replace("T", " ")
    return text[:16] if len(text) >= 16 and text[4] == "-" else text


def duration(start: Any, end: Any) -> str:
    """Wall time between two ISO timestamps of the manifest."""
    try:
        a, b = (datetime.fromisoformat(str(t)) for t in (start, end))
    except (TypeError, ValueError):
        return DASH
    return seconds((b - a).total_seconds())


def summary(values: dict[str, Any]) -> str:
    """A stage's manifest summary as "key value, ..." with each value formatted by its key."""
    parts = []
    for key, value in values.items():
        label = key.removesuffix("_s").replace("_", " ")
        if isinstance(value, dict):
            shown = f"({summary(value)})"
        elif "exact" in key or "rate" in key:
            shown = pct(value)
        elif "params" in key:
            shown = count(value)
        elif "speedup" in key:
            shown = times(value)
        elif key.endswith("_s"):
            shown = seconds(value)
        elif num(value) is not None:
            shown = decimal(value, 0 if float(value).is_integer() else 2)
        else:
            shown = str(value)
        parts.append(f"{label} {shown}")
    return ", ".join(parts) or DASH


# ----- HTML ---------------------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(DASH if value is None else str(value))


def code(value: Any) -> str:
    """A value as escaped <code>."""
    return f"<code>{esc(value)}</code>"


def code_spans(text: str) -> str:
    """Escape ``text`` and set its `backquoted` parts as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def dig(row: Any, path: str) -> Any:
    """``dig(m, "latency_s.p50")``: a nested value, or None where a key is missing."""
    for key in path.split("."):
        row = row.get(key) if isinstance(row, dict) else None
    return row


def dec(digits: int) -> Callable[[Any], str]:
    """A formatter for plain numbers with ``digits`` decimals."""
    return lambda value: decimal(value, digits)


@dataclass
class Col:
    """A table column: where a row's value is, how to show it, which way is better."""

    head: str
    get: str | Callable[[Any], Any]  # a dotted path into the row (see ``dig``) or a function
    fmt: Callable[[Any], str] = lambda v: DASH if v is None else str(v)
    better: str | None = None  # "high" | "low": the best value in the column is highlighted
    raw: bool = False  # fmt returns HTML (escaped by fmt itself)
    suffix: Callable[[Any], str] | None = None  # extra text from the row, after the value

    def value(self, row: Any) -> Any:
        return dig(row, self.get) if isinstance(self.get, str) else self.get(row)


def table(rows: list[Any], cols: list[Col], cls: str = "") -> str:
    """An HTML table; in each column with ``better``, the best value (ties too) is marked."""
    best = {}
    for i, col in enumerate(cols):
        known = {v for v in (num(col.value(r)) for r in rows) if v is not None}
        if col.better and len(known) > 1:
            best[i] = max(known) if col.better == "high" else min(known)
    numeric = [bool(c.better) or any(num(c.value(r)) is not None for r in rows) for c in cols]
    head = "".join(
        f"<th{' class=num' * n}>{esc(c.head)}</th>" for c, n in zip(cols, numeric, strict=True)
    )
    body = []
    for row in rows:
        cells = []
        for i, col in enumerate(cols):
            value = col.value(row)
            text = col.fmt(value) if col.raw else esc(col.fmt(value))
            if col.suffix:
                text += esc(col.suffix(row))
            is_best = i in best and num(value) == best[i]
            classes = " ".join(c for c, on in (("num", numeric[i]), ("best", is_best)) if on)
            cells.append(f'<td class="{classes}">{text}</td>' if classes else f"<td>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def kv_table(pairs: list[tuple[str, str]]) -> str:
    """A two-column table of facts."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def heat_table(rows: list[str], sizes: list[Any], cols: list[str], values: list[list[Any]]) -> str:
    """Shares (0..1) per row x column, each cell shaded from white (0) to green (1)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join(
        f"<tr><td>{esc(row)}</td><td class=num>{decimal(n, 0)}</td>{''.join(map(_heat_cell, cells))}</tr>"
        for row, n, cells in zip(rows, sizes, values, strict=True)
    )
    return (
        f'<table class="heat"><thead><tr><th>category</th><th>n</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _heat_cell(value: Any) -> str:
    v = num(value)
    if v is None:
        return f'<td class="num">{DASH}</td>'
    alpha = 0.04 + 0.6 * max(0.0, min(1.0, v))
    return f'<td class="num" style="background:rgba(5,150,105,{alpha:.2f})">{pct(v, 0)}</td>'


def tiles(items: list[tuple[str, str, str | None]], caption: str) -> str:
    """Big-number tiles: (label, value, the teacher's value or None), then a caption."""
    cells = "".join(
        f'<div class="tile"><div class="k">{esc(label)}</div><div class="v">{esc(value)}</div>'
        + (f'<div class="t">teacher: {esc(theirs)}</div>' if theirs is not None else "")
        + "</div>"
        for label, value, theirs in items
    )
    return f'<div class="tiles">{cells}</div><p class="muted">{esc(caption)}</p>'


def card(svg: str | None, empty: str) -> str:
    """A plot in a card, or ``empty`` in italics where there was nothing to draw."""
    return f'<div class="card">{svg or f"<p class=missing>{esc(empty)}</p>"}</div>'


def missing(title: str, message: str) -> str:
    """A section for a stage that has not run yet: its title and what to run."""
    return f'<section><h2>{esc(title)}</h2><p class="missing">{code_spans(message)}</p></section>'


def page(title: str, body: str) -> str:
    """The whole HTML document: one inline stylesheet, no script, no external resource."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n"
    )


CSS = """
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#fff;
        --good:#059669; --bad:#d97706; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width:1360px; margin:0 auto; padding:24px 24px 48px; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:19px; margin:0 0 12px; }
h3 { font-size:15px; margin:18px 0 8px; } .card h3 { margin-top:0; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:18px 20px; margin:16px 0; }
.muted { color:var(--muted); } .missing { color:var(--muted); font-style:italic; }
code { font:12.5px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; background:#f1f5f9;
       padding:1px 4px; border-radius:4px; white-space:pre-wrap; word-break:break-word; }
.verdict { border-left:6px solid var(--accent); } .verdict p { font-size:17px; margin:6px 0; }
.verdict.good { border-left-color:var(--good); } .verdict.bad { border-left-color:var(--bad); }
.verdict p.muted { font-size:13px; }
.tiles { display:grid; grid-template-columns:repeat(4, 1fr); gap:12px; margin:14px 0 6px; }
.tile { border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
.tile .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.tile .v { font-size:26px; font-weight:650; } .tile .t { color:var(--muted); }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:6px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
thead th { background:#f1f5f9; font-weight:600; }
th.num { text-align:right; }
.scroll { overflow-x:auto; }
table.compare, table.heat { font-size:12.5px; }
table.compare td, table.compare th { padding:6px 6px; }
tbody tr:nth-child(even) { background:#fafafa; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.best { background:#dcfce7 !important; font-weight:650; }
table.kv th { width:45%; font-weight:500; color:#374151; background:none; }
table.heat td, table.heat th { text-align:center; padding:5px 4px; }
table.heat td:first-child, table.heat th:first-child { text-align:left; }
table.errors td { max-width:360px; }
.status.finished { color:var(--good); font-weight:600; } .status.running { color:var(--bad); }
.grid { display:grid; grid-template-columns:repeat(2, minmax(0, 1fr)); gap:16px; margin-top:14px; }
.grid.three { grid-template-columns:repeat(3, minmax(0, 1fr)); }
.card { border:1px solid var(--line); border-radius:8px; padding:12px; background:#fff; min-width:0; }
svg.plot { width:100%; height:auto; display:block; }
details { border:1px solid var(--line); border-radius:8px; padding:8px 12px; margin:8px 0; }
summary { cursor:pointer; } details table { margin-top:8px; }
ul.notes { color:#92400e; font-size:13px; }
"""
