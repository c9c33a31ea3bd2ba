"""The run report's view of the stages (``supertiny.report.page``): what they left, and their sections.

    supertiny report runs/sh_demo          # the Run, Labelling, Training and Compression sections

``load_run`` reads what the stages left in a run directory into a ``RunData`` (each report's
JSON, or None where the stage has not run; each training step's ``metrics.json``).
``run_section`` is the manifest's table of stages; ``label_section``, ``train_section`` and
``compress_section`` each return one HTML ``<section>`` with the stage's numbers (for training,
a loss curve per step) or, where the stage has not run, the command to run. ``compress_rows``
and ``compress_form`` also serve the preliminary verdict in ``page.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertiny.report import format as view
from supertiny.report import plots
from supertiny.report.format import Col, esc, num, table

REPORTS = {
    "label": "label/label_report.json",
    "train": "train/train_report.json",
    "compress": "compress/compress_report.json",
    "eval": "eval/eval_report.json",
}


@dataclass
class RunData:
    """What a run directory holds: each report's JSON, or None where the stage has not run."""

    root: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    step_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # files there but unreadable

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.reports.get(stage)

    def command(self, verb: str) -> str:
        """The command that runs stage ``verb`` on this run (task path from the manifest)."""
        task = "TASK.yaml"
        for entry in self.manifest.get("stages", {}).values():
            task = (entry.get("config") or {}).get("task") or task
        return f"supertiny {verb} {task} --run-dir {self.root}"


def load_run(run_dir: Path) -> RunData:
    """Read every report the run directory has; an unreadable file is noted, not fatal."""
    data = RunData(Path(run_dir))
    data.manifest = _read_json(data.root / "manifest.json", data.problems) or {}
    for stage, relative in REPORTS.items():
        data.reports[stage] = _read_json(data.root / relative, data.problems)
    for step in (data.get("train") or {}).get("steps", []):
        name = str(step.get("name"))
        metrics = _read_json(data.root / "train" / name / "metrics.json", data.problems)
        data.step_metrics[name] = metrics or step.get("metrics") or {}
    return data


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: cannot be read ({exc})")
        return None
    return value if isinstance(value, dict) else None


# ----- sections -----------------------------------------------------------------------------


def run_section(data: RunData) -> str:
    """The run's stages as the manifest records them: status, times, summary."""
    stages = data.manifest.get("stages") or {}
    if not stages:
        return view.missing(
            "Run", f"No manifest.json in {data.root}: each stage records itself there."
        )
    rows = [
        {"stage": k, "start": v.get("first_started") or v.get("started"), **v}
        for k, v in stages.items()
    ]
    status = lambda s: f'<span class="status {esc(s)}">{esc(s)}</span>'  # noqa: E731
    cols = [
        Col("stage", "stage"),
        Col("status", "status", status, raw=True),
        Col("started", "start", view.when),
        Col("finished", "finished", view.when),
        Col("wall time", lambda r: view.duration(r["start"], r.get("finished"))),
        Col("resumed", "resumed", lambda v: "yes" if v else "no"),
        Col("summary", lambda r: r.get("summary") or {}, view.summary),
    ]
    return f"<section><h2>Run</h2>{table(rows, cols)}</section>"


def label_section(data: RunData) -> str:
    r = data.get("label")
    if not r:
        return view.missing(
            "Labelling (teacher)", f"No label stage yet: run `{data.command('label')}`."
        )
    reasons = ", ".join(f"{k} {v}" for k, v in (r.get("rejection_reasons") or {}).items()) or "none"
    of = lambda value, n: f"{view.pct(value)} of {view.decimal(n, 0)}"  # noqa: E731
    test_scores = [
        view.pct(r.get("teacher_test_valid")),
        view.pct(r.get("teacher_test_f1")),
        view.decimal(r.get("teacher_test_similarity"), 2),
    ]
    facts = [
        ("accepted / rejected", f"{r.get('accepted', '—')} / {r.get('rejected', '—')}"),
        ("accept rate", view.pct(r.get("accept_rate"))),
        ("rejection reasons", reasons),
        ("preference pairs", view.decimal(r.get("preference_pairs"), 0)),
        ("failed inputs", view.decimal(r.get("failed_inputs"), 0)),
        ("accepted labels matching gold", of(r.get("labeled_gold_exact"), r.get("labeled_gold_n"))),
        ("teacher on test: exact", of(r.get("teacher_test_exact"), r.get("teacher_test_n"))),
        ("teacher on test: valid / arg F1 / Sim", " / ".join(test_scores)),
        (
            "teacher on test, accepted only",
            of(r.get("teacher_test_accepted_exact"), r.get("teacher_test_accepted_n")),
        ),
    ]
    hist = r.get("agreement_histogram") or {}
    svg = plots.histogram_bars(
        list(hist),
        [int(v or 0) for v in hist.values()],
        "Agreement among teacher samples",
        "share of samples agreeing with the label",
    )
    return (
        f'<section><h2>Labelling (teacher)</h2><div class="grid"><div class="card"><h3>Quality control</h3>'
        f"{view.kv_table(facts)}</div>{view.card(svg, 'no agreement histogram')}</div>"
        f"<h3>Teacher usage</h3>{_usage_table(r)}</section>"
    )


