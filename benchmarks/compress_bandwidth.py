"""Benchmark the compressed models of a run: the compression table, and decode speed against
the memory-bandwidth bound of this machine, measured side by side in one run.

    supertiny compress examples/smart_home/task.yaml --preset small      # makes the models
    python benchmarks/compress_bandwidth.py --run-dir runs/smart_home --requests 5 --threads 2

First it measures this machine's memory copy bandwidth (a 256 MiB tensor copied repeatedly;
read + write bytes over the time). Then, for the input model and every step's model in
``RUN_DIR/compress/compress_report.json``, it re-measures single-request latency and decode
tokens/s on the same test prompts, one model after the other, and prints:

- the stage's table (parameters, size, exact match from the report);
- the bytes one decoded token must read: every weight except the input embedding, of which
  one row is read (with tied embeddings the LM head reads the whole matrix, so it counts);
- the bound: copy bandwidth / those bytes, the decode tokens/s no implementation can beat
  on this machine when it reads each weight once per token, and the measured share of it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from supertiny.core.records import test_records
from supertiny.core.task import Task
from supertiny.runtime import hf as st
from supertiny.runtime.measure import latency
from supertiny.runtime.render import prompt_text
from supertiny.runtime.runners import open_runner


def copy_bandwidth(mib: int = 256, repeats: int = 8) -> float:
    """Bytes per second moved by a large tensor copy (read + write), best of ``repeats``."""
    import torch

    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best


def bytes_per_token(row: dict[str, Any]) -> int:
    """Weight bytes read to decode one token (the input embedding contributes one row)."""
    path = Path(row["path"])
    if row["form"] == "gguf":
        from gguf import GGUFReader

        tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}
        tied = "output.weight" not in tensors
        return sum(tensors.values()) - (0 if tied else tensors["token_embd.weight"])
    config = json.loads((path / "config.json").read_text())
    if row["form"] == "torchao":  # linear layers quantized; the embedding stays float32
        total = (path / "quantized.pt").stat().st_size
        embedding = config["vocab_size"] * config["hidden_size"] * 4
        return total - (0 if config.get("tie_word_embeddings") else embedding)
    from safetensors import safe_open

    total = embedding = 0
    for file in path.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                tensor = f.get_slice(name)
                size = 1
                for dim in tensor.get_shape():
                    size *= dim
                nbytes = size * {"F32": 4, "F16": 2, "BF16": 2}.get(tensor.get_dtype(), 4)
                total += nbytes
                if name.endswith("embed_tokens.weight"):
                    embedding = nbytes
    return total - (0 if config.get("tie_word_embeddings") else embedding)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a run whose compress stage finished")
    parser.add_argument("--task", default="examples/smart_home/task.yaml")
    parser.add_argument("--requests", type=int, default=5, help="single requests per model")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    console = Console(width=170)  # whole rows in a log file too
    report = json.loads((Path(args.run_dir) / "compress" / "compress_report.json").read_text())
    task = Task.load(args.task)
    records = test_records(task, args.requests)
    bandwidth = copy_bandwidth()
    console.print(f"memory copy bandwidth: {bandwidth / 1e9:.1f} GB/s (read + write)")

    rows, tokenizer_dir = [], Path(report["input"]["path"])
    for row in [report["input"], *report["steps"]]:
        if row["form"] != "gguf":
            tokenizer_dir = Path(row["path"])  # a GGUF's tokenizer is its float model's
        tokenizer = st.load_tokenizer(str(tokenizer_dir)) if row["form"] == "gguf" else None
        runner = open_runner(
            row["form"], Path(row["path"]), args.max_new_tokens, args.threads, tokenizer=tokenizer
        )
        prompts = [prompt_text(runner.tokenizer, task, r) for r in records]
        timing = latency(runner, prompts, args.max_new_tokens, f"latency: {row['name']}")
        if hasattr(runner, "close"):
            runner.close()
        del runner
        per_token = bytes_per_token(row)
        bound = bandwidth / per_token
        detail = (row.get("info") or {}).get("quant") or (row.get("info") or {}).get("scheme")
        rows.append(
            {
                "name": f"{row['name']} {detail or ''}".strip(),
                "backend": timing["backend"],
                "params": row["params"]["total"],
                "bytes": row["bytes"],
                "exact": (row.get("eval") or {}).get("exact"),
                "p50_s": timing["p50_s"],
                "decode_tok_s": timing["decode_tok_s"],
                "read_per_token": per_token,
                "bound_tok_s": round(bound, 1),
                "share_of_bound": round(timing["decode_tok_s"] / bound, 3)
                if timing["decode_tok_s"]
                else None,
            }
        )

    table = Table(
        title=f"compress: {report['task']} ({args.threads} threads, {args.requests} requests, "
        f"copy bandwidth {bandwidth / 1e9:.1f} GB/s)"
    )
    for column in (
        "model",
        "backend",
        "params",
        "size",
        "exact",
        "p50",
        "read/token",
        "bound tok/s",
        "decode tok/s",
        "of bound",
    ):
        table.add_column(column, justify="left" if column in ("model", "backend") else "right")
    base = rows[0]["p50_s"]
    for r in rows:
        exact = "" if r["exact"] is None else f"{r['exact']:.1%}"
        table.add_row(
            r["name"],
            r["backend"],
            f"{r['params'] / 1e6:,.0f}M",
            f"{r['bytes'] / 2**20:,.0f} MiB",
            exact,
            f"{r['p50_s']:.2f} s ({base / r['p50_s']:.1f}x)",
            f"{r['read_per_token'] / 2**20:,.0f} MiB",
            f"{r['bound_tok_s']:,.1f}",
            f"{r['decode_tok_s'] or 0:,.1f}",
            "" if r["share_of_bound"] is None else f"{r['share_of_bound']:.0%}",
        )
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"bandwidth": bandwidth, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
