"""Stage 3: compression. Prune, recover, quantize and export the trained student, measuring each step.

    supertiny compress examples/smart_home/task.yaml --preset small

Reads the train stage's final model (or ``model:``), runs the configured steps (``vocab``,
``depth``, ``width``, ``recover``, ``torchao``, ``gguf``) and writes ``RUN_DIR/compress/``:

    00-input/       the uncompressed model's measurements (its eval.jsonl, latency.json)
    NN-kind/        each step: model/ (transformers) or model.gguf, step.json, eval.jsonl,
                    latency.json
    compress_report.json   every model side by side: parameters (total, non-embedding),
                    bytes, exact match on the gold test set, single-request p50/p95
                    latency and decode tokens/s

Resume works as in the train stage: finished steps whose settings (and those before them,
the input model and the labels) are unchanged are kept; the others are moved aside. A step
that fails leaves the steps before it, and their models, as they were.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supertiny.compress import CompressError
from supertiny.compress.config import CompressConfig
from supertiny.compress.steps import STEPS, CompressContext
from supertiny.core.progress import console
from supertiny.core.records import load_labels, teacher_scores, test_records
from supertiny.core.runs import Run, config_hash, write_json
from supertiny.core.steps import (
    fingerprint,
    finish_step,
    finished_step,
    set_aside_steps,
    step_name,
)
from supertiny.core.task import Task
from supertiny.runtime import hf as st
from supertiny.runtime.measure import (
    artifact_bytes,
    config_param_counts,
    gguf_param_counts,
    latency,
)
from supertiny.runtime.render import prompt_text
from supertiny.runtime.runners import TorchRunner, open_runner
from supertiny.runtime.scoring import score_answers

STAGE = "compress"
INPUT = "00-input"


def require_extra() -> None:
    import importlib.util

    missing = [
        n for n in ("torch", "transformers", "gguf", "peft") if importlib.util.find_spec(n) is None
    ]
    if missing:
        raise CompressError(
            f"compression needs {', '.join(missing)}: pip install 'supertiny[compress]'"
        )


def source_model(conf: CompressConfig, run: Run) -> str:
    """The model to compress: ``model:`` or the train stage's final model in this run."""
    if conf.model:
        return conf.model
    entry = run.stage("train") or {}
    model = (entry.get("artifacts") or {}).get("model")
    if entry.get("status") != "finished" or not model or not (run.root / model).is_dir():
        raise CompressError(
            f"{run.root}: no trained model to compress (the train stage has not finished); "
            "run `supertiny train TASK.yaml` first, or set model: (a model folder, GGUF file "
            "or 'student')"
        )
    return str(run.root / model)


def _hashes(conf: CompressConfig, source: Path, labels: list[dict[str, Any]]) -> list[str]:
    """Settings hashes of the input measurement and of every step (with all steps before it)."""
    base = conf.model_dump(mode="json", exclude={"steps", "eval", "latency"})
    base["source"] = fingerprint(source)
    base["data"] = config_hash({r["id"]: r["label"] for r in labels})
    steps = [s.model_dump(mode="json") for s in conf.steps]
    measured_input = config_hash({"source": base["source"]})  # depends on the model alone
    return [measured_input] + [
        config_hash({"base": base, "steps": steps[: i + 1]}) for i in range(len(steps))
    ]


def _labels(conf: CompressConfig, run_dir: Path, task: Task) -> list[dict[str, Any]]:
    path = Path(conf.labels) if conf.labels else run_dir / "label" / "labeled.jsonl"
    if not path.is_file() and not conf.labels:
        return []  # vocab and quantization steps can do without; recover says what it needs
    return load_labels(path, task)


def stage_settings(task: Task, conf: CompressConfig) -> dict[str, Any]:
    """What the manifest records as this stage's settings."""
    return conf.model_dump(mode="json")


