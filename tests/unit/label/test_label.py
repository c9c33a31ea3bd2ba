"""The label stage end to end against a scripted OpenAI-compatible server: the pipeline,
voting, the four artifacts and the report, and every fault (garbage, 500s, timeouts, a
raising tool, a bad data line, a dead endpoint, Ctrl-C) with resume."""

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.scripted_server import garbage, hang, ok, scripted_server, status, tool_call

from supertiny.core.runs import RunError, read_jsonl
from supertiny.core.task import Task
from supertiny.label import stage as label
from supertiny.label.client import TeacherClient
from supertiny.label.config import LabelConfig
from supertiny.label.prototype import run_pipeline

ASSETS = Path(__file__).parents[2] / "assets" / "tiny_task"
NUMBERS = {"two": 2, "three": 3}


def rule_teacher(body: dict, wrong_when_sampling: bool = False):
    """Answers like a competent teacher of the tiny task: find_city, then book_table."""
    messages = body["messages"]
    last = messages[-1]
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    if last["role"] == "tool":
        city_id = (
            json.loads(last["content"])["city_id"] if last["content"].startswith("{") else None
        )
        if city_id is None:
            return ok(tool_calls=[tool_call("no_action", {"reason": "unsupported"})])
        people = re.search(r"\d+", user)
        people = int(people.group()) if people else NUMBERS.get(user.split()[0].lower(), 1)
        if wrong_when_sampling and body.get("temperature", 0) > 0:
            people += 1
        return ok(
            tool_calls=[tool_call("book_table", {"city_id": city_id, "people": people})],
            prompt_tokens=300,
            completion_tokens=20,
        )
    city = re.search(r"\b(Paris|Rome|Lima|Oslo|oslo|Atlantis)\b", user)
    if city is None:
        return ok(tool_calls=[tool_call("no_action", {"reason": "chit_chat"})])
    return ok(
        tool_calls=[tool_call("find_city", {"name": city.group()})],
        prompt_tokens=250,
        completion_tokens=15,
    )


