"""Stage 2: knowledge transfer. Train the student on the label stage's artifacts.

    supertiny train examples/smart_home/task.yaml --preset small

Runs the configured curriculum (sft, rft, dpo, grpo, kd; any order, any repeats). Each step
starts from the model the previous step saved, writes into ``RUN_DIR/train/NN-kind/``:

    model/          merged weights + tokenizer (transformers format)
    metrics.json    training metrics (loss, tokens/s, step-specific counts such as pass@k)
    eval.jsonl      greedy answers on the gold test set with their scores

and ``RUN_DIR/train/train_report.json`` puts the untrained student, every step and the
teacher side by side on the same test records. A finished step is never run twice: the
stage resumes at the first step whose settings (or predecessors) changed, and inside a step
from the trainer's last checkpoint. Steps that changed are moved aside, never deleted.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from supertiny.core.metrics import summarize_scores
from supertiny.core.progress import console
from supertiny.core.records import load_labels, teacher_scores, test_records
from supertiny.core.runs import Run, config_hash, iter_jsonl, write_json
from supertiny.core.steps import finish_step, finished_step, set_aside_steps, step_name
from supertiny.core.task import Task
from supertiny.runtime import hf as st
from supertiny.runtime.scoring import score_model
from supertiny.train import distributed as dist
from supertiny.train.config import TrainConfig
from supertiny.train.trainers import StepContext

STAGE = "train"

# Explicit registry: step kind -> module with ``run(ctx, step) -> metrics``.
STEPS: dict[str, str] = {
    "sft": "supertiny.train.sft",
    "rft": "supertiny.train.rft",
    "dpo": "supertiny.train.dpo",
    "grpo": "supertiny.train.grpo",
    "kd": "supertiny.train.kd",
}


def _step_hashes(conf: TrainConfig, labels: list[dict[str, Any]]) -> list[str]:
    """Hash of everything a step's result depends on: settings, data and all steps so far."""
    base = conf.model_dump(mode="json", exclude={"steps", "eval"})
    base["data"] = config_hash({r["id"]: r["label"] for r in labels})
    steps = [s.model_dump(mode="json") for s in conf.steps]
    return [config_hash({"base": base, "steps": steps[: i + 1]}) for i in range(len(steps))]


