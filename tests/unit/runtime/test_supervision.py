"""A stage and the server it starts: a dead child is reported at once, not retried; SIGTERM
unwinds like Ctrl-C; the child never outlives its parent, even one killed by SIGKILL.

The stages run through the CLI (in-process, or as a subprocess to signal) with a real
`supertiny serve` child (`ServerProcess`) over a tiny random GGUF model: `supertiny label` on
150 inputs, so that there is time to kill something mid-run (the random teacher's answers
are rejected as "invalid": those rejections are the records that must survive), and
`supertiny eval` on the tiny task's test set.

    python -m pytest tests/unit/runtime/test_supervision.py -q
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.scripted_server import scripted_server

from supertiny.core.runs import read_jsonl
from supertiny.label.client import TeacherClient

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

ASSETS = Path(__file__).parents[2] / "assets" / "tiny_task"
INPUTS = 150
CITIES = ("Paris", "Rome", "Lima", "Oslo")


@pytest.fixture(scope="module")
def teacher_gguf(tmp_path_factory) -> Path:
    """A tiny random model as a GGUF file: `supertiny serve` starts on it in about a second."""
    from tests.tiny_models import tiny_student

    from supertiny.compress.gguf.export import export_gguf

    root = tmp_path_factory.mktemp("teacher")
    export_gguf(tiny_student(root / "model", seed=5), root / "tiny.gguf", "f32")
    return root / "tiny.gguf"


@pytest.fixture
def label_args(tmp_path, teacher_gguf) -> list[str]:
    """`supertiny label` arguments for the tiny task with INPUTS distinct inputs, its teacher
    served locally on `teacher_gguf`."""
    shutil.copytree(ASSETS, tmp_path / "task")
    with (tmp_path / "task" / "train.jsonl").open("w") as out:
        for i in range(INPUTS):
            text = f"table for {i % 9 + 1} in {CITIES[i % 4]}, request {i}"
            out.write(
                json.dumps({"id": f"u{i:03d}", "messages": [{"role": "user", "content": text}]})
            )
            out.write("\n")
    config = tmp_path / "label.yaml"
    config.write_text(
        f"teacher:\n  model: '{teacher_gguf}'\n  n_ctx: 4096\n  n_threads: 1\n  max_tokens: 8\n"
        "quality:\n  samples: 1\n  dedup: 'off'\ntest_limit: 0\n"
    )
    task = tmp_path / "task" / "task.yaml"
    return ["label", str(task), "--config", str(config), "--run-dir", str(tmp_path / "run")]


def _records(args: list[str]) -> list[str]:
    """Ids of the records the label stage has written (accepted or rejected), in order."""
    paths = [Path(args[-1]) / "label" / f"{name}.jsonl" for name in ("labeled", "rejected")]
    return [r["id"] for path in paths if path.exists() for r in read_jsonl(path)]


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie no one reaped counts as exited)."""
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def _server_child(parent: int) -> int | None:
    """The pid of the `supertiny serve` child of `parent`, if it has one."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat and stat[1] == parent and b"supertiny.serve" in command:
            return int(entry.name)
    return None


def _label_process(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "supertiny.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _running_with_records(process: subprocess.Popen, args: list[str]) -> int:
    """Wait until `process` has written 3 records; the pid of its server child."""
    assert _wait_for(lambda: len(_records(args)) >= 3 or process.poll() is not None, 120)
    assert process.poll() is None, process.communicate()[0]
    child = _server_child(process.pid)
    assert child is not None
    return child


# ---- the child dies: reported at once, not retried ----------------------------------------


def test_a_killed_teacher_server_stops_label_at_once_and_the_rerun_continues(label_args, capsys):
    """SIGKILL to the teacher server mid-run: `supertiny label` stops within seconds (no
    retries against the dead port), says how the server ended, shows its log, says what to
    run; the records written stay, and the same command continues."""
    from supertiny.cli import main

    killed: list[float] = []

    def kill_the_server() -> None:
        if _wait_for(lambda: len(_records(label_args)) >= 3, 120):
            child = _server_child(os.getpid())
            if child is not None:
                os.kill(child, signal.SIGKILL)
                killed.append(time.monotonic())

    killer = threading.Thread(target=kill_the_server, daemon=True)
    killer.start()
    code = main(label_args)
    stopped = time.monotonic()
    killer.join(timeout=5)
    output = "".join(capsys.readouterr()).replace("\n", "")  # unwrap the console's lines
    assert killed, output
    assert code == 2, output
    assert stopped - killed[0] < 10  # retrying would back off for a minute per input
    assert "killed by SIGKILL" in output
    assert "teacher_server.log" in output and "Uvicorn running" in output  # the log tail
    assert "supertiny doctor" in output and "run the same command again" in output
    kept = _records(label_args)
    assert 3 <= len(kept) < INPUTS

    assert main(label_args) == 0
    final = _records(label_args)
    assert final[: len(kept)] == kept and sorted(final) == sorted(set(final))
    assert len(final) == INPUTS


def test_a_killed_model_server_stops_eval_at_once(teacher_gguf, tmp_path, capsys):
    """The eval stage's server (one per local model) killed during the throughput run: the
    same report at once, and the answers already written stay."""
    from supertiny.cli import main

    shutil.copytree(ASSETS, tmp_path / "task")
    answers = tmp_path / "run" / "eval" / "01-tiny" / "answers.jsonl"
    killed: list[float] = []

    def kill_the_server() -> None:
        if _wait_for(lambda: answers.exists() and len(read_jsonl(answers)) == 3, 120):
            child = _server_child(os.getpid())
            if child is not None:
                os.kill(child, signal.SIGKILL)
                killed.append(time.monotonic())

    killer = threading.Thread(target=kill_the_server, daemon=True)
    killer.start()
    argv = ["eval", str(tmp_path / "task" / "task.yaml"), "--run-dir", str(tmp_path / "run")]
    argv += ["--set", f"models=[{{name: tiny, model: '{teacher_gguf}'}}]", "--set", "max_tokens=16"]
    code = main([*argv, "--set", "throughput_requests=5000", "--set", "concurrency=2"])
    stopped = time.monotonic()
    killer.join(timeout=5)
    output = "".join(capsys.readouterr()).replace("\n", "")
    assert killed and code == 2, output
    assert stopped - killed[0] < 10 and "killed by SIGKILL" in output
    assert "server.log" in output and "supertiny doctor" in output
    assert len(read_jsonl(answers)) == 3


def test_the_client_asks_the_check_instead_of_retrying_a_dead_server():
    """On a connection error the client calls `check_server` before any retry; what it raises
    comes out at once, with no backoff."""

    class Gone(Exception):
        pass

    calls = []

    def check() -> None:
        calls.append(1)
        raise Gone("the server died")

    with scripted_server() as server:
        url = server.url
    client = TeacherClient(url, "m", max_retries=6, backoff_s=5.0, check_server=check)

    async def ask() -> None:
        async with client:
            await client.chat([{"role": "user", "content": "hi"}])

    started = time.monotonic()
    with pytest.raises(Gone):
        asyncio.run(ask())
    assert time.monotonic() - started < 2 and calls == [1] and client.usage.retries == 0


# ---- SIGTERM, and a parent that dies ------------------------------------------------------


def test_sigterm_stops_label_like_ctrl_c_and_stops_its_server(label_args):
    """`kill -TERM` on `supertiny label` mid-run: the message, exit 143, the records kept, and
    the teacher server gone with it."""
    process = _label_process(label_args)
    child = _running_with_records(process, label_args)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 143, output
    assert "terminated" in output and "run the same command again" in output
    assert _wait_for(lambda: _gone(child), 5), f"the server {child} outlived its parent"
    kept = _records(label_args)
    assert 3 <= len(kept) < INPUTS and len(set(kept)) == len(kept)


def test_a_server_whose_parent_is_killed_exits_by_itself(label_args):
    """SIGKILL to `supertiny label` (no clean-up at all): its server notices and exits."""
    process = _label_process(label_args)
    child = _running_with_records(process, label_args)
    process.kill()
    process.communicate(timeout=30)
    assert _wait_for(lambda: _gone(child), 8), f"the server {child} outlived its parent"


def test_serve_exits_when_the_process_named_by_parent_pid_exits(teacher_gguf, tmp_path):
    """`supertiny serve --parent-pid PID` with PID another process than its parent."""
    from supertiny.runtime.process import free_port

    sleeper = subprocess.Popen(["sleep", "60"])
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "supertiny.serve", "--model", str(teacher_gguf)]
            + ["--port", str(port), "--n-ctx", "512", "--parent-pid", str(sleeper.pid)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert _wait_for(lambda: "Uvicorn running" in log.read_text(), 60), log.read_text()
        assert server.poll() is None
        sleeper.kill()
        sleeper.wait()
        server.wait(timeout=8)
    finally:
        sleeper.kill()
        server.kill()
        server.wait()
    assert f"parent process {sleeper.pid} exited" in log.read_text()
