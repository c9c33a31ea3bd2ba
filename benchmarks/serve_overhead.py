"""Benchmark the overhead of `supertiny serve`: the same GGUF, the same prompts, served over
HTTP against llama.cpp called directly, measured side by side in one run.

    supertiny compress examples/smart_home/task.yaml --preset small      # makes the GGUF
    python benchmarks/serve_overhead.py --run-dir runs/smart_home --requests 20 --threads 2
    python benchmarks/serve_overhead.py --model student --requests 10    # any GGUF or alias

Both sides load the same file with the same threads and context, and answer the task's test
inputs in the student's prompt format, greedily, with the same token budget:

- **direct**: llama-cpp-python in this process, `Llama.create_chat_completion` (its own
  chat-template handling and token loop), no HTTP;
- **serve**: `supertiny serve --task TASK` in a child process, one HTTP request at a time
  with `httpx`, timed at the client (JSON, HTTP, validation, the task profile, tool-call
  parsing and the backend's token loop included).

The requests alternate (direct, serve, direct, ...) so that both sides see the same machine
load. Both sides generate the same text (greedy) - the table shows the completion tokens of
each, so an overhead is never a difference in work. Printed: p50 and mean latency per side,
and serve / direct as a ratio and in milliseconds per request. `--tools` adds the task's tools
with tool_choice "required" to the served requests (grammar-constrained decoding), a
separate row, since llama-cpp-python's own chat API does not constrain tool calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from supertiny.core.models import resolve_gguf
from supertiny.core.records import test_records
from supertiny.core.runs import Run
from supertiny.core.task import Task
from supertiny.runtime.process import ServerProcess


def final_gguf(run_dir: Path) -> Path:
    artifacts = (Run(run_dir).stage("compress") or {}).get("artifacts") or {}
    if "gguf" not in artifacts:
        raise SystemExit(f"{run_dir}: no compressed GGUF; run `supertiny compress` or pass --model")
    return run_dir / artifacts["gguf"]


def direct_runner(path: Path, threads: int, n_ctx: int, max_tokens: int):
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False
    )

    def ask(messages: list[dict]) -> tuple[float, str, int]:
        started = time.perf_counter()
        out = llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=max_tokens)
        seconds = time.perf_counter() - started
        return (
            seconds,
            out["choices"][0]["message"]["content"] or "",
            out["usage"]["completion_tokens"],
        )

    return ask, llm


def served_runner(http: httpx.Client, max_tokens: int, tools: list | None):
    def ask(messages: list[dict]) -> tuple[float, str, int]:
        body = {"model": "m", "messages": messages, "temperature": 0, "max_tokens": max_tokens}
        # The server applies the task's student prompt (--task); "none" keeps the plain row
        # free of tools and grammar, as the direct side is.
        body.update(tools=tools, tool_choice="required") if tools else body.update(
            tool_choice="none"
        )
        started = time.perf_counter()
        response = http.post("/chat/completions", json=body)
        seconds = time.perf_counter() - started
        response.raise_for_status()
        payload = response.json()
        message = payload["choices"][0]["message"]
        text = message.get("content") or json.dumps(message.get("tool_calls"))
        return seconds, text, payload["usage"]["completion_tokens"]

    return ask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="examples/smart_home/task.yaml")
    parser.add_argument("--run-dir", type=Path, help="take the compress stage's final GGUF")
    parser.add_argument("--model", help="a GGUF file or bundled alias (instead of --run-dir)")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--tools", action="store_true", help="also time forced tool calls")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not args.model and not args.run_dir:
        parser.error("give --run-dir (its compressed GGUF) or --model")
    path = resolve_gguf(args.model) if args.model else final_gguf(args.run_dir)
    task = Task.load(args.task)
    records = test_records(task)
    prompts = [
        task.student_messages(records[i % len(records)]["messages"]) for i in range(args.requests)
    ]
    console = Console(width=120)
    console.print(f"model: {path} ({path.stat().st_size / 2**20:,.0f} MiB), {args.threads} threads")

    ask_direct, llm = direct_runner(path, args.threads, args.n_ctx, args.max_tokens)
    results: dict[str, list[tuple[float, str, int]]] = {
        "direct": [],
        "serve": [],
        "serve+tools": [],
    }
    with (
        ServerProcess(path, task=args.task, n_threads=args.threads, n_ctx=args.n_ctx) as server,
        httpx.Client(base_url=server.base_url, timeout=600) as http,
    ):
        ask_served = served_runner(http, args.max_tokens, None)
        ask_tools = served_runner(http, args.max_tokens, task.tools) if args.tools else None
        for warm in (ask_direct, ask_served, *([ask_tools] if ask_tools else [])):
            warm(prompts[0])
        for messages in prompts:
            results["direct"].append(ask_direct(messages))
            results["serve"].append(ask_served(messages))
            if ask_tools:
                results["serve+tools"].append(ask_tools(messages))
    llm.close()

    same = sum(
        a[1].strip() == b[1].strip()
        for a, b in zip(results["direct"], results["serve"], strict=True)
    )
    base = statistics.median(s for s, _, _ in results["direct"])
    table = Table(title=f"serve overhead: {len(prompts)} requests each, alternating")
    for column in ("path", "p50", "mean", "tokens out (mean)", "p50 vs direct", "overhead p50"):
        table.add_column(column, justify="left" if column == "path" else "right")
    figures = {}
    for name, rows in results.items():
        if not rows:
            continue
        seconds = [s for s, _, _ in rows]
        p50, mean = statistics.median(seconds), statistics.fmean(seconds)
        tokens = statistics.fmean(n for _, _, n in rows)
        figures[name] = {"p50_s": p50, "mean_s": mean, "tokens_out": tokens}
        table.add_row(
            name,
            f"{p50 * 1000:,.0f} ms",
            f"{mean * 1000:,.0f} ms",
            f"{tokens:.1f}",
            f"{p50 / base:.3f}x",
            f"{(p50 - base) * 1000:+,.0f} ms",
        )
    console.print(table)
    console.print(f"identical answers (direct vs serve): {same} of {len(prompts)}")
    if args.json:
        figures["identical_answers"] = same
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
