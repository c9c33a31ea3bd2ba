"""The HTML run report (``supertiny report RUN_DIR``): one self-contained page about a run, with plots.

    supertiny report runs/sh_demo                        # writes runs/sh_demo/report.html
    supertiny report runs/sh_demo --screenshot /tmp/sh_demo.png

It reads whatever the stages left in the run directory (``manifest.json``,
``label/label_report.json``, ``train/train_report.json`` with each step's ``metrics.json``,
``compress/compress_report.json``, ``eval/eval_report.json``) and writes one HTML file: inline
CSS, plots as inline SVG, no script and no external URL, so it opens offline, from a mail or a
CI artifact. At the top, a verdict a manager reads in one screen: the best student against the
teacher in exact match, latency and cost. A stage that has not run yet gets a section saying
so, with the command to run. Every number comes from those JSON files; a missing one (null)
shows as "—" and is left out of the plots.

This module decides what the page says: the verdict, the evaluation and the order of the
sections. ``sections.py`` reads the run directory (``load_run``) and writes the sections on
the run and on the label, train and compress stages; ``format.py`` has the number formats,
tables and stylesheet, ``plots.py`` the matplotlib plots; ``command.py`` is the verb and the
headless-Chromium ``screenshot``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from supertiny.report import format as view
from supertiny.report import plots
from supertiny.report.format import Col, esc, num, table
from supertiny.report.sections import (
    RunData,
    compress_form,
    compress_rows,
    compress_section,
    label_section,
    load_run,
    run_section,
    train_section,
)

TEACHER_KINDS = ("teacher", "endpoint")
WITHIN_POINTS = 1.0  # a student "matches" the teacher within this many points of exact match


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``)."""
    data = load_run(Path(run_dir))
    out = Path(out) if out else data.root / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data), encoding="utf-8")
    return out


def render(data: RunData) -> str:
    """The whole page, in the order a reader wants it: verdict, facts, results, stages."""
    sections = [_header, _verdict_box, run_section, _eval_section, label_section]
    body = [section(data) for section in sections + [train_section, compress_section]]
    if data.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in data.problems)
        body.append(f'<section><h2>Unreadable files</h2><ul class="notes">{items}</ul></section>')
    return view.page(f"supertiny report: {data.root.name}", "\n".join(body))


# ----- verdict ------------------------------------------------------------------------------


def pick_models(models: list[dict[str, Any]]) -> tuple[dict | None, dict | None]:
    """(teacher, best student). The teacher is the first model of kind teacher/endpoint; the
    best student is the other model with the highest exact match (ties: smaller, then faster)."""
    teacher = next((m for m in models if m.get("kind") in TEACHER_KINDS), None)
    students = [m for m in models if m is not teacher and num(m.get("exact")) is not None]
    inf = float("inf")
    rank = lambda m: (-num(m["exact"]), num(m.get("bytes")) or inf, _p50(m) or inf)  # noqa: E731
    return teacher, min(students, key=rank, default=None)


def verdict(data: RunData) -> tuple[list[str], str]:
    """The verdict's sentences (plain text, `code` in backquotes) and its tone."""
    teacher, best = pick_models((data.get("eval") or {}).get("models") or [])
    if best:
        return _eval_verdict(teacher, best)
    return _preliminary_verdict(data), "neutral"


