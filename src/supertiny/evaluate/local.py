"""The eval stage's local models: each served by ``supertiny serve --task`` in a child process
and asked over HTTP, one request at a time for accuracy and latency, then at a concurrency
for requests per second.

    answers, throughput = local_answers(target, task, records, conf, folder)
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supertiny.core.progress import bar, console
from supertiny.core.runs import RecordLog, iter_jsonl, write_json
from supertiny.core.task import Task
from supertiny.evaluate import EvalError
from supertiny.evaluate.config import EvalConfig
from supertiny.evaluate.metrics import Target, answer_row, message_label, read_json
from supertiny.runtime.backend import available_cores


def local_answers(
    target: Target, task: Task, records: list[dict], conf: EvalConfig, folder: Path
) -> tuple[list[dict], dict[str, Any] | None]:
    """Answers of a local model served by ``supertiny serve --task``, and its throughput."""
    import httpx

    from supertiny.runtime.process import ServerProcess, ServerStartError

    threads = target.n_threads or conf.n_threads or available_cores()
    log = RecordLog(folder / "answers.jsonl")
    todo = [r for r in records if r["id"] not in log.ids]
    settings = {
        "concurrency": conf.concurrency,
        "requests": conf.throughput_requests,
        "max_tokens": conf.max_tokens,
        "threads": threads,
    }
    cached = read_json(folder / "throughput.json")
    throughput = cached if cached and cached.get("settings") == settings else None
    try:
        if todo or (throughput is None and conf.throughput_requests):
            console.print(f"starting the server (log: {folder / 'server.log'})")
            with (
                ServerProcess(
                    target.path, task=task.path, n_threads=threads, log_path=folder / "server.log"
                ) as server,
                httpx.Client(base_url=server.base_url, timeout=900.0) as http,
            ):
                ask = _asker(http, task, conf, server.check_alive)
                with bar(len(todo), f"eval {target.name}: {len(records)} test inputs") as advance:
                    for record in todo:
                        log.append(ask(record))
                        advance(1)
                if throughput is None and conf.throughput_requests:
                    throughput = _throughput(ask, records, conf, target.name)
                    throughput["settings"] = settings
                    write_json(folder / "throughput.json", throughput)
    except ServerStartError as exc:
        raise EvalError(f"model '{target.name}': the server did not start: {exc}") from exc
    finally:
        log.close()
    wanted = {r["id"] for r in records}
    answers = [a for a in iter_jsonl(folder / "answers.jsonl") if a["id"] in wanted]
    return answers, throughput


def _asker(http, task: Task, conf: EvalConfig, check_server: Callable[[], None]):
    """A function that asks the server one test record and returns its scored answer.

    On a connection error it calls ``check_server``, which raises ``ServerDied`` when the
    server process has exited (otherwise the connection error goes up as it is)."""
    import httpx

    choice = tool_choice(task, conf)

    def ask(record: dict[str, Any]) -> dict[str, Any]:
        body = {
            "model": "student",
            "messages": record["messages"],
            "tools": task.tools_for(record),
            "tool_choice": choice,
            "temperature": 0,
            "max_tokens": conf.max_tokens,
        }
        started = time.perf_counter()
        try:
            response = http.post("/chat/completions", json=body)
        except httpx.TransportError:
            check_server()
            raise
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            message = {"role": "assistant", "content": None}
            problem = f"server answered {response.status_code}: {response.text[:300]}"
            usage: dict[str, Any] = {}
        else:
            payload = response.json()
            message, problem = payload["choices"][0]["message"], None
            usage = payload.get("usage") or {}
        score = task.evaluate(message, record["gold"], record.get("tools")).to_dict()
        if problem:
            score["reason"] = problem
        return answer_row(
            record,
            message_label(message),
            score,
            seconds,
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            1,
            0.0,
        )

    return ask


def _throughput(ask, records: list[dict], conf: EvalConfig, name: str) -> dict[str, Any]:
    """Requests per second with ``conf.concurrency`` clients sending ``throughput_requests``."""
    sample = [records[i % len(records)] for i in range(conf.throughput_requests)]
    with bar(
        len(sample), f"eval {name}: {len(sample)} requests at concurrency {conf.concurrency}"
    ) as advance:
        started = time.perf_counter()
        pool = concurrent.futures.ThreadPoolExecutor(conf.concurrency)
        try:
            for _ in pool.map(ask, sample):
                advance(1)
        finally:  # on a failure or an interrupt, requests not yet sent are dropped
            pool.shutdown(wait=True, cancel_futures=True)
        seconds = time.perf_counter() - started
    return {
        "requests": len(sample),
        "concurrency": conf.concurrency,
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(sample) / seconds, 4),
    }


def tool_choice(task: Task, conf: EvalConfig) -> str:
    if conf.tool_choice != "task":
        return conf.tool_choice
    return "auto" if task.spec.allow_plain_answer else "required"
