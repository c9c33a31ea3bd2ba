"""The eval stage, ``supertiny eval TASK.yaml``: every model on the same gold test set, one table.

    supertiny eval examples/smart_home/task.yaml --run-dir runs/smart_home
    supertiny eval examples/smart_home/task.yaml --set models='[{name: q8, model: x.gguf}]'

Each model is measured through the path it would be used by in production:
- the **teacher** is its function-call pipeline (helper tools, long prompt, n samples and the
  vote) as the label stage runs it: by default the label stage's answers on the same test
  records (``label/teacher_test.jsonl``, with their measured latency, tokens and cost), or a
  fresh run of that pipeline with ``teacher_rerun: true``;
- a **local model** (GGUF, transformers or torchao checkpoint) is started behind
  ``supertiny serve --task TASK.yaml`` in a child process and asked over HTTP, one request at
  a time for accuracy and latency, then ``throughput_requests`` requests at ``concurrency``
  clients for requests per second. Calls are forced (``tool_choice`` "required") when the
  task allows no plain answer, so decoding is constrained to valid calls. If that server
  dies, the stage stops at once with ``ServerDied`` (how it ended, its log tail); the
  answers written so far stay and a re-run continues.

Per model: exact match, per-argument F1, validity, the Sim score, exact match per category
(the test records' ``meta.category``), latency p50/p95/p99, requests/s, parameters and file
size, tokens in and out per input, and cost per 1,000 inputs (endpoint prices when the
teacher has them, otherwise measured seconds x ``hourly_price_usd``).

Writes ``RUN_DIR/eval/``: ``NN-name/answers.jsonl`` (one scored answer per test record;
resumable), ``NN-name/throughput.json``, ``NN-name/step.json``, and ``eval_report.json`` (the
table the report draws). A model whose file or settings changed is measured again; its old
folder is set aside. The row of one model is computed in ``supertiny.eval_metrics``.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supertiny.config import ConfigError
from supertiny.eval_config import EvalConfig, ModelEntry
from supertiny.eval_metrics import (  # noqa: F401  (re-exported: the stage's metrics)
    Target,
    _answer,
    _as_label,
    _read_json,
    by_category,
    calls_text,
    cost,
    latency_stats,
    machine,
    model_size,
    sample_errors,
    summarize,
)
from supertiny.progress import bar, console
from supertiny.runs import (
    RecordLog,
    Run,
    config_hash,
    finish_step,
    finished_step,
    iter_jsonl,
    set_aside_steps,
    write_json,
    write_jsonl,
)
from supertiny.serve.backend import available_cores
from supertiny.task import Task

STAGE = "eval"


class EvalError(RuntimeError):
    """A model cannot be measured (missing stage output, a server that died)."""


# ----- which models ------------------------------------------------------------------------


def default_lineup(run: Run) -> list[ModelEntry]:
    """The teacher, the untrained and trained student and the compressed student, as far as
    the run has them."""
    entries = []
    if (run.root / "label" / "teacher_test.jsonl").is_file():
        entries.append(ModelEntry(name="teacher", model="teacher"))
    if _stage(run, "train").get("status") == "finished":
        entries.append(ModelEntry(name="student (untrained)", model="base"))
        entries.append(ModelEntry(name="student (trained)", model="train"))
    compress = _stage(run, "compress")
    if compress.get("status") == "finished":
        kind = served_output("compress", compress.get("artifacts") or {})
        if kind:
            entries.append(ModelEntry(name=f"compressed ({kind})", model=f"compress:{kind}"))
    return entries


SERVED_OUTPUTS = {"compress": ("gguf", "torchao", "model"), "train": ("model",)}
"""A stage's model outputs, the one to serve first: llama.cpp, then torchao, then float."""


def served_output(stage: str, artifacts: dict[str, str]) -> str | None:
    """The key of the model a stage's ``artifacts`` would be served from, if any."""
    return next((k for k in SERVED_OUTPUTS.get(stage, ()) if k in artifacts), None)


def resolve(entry: ModelEntry, run: Run) -> Target:
    """Where ``entry.model`` points, and which runtime serves it."""
    ref = entry.model
    if ref == "teacher":
        return Target(entry.name, "teacher", None, ref)
    if ref == "base":
        student = (_stage(run, "train").get("config") or {}).get("student") or {}
        if not student.get("model"):
            raise EvalError(
                f"model '{entry.name}': 'base' needs a finished train stage in {run.root}"
            )
        ref = student["model"]
    elif ref == "train" or ref.startswith("compress"):
        stage, _, key = ref.partition(":")
        artifacts = _stage(run, stage).get("artifacts") or {}
        key = key or served_output(stage, artifacts) or "model"
        if key not in artifacts:
            raise EvalError(
                f"model '{entry.name}': the {stage} stage of {run.root} has no '{key}' output; "
                f"run `supertiny {stage}` first"
            )
        ref = str(run.root / artifacts[key])
    return Target(
        entry.name, _kind(ref, entry.name), _local_path(ref), entry.model, entry.n_threads
    )