def _eval_verdict(teacher: dict | None, best: dict) -> tuple[list[str], str]:
    what = ", ".join(x for x in (best.get("runtime"), view.size(best.get("bytes"), "")) if x)
    lead = f"The best student, {best.get('name')}" + (f" ({what})" if what else "")
    lead += f", gets {view.pct(best['exact'])} exact match"
    t_exact = num((teacher or {}).get("exact"))
    if teacher is None or t_exact is None:
        return [lead + "; the eval report has no teacher row to compare with."], "neutral"
    gap = (num(best["exact"]) - t_exact) * 100
    lead += f" vs the teacher's {view.pct(t_exact)} ({view.points(gap)})"
    speed = _ratio(_p50(teacher), _p50(best))
    cost = _ratio(num(teacher.get("cost_per_1k_usd")), num(best.get("cost_per_1k_usd")))
    clauses = []
    if speed:
        clauses.append(_factor(speed, "p50 latency"))
    if cost:
        clauses.append(_factor(cost, "cost per 1k requests"))
    sentences = [lead + (", at " + " and ".join(clauses) if clauses else "") + "."]
    if gap > WITHIN_POINTS:
        return sentences + [f"The student beats the teacher by {gap:.1f} points."], "good"
    if gap >= -WITHIN_POINTS:
        return sentences + [
            f"The student is within {WITHIN_POINTS:g} point of the teacher."
        ], "good"
    behind = f"{-gap:.1f} points behind"
    return sentences + [
        f"The student is not within {WITHIN_POINTS:g} point of the teacher: {behind}."
    ], "bad"


def _factor(ratio: float, what: str) -> str:
    """A teacher/student ratio as words: 6.2 -> "6.2x lower p50 latency", 0.5 -> "2.0x higher"."""
    return (
        f"{view.times(ratio)} lower {what}"
        if ratio >= 1
        else f"{view.times(1 / ratio)} higher {what}"
    )


def _preliminary_verdict(data: RunData) -> list[str]:
    """Without an eval report: the best model the compress or train stage measured."""
    compress, train, label = data.get("compress"), data.get("train"), data.get("label")
    teacher = num(view.dig(compress or train or {}, "teacher.exact"))
    versus = f" vs the teacher's {view.pct(teacher)}" if teacher is not None else ""
    rows = [r for r in compress_rows(compress or {}) if num(view.dig(r, "eval.exact")) is not None]
    if rows:
        best = min(rows, key=lambda r: (-r["eval"]["exact"], num(r.get("bytes")) or float("inf")))
        gap = f" ({view.points((best['eval']['exact'] - teacher) * 100)})" if versus else ""
        p50 = num(view.dig(best, "latency.p50_s"))
        text = (
            f"No eval stage yet. The best compressed model, {best.get('name')} ({compress_form(best)}, "
            f"{view.size(best.get('bytes'))}), gets {view.pct(best['eval']['exact'])} exact match "
            f"on {best['eval'].get('n', '?')} test inputs{versus}{gap}"
            + (f", at {view.seconds(p50)} p50 per request." if p50 is not None else ".")
        )
    elif train and train.get("steps"):
        last = train["steps"][-1]
        exact = view.pct(view.dig(last, "eval.exact"))
        text = f"No eval stage yet. After training ({last.get('name')}) the student gets {exact} exact match{versus}."
    elif label:
        return [
            f"Only the label stage has run: the teacher gets {view.pct(label.get('teacher_test_exact'))} "
            f"exact match on {label.get('teacher_test_n', '?')} test inputs, and "
            f"{view.pct(label.get('accept_rate'))} of its labels were accepted.",
            f"Next: `{data.command('train')}`.",
        ]
    else:
        return [
            "Nothing to report yet: this run directory holds no stage report.",
            f"Start with `{data.command('label')}`.",
        ]
    return [text, f"Run `{data.command('eval')}` to compare latency and cost with the teacher."]


def _verdict_box(data: RunData) -> str:
    sentences, tone = verdict(data)
    text = "".join(f"<p>{view.code_spans(s)}</p>" for s in sentences)
    return f'<section class="verdict {tone}"><h2>Verdict</h2>{text}{_tiles(data)}</section>'


def _tiles(data: RunData) -> str:
    """Four key numbers of the best student, each with the teacher's below it."""
    teacher, best = pick_models((data.get("eval") or {}).get("models") or [])
    if not best:
        return ""
    keys = [
        ("exact match", "exact", view.pct),
        ("p50 latency", "latency_s.p50", view.seconds),
        ("cost per 1k requests", "cost_per_1k_usd", view.usd),
        ("model size", "bytes", view.size),
    ]
    tiles = [
        (k, f(view.dig(best, p)), f(view.dig(teacher, p)) if teacher else None) for k, p, f in keys
    ]
    return view.tiles(tiles, f"Student: {best.get('name')}")


