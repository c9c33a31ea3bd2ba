"""Benchmark the embedded teacher as the label stage runs it: requests per minute (single
stream and at a configured concurrency), the cache-hit speed-up of a re-run, the accept
rate, and the teacher's exact-match accuracy against gold on the held-out test set.

    python benchmarks/teacher_throughput.py --inputs 10 --test 10 --concurrency 2

All runs go through `supertiny.label.stage.run` against one local server on the bundled
teacher (started once here and shared, so model load time is not counted). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from supertiny.core.task import Task
from supertiny.label import config as label_config
from supertiny.label import stage as label
from supertiny.runtime.process import ServerProcess

TASK = Path(__file__).parents[1] / "examples" / "smart_home" / "task.yaml"


def timed_run(task, conf, run_dir: Path) -> dict:
    start = time.perf_counter()
    label.run(task, conf, run_dir)
    wall = time.perf_counter() - start
    report = json.loads((run_dir / "label" / "label_report.json").read_text())
    usage = report["usage_labeling"]
    return {
        "wall_s": wall,
        "requests": usage["requests"],
        "cached": usage["cached_requests"],
        "report": report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=str(TASK))
    parser.add_argument("--inputs", type=int, default=10, help="unlabeled inputs per run")
    parser.add_argument("--test", type=int, default=10, help="gold test inputs for accuracy")
    parser.add_argument("--samples", type=int, default=1, help="self-consistency samples")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--model", default="teacher")
    parser.add_argument(
        "--threads", type=int, help="server CPU threads (default: the server's default)"
    )
    args = parser.parse_args()

    task = Task.load(args.task)
    root = Path(tempfile.mkdtemp(prefix="supertiny-bench-"))
    rows = []
    with ServerProcess(
        args.model, n_ctx=8192, n_threads=args.threads, log_path=root / "server.log"
    ) as server:

        def conf(concurrency: int, test_limit: int = 0) -> label_config.LabelConfig:
            return label_config.load_config(
                None,
                None,
                {
                    "teacher": {
                        "url": server.base_url,
                        "model": args.model,
                        "concurrency": concurrency,
                    },
                    "quality": {"samples": args.samples},
                    "limit": args.inputs,
                    "test_limit": test_limit,
                },
            )

        # The first request evaluates the whole teacher prefix (system prompt, few-shot, tool
        # schemas: ~3k tokens); later ones reuse it from the server's KV cache. Warm up first
        # so the runs below compare like with like; the cold start is reported on its own.
        warm_conf = label_config.load_config(
            None,
            None,
            {
                "teacher": {"url": server.base_url, "model": args.model},
                "quality": {"samples": 1},
                "limit": 1,
                "test_limit": 0,
            },
        )
        warmup = timed_run(task, warm_conf, root / "warmup")
        single = timed_run(task, conf(1), root / "single")
        rows.append(("single stream", single))
        parallel = timed_run(task, conf(args.concurrency), root / "parallel")
        rows.append((f"concurrency {args.concurrency}", parallel))
        (root / "cached" / "label").mkdir(parents=True)
        shutil.copy(
            root / "single" / "label" / "cache.sqlite", root / "cached" / "label" / "cache.sqlite"
        )
        cached = timed_run(task, conf(1), root / "cached")
        rows.append(("re-run from cache", cached))
        (root / "accuracy" / "label").mkdir(
            parents=True
        )  # labels come from the cache; only the test costs
        shutil.copy(
            root / "single" / "label" / "cache.sqlite", root / "accuracy" / "label" / "cache.sqlite"
        )
        accuracy = timed_run(task, conf(1, args.test), root / "accuracy")

    table = Table(
        title=f"embedded teacher ({args.model}) on {task.name}: {args.inputs} inputs, "
        f"{args.samples} sample(s) each"
    )
    for column in ("run", "wall s", "requests", "cached", "requests/min", "inputs/min"):
        table.add_column(column, justify="right")
    for name, result in rows:
        table.add_row(
            name,
            f"{result['wall_s']:.1f}",
            str(result["requests"]),
            str(result["cached"]),
            f"{60 * result['requests'] / result['wall_s']:.1f}",
            f"{60 * args.inputs / result['wall_s']:.1f}",
        )
    console = Console()
    console.print(table)
    report = accuracy["report"]
    console.print(
        f"cold start (first input, prefix not yet cached): {warmup['wall_s']:.1f} s "
        f"for {warmup['requests']} requests"
    )
    console.print(
        f"cache-hit speed-up (single stream / re-run): {single['wall_s'] / cached['wall_s']:.0f}x"
    )
    console.print(
        f"concurrency {args.concurrency} vs single stream: {single['wall_s'] / parallel['wall_s']:.2f}x"
    )
    console.print(
        f"accept rate: {100 * (single['report']['accept_rate'] or 0):.1f}% of {args.inputs} inputs"
    )
    if "teacher_test_exact" in report:
        console.print(
            f"teacher exact match vs gold: {100 * report['teacher_test_exact']:.1f}% "
            f"(n={report['teacher_test_n']}), valid {100 * report['teacher_test_valid']:.1f}%"
        )
    console.print(f"runs kept in {root}")


if __name__ == "__main__":
    main()
