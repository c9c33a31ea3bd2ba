"""Run directories: crash-safe record logs, manifest, resume rules, stage locks."""

import errno
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from supertiny.core.runs import (
    CorruptRecords,
    RecordLog,
    Run,
    RunError,
    StageBusy,
    iter_jsonl,
    write_json,
)


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


# ----- record logs: only a torn last line is repaired; a failed append leaves nothing ------


def write_lines(path, *lines):
    path.write_bytes(b"".join(lines))
    return path.read_bytes()


def test_torn_last_line_is_cut_off_with_a_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "1000")  # one warning, one line
    path = tmp_path / "labeled.jsonl"
    write_lines(path, b'{"id": "a"}\n', b'{"id": "b"}\n', b'{"id": "c", "x"')
    log = RecordLog(path)
    assert log.ids == {"a", "b"} and log.count == 2
    err = " ".join(capsys.readouterr().err.split())  # the console may wrap a long path
    assert f"{path}:3: cut off a torn last line (15 bytes" in err
    log.append({"id": "c"})
    log.close()
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "labeled.jsonl"
    write_lines(path, b'{"id": "a"}\n', b'{"id": "b"}')
    with RecordLog(path) as log:
        assert log.ids == {"a", "b"}
        log.append({"id": "c"})
    assert [r["id"] for r in iter_jsonl(path)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b'{"id": "b", "x"\n', "not JSON"),
        (b"[1, 2]\n", "expected a JSON object, got list"),
        (b'{"id": "\xff"}\n', "not UTF-8 text"),
    ],
)
def test_an_unreadable_line_before_the_end_is_an_error_and_nothing_is_removed(
    tmp_path, bad, reason
):
    path = tmp_path / "labeled.jsonl"
    before = write_lines(path, b'{"id": "a"}\n', bad, b'{"id": "c"}\n', b'{"id": "d"}\n')
    with pytest.raises(CorruptRecords) as error:
        RecordLog(path)
    message = str(error.value)
    assert message.startswith(f"{path}:2: {reason}")
    assert "Edit the line by hand" in message and "or delete it" in message
    assert path.read_bytes() == before  # records 3 and 4 are still there, byte for byte


def test_an_unreadable_last_line_that_ends_its_line_is_not_cut_off(tmp_path):
    path = tmp_path / "labeled.jsonl"
    before = write_lines(path, b'{"id": "a"}\n', b'{"id": "b"}{"id": "c"}\n')
    with pytest.raises(CorruptRecords, match=r"labeled\.jsonl:2: not JSON"):
        RecordLog(path)
    assert path.read_bytes() == before


APPEND_ON_A_FULL_DISK = """
import resource, sys
from pathlib import Path
from supertiny.core.runs import RecordLog

path = Path(sys.argv[1])
log = RecordLog(path)
# The file may grow by 10 bytes only: the kernel writes 10 bytes of the record, then refuses.
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 10, resource.RLIM_INFINITY))
try:
    log.append({"id": "c", "text": "x" * 200})
except OSError as exc:
    print("append failed:", exc)
"""


def test_an_append_that_fails_half_way_leaves_no_fragment(tmp_path):
    """A real partial write (the file may not grow past a limit, as on a full disk): the
    append raises, the file is back as it was, and later appends and reopens lose nothing."""
    path = tmp_path / "labeled.jsonl"
    with RecordLog(path) as log:
        log.append({"id": "a"})
        log.append({"id": "b"})
    before = path.read_bytes()
    script = tmp_path / "append.py"
    script.write_text(APPEND_ON_A_FULL_DISK)
    done = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=60
    )
    assert "append failed: [Errno 27] File too large" in done.stdout, done.stdout + done.stderr
    assert path.read_bytes() == before
    with RecordLog(path) as log:
        log.append({"id": "d"})
    with RecordLog(path) as log:
        assert log.ids == {"a", "b", "d"}
    assert [r["id"] for r in iter_jsonl(path)] == ["a", "b", "d"]


def test_an_append_whose_fsync_fails_is_undone(tmp_path, monkeypatch):
    path = tmp_path / "labeled.jsonl"
    log = RecordLog(path)
    log.append({"id": "a"})
    before = path.read_bytes()
    real_fsync, failed = os.fsync, []

    def fsync(fd):
        if not failed:
            failed.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        log.append({"id": "b"})
    assert path.read_bytes() == before and "b" not in log
    log.append({"id": "b"})
    log.close()
    assert [r["id"] for r in iter_jsonl(path)] == ["a", "b"]