def _kind(ref: str, name: str) -> str:
    from supertiny import models

    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / "torchao.json").is_file():
            return "torchao"
        if (path / "config.json").is_file():
            return "hf"
        raise EvalError(f"model '{name}': {path} is neither a transformers nor a torchao folder")
    if path.is_file() or ref in models.BUNDLED:
        return "gguf"
    raise EvalError(
        f"model '{name}': '{ref}' is not a file, a folder, a bundled alias "
        f"({', '.join(models.BUNDLED)}) or a stage output (teacher, base, train, compress)"
    )


def _local_path(ref: str) -> Path:
    from supertiny import models

    if ref in models.BUNDLED:
        return models.resolve_gguf(ref)
    return Path(ref).expanduser()


# ----- the stage -----------------------------------------------------------------------------


def run(task: Task, conf: EvalConfig, run_dir: str | Path, restart: bool = False) -> dict[str, str]:
    """Measure every model of ``conf`` on the task's gold test set into ``run_dir/eval``."""
    with Run(run_dir) as the_run:  # the stage's lock lets go however the stage ends
        return _run(the_run, task, conf, restart)


def _run(the_run: Run, task: Task, conf: EvalConfig, restart: bool) -> dict[str, str]:
    from supertiny.transfer.data import test_records

    entries = conf.models or default_lineup(the_run)
    if not entries:
        raise EvalError(
            f"{the_run.root} has no teacher answers and no trained or compressed model to "
            "evaluate; run the label/train/compress stages first, or list `models` in the "
            "eval config"
        )
    targets = [resolve(e, the_run) for e in entries]
    records = test_records(task, conf.limit)
    if not records:
        raise ConfigError(f"{task.path}: data.test has no records with a gold answer")
    stage_dir = the_run.begin(STAGE, stage_settings(task, conf), restart=restart, check=False)
    names = [f"{i + 1:02d}-{_slug(t.name)}" for i, t in enumerate(targets)]
    digests = [_digest(t, task, conf, records, the_run) for t in targets]
    set_aside_steps(stage_dir, dict(zip(names, digests, strict=True)))
    report = {
        "task": task.name,
        "test_n": len(records),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": machine(),
        "settings": {
            "concurrency": conf.concurrency,
            "hourly_price_usd": conf.hourly_price_usd,
            "max_tokens": conf.max_tokens,
            "tool_choice": _tool_choice(task, conf),
        },
        "models": [],
    }
    for target, name, digest in zip(targets, names, digests, strict=True):
        folder = stage_dir / name
        info = finished_step(folder, digest)
        if info is None:
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / "started.json", {"name": name, "hash": digest})
            console.print(f"[bold]eval {target.name}[/] ({target.runtime}: {target.reference})")
            row = measure(target, task, records, conf, folder, the_run)
            info = {"name": name, "hash": digest, "artifact": "answers.jsonl", "row": row}
            finish_step(folder, info)
        report["models"].append(info["row"])
        write_json(stage_dir / "eval_report.json", report)
    artifacts = {"report": f"{STAGE}/eval_report.json"}
    the_run.finish(STAGE, artifacts, summary=_summary(report))
    return artifacts


def stage_settings(task: Task, conf: EvalConfig) -> dict[str, Any]:
    """What the manifest records as this stage's settings."""
    return {"task": str(task.path), **conf.model_dump(mode="json")}


def measure(
    target: Target, task: Task, records: list[dict], conf: EvalConfig, folder: Path, run: Run
) -> dict[str, Any]:
    """One row of the table: accuracy, latency, throughput, size, tokens and cost."""
    if target.kind == "teacher":
        answers, throughput = teacher_answers(task, records, conf, folder, run)
        size = _teacher_size(run)
    else:
        answers, throughput = local_answers(target, task, records, conf, folder)
        size = model_size(target)
    return summarize(target, answers, throughput, size, conf)