# ----- sections -----------------------------------------------------------------------------


def _header(data: RunData) -> str:
    task = next((r.get("task") for r in data.reports.values() if r and r.get("task")), None)
    facts = [
        ("run", data.root.name),
        ("task", task),
        ("created", view.when(data.manifest.get("created"))),
        ("report written", time.strftime("%Y-%m-%d %H:%M")),
    ]
    spans = " · ".join(f"{k} <b>{esc(v)}</b>" for k, v in facts if v and v != view.DASH)
    return f"<header><h1>supertiny report: {esc(data.root.name)}</h1><p class=muted>{spans}</p></header>"


def _eval_section(data: RunData) -> str:
    report = data.get("eval")
    if not report or not report.get("models"):
        return view.missing("Evaluation", f"No eval stage yet: run `{data.command('eval')}`.")
    models = report["models"]
    teacher, _ = pick_models(models)
    cpu, cores, gpu = (view.dig(report, f"machine.{k}") for k in ("cpu", "cores", "gpu"))
    meta = [
        f"{report.get('test_n', '?')} test inputs",
        f"{cpu or '?'}, {cores or '?'} cores, GPU {gpu or 'none'}",
        f"concurrency {view.dig(report, 'settings.concurrency') or '?'}",
        f"price {view.usd(view.dig(report, 'settings.hourly_price_usd'))}/h",
        f"measured {view.when(report.get('created'))}",
    ]
    colors = model_colors(models, teacher)
    cards = [_accuracy_card(models, colors, teacher, axis) for axis in ("latency", "size")]
    cards += [_cost_card(models, colors), _category_card(models)]
    basis = "".join(
        f"<li><b>{esc(m.get('name'))}</b>: {esc(m['cost_basis'])}</li>"
        for m in models
        if m.get("cost_basis")
    )
    note = "Best value per column highlighted. Speed-up = teacher p50 / model p50; "
    note += "cheaper = teacher cost / model cost."
    compare = table(models, comparison_columns(teacher), cls="compare")
    return (
        f"<section><h2>Evaluation</h2><p class=muted>{esc(' · '.join(meta))}</p>"
        f"<div class=scroll>{compare}</div><p class=muted>{note}</p>"
        + (f"<details><summary>Cost basis</summary><ul>{basis}</ul></details>" if basis else "")
        + f'<div class="grid">{"".join(cards)}</div>{_errors(models)}</section>'
    )


def comparison_columns(teacher: dict | None) -> list[Col]:
    """The comparison table's columns; the two ratios vs the teacher only when it has a row."""
    cols = [
        Col("model", lambda m: m, _name_cell, raw=True),
        Col("runtime", "runtime"),
        Col("exact", "exact", view.pct, "high"),
        Col("arg F1", "f1", view.pct, "high"),
        Col("valid", "valid", view.pct, "high"),
        Col("Sim", "similarity", view.dec(2), "high"),
        Col("p50", "latency_s.p50", view.seconds, "low"),
        Col("p95", "latency_s.p95", view.seconds, "low"),
        Col("p99", "latency_s.p99", view.seconds, "low"),
        Col("req/s @ conc.", "requests_per_s", view.dec(2), "high", suffix=_at_concurrency),
        Col("params", "params", view.count, "low"),
        Col("size", "bytes", view.size, "low"),
        Col("tokens in / out", _tokens),
        Col("cost / 1k req.", "cost_per_1k_usd", view.usd, "low"),
    ]
    if teacher:
        t_p50, t_cost = _p50(teacher), num(teacher.get("cost_per_1k_usd"))
        speed = lambda m: _ratio(t_p50, _p50(m))  # noqa: E731
        cheaper = lambda m: _ratio(t_cost, num(m.get("cost_per_1k_usd")))  # noqa: E731
        cols += [
            Col("speed-up vs teacher", speed, view.times, "high"),
            Col("cheaper than teacher", cheaper, view.times, "high"),
        ]
    return cols