# ----- atomic files and set-asides ---------------------------------------------------------


def test_write_json_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(source, target):
        events.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_json(tmp_path / "manifest.json", {"stages": {}})
    assert events == ["fsync file", "replace", "fsync folder"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"stages": {}}


def test_write_json_that_fails_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    path.write_text('{"old": true}\n')

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        write_json(path, {"new": True})
    assert path.read_text() == '{"old": true}\n' and os.listdir(tmp_path) == ["manifest.json"]


def test_set_asides_within_one_second_do_not_collide_and_sort_in_order(tmp_path, monkeypatch):
    real_strftime = time.strftime

    def strftime(fmt, *args):  # every set-aside below happens in the same second
        return "20250101-120000" if fmt == "%Y%m%d-%H%M%S" else real_strftime(fmt, *args)

    monkeypatch.setattr(time, "strftime", strftime)
    run = Run(tmp_path / "run")
    for samples in range(4):
        out = run.begin("label", {"samples": samples}, restart=True)
        (out / "labeled.jsonl").write_text(f'{{"id": "{samples}"}}\n')
    aside = sorted(p.name for p in (tmp_path / "run").iterdir() if ".old-" in p.name)
    assert aside == [
        "label.old-20250101-120000",
        "label.old-20250101-120000-02",
        "label.old-20250101-120000-03",
    ]
    kept = [(tmp_path / "run" / name / "labeled.jsonl").read_text() for name in aside]
    assert kept == ['{"id": "0"}\n', '{"id": "1"}\n', '{"id": "2"}\n']


# ----- one process per stage; manifest updates that do not lose each other ------------------


HOLD_THE_LABEL_STAGE = """
import sys
from supertiny.core.runs import Run

run = Run(sys.argv[1])
run.begin("label", {"samples": 3})
print("holding", flush=True)
sys.stdin.read()  # until the test kills this process
"""


def test_a_running_stage_is_locked_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    root = tmp_path / "run"
    script = tmp_path / "hold_label.py"
    script.write_text(HOLD_THE_LABEL_STAGE)
    holder = subprocess.Popen(
        [sys.executable, str(script), str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(StageBusy) as busy:
            Run(root).begin("label", {"samples": 3})
        message = str(busy.value)
        assert "the label stage is already running on this run directory, in process " in message
        assert f"process {holder.pid} ({sys.executable} {script} {root}, since " in message
        assert f"kill {holder.pid}" in message
        other = Run(root)
        other.begin("train", {"steps": 1})  # another stage of the same run is free
        other.finish("train", {})
    finally:
        holder.kill()
        holder.wait(timeout=30)
    run = Run(root)  # the kernel let go of the dead process's lock
    run.begin("label", {"samples": 3})
    assert run.stage("label")["status"] == "running"
    run.finish("label", {})
    assert set(run.manifest()["stages"]) == {"label", "train"}


def test_a_failed_stage_lets_go_of_its_lock_in_the_same_process(tmp_path):
    def failing_stage():
        with Run(tmp_path / "run") as run:
            run.begin("label", {"samples": 3})
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        failing_stage()
    Run(tmp_path / "run").begin("label", {"samples": 3})  # the traceback holds no lock


FINISH_A_STAGE = """
import sys, time
from supertiny.core.runs import Run

root, stage, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
run = Run(root)
time.sleep(max(0.0, start - time.time()))  # every process starts its update at once
run.begin(stage, {"stage": stage})
run.finish(stage, {"report": f"{stage}/report.json"}, summary={"stage": stage})
"""


def test_stages_that_finish_at_the_same_time_keep_every_manifest_entry(tmp_path):
    root = tmp_path / "run"
    script = tmp_path / "finish.py"
    script.write_text(FINISH_A_STAGE)
    stages = [f"stage{n}" for n in range(6)]
    start = time.time() + 2.0
    processes = [
        subprocess.Popen([sys.executable, str(script), str(root), stage, str(start)])
        for stage in stages
    ]
    assert [p.wait(timeout=60) for p in processes] == [0] * len(stages)
    entries = Run(root).manifest()["stages"]
    assert sorted(entries) == stages
    assert all(entries[s]["status"] == "finished" for s in stages)
    assert all(entries[s]["summary"] == {"stage": s} for s in stages)