def run(task: Task, conf: CompressConfig, run_dir: Path, restart: bool = False) -> dict[str, str]:
    """Compress the model through the configured steps; returns the stage's artifacts."""
    require_extra()
    with Run(run_dir) as the_run:  # the stage's lock lets go however the stage ends
        return _run(the_run, task, conf, Path(run_dir), restart)


def _run(
    run: Run, task: Task, conf: CompressConfig, run_dir: Path, restart: bool
) -> dict[str, str]:
    source_name = source_model(conf, run)
    source = Path(st.model_dir(source_name))
    stage_dir = run.begin(STAGE, stage_settings(task, conf), restart=restart, check=False)
    labels = _labels(conf, run_dir, task)
    tests = test_records(task, conf.eval.limit)
    hashes = _hashes(conf, source, labels)
    names = [INPUT] + [step_name(i, s.kind) for i, s in enumerate(conf.steps)]
    set_aside_steps(stage_dir, dict(zip(names, hashes, strict=True)))
    _apply_threads(conf)

    ctx = CompressContext(task=task, conf=conf, labels=labels, tests=tests, float_dir=source)
    meter = _Meter(conf, task, tests)
    input_dir = stage_dir / INPUT
    input_dir.mkdir(exist_ok=True)
    write_json(input_dir / "started.json", {"name": INPUT, "hash": hashes[0]})
    report = {
        "task": task.name,
        "model": source_name,
        "test_n": len(tests),
        "teacher": teacher_scores(run_dir / "label", {r["id"] for r in tests}),
        "input": {"name": "input", "kind": "input", **meter.measure(ctx, input_dir, "float")},
        "steps": [],
    }
    for index, step in enumerate(conf.steps):
        name, digest = names[index + 1], hashes[index + 1]
        ctx.step_dir = stage_dir / name
        info = finished_step(ctx.step_dir, digest)
        if info is None:
            ctx.step_dir.mkdir(parents=True, exist_ok=True)
            write_json(ctx.step_dir / "started.json", {"name": name, "hash": digest})
            console.print(f"[bold]compress step {name}[/]")
            ctx.notes = []
            artifact, details = STEPS[step.kind](ctx, step)
            info = {
                "name": name,
                "kind": step.kind,
                "hash": digest,
                "artifact": artifact,
                "info": details,
                "notes": ctx.notes,
            }
            finish_step(ctx.step_dir, info)
        else:
            _follow(ctx, info)
        form = {"gguf": "gguf", "torchao": "torchao"}.get(step.kind, "float")
        row = {"name": name, "kind": step.kind, "info": info["info"], "notes": info["notes"]}
        report["steps"].append({**row, **meter.measure(ctx, ctx.step_dir, form)})
        write_json(stage_dir / "compress_report.json", _with_ratios(report))
    artifacts = _artifacts(stage_dir, conf, names)
    run.finish(STAGE, artifacts, summary=_summary(report))
    return artifacts


def _follow(ctx: CompressContext, info: dict[str, Any]) -> None:
    """Bring the context up to a finished step without loading its model."""
    if info["kind"] in ("vocab", "depth", "width", "recover"):
        ctx.replace(None, None, ctx.step_dir / "model")
    if info["kind"] in ("depth", "width"):
        ctx.pruned_from = Path(info["info"]["pruned_from"])
    elif info["kind"] == "recover":
        ctx.pruned_from = None
    console.print(f"compress: {ctx.step_dir.name} kept (finished, settings unchanged)")


def _apply_threads(conf: CompressConfig) -> None:
    if conf.latency.threads:
        import torch

        torch.set_num_threads(conf.latency.threads)


