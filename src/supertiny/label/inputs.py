"""Which inputs the label stage labels: the task's unlabeled records, each bad line and each
near-duplicate recorded once as rejected, cut at ``limit``; and the gold test inputs the
teacher also answers (cut at ``test_limit``).

    inputs, test = select_inputs(task, conf, logs)     # logs: the stage's open RecordLogs
"""

from __future__ import annotations

from supertiny.core.progress import console
from supertiny.core.runs import BadLine, RecordLog
from supertiny.core.task import Task, input_text
from supertiny.label import quality
from supertiny.label.config import LabelConfig


def select_inputs(
    task: Task, conf: LabelConfig, logs: dict[str, RecordLog]
) -> tuple[list[dict], list[dict]]:
    """Unique inputs to label (after limit) and the gold test inputs; records bad lines once."""
    bad: list[BadLine] = []
    inputs = list(task.records("unlabeled", bad))
    rejected = logs["rejected"]
    for problem in bad:
        bad_id = f"bad:{problem.path.name}:{problem.line}"
        if bad_id not in rejected:
            console.print(f"[yellow]skipped {problem}")
            rejected.append({"id": bad_id, "reason_kind": "unreadable", "reason": str(problem)})
    duplicates = quality.find_duplicates(
        {r["id"]: input_text(r) for r in inputs}, conf.quality.dedup
    )
    unique = []
    for record in inputs:
        if record["id"] in duplicates:
            if record["id"] not in rejected:
                reason = f"duplicate of {duplicates[record['id']]}"
                rejected.append({**record, "reason_kind": "duplicate", "reason": reason})
            continue
        unique.append(record)
    if conf.limit is not None:
        unique = unique[: conf.limit]
    test: list[dict] = []
    if task.data_path("test") is not None and conf.test_limit != 0:
        test_bad: list[BadLine] = []
        test = [r for r in task.records("test", test_bad) if r.get("gold") is not None]
        for problem in test_bad:
            console.print(f"[yellow]skipped test line {problem}")
        if conf.test_limit is not None:
            test = test[: conf.test_limit]
    return unique, test