def config(url, **changes):
    data = {
        "teacher": {
            "url": url,
            "model": "scripted",
            "max_retries": 3,
            "timeout_s": 2,
            "price_input_per_million": 1.0,
            "price_output_per_million": 2.0,
        },
        "quality": {"samples": 3},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value
    return LabelConfig.model_validate(data)


@pytest.fixture
def task(tmp_path):
    shutil.copytree(ASSETS, tmp_path / "task")
    return Task.load(tmp_path / "task" / "task.yaml")


def test_happy_path_writes_four_artifacts_and_report(task, tmp_path):
    with scripted_server(default=rule_teacher) as server:
        artifacts = label.run(task, config(server.url), tmp_path / "run")
    out = tmp_path / "run" / "label"
    labeled = {r["id"]: r for r in read_jsonl(out / "labeled.jsonl")}
    rejected = read_jsonl(out / "rejected.jsonl")
    assert sorted(labeled) == ["t1", "t2", "t3", "t5", "t6"]
    assert [(r["id"], r["reason_kind"]) for r in rejected] == [("t4", "duplicate")]
    t1 = labeled["t1"]
    assert t1["label"] == {
        "tool_calls": [{"name": "book_table", "arguments": {"city_id": "par", "people": 4}}],
        "content": None,
    }
    assert t1["meta"]["samples"] == 2 and t1["meta"]["agreement"] == 1.0  # early stop after 2 of 3
    assert [step["tool_results"][0]["result"] for step in t1["meta"]["trace"][:1]] == [
        '{"city_id": "par"}'
    ]
    assert t1["meta"]["cost_usd"] == pytest.approx(2 * ((250 + 300) * 1e-6 + (15 + 20) * 2e-6))
    assert read_jsonl(out / "preferences.jsonl") == []
    report = json.loads((out / "label_report.json").read_text())
    assert (
        report["accepted"] == 5
        and report["rejected"] == 1
        and report["accept_rate"] == pytest.approx(5 / 6, abs=1e-3)
    )
    assert report["teacher_test_n"] == 3 and report["teacher_test_exact"] == 1.0
    assert report["labeled_gold_exact"] == 1.0
    assert report["agreement_histogram"]["0.8-1.0"] == 5
    assert report["usage_labeling"]["prompt_tokens"] > 0
    assert set(artifacts) == {"labeled", "rejected", "preferences", "teacher_test", "report"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["label"]["status"] == "finished"


def test_disagreement_gives_preference_pairs_and_rejections(task, tmp_path):
    with scripted_server(default=lambda b: rule_teacher(b, wrong_when_sampling=True)) as server:
        label.run(
            task, config(server.url, quality__min_agreement=0.6, test_limit=0), tmp_path / "run"
        )
    out = tmp_path / "run" / "label"
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
    # greedy says 4, both samples say 5: the majority (5) wins with 2/3 and is accepted
    labeled = {r["id"]: r for r in read_jsonl(out / "labeled.jsonl")}
    assert labeled["t1"]["label"]["tool_calls"][0]["arguments"]["people"] == 5
    assert labeled["t1"]["meta"]["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    pairs = [p for p in read_jsonl(out / "preferences.jsonl") if p["source_id"] == "t1"]
    assert len(pairs) == 1
    assert pairs[0]["chosen"]["tool_calls"][0]["arguments"]["people"] == 5
    assert pairs[0]["rejected"]["tool_calls"][0]["arguments"]["people"] == 4
    assert pairs[0]["messages"][0]["content"] == "table for 4 in Paris"
    assert "t6" in labeled and "t4" in rejected


def test_flaky_endpoint_500s_timeouts_and_garbage_are_retried(task, tmp_path):
    script = [
        status(500),
        status(503, retry_after=0.05),
        garbage(),
        hang(3),
        status(429, retry_after=0.05),
    ]
    with scripted_server(script, default=rule_teacher) as server:
        label.run(
            task,
            config(server.url, test_limit=0, quality__samples=1, teacher__concurrency=2),
            tmp_path / "run",
        )
    labeled = read_jsonl(tmp_path / "run" / "label" / "labeled.jsonl")
    assert len(labeled) == 5


def test_model_answering_garbage_is_rejected_not_fatal(task, tmp_path):
    with scripted_server(default=ok("I am not sure what you mean, friend.")) as server:
        label.run(task, config(server.url, test_limit=1), tmp_path / "run")
    out = tmp_path / "run" / "label"
    rejected = read_jsonl(out / "rejected.jsonl")
    assert {r["reason_kind"] for r in rejected} == {"invalid", "duplicate"}
    assert any("without a final call" in r["reason"] for r in rejected)
    report = json.loads((out / "label_report.json").read_text())
    assert report["accepted"] == 0 and report["teacher_test_exact"] == 0.0


def test_raising_tool_result_is_fed_back_to_the_teacher(task, tmp_path):
    (tmp_path / "task" / "train.jsonl").write_text(
        json.dumps(
            {"id": "x1", "messages": [{"role": "user", "content": "table for 2 in Atlantis"}]}
        )
        + "\n"
    )
    with scripted_server(default=rule_teacher) as server:
        label.run(task, config(server.url, test_limit=0), tmp_path / "run")
    record = read_jsonl(tmp_path / "run" / "label" / "labeled.jsonl")[0]
    result = record["meta"]["trace"][0]["tool_results"][0]
    assert result["ok"] is False and "no city named 'Atlantis'" in result["result"]
    assert record["label"]["tool_calls"] == [
        {"name": "no_action", "arguments": {"reason": "unsupported"}}
    ]
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and "no city named" in tool_message["content"]


def test_bad_data_line_is_reported_and_the_rest_labelled(task, tmp_path):
    path = tmp_path / "task" / "train.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join(lines[:2] + ["{not json", '{"id": "y", "messages": "hi"}'] + lines[2:]) + "\n"
    )
    with scripted_server(default=rule_teacher) as server:
        label.run(task, config(server.url, test_limit=0, quality__samples=1), tmp_path / "run")
    rejected = read_jsonl(tmp_path / "run" / "label" / "rejected.jsonl")
    unreadable = [r for r in rejected if r["reason_kind"] == "unreadable"]
    assert [r["id"] for r in unreadable] == ["bad:train.jsonl:3", "bad:train.jsonl:4"]
    assert "not JSON" in unreadable[0]["reason"] and "needs 'messages'" in unreadable[1]["reason"]
    assert len(read_jsonl(tmp_path / "run" / "label" / "labeled.jsonl")) == 5


def test_dead_endpoint_stops_with_clear_error_and_keeps_nothing_half_done(task, tmp_path):
    conf = config("http://127.0.0.1:9/v1", teacher__max_retries=0, max_failures=2, test_limit=0)
    with pytest.raises(label.LabelStopped, match="re-run the same command to continue"):
        label.run(task, conf, tmp_path / "run")
    assert read_jsonl(tmp_path / "run" / "label" / "labeled.jsonl") == []


def test_resume_skips_done_work_and_refuses_changed_config(task, tmp_path):
    run_dir = tmp_path / "run"
    with scripted_server(default=rule_teacher) as server:
        label.run(task, config(server.url, limit=2, test_limit=0, quality__samples=1), run_dir)
        first = len(server.requests)
        assert first == 4  # two inputs, two steps each
        with pytest.raises(RunError, match="changed: quality.samples"):
            label.run(task, config(server.url, limit=2, test_limit=0), run_dir)
        label.run(task, config(server.url, limit=2, test_limit=0, quality__samples=1), run_dir)
        assert len(server.requests) == first  # nothing asked twice
        # More inputs, more concurrency: the records stay; only the new inputs are asked.
        more = config(server.url, limit=3, test_limit=0, quality__samples=1)
        more.teacher.concurrency = 2
        label.run(task, more, run_dir)
        assert len(server.requests) == first + 2
    assert len(read_jsonl(run_dir / "label" / "labeled.jsonl")) == 3


def test_ctrl_c_keeps_records_and_rerun_continues(task, tmp_path):
    """A real interrupt (SIGINT to the CLI) mid-run; the re-run finishes without losing work."""

    def slow(body):
        return _delayed(rule_teacher(body))

    config_path = tmp_path / "label.yaml"
    run_dir = tmp_path / "run"
    with scripted_server(default=slow) as server:
        config_path.write_text(
            f"teacher:\n  url: {server.url}\n  model: scripted\nquality:\n  samples: 1\n"
            "test_limit: 0\n"
        )
        command = [
            sys.executable,
            "-m",
            "supertiny.cli",
            "label",
            str(task.path),
            "--config",
            str(config_path),
            "--run-dir",
            str(run_dir),
        ]
        # A job started in the background by a non-interactive shell (`ci &`) inherits SIGINT
        # ignored, and Python keeps it so: give the child Ctrl-C back, as a terminal has it.
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        labeled = run_dir / "label" / "labeled.jsonl"
        deadline = time.time() + 30
        while time.time() < deadline and not (
            labeled.exists() and labeled.read_text().count("\n") >= 2
        ):
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 130, output
        assert "interrupted" in output and "run the same command again" in output
        kept = [r["id"] for r in read_jsonl(labeled)]
        assert 2 <= len(kept) < 5
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    final = [r["id"] for r in read_jsonl(labeled)]
    assert sorted(final) == ["t1", "t2", "t3", "t5", "t6"] and final[: len(kept)] == kept


def test_a_full_disk_stops_with_a_message_and_the_rerun_continues(
    task, tmp_path, monkeypatch, capsys
):
    """The third record cannot be written (ENOSPC): exit 2 with what to do; the re-run keeps
    the two records on disk and labels the rest."""
    import errno

    from supertiny.cli import main
    from supertiny.core import runs

    real_append = runs.RecordLog.append
    written = []

    def append(self, record):
        if self.path.name == "labeled.jsonl" and len(written) == 2:
            self._handle.write('{"id": "t')  # part of a line, as a full disk leaves it
            self._handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real_append(self, record)
        if self.path.name == "labeled.jsonl":
            written.append(record["id"])

    config_path = tmp_path / "label.yaml"
    run_dir = tmp_path / "run"
    argv = ["label", str(task.path), "--config", str(config_path), "--run-dir", str(run_dir)]
    with scripted_server(default=rule_teacher) as server:
        config_path.write_text(
            f"teacher: {{url: {server.url}, model: scripted}}\nquality: {{samples: 1}}\n"
            "test_limit: 0\n"
        )
        monkeypatch.setattr(runs.RecordLog, "append", append)
        assert main(argv) == 2
        out = "".join(capsys.readouterr())
        assert "the disk is full" in out and "run the same command again" in out
        monkeypatch.setattr(runs.RecordLog, "append", real_append)
        assert main(argv) == 0
        both_runs = len(server.requests)
        clean = ["label", str(task.path), "--config", str(config_path), "--run-dir"]
        assert main([*clean, str(tmp_path / "clean")]) == 0
        assert both_runs == len(server.requests) - both_runs  # nothing was asked twice
    final = [r["id"] for r in read_jsonl(run_dir / "label" / "labeled.jsonl")]
    assert final[:2] == written and sorted(final) == ["t1", "t2", "t3", "t5", "t6"]


def _delayed(behaviour):
    return type(behaviour)(behaviour.status, behaviour.body, behaviour.headers, 0.3)


def test_llm_judge_rejects_labels_it_grades_low(task, tmp_path):
    def teacher_and_judge(body):
        if not body.get("tools"):  # the judge prompt carries no tools
            low = "Rome" in body["messages"][1]["content"]
            return ok(
                '{"score": %s, "reason": "%s"}' % ((0.2, "wrong city") if low else (0.9, "right"))
            )
        return rule_teacher(body)

    with scripted_server(default=teacher_and_judge) as server:
        conf = config(server.url, test_limit=0, quality__samples=1)
        conf.quality.judge.enabled = True
        label.run(task, conf, tmp_path / "run")
    out = tmp_path / "run" / "label"
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
    assert rejected["t2"]["reason_kind"] == "judge"
    assert rejected["t2"]["reason"] == "judge score 0.20 < 0.5: wrong city"
    labeled = {r["id"]: r for r in read_jsonl(out / "labeled.jsonl")}
    assert labeled["t1"]["meta"]["judge"] == 0.9
    judge_requests = [b for b in server.requests if not b.get("tools")]
    assert (
        len(judge_requests) == 5
        and "Facts looked up" in judge_requests[0]["messages"][1]["content"]
    )
    report = json.loads((out / "label_report.json").read_text())
    assert report["rejection_reasons"] == {"duplicate": 1, "judge": 1}


def _hanging_task(tmp_path, timeout_s: float) -> Task:
    """The tiny task whose find_city never returns for Atlantis."""
    (tmp_path / "task" / "helpers.py").write_text(
        "import time\n\n"
        "def find_city(name):\n"
        "    if name == 'Atlantis':\n"
        "        time.sleep(3600)\n"
        "    return {'city_id': name[:3].lower()}\n"
    )
    path = tmp_path / "task" / "task.yaml"
    path.write_text(
        path.read_text().replace(
            "  module: helpers.py", f"  timeout_s: {timeout_s}\n  module: helpers.py"
        )
    )
    (tmp_path / "task" / "train.jsonl").write_text(
        json.dumps(
            {"id": "x1", "messages": [{"role": "user", "content": "table for 2 in Atlantis"}]}
        )
        + "\n"
    )
    return Task.load(path)


def test_hanging_tool_times_out_and_the_teacher_gets_the_error(task, tmp_path):
    hanging = _hanging_task(tmp_path, timeout_s=0.5)
    started = time.monotonic()
    with scripted_server(default=rule_teacher) as server:
        label.run(hanging, config(server.url, test_limit=0, quality__samples=1), tmp_path / "run")
    assert time.monotonic() - started < 30
    record = read_jsonl(tmp_path / "run" / "label" / "labeled.jsonl")[0]
    result = record["meta"]["trace"][0]["tool_results"][0]
    assert result == {
        "name": "find_city",
        "arguments": {"name": "Atlantis"},
        "ok": False,
        "result": "error: helper find_city timed out after 0.5 s",
    }
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"] == "error: helper find_city timed out after 0.5 s"
    assert record["label"]["tool_calls"] == [
        {"name": "no_action", "arguments": {"reason": "unsupported"}}
    ]


def test_a_hanging_tool_does_not_block_the_event_loop(task, tmp_path):
    """While a helper hangs (1 s, then its timeout), the loop keeps running other work."""
    hanging = _hanging_task(tmp_path, timeout_s=1.0)
    messages = [{"role": "user", "content": "table for 2 in Atlantis"}]

    async def pipeline_and_ticks(url: str):
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        async with TeacherClient(url, "scripted", max_retries=0) as client:
            result = await run_pipeline(client, hanging, messages)
        ticker.cancel()
        return result, ticks

    with scripted_server(default=rule_teacher) as server:
        result, ticks = asyncio.run(pipeline_and_ticks(server.url))
    assert result.ok and result.calls[0].name == "no_action"
    assert "timed out after 1 s" in result.trace[0]["tool_results"][0]["result"]
    assert ticks >= 5  # a helper run on the loop itself would leave it at 0 or 1