def require_extra() -> None:
    """Fail early, with the install command, when the training libraries are missing."""
    import importlib.util

    missing = [
        name
        for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise st.StudentError(
            f"training needs {', '.join(missing)}: pip install 'supertiny[train]'"
        )


def stage_settings(task: Task, conf: TrainConfig) -> dict[str, Any]:
    """What the manifest records as this stage's settings."""
    return conf.model_dump(mode="json")


def run(task: Task, conf: TrainConfig, run_dir: Path, restart: bool = False) -> dict[str, str]:
    """Train the student through the curriculum; returns the stage's artifacts."""
    require_extra()
    with Run(run_dir) as the_run:  # the stage's lock lets go however the stage ends
        return _run(the_run, task, conf, Path(run_dir), restart)


def _run(run: Run, task: Task, conf: TrainConfig, run_dir: Path, restart: bool) -> dict[str, str]:
    main = dist.is_main()  # under accelerate launch only the main process writes
    if main:
        run.begin(STAGE, stage_settings(task, conf), restart=restart, check=False)
    train_dir = run.stage_dir(STAGE)
    label_dir = run_dir / "label"
    labels_path = Path(conf.labels) if conf.labels else label_dir / "labeled.jsonl"
    labels = load_labels(labels_path, task)
    tests = test_records(task, conf.eval.limit)
    hashes = _step_hashes(conf, labels)
    names = [step_name(i, s.kind) for i, s in enumerate(conf.steps)]
    if main:
        set_aside_steps(train_dir, dict(zip(names, hashes, strict=True)))
    dist.wait()

    done: list[dict[str, Any]] = []
    for name, digest in zip(names, hashes, strict=True):
        info = finished_step(train_dir / name, digest)
        if info is None:
            break
        done.append(info)
    if done and main:
        console.print(f"train: {len(done)} finished step(s) kept: {', '.join(names[: len(done)])}")

    start_from = str(train_dir / names[len(done) - 1] / "model") if done else conf.student.model
    model = tok = device = None  # every step finished: nothing to load
    if len(done) < len(conf.steps):
        with dist.main_first():  # a GGUF is converted once, by the main process
            model, tok = st.load(start_from, conf.student.device, conf.student.dtype)
        st.check_tool_template(tok, start_from)
        device = str(model.device.type)
    report = _base_report(task, conf, labels, tests, label_dir)

    def score(model, log_path: Path, title: str) -> dict[str, Any] | None:
        if not tests:
            return None
        with dist.main_first():  # the others read the main process's answers
            return score_model(
                model,
                tok,
                task,
                tests,
                max_new_tokens=conf.eval.max_new_tokens,
                batch_size=conf.eval.batch_size,
                log_path=log_path,
                title=title,
            )

    def write_report() -> None:
        if main:
            write_json(train_dir / "train_report.json", _with_gains(report))

    before_log = train_dir / "eval_before.jsonl"
    if conf.eval.before and tests and not done:
        report["student_before"] = score(model, before_log, "evaluate: untrained student")
    elif before_log.is_file():  # the model in memory is a trained one now: report what was measured
        wanted = {r["id"] for r in tests}
        report["student_before"] = summarize_scores(
            [row for row in iter_jsonl(before_log) if row["id"] in wanted]
        )
    report["steps"] = [_report_step(info) for info in done]
    write_report()

    for index in range(len(done), len(conf.steps)):
        step, name = conf.steps[index], names[index]
        step_dir = train_dir / name
        if main:
            step_dir.mkdir(parents=True, exist_ok=True)
            write_json(step_dir / "started.json", {"name": name, "hash": hashes[index]})
            console.print(f"[bold]train step {name}[/]")
        dist.wait()
        if conf.student.lora is not None:
            model = st.add_lora(model, conf.student.lora)
        ctx = StepContext(
            task=task,
            model=model,
            tokenizer=tok,
            labels=labels,
            step_dir=step_dir,
            label_dir=label_dir,
            device=device,
            dtype=model.dtype,
            seed=conf.seed + index,
            gradient_checkpointing=conf.student.gradient_checkpointing,
        )
        metrics = importlib.import_module(STEPS[step.kind]).run(ctx, step)
        model = st.merged(ctx.model)
        metrics["notes"] = ctx.notes
        if main:
            st.save(model, tok, step_dir / "model")
            write_json(step_dir / "metrics.json", metrics)
        dist.wait()
        result = score(model, step_dir / "eval.jsonl", f"evaluate: after {name}")
        info = {
            "name": name,
            "kind": step.kind,
            "hash": hashes[index],
            "metrics": metrics,
            "eval": result,
        }
        report["steps"].append(_report_step(info))
        if main:
            finish_step(step_dir, info)
        write_report()

    final = f"{STAGE}/{names[-1]}/model"
    artifacts = {"model": final, "report": f"{STAGE}/train_report.json"}
    if main:
        run.finish(STAGE, artifacts, summary=_summary(report))
    dist.wait()
    return artifacts


def _base_report(task, conf, labels, tests, label_dir) -> dict[str, Any]:
    return {
        "task": task.name,
        "student": conf.student.model,
        "labels": len(labels),
        "test_n": len(tests),
        "teacher": teacher_scores(label_dir, {r["id"] for r in tests}),
        "student_before": None,
    }


def _report_step(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": info["name"],
        "kind": info["kind"],
        "metrics": info["metrics"],
        "eval": info["eval"],
    }


def _with_gains(report: dict[str, Any]) -> dict[str, Any]:
    """Add each step's exact-match gain over the model before it."""
    previous = (report.get("student_before") or {}).get("exact")
    for step in report["steps"]:
        exact = (step.get("eval") or {}).get("exact")
        step["gain_exact"] = (
            None if exact is None or previous is None else round(exact - previous, 4)
        )
        previous = exact if exact is not None else previous
    return report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    last = report["steps"][-1]["eval"] if report["steps"] else None
    return {
        "student_before_exact": (report.get("student_before") or {}).get("exact"),
        "student_after_exact": (last or {}).get("exact"),
        "teacher_exact": (report.get("teacher") or {}).get("exact"),
    }