class _Meter:
    """Measures a model once: eval.jsonl and latency.json in its folder make re-runs cheap."""

    def __init__(self, conf: CompressConfig, task: Task, tests: list[dict[str, Any]]):
        import torch

        self.conf, self.task, self.tests = conf, task, tests
        self.threads = conf.latency.threads or torch.get_num_threads()
        self.settings = {**conf.latency.model_dump(), "threads": self.threads}

    def measure(self, ctx: CompressContext, folder: Path, form: str) -> dict[str, Any]:
        """Parameters, bytes, accuracy and latency of the model in ``folder`` (cached there)."""
        path = {"gguf": folder / "model.gguf", "torchao": folder / "model"}.get(form, ctx.float_dir)
        tok = st.load_tokenizer(str(ctx.float_dir if form == "gguf" else path))
        runner = None

        def get_runner():
            nonlocal runner
            if runner is None:
                runner = self._runner(ctx, path, form, tok)
            return runner

        accuracy = None
        if self.tests:
            accuracy = score_answers(
                lambda prompts: get_runner().generate(prompts),
                tok,
                self.task,
                self.tests,
                self.conf.eval.batch_size,
                folder / "eval.jsonl",
                f"evaluate: {folder.name}",
            )
        timing_path = folder / "latency.json"
        timing = json.loads(timing_path.read_text()) if timing_path.is_file() else None
        if timing is None or timing.get("settings") != self.settings:
            prompts = [prompt_text(tok, self.task, r) for r in self._latency_records()]
            measured = latency(
                get_runner(), prompts, self.conf.latency.max_new_tokens, f"latency: {folder.name}"
            )
            timing = {"settings": self.settings, **measured}
            write_json(timing_path, timing)
        if runner is not None and hasattr(runner, "close"):
            runner.close()
        return {
            "path": str(path),
            "form": form,
            "params": gguf_param_counts(path) if form == "gguf" else config_param_counts(path),
            "bytes": artifact_bytes(path),
            "eval": accuracy,
            "latency": {k: v for k, v in timing.items() if k != "settings"},
        }

    def _latency_records(self) -> list[dict[str, Any]]:
        records = self.tests or list(self.task.records("unlabeled"))
        if not records:
            raise CompressError(f"{self.task.path}: no test or unlabeled inputs to time")
        return [records[i % len(records)] for i in range(self.conf.latency.requests)]

    def _runner(self, ctx: CompressContext, path: Path, form: str, tok):
        limit, batch = self.conf.eval.max_new_tokens, self.conf.eval.batch_size
        if form == "float":  # the model in memory (just pruned, or loaded once)
            model, tok = ctx.load()
            return TorchRunner(model, tok, limit, batch)
        device = st.resolve_device(self.conf.device)
        return open_runner(
            form, path, limit, self.threads, tokenizer=tok, device=device, batch_size=batch
        )


def _with_ratios(report: dict[str, Any]) -> dict[str, Any]:
    """Each step against the input model: size and parameter ratios, speed-up, accuracy change."""
    base = report["input"]
    for step in report["steps"]:
        step["vs_input"] = {
            "params": _ratio(step["params"]["total"], base["params"]["total"]),
            "bytes": _ratio(step["bytes"], base["bytes"]),
            "p50_speedup": _ratio(base["latency"]["p50_s"], step["latency"]["p50_s"]),
            "exact_change": _diff(step.get("eval"), base.get("eval")),
        }
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b else None


def _diff(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or a.get("exact") is None or b.get("exact") is None:
        return None
    return round(a["exact"] - b["exact"], 4)


def _artifacts(stage_dir: Path, conf: CompressConfig, names: list[str]) -> dict[str, str]:
    artifacts = {"report": f"{STAGE}/compress_report.json"}
    for index, step in enumerate(conf.steps):
        folder = f"{STAGE}/{names[index + 1]}"
        if step.kind == "gguf":
            artifacts["gguf"] = f"{folder}/model.gguf"
        elif step.kind == "torchao":
            artifacts["torchao"] = f"{folder}/model"
        else:
            artifacts["model"] = f"{folder}/model"
    return artifacts


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    last = report["steps"][-1] if report["steps"] else report["input"]
    return {
        "input_params": report["input"]["params"]["total"],
        "final_params": last["params"]["total"],
        "input_exact": (report["input"].get("eval") or {}).get("exact"),
        "final_exact": (last.get("eval") or {}).get("exact"),
        "p50_speedup": (last.get("vs_input") or {}).get("p50_speedup"),
    }
