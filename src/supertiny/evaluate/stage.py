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
folder is set aside. The row of one model is computed in ``supertiny.evaluate.metrics``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from supertiny.core.config import ConfigError
from supertiny.core.progress import console
from supertiny.core.records import test_records
from supertiny.core.runs import Run, config_hash, served_output, write_json
from supertiny.core.steps import fingerprint, finish_step, finished_step, set_aside_steps
from supertiny.core.task import Task
from supertiny.evaluate import EvalError
from supertiny.evaluate.config import EvalConfig, ModelEntry
from supertiny.evaluate.local import local_answers, tool_choice
from supertiny.evaluate.metrics import Target, local_path, machine, model_size, summarize
from supertiny.evaluate.teacher import teacher_answers, teacher_size

STAGE = "eval"


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
    return Target(entry.name, _kind(ref, entry.name), local_path(ref), entry.model, entry.n_threads)


def _kind(ref: str, name: str) -> str:
    from supertiny.core import models

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


# ----- the stage -----------------------------------------------------------------------------


def run(task: Task, conf: EvalConfig, run_dir: str | Path, restart: bool = False) -> dict[str, str]:
    """Measure every model of ``conf`` on the task's gold test set into ``run_dir/eval``."""
    with Run(run_dir) as the_run:  # the stage's lock lets go however the stage ends
        return _run(the_run, task, conf, restart)


def _run(the_run: Run, task: Task, conf: EvalConfig, restart: bool) -> dict[str, str]:

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
            "tool_choice": tool_choice(task, conf),
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
        size = teacher_size(run)
    else:
        answers, throughput = local_answers(target, task, records, conf, folder)
        size = model_size(target)
    return summarize(target, answers, throughput, size, conf)


def _digest(target: Target, task: Task, conf: EvalConfig, records: list[dict], run: Run) -> str:
    """Settings hash of one model's measurement: its file, the settings, the task's tools and
    student prompt (they shape every request and its grammar) and the test records."""

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


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        m["name"]: {"exact": m["exact"], "p50_s": m["latency_s"]["p50"]} for m in report["models"]
    }