def _name_cell(m: dict) -> str:
    return f"<b>{esc(m.get('name'))}</b><br><span class=muted>{esc(m.get('kind'))}</span>"


def _tokens(m: dict) -> str:
    return f"{view.decimal(m.get('tokens_in'), 0)} / {view.decimal(m.get('tokens_out'), 1)}"


def _at_concurrency(m: dict) -> str:
    return f" @{m['concurrency']}" if m.get("concurrency") is not None else ""


def model_colors(models: list[dict], teacher: dict | None) -> list[str]:
    """One colour per model, the same in every plot; the teacher's is dark grey."""
    palette = iter(plots.PALETTE * (len(models) // len(plots.PALETTE) + 1))
    return [plots.TEACHER_COLOR if m is teacher else next(palette) for m in models]


def _accuracy_card(models: list[dict], colors: list[str], teacher: dict | None, axis: str) -> str:
    """Exact match against p50 latency or against size, every model a point where both are known."""
    path, fmt = ("latency_s.p50", view.tick_seconds) if axis == "latency" else ("bytes", view.size)
    points = [
        plots.Point(
            str(m.get("name")), num(view.dig(m, path)), num(m.get("exact")), color, m is teacher
        )
        for m, color in zip(models, colors, strict=True)
        if num(view.dig(m, path)) and num(m.get("exact")) is not None
    ]
    what, base = ("p50 latency per request", 10) if axis == "latency" else ("model size on disk", 2)
    svg = plots.accuracy_scatter(points, f"Accuracy vs {axis}", f"{what} (log scale)", fmt, base)
    return view.card(svg, f"no model has both exact match and {axis} measured")


def _cost_card(models: list[dict], colors: list[str]) -> str:
    known = [
        (m, c)
        for m, c in zip(models, colors, strict=True)
        if num(m.get("cost_per_1k_usd")) is not None
    ]
    names = [str(m.get("name")) for m, _ in known]
    costs = [num(m["cost_per_1k_usd"]) for m, _ in known]
    svg = plots.cost_bars(names, costs, [c for _, c in known], view.usd)
    return view.card(svg, "no cost measured")


def _category_card(models: list[dict]) -> str:
    """Exact match per category: a heat-table, categories x models."""
    by_cat = [m.get("by_category") or {} for m in models]
    cats = sorted({c for cats in by_cat for c in cats})
    if not cats:
        return view.card(None, "no per-category results")
    sizes = [next((b[cat].get("n") for b in by_cat if cat in b), None) for cat in cats]
    values = [[view.dig(b, f"{cat}.exact") for b in by_cat] for cat in cats]
    names = [str(m.get("name")) for m in models]
    return f'<div class="card"><h3>Exact match per category</h3>{view.heat_table(cats, sizes, names, values)}</div>'


def _errors(models: list[dict]) -> str:
    """A sample of errors per model, each model in a collapsed <details> block."""
    cols = [
        Col("id", "id"),
        Col("input", "input"),
        Col("gold", "gold", view.code, raw=True),
        Col("prediction", "prediction", view.code, raw=True),
        Col("reason", "reason"),
    ]
    blocks = []
    for m in models:
        errors = m.get("errors") or []
        summary = f"<b>{esc(m.get('name'))}</b>: {len(errors)} sampled errors"
        body = table(errors, cols, cls="errors") if errors else "<p class=muted>none recorded</p>"
        blocks.append(f"<details><summary>{summary}</summary>{body}</details>")
    return "<h3>Sample of errors per model</h3>" + "".join(blocks)


def _p50(model: dict | None) -> float | None:
    return num(view.dig(model, "latency_s.p50"))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b and a > 0 else None