def _usage_table(report: dict) -> str:
    rows = [
        {"what": k.replace("_", " "), **report[f"usage_{k}"]}
        for k in ("labeling", "teacher_test")
        if report.get(f"usage_{k}")
    ]
    if not rows:
        return "<p class=missing>no usage recorded</p>"
    cols = [
        Col("", "what"),
        Col("requests", "requests", view.dec(0)),
        Col("cached", "cached_requests", view.dec(0)),
        Col("tokens in", "prompt_tokens", view.dec(0)),
        Col("tokens out", "completion_tokens", view.dec(0)),
        Col("cost", "cost_usd", view.usd),
        Col("latency per input: mean", "latency_s_per_input_mean", view.seconds),
        Col("p50", "latency_s_per_input_p50", view.seconds),
        Col("p95", "latency_s_per_input_p95", view.seconds),
        Col("samples per input", "samples_per_input_mean", view.dec(1)),
    ]
    return table(rows, cols)


def train_section(data: RunData) -> str:
    report = data.get("train")
    if not report:
        return view.missing(
            "Training (student)", f"No train stage yet: run `{data.command('train')}`."
        )
    rows, before = [], num(view.dig(report, "student_before.exact"))
    for step in report.get("steps") or []:
        after = num(view.dig(step, "eval.exact"))
        metrics = data.step_metrics.get(str(step.get("name"))) or step.get("metrics") or {}
        rows.append({**step, "metrics": metrics, "before": before, "after": after})
        before = after if after is not None else before
    gain = lambda v: view.points(num(v) * 100) if num(v) is not None else view.DASH  # noqa: E731
    cols = [
        Col("step", "name"),
        Col("kind", "kind"),
        Col("optimizer steps", "metrics.optimizer_steps", view.dec(0)),
        Col("train time", "metrics.train_seconds", view.seconds),
        Col("tokens/s", "metrics.tokens_per_s", view.dec(1)),
        Col("exact before", "before", view.pct),
        Col("exact after", "after", view.pct, "high"),
        Col("gain", "gain_exact", gain, "high"),
    ]
    intro = (
        f"Student <b>{esc(report.get('student'))}</b>, trained on {esc(report.get('labels'))} teacher labels and "
        f"tested on {esc(report.get('test_n'))} inputs, where the teacher gets {view.pct(view.dig(report, 'teacher.exact'))} "
        f"exact and the student before training {view.pct(view.dig(report, 'student_before.exact'))}."
    )
    notes = "".join(
        f"<li><b>{esc(r['name'])}</b>: {view.code_spans(n)}</li>"
        for r in rows
        for n in r["metrics"].get("notes") or []
    )
    return (
        f"<section><h2>Training (student)</h2><p>{intro}</p>"
        + (table(rows, cols) if rows else "<p class=missing>no steps recorded</p>")
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + f'<h3>Training curves</h3><div class="grid three">{"".join(map(_curve_card, rows))}</div></section>'
    )


def _curve_card(row: dict) -> str:
    """The step's loss curve; older runs have only the first and last loss."""
    metrics, title = row["metrics"], f"{row.get('name')} ({row.get('kind')})"
    curve = [(num(s), num(v)) for s, v in metrics.get("loss_curve") or []]
    curve = [(s, v) for s, v in curve if s is not None and v is not None]
    first, last = num(metrics.get("loss_first")), num(metrics.get("loss_last"))
    partial = not curve and first is not None and last is not None
    if partial:
        curve = [(1.0, first), (num(metrics.get("optimizer_steps")) or 2.0, last)]
    return view.card(plots.loss_curve(title, curve, partial), f"{title}: no curve recorded")


def compress_rows(report: dict) -> list[dict]:
    return ([report["input"]] if report.get("input") else []) + list(report.get("steps") or [])


def compress_form(row: dict) -> str:
    """What a compression step made: "gguf q8_0", "float · vocab 151,936 → 1,470"."""
    info = row.get("info") or {}
    if info.get("vocab_after"):
        vocab = f"vocab {view.decimal(info.get('vocab_before'), 0)} → {view.decimal(info['vocab_after'], 0)}"
        return f"{row.get('form', '')} · {vocab}"
    return " ".join(str(x) for x in (row.get("form"), info.get("quant")) if x)


def compress_section(data: RunData) -> str:
    report = data.get("compress")
    if not report:
        return view.missing(
            "Compression", f"No compress stage yet: run `{data.command('compress')}`."
        )
    rows = compress_rows(report)
    cols = [
        Col("step", "name"),
        Col("form", compress_form),
        Col("params", "params.total", view.count, "low"),
        Col("non-embedding", "params.non_embedding", view.count, "low"),
        Col("size", "bytes", view.size, "low"),
        Col("exact", "eval.exact", view.pct, "high"),
        Col("valid", "eval.valid", view.pct, "high"),
        Col("p50", "latency.p50_s", view.seconds, "low"),
        Col("p95", "latency.p95_s", view.seconds, "low"),
        Col("decode tok/s", "latency.decode_tok_s", view.dec(1), "high"),
        Col("backend", "latency.backend"),
        Col("speed-up vs input", "vs_input.p50_speedup", view.times, "high"),
    ]
    notes = "".join(
        f"<li><b>{esc(r.get('name'))}</b>: {view.code_spans(n)}</li>"
        for r in rows
        for n in r.get("notes") or []
    )
    return (
        f"<section><h2>Compression</h2><p>Input model <code>{esc(report.get('model'))}</code>, "
        f"{esc(report.get('test_n'))} test inputs; the teacher gets {view.pct(view.dig(report, 'teacher.exact'))} exact.</p>"
        + table(rows, cols)
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + "</section>"
    )
