"""The records the stages hand each other: the accepted labels, the gold test set, the
teacher's scores on it, and a label as an assistant message.

    labels = load_labels(run_dir / "label" / "labeled.jsonl", task)   # DataError if unusable
    tests = test_records(task, limit=40)                              # records with ``gold``
    teacher = teacher_scores(run_dir / "label", {r["id"] for r in tests})

Train, compress and eval read the label stage's output through these, so "the labels" and
"the test set" are the same records in every stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supertiny.core.errors import SupertinyError
from supertiny.core.runs import iter_jsonl
from supertiny.core.task import Task
from supertiny.core.toolcalls import parse


class DataError(SupertinyError, ValueError):
    """The label set cannot train a student (missing, empty, all rejected)."""


def answer_message(label: dict[str, Any]) -> dict[str, Any]:
    """A label ``{"tool_calls": [{name, arguments}], "content"}`` as an assistant message."""
    calls = [
        {"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments") or {}}}
        for c in (label.get("tool_calls") or [])
    ]
    message: dict[str, Any] = {"role": "assistant", "content": label.get("content") or ""}
    if calls:
        message["tool_calls"] = calls
    return message


def load_labels(path: Path, task: Task, limit: int | None = None) -> list[dict[str, Any]]:
    """The accepted teacher labels, checked: a missing or empty set is a clear error."""
    if not path.is_file():
        raise DataError(
            f"{path}: no labeled records; run `supertiny label {task.path}` first "
            "(or set `labels:` in the train config)"
        )
    records = []
    for record in iter_jsonl(path):
        label = record.get("label")
        if not label or not (label.get("tool_calls") or label.get("content")):
            continue
        if not parse(answer_message(label)).calls and not task.spec.allow_plain_answer:
            continue
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        rejected = path.with_name("rejected.jsonl")
        hint = (
            f"; every input was rejected (see {rejected} and label_report.json)"
            if rejected.is_file()
            else ""
        )
        raise DataError(f"{path}: no usable labels to train on{hint}")
    return records


def test_records(task: Task, limit: int | None = None) -> list[dict[str, Any]]:
    """The gold test records (those with a ``gold`` answer)."""
    out = [r for r in task.records("test") if r.get("gold")]
    return out[:limit] if limit is not None else out


def teacher_scores(label_dir: Path, ids: set[str]) -> dict[str, Any] | None:
    """The teacher pipeline's scores on the same gold test records (from the label stage)."""
    path = label_dir / "teacher_test.jsonl"
    if not path.is_file():
        return None
    rows = [r for r in iter_jsonl(path) if r.get("id") in ids and "score" in r]
    if not rows:
        return None
    n = len(rows)
    return {
        "n": n,
        "exact": sum(bool(r["score"]["exact"]) for r in rows) / n,
        "valid": sum(bool(r["score"]["valid"]) for r in rows) / n,
        "similarity": sum(max(r["score"]["similarity"], 0.0) for r in rows) / n,
        "f1": sum(r["score"]["f1"] for r in rows) / n,
    }
