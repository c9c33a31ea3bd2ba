"""Benchmark llama.cpp builds side by side: the portable one supertiny installs against the
best build that runs on this machine (native), and an AVX2-only one, on the same GGUF.

    python benchmarks/llama_builds.py --wheel ours=~/.cache/supertiny/llama-wheels/KEY/X.whl \
        --wheel native=/tmp/wheels/native/X.whl --wheel avx2=/tmp/wheels/avx2/X.whl

Each wheel is unpacked into a temporary folder and measured in its own child process (a
build that crashes, like a native one on a Xeon with AMX, is reported as crashed and the
others still run). Per build, on the bundled student unless ``--model`` names another GGUF:
prefill tokens/s (a ~400-token prompt evaluated in one batch, the KV cache cleared between
repeats) and decode tokens/s (greedy, 64 tokens), best of ``--repeats``, on ``--threads``.
Rounds alternate between the builds so that noise from the machine hits them alike. The
table gives each figure and its ratio to the first build named.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

_CHILD = r"""
import json, sys, time
from llama_cpp import Llama, llama_print_system_info
path, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = Llama(model_path=path, n_ctx=1024, n_threads=threads, n_batch=512, verbose=False)
words = ("turn on the kitchen lights and set the living room thermostat to twenty one degrees "
         "then play some jazz in the bedroom ").split()
prompt = llm.tokenize((" ".join(words * 30)).encode())[:400]
best_prefill = best_decode = 0.0
for _ in range(repeats):
    llm.reset(); llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
    start = time.perf_counter(); llm.eval(prompt); prefill = len(prompt) / (time.perf_counter() - start)
    token = llm.sample(temp=0.0); start = time.perf_counter()
    for _ in range(64):
        llm.eval([token]); token = llm.sample(temp=0.0)
    decode = 64 / (time.perf_counter() - start)
    best_prefill, best_decode = max(best_prefill, prefill), max(best_decode, decode)
print(json.dumps({"prefill": best_prefill, "decode": best_decode, "prompt": len(prompt),
                  "info": llama_print_system_info().decode()}))
"""


def unpack(wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(into)
    return into


def measure(site: Path, model: str, threads: int, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, model, str(threads), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if proc.returncode < 0:
        return {"error": f"crashed: {signal.Signals(-proc.returncode).name}"}
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", action="append", required=True, help="NAME=PATH.whl")
    parser.add_argument("--model", default="student", help="GGUF path or bundled alias")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from supertiny.core.models import resolve_gguf

    model = str(resolve_gguf(args.model))
    builds = [tuple(spec.split("=", 1)) for spec in args.wheel]
    results: dict[str, list[dict]] = {name: [] for name, _ in builds}
    with tempfile.TemporaryDirectory() as tmp:
        sites = {name: unpack(Path(path).expanduser(), Path(tmp) / name) for name, path in builds}
        for _ in range(args.rounds):
            for name, _ in builds:
                results[name].append(measure(sites[name], model, args.threads, args.repeats))
    flags = set(Path("/proc/cpuinfo").read_text().split())
    marks = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_int8") if f in flags)
    table = Table(
        title=f"llama.cpp builds on {Path(model).name}: {cpu_name()} ({marks}), "
        f"{args.threads} threads, best of {args.rounds} x {args.repeats}"
    )
    for column in ("build", "prefill tok/s", "vs first", "decode tok/s", "vs first", "built with"):
        table.add_column(column)
    first = None
    for name, _ in builds:
        good = [r for r in results[name] if "error" not in r]
        if not good:
            table.add_row(name, results[name][0]["error"], "", "", "", "")
            continue
        prefill = max(r["prefill"] for r in good)
        decode = max(r["decode"] for r in good)
        first = first or (prefill, decode)
        info = " ".join(
            p.split(" = ")[0].strip()
            for p in good[0]["info"].split("|")
            if p.strip().endswith("= 1") and "CPU" not in p
        )
        table.add_row(
            name,
            f"{prefill:.1f}",
            f"{prefill / first[0]:.2f}x",
            f"{decode:.1f}",
            f"{decode / first[1]:.2f}x",
            info,
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
