"""``label_report.json``: what the label stage produced and what it cost, computed from the
records on disk (so a resumed run reports on all of its work, not just the last session),
and the table ``supertiny label`` prints from it.

    supertiny label examples/smart_home/task.yaml   # writes runs/<name>/label/label_report.json
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from supertiny.core.metrics import percentile
from supertiny.core.progress import console
from supertiny.core.runs import iter_jsonl, write_json
from supertiny.core.tables import pct
from supertiny.core.task import Task


def _records(path: Path) -> list[dict[str, Any]]:
    return list(iter_jsonl(path, [])) if path.exists() else []


def _histogram(values: list[float], edges=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)) -> dict[str, int]:
    """Counts per bin ``[a, b)``; the last bin is closed ``[0.8, 1.0]``."""
    bins = {f"{a:.1f}-{b:.1f}": 0 for a, b in zip(edges, edges[1:], strict=False)}
    for value in values:
        for a, b in zip(edges, edges[1:], strict=False):
            if a <= value < b or (b == edges[-1] and value == b):
                bins[f"{a:.1f}-{b:.1f}"] += 1
                break
    return bins


def _usage(records: list[dict[str, Any]]) -> dict[str, Any]:
    metas = [r.get("meta") or {} for r in records if "meta" in r]
    latencies = [m["latency_s"] for m in metas if "latency_s" in m]
    requests = sum(m.get("requests", 0) for m in metas)
    return {
        "requests": requests,
        "cached_requests": sum(m.get("cached_requests", 0) for m in metas),
        "prompt_tokens": sum(m.get("prompt_tokens", 0) for m in metas),
        "completion_tokens": sum(m.get("completion_tokens", 0) for m in metas),
        "cost_usd": round(sum(m.get("cost_usd", 0.0) for m in metas), 6),
        "latency_s_per_input_mean": round(statistics.fmean(latencies), 3) if latencies else None,
        "latency_s_per_input_p50": percentile(latencies, 0.5),
        "latency_s_per_input_p95": percentile(latencies, 0.95),
        "samples_per_input_mean": round(statistics.fmean([m.get("samples", 0) for m in metas]), 3)
        if metas
        else None,
    }


def _test_accuracy(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {}
    exact = [bool(r["score"]["exact"]) for r in records]
    accepted = [bool(r["score"]["exact"]) for r in records if not r.get("rejected_reason")]
    by_category: dict[str, list[bool]] = defaultdict(list)
    for record, ok in zip(records, exact, strict=True):
        by_category[str((record.get("meta") or {}).get("category", "all"))].append(ok)
    return {
        "teacher_test_n": len(records),
        "teacher_test_exact": round(sum(exact) / len(exact), 4),
        "teacher_test_valid": round(
            sum(bool(r["score"]["valid"]) for r in records) / len(records), 4
        ),
        "teacher_test_f1": round(statistics.fmean(r["score"]["f1"] for r in records), 4),
        "teacher_test_similarity": round(
            statistics.fmean(r["score"]["similarity"] for r in records), 4
        ),
        "teacher_test_accepted_n": len(accepted),
        "teacher_test_accepted_exact": round(sum(accepted) / len(accepted), 4)
        if accepted
        else None,
        "teacher_test_by_category": {
            k: {"n": len(v), "exact": round(sum(v) / len(v), 4)}
            for k, v in sorted(by_category.items())
        },
    }


def _train_gold_accuracy(labeled: list[dict[str, Any]], task: Task) -> dict[str, Any]:
    """Where unlabeled inputs happen to carry gold (generated data), how right the labels are."""
    scored = [
        task.evaluate(r["label"], r["gold"], r.get("tools")).exact
        for r in labeled
        if r.get("gold") is not None and r.get("label") is not None
    ]
    if not scored:
        return {}
    return {
        "labeled_gold_n": len(scored),
        "labeled_gold_exact": round(sum(scored) / len(scored), 4),
    }


def label_report(out: Path, task: Task) -> dict[str, Any]:
    """Compute the report from ``out``'s JSONL files, write ``label_report.json``, return it."""
    labeled = _records(out / "labeled.jsonl")
    rejected = _records(out / "rejected.jsonl")
    test = _records(out / "teacher_test.jsonl")
    preferences = _records(out / "preferences.jsonl")
    failures_path = out / "failures.txt"
    failed = len(failures_path.read_text().splitlines()) if failures_path.exists() else 0
    reasons = Counter(str(r.get("reason_kind", "other")) for r in rejected)
    decided = [r for r in labeled + rejected if "agreement" in (r.get("meta") or {})]
    total = len(labeled) + len(rejected)
    judged = [
        r["meta"]["judge"]
        for r in labeled + rejected
        if (r.get("meta") or {}).get("judge") is not None
    ]
    report: dict[str, Any] = {
        "task": task.name,
        "accepted": len(labeled),
        "rejected": len(rejected),
        "accept_rate": round(len(labeled) / total, 4) if total else None,
        "rejection_reasons": dict(reasons.most_common()),
        "agreement_histogram": _histogram([r["meta"]["agreement"] for r in decided]),
        "preference_pairs": len(preferences),
        "judge_scores_mean": round(statistics.fmean(judged), 4) if judged else None,
        "failed_inputs": failed,
        "usage_labeling": _usage(labeled + rejected),
        "usage_teacher_test": _usage(test),
        **_train_gold_accuracy(labeled, task),
        **_test_accuracy(test),
    }
    write_json(out / "label_report.json", report)
    return report


def print_summary(run_dir: Path, artifacts: dict[str, str]) -> None:
    """The table of ``supertiny label``: accept rate, rejections, usage, teacher accuracy."""
    import json

    from rich.table import Table

    report_path = run_dir / artifacts["report"]
    report = json.loads(report_path.read_text())
    table = Table(title=f"label: {report['task']}", show_header=False)
    usage = report["usage_labeling"]
    rows = [
        ("accepted / rejected", f"{report['accepted']} / {report['rejected']}"),
        ("accept rate", pct(report["accept_rate"])),
        (
            "rejections",
            ", ".join(f"{k} {v}" for k, v in report["rejection_reasons"].items()) or "-",
        ),
        (
            "agreement histogram",
            "  ".join(f"{k}: {v}" for k, v in report["agreement_histogram"].items()),
        ),
        ("preference pairs", str(report["preference_pairs"])),
        ("teacher requests (cached)", f"{usage['requests']} ({usage['cached_requests']})"),
        ("tokens in / out", f"{usage['prompt_tokens']} / {usage['completion_tokens']}"),
        ("cost (USD)", f"{usage['cost_usd']:.4f}"),
        (
            "latency per input p50 / p95 (s)",
            f"{usage['latency_s_per_input_p50']} / {usage['latency_s_per_input_p95']}",
        ),
    ]
    if "teacher_test_exact" in report:
        rows.append(
            (
                "teacher exact match on gold test",
                f"{pct(report['teacher_test_exact'])} (n={report['teacher_test_n']})",
            )
        )
        rows.append(("  on accepted labels only", pct(report["teacher_test_accepted_exact"])))
    if report.get("failed_inputs"):
        rows.append(("failed inputs (re-run to retry)", str(report["failed_inputs"])))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print(f"report: {report_path}")
