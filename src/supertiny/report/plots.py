"""How the run report (``supertiny.report.page``) draws its plots, with matplotlib.

    supertiny report runs/sh_demo          # draws every plot into runs/sh_demo/report.html

Plots take plain numbers (and a formatter from ``format.py`` for the axis ticks) and return
an ``<svg>`` element to paste into HTML (no XML prolog, no namespace or metadata URLs, ids
salted per plot so several SVGs share one page; CSS sizes it), or ``None`` when there is
nothing to draw. Text stays text (``svg.fonttype: none``). matplotlib is switched to its
non-interactive Agg backend when the first plot is drawn, never at import, and every figure is
closed once saved. ``pareto_front`` is the pure function behind the front drawn on the
accuracy plots.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Formatter = Callable[[float], str]

PALETTE = ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"]
TEACHER_COLOR = "#374151"

_STYLE = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": "#374151",
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
}


@dataclass
class Point:
    """One model on a scatter plot."""

    label: str
    x: float
    y: float
    color: str
    teacher: bool = False


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points on the Pareto front for lower x and higher y, sorted by x.

    A point is on the front when no other point is at least as good on both axes and
    better on one (equal points do not beat each other: both stay on the front).
    """

    def beaten(i: int) -> bool:
        xi, yi = points[i]
        return any(
            xj <= xi and yj >= yi and (xj < xi or yj > yi)
            for j, (xj, yj) in enumerate(points)
            if j != i
        )

    front = [i for i in range(len(points)) if not beaten(i)]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def accuracy_scatter(
    points: list[Point], title: str, xlabel: str, xfmt: Formatter, base: int = 10
) -> str | None:
    """Exact match (y) against a cost on a log x axis; labelled points, Pareto front as steps.

    ``base``: where the x ticks go, 1-2-5 per decade (10) or powers of two (2, for bytes).
    """
    points = [p for p in points if p.x > 0]
    if not points:
        return None
    plt, ticker = _pyplot()
    with plt.rc_context({**_STYLE, "svg.hashsalt": title}):
        fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
        try:
            front = [points[i] for i in pareto_front([(p.x, p.y) for p in points])]
            ax.plot(
                [p.x for p in front],
                [p.y for p in front],
                drawstyle="steps-post",
                color="#9ca3af",
                linestyle="--",
                linewidth=1.2,
                zorder=1,
                label="Pareto front (faster/smaller and more accurate)",
            )
            ax.scatter(
                [p.x for p in front],
                [p.y for p in front],
                s=190,
                facecolors="none",
                edgecolors="#111827",
                linewidths=1.2,
                zorder=2,
            )
            top = min(1.0, max(p.y for p in points) * 1.25 + 0.05)
            for index, p in enumerate(points):
                marker, size = ("*", 150) if p.teacher else ("o", 55)
                ax.scatter(p.x, p.y, s=size, color=p.color, marker=marker, zorder=3)
                # labels of points drawn at about the same spot go one below the other
                near = sum(
                    abs(math.log(q.x / p.x)) < 0.3 and abs(q.y - p.y) < 0.06 * top
                    for q in points[:index]
                )
                ax.annotate(
                    _text(p.label),
                    (p.x, p.y),
                    xytext=(8, 6 - 13 * near),
                    textcoords="offset points",
                )
            ax.set_xscale("log")
            xs = [p.x for p in points]
            ax.set_xlim(min(xs) / 1.8, max(xs) * 2.6)
            ax.set_ylim(-0.02 * top, top)  # a point at 0% stays visible above the axis
            _log_ticks(ax.xaxis, ticker, xfmt, base)
            ax.yaxis.set_major_formatter(ticker.PercentFormatter(xmax=1, decimals=0))
            ax.set(title=_text(title), xlabel=_text(xlabel), ylabel="exact match (% of test set)")
            ax.legend(loc="upper right", fontsize=8, frameon=False)
            return _svg(fig)
        finally:
            plt.close(fig)


