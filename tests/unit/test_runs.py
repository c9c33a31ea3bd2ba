"""Run directories: crash-safe record logs, manifest, resume rules."""

import json

import pytest

from supertiny.runs import RecordLog, Run, RunError, iter_jsonl


def test_record_log_survives_torn_last_line(tmp_path):
    path = tmp_path / "labeled.jsonl"
    with RecordLog(path) as log:
        log.append({"id": "a", "x": 1})
        log.append({"id": "b", "x": 2})
    with path.open("a") as handle:  # a crash in the middle of writing the third record
        handle.write('{"id": "c", "x"')
    log = RecordLog(path)
    assert log.ids == {"a", "b"} and "c" not in log
    log.append({"id": "c", "x": 3})
    log.close()
    assert [r["id"] for r in iter_jsonl(path)] == ["a", "b", "c"]


def test_iter_jsonl_reports_bad_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": 1}\nnot json\n[1, 2]\n\n{"id": 2}\n')
    bad = []
    assert [r["id"] for r in iter_jsonl(path, bad)] == [1, 2]
    assert [(b.line, b.reason.split(" ")[0]) for b in bad] == [(2, "not"), (3, "expected")]
    assert "data.jsonl:2: not JSON" in str(bad[0])
    with pytest.raises(RunError, match=r"data\.jsonl:2"):
        list(iter_jsonl(path))


def test_manifest_records_stage_and_refuses_changed_config(tmp_path):
    run = Run(tmp_path / "run")
    out = run.begin("label", {"samples": 3})
    (out / "labeled.jsonl").write_text('{"id": "a"}\n')
    run.finish("label", {"labeled": "label/labeled.jsonl"})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    entry = manifest["stages"]["label"]
    assert entry["status"] == "finished" and entry["config"] == {"samples": 3}
    assert "supertiny" in entry["versions"] and entry["started"] and entry["finished"]
    assert run.is_complete("label", {"samples": 3})
    assert not run.is_complete("label", {"samples": 5})
    run.begin("label", {"samples": 3})  # same config: resumes
    assert run.stage("label")["resumed"] is True
    with pytest.raises(RunError, match=r"changed: samples"):
        run.begin("label", {"samples": 5})


def test_restart_sets_old_records_aside(tmp_path):
    run = Run(tmp_path / "run")
    out = run.begin("label", {"samples": 3})
    (out / "labeled.jsonl").write_text('{"id": "a"}\n')
    run.begin("label", {"samples": 5}, restart=True)
    old = [p for p in (tmp_path / "run").iterdir() if p.name.startswith("label.old-")]
    assert len(old) == 1 and (old[0] / "labeled.jsonl").read_text() == '{"id": "a"}\n'
    assert not (tmp_path / "run" / "label" / "labeled.jsonl").exists()
