"""The eval stage's teacher: its function-call pipeline as the label stage runs it, by default
the label stage's own answers on the same test records, or a fresh run (``teacher_rerun``).

    answers, throughput = teacher_answers(task, records, conf, folder, run)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supertiny.core.runs import RecordLog, Run, iter_jsonl, write_json, write_jsonl
from supertiny.core.task import Task
from supertiny.evaluate import EvalError
from supertiny.evaluate.config import EvalConfig
from supertiny.evaluate.metrics import Target, answer_row, local_path, model_size, read_json


def teacher_answers(
    task: Task, records: list[dict], conf: EvalConfig, folder: Path, run: Run
) -> tuple[list[dict], dict[str, Any] | None]:
    """The teacher pipeline's answers: the label stage's, or a fresh run of the same pipeline."""
    wanted = {r["id"]: r for r in records}
    if not conf.teacher_rerun:
        path = run.root / "label" / "teacher_test.jsonl"
        rows = [r for r in iter_jsonl(path) if r.get("id") in wanted] if path.is_file() else []
        missing = len(wanted) - len({r["id"] for r in rows})
        if not rows or missing:
            raise EvalError(
                f"the label stage answered {len(rows)} of the {len(wanted)} test records in "
                f"{path}; run `supertiny label` with the same test set, or set teacher_rerun: true"
            )
        answers = [_teacher_answer(r, task) for r in rows]
        write_jsonl(folder / "answers.jsonl", answers)
        return answers, None
    return _rerun_teacher(task, list(wanted.values()), folder, run)


def _rerun_teacher(task: Task, records: list[dict], folder: Path, run: Run):
    """The label stage's pipeline and quality control, again, on the test records."""
    from supertiny.label.config import load_config
    from supertiny.label.stage import run_teacher

    stored = dict((run.stage("label") or {}).get("config") or {})
    if not stored:
        raise EvalError(
            f"teacher_rerun needs the label stage's settings: run `supertiny label` in {run.root}"
        )
    for key in ("task", "task_sha"):
        stored.pop(key, None)
    lconf = load_config(None, None, stored)
    log = RecordLog(folder / "answers.jsonl")
    todo = [r for r in records if r["id"] not in log.ids]

    def done(record, outcome, advance):
        if outcome is not None:
            log.append(_teacher_answer({**outcome[0], "gold": record["gold"]}, task))
        advance(1)

    try:
        seconds = run_teacher(task, lconf, todo, folder, done) if todo else None
    finally:
        log.close()
    answers = [
        a for a in iter_jsonl(folder / "answers.jsonl") if a["id"] in {r["id"] for r in records}
    ]
    throughput = None
    if seconds:
        throughput = {
            "requests": len(todo),
            "concurrency": lconf.teacher.concurrency,
            "seconds": round(seconds, 3),
            "requests_per_s": round(len(todo) / seconds, 4),
        }
        write_json(folder / "throughput.json", throughput)
    return answers, throughput or read_json(folder / "throughput.json")


def _teacher_answer(row: dict[str, Any], task: Task) -> dict[str, Any]:
    meta = row.get("meta") or {}
    prediction = row.get("label") or {"tool_calls": [], "content": None}
    score = row.get("score") or task.evaluate(prediction, row["gold"], row.get("tools")).to_dict()
    return answer_row(
        row,
        prediction,
        score,
        meta.get("latency_s"),
        meta.get("prompt_tokens"),
        meta.get("completion_tokens"),
        meta.get("requests"),
        meta.get("cost_usd"),
    )


def teacher_size(run: Run) -> dict[str, Any]:
    """Parameters and bytes of the teacher when it is a local GGUF (the bundled default)."""
    teacher = ((run.stage("label") or {}).get("config") or {}).get("teacher") or {}
    if teacher.get("url") or not teacher.get("model"):
        return {"params": None, "bytes": None}
    try:
        return model_size(Target("teacher", "gguf", local_path(teacher["model"]), "teacher"))
    except Exception:  # noqa: BLE001 - a size we cannot read is "not measured"
        return {"params": None, "bytes": None}