def cost_bars(
    labels: list[str], costs: list[float], colors: list[str], fmt: Formatter
) -> str | None:
    """Cost per 1k requests per model, horizontal bars (log axis when they span > 30x)."""
    if not labels:
        return None
    plt, ticker = _pyplot()
    with plt.rc_context({**_STYLE, "svg.hashsalt": "cost"}):
        fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.5 * len(labels)), layout="constrained")
        try:
            rows = list(range(len(labels)))[::-1]
            ax.barh(rows, costs, color=colors, height=0.6)
            ax.set_yticks(rows, [_text(label) for label in labels])
            ax.grid(axis="y", visible=False)
            log = min(costs) > 0 and max(costs) / min(costs) > 30
            if log:
                ax.set_xscale("log")
                ax.set_xlim(min(costs) / 2, max(costs) * 6)
                _log_ticks(ax.xaxis, ticker, fmt)
            else:
                ax.set_xlim(0, max(costs) * 1.3 or 1)
                ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _text(fmt(v))))
            for row, cost in zip(rows, costs, strict=True):
                label = _text(fmt(cost))
                ax.annotate(
                    label, (cost, row), xytext=(4, 0), textcoords="offset points", va="center"
                )
            scale = " (log scale)" if log else ""
            ax.set(title="Cost per 1k requests", xlabel=f"USD per 1,000 requests{scale}")
            return _svg(fig)
        finally:
            plt.close(fig)


def histogram_bars(bins: list[str], counts: list[int], title: str, xlabel: str) -> str | None:
    """Counts per bin (the teacher's agreement histogram), each bar labelled."""
    if not bins:
        return None
    plt, _ = _pyplot()
    with plt.rc_context({**_STYLE, "svg.hashsalt": title}):
        fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
        try:
            bars = ax.bar(range(len(bins)), counts, color=PALETTE[0], width=0.7)
            ax.bar_label(bars, fontsize=9, padding=2)
            ax.set_xticks(range(len(bins)), [_text(b) for b in bins])
            ax.grid(axis="x", visible=False)
            ax.set_ylim(0, max(max(counts), 1) * 1.15)
            ax.set(title=_text(title), xlabel=_text(xlabel), ylabel="inputs")
            return _svg(fig)
        finally:
            plt.close(fig)


def loss_curve(title: str, curve: list[tuple[float, float]], partial: bool) -> str | None:
    """Training loss against optimizer step; ``partial``: only the first and last loss known."""
    if not curve:
        return None
    plt, _ = _pyplot()
    with plt.rc_context({**_STYLE, "svg.hashsalt": "loss " + title}):
        fig, ax = plt.subplots(figsize=(4.6, 3.0), layout="constrained")
        try:
            steps, losses = zip(*curve, strict=True)
            marker = "o" if partial else ("." if len(curve) < 40 else None)
            linestyle = "--" if partial else "-"
            ax.plot(steps, losses, color=PALETTE[0], lw=1.6, marker=marker, linestyle=linestyle)
            ax.set_ylim(bottom=0)
            note = " (first and last loss only)" if partial else ""
            ax.set(title=_text(title), xlabel=f"optimizer step{note}", ylabel="training loss")
            return _svg(fig)
        finally:
            plt.close(fig)


# ----- helpers ------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    return plt, ticker


def _log_ticks(axis, ticker, fmt: Formatter, base: int = 10) -> None:
    """Ticks at 1, 2 and 5 per decade (or at powers of ``base``), labelled by ``fmt``."""
    subs = (1.0, 2.0, 5.0) if base == 10 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=base, subs=subs))
    axis.set_minor_locator(ticker.NullLocator())
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _text(fmt(v))))


def _text(value: str) -> str:
    """Text as matplotlib draws it literally (a ``$`` would start mathtext)."""
    return str(value).replace("$", r"\$")


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    head_end = svg.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end])
    return head + ' class="plot"' + svg[head_end:]