def _digest(target: Target, task: Task, conf: EvalConfig, records: list[dict], run: Run) -> str:
    """Settings hash of one model's measurement: its file, the settings, the task's tools and
    student prompt (they shape every request and its grammar) and the test records."""
    from supertiny.compress.compress import fingerprint

    source: Any
    if target.kind == "teacher":
        teacher_test = run.root / "label" / "teacher_test.jsonl"
        source = (
            _stage(run, "label").get("config_hash")
            if conf.teacher_rerun
            else (fingerprint(teacher_test) if teacher_test.is_file() else None)
        )
    else:
        source = fingerprint(target.path)
    settings = conf.model_dump(mode="json", exclude={"models", "errors_shown"})
    return config_hash(
        {
            "model": source,
            "threads": target.n_threads,
            "settings": settings,
            "task": {"tools": task.tools, "student": task.spec.student.model_dump(mode="json")},
            "ids": [r["id"] for r in records],
        }
    )


def _stage(run: Run, name: str) -> dict[str, Any]:
    return run.stage(name) or {}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "model"


def _tool_choice(task: Task, conf: EvalConfig) -> str:
    if conf.tool_choice != "task":
        return conf.tool_choice
    return "auto" if task.spec.allow_plain_answer else "required"


# ----- local models: a real server ---------------------------------------------------------------


def local_answers(
    target: Target, task: Task, records: list[dict], conf: EvalConfig, folder: Path
) -> tuple[list[dict], dict[str, Any] | None]:
    """Answers of a local model served by ``supertiny serve --task``, and its throughput."""
    import httpx

    from supertiny.serve.process import ServerProcess, ServerStartError

    threads = target.n_threads or conf.n_threads or available_cores()
    log = RecordLog(folder / "answers.jsonl")
    todo = [r for r in records if r["id"] not in log.ids]
    settings = {
        "concurrency": conf.concurrency,
        "requests": conf.throughput_requests,
        "max_tokens": conf.max_tokens,
        "threads": threads,
    }
    cached = _read_json(folder / "throughput.json")
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

    choice = _tool_choice(task, conf)

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
        return _answer(
            record,
            _as_label(message),
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


# ----- the teacher pipeline --------------------------------------------------------------------


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
    import asyncio

    from supertiny.teacher import label

    stored = dict(_stage(run, "label").get("config") or {})
    if not stored:
        raise EvalError(
            f"teacher_rerun needs the label stage's settings: run `supertiny label` in {run.root}"
        )
    for key in ("task", "task_sha"):
        stored.pop(key, None)
    lconf = label.load_config(None, None, stored)
    log = RecordLog(folder / "answers.jsonl")
    todo = [r for r in records if r["id"] not in log.ids]

    async def go() -> float:
        endpoint = label._endpoint(lconf.teacher, folder / "teacher_server.log")
        with endpoint as (url, model, check):
            client = label._client(lconf.teacher, url, model, folder / "cache.sqlite", check)
            labeler = label.Labeler(task, lconf, client, None)

            def done(record, outcome, advance):
                if outcome is not None:
                    log.append(_teacher_answer({**outcome[0], "gold": record["gold"]}, task))
                advance(1)

            started = time.perf_counter()
            try:
                await label._run_all(
                    todo, labeler, lconf.teacher.concurrency, done, "teacher pipeline"
                )
            finally:
                await client.aclose()
            return time.perf_counter() - started

    try:
        seconds = asyncio.run(go()) if todo else None
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
    return answers, throughput or _read_json(folder / "throughput.json")


def _teacher_answer(row: dict[str, Any], task: Task) -> dict[str, Any]:
    meta = row.get("meta") or {}
    prediction = row.get("label") or {"tool_calls": [], "content": None}
    score = row.get("score") or task.evaluate(prediction, row["gold"], row.get("tools")).to_dict()
    return _answer(
        row,
        prediction,
        score,
        meta.get("latency_s"),
        meta.get("prompt_tokens"),
        meta.get("completion_tokens"),
        meta.get("requests"),
        meta.get("cost_usd"),
    )


def _teacher_size(run: Run) -> dict[str, Any]:
    """Parameters and bytes of the teacher when it is a local GGUF (the bundled default)."""
    teacher = (_stage(run, "label").get("config") or {}).get("teacher") or {}
    if teacher.get("url") or not teacher.get("model"):
        return {"params": None, "bytes": None}
    try:
        return model_size(Target("teacher", "gguf", _local_path(teacher["model"]), "teacher"))
    except Exception:  # noqa: BLE001 - a size we cannot read is "not measured"
        return {"params": None, "bytes": None}


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        m["name"]: {"exact": m["exact"], "p50_s": m["latency_s"]["p50"]} for m in report["models"]
    }
