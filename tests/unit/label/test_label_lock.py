"""Two `supertiny label` runs on one run directory at once: the second stops at once and names
the first; the first finishes with every record once; the same command afterwards resumes."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.scripted_server import ok, scripted_server, tool_call

from supertiny.core.runs import read_jsonl

ASSETS = Path(__file__).parents[2] / "assets" / "tiny_task"


def wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def lock_holder(path: Path) -> int | None:
    try:
        return json.loads(path.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_second_label_run_on_the_same_run_dir_stops_and_names_the_first(tmp_path):
    shutil.copytree(ASSETS, tmp_path / "task")
    run_dir = tmp_path / "run"
    gate = threading.Event()  # the teacher answers nothing until the second run has been tried

    def teacher(body):
        gate.wait(60)
        return ok(tool_calls=[tool_call("no_action", {"reason": "chit_chat"})])

    with scripted_server(default=teacher) as server:
        config_path = tmp_path / "label.yaml"
        config_path.write_text(
            f"teacher: {{url: {server.url}, model: scripted, timeout_s: 90}}\n"
            "quality: {samples: 1}\ntest_limit: 0\n"
        )
        command = [
            *(sys.executable, "-m", "supertiny.cli", "label", str(tmp_path / "task" / "task.yaml")),
            *("--config", str(config_path), "--run-dir", str(run_dir)),
        ]
        env = {**os.environ, "COLUMNS": "1000"}  # the error on one line
        first = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        try:
            wait_for(lambda: lock_holder(run_dir / ".label.lock") == first.pid)
            wait_for(lambda: server.requests)  # the first run is labelling
            second = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        finally:
            gate.set()
            output, _ = first.communicate(timeout=120)
        message = " ".join((second.stdout + second.stderr).split())
        assert second.returncode == 2, message
        assert (
            f"{run_dir}: the label stage is already running on this run directory, in process "
            f"{first.pid} ({sys.executable} -m supertiny.cli label " in message
        )
        assert f"stop it (kill {first.pid}), then run this command again" in message
        assert first.returncode == 0, output
        asked = len(server.requests)
        again = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(server.requests) == asked  # everything was done, by the first run alone
    labeled = [r["id"] for r in read_jsonl(run_dir / "label" / "labeled.jsonl")]
    rejected = [r["id"] for r in read_jsonl(run_dir / "label" / "rejected.jsonl")]
    assert sorted(labeled + rejected) == ["t1", "t2", "t3", "t4", "t5", "t6"]
