"""Load-test `supertiny serve` under overload: admission, 429 backpressure, latency, memory.

    python benchmarks/serve_load.py                                  # 1,000 requests at 64
    python benchmarks/serve_load.py --requests 200 --concurrency 16 --queues 64,4 --json out.json

For each queue length in `--queues`, a server is started in a child process (`python -m
supertiny.serve`, torch backend, one thread) on a tiny random model built here (2 layers,
hidden 64, the tiny test tokenizer: `tests/tiny_models.py`), and `--requests` requests are
sent by `--concurrency` asynchronous `httpx` clients, as fast as they are answered, with no
retries: three in four a plain chat completion (greedy, 16 tokens), one in four a forced tool
call decoded under its grammar (40 tokens). The server admits `--max-batch-size` requests at
once (the torch backend's default concurrency) and queues `--max-queue` more; the rest are
refused with 429 + `Retry-After` at once.

Printed per server: answered (200), refused (429), errors (anything else, or no answer), the
p50 and p99 latency of the answered and of the refused requests, requests answered per second,
and the server process's resident memory (RSS) before the run (after one warm-up request), at
its peak (sampled every 0.1 s) and after; then whether `/health` still answers 200 and the
server's own `/metrics` count of refusals. The CPU is named beside the figures: they are
absolute and move with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_brightness",
            "parameters": {
                "type": "object",
                "properties": {
                    "device_id": {"type": "string", "enum": ["light.kitchen", "light.hall"]},
                    "level": {"type": "integer", "minimum": 0, "maximum": 100},
                },
                "required": ["device_id", "level"],
            },
        },
    }
]


@dataclass
class Outcome:
    """What the clients saw in one run."""

    answered: list[float] = field(default_factory=list)  # latency (s) of each 200
    refused: list[float] = field(default_factory=list)  # latency (s) of each 429
    errors: dict[str, int] = field(default_factory=dict)  # status or exception -> count
    wall_s: float = 0.0


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB (Linux: /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def body(index: int) -> dict:
    user = [{"role": "user", "content": f"dim light number {index % 17} to {index % 100}%"}]
    if index % 4 == 3:
        return {
            "messages": user,
            "tools": TOOLS,
            "tool_choice": "required",
            "max_tokens": 40,
            "temperature": 0,
        }
    return {"messages": user, "max_tokens": 16, "temperature": 0}


class Server:
    """`python -m supertiny.serve` on the tiny model, in a child process."""

    def __init__(self, model: Path, port: int, args: argparse.Namespace, max_queue: int):
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="serve-load-", suffix=".log", delete=False)
        command = [sys.executable, "-m", "supertiny.serve", "--model", str(model)]
        command += ["--backend", "torch", "--port", str(port), "--n-threads", "1"]
        command += ["--n-ctx", "512", "--max-batch-size", str(args.max_batch_size)]
        command += ["--max-queue", str(max_queue), "--log-level", "warning"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_healthy(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{Path(self.log.name).read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become healthy")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        Path(self.log.name).unlink(missing_ok=True)


class PeakRSS:
    """Samples a process's RSS every 0.1 s in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def load(url: str, requests: int, concurrency: int) -> Outcome:
    """`requests` chat completions from `concurrency` clients, each sending its next request
    as soon as its last one is answered."""
    outcome = Outcome()
    todo = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:

        async def worker() -> None:
            for index in todo:
                started = time.perf_counter()
                try:
                    response = await http.post("/v1/chat/completions", json=body(index))
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                seconds = time.perf_counter() - started
                if status == 200:
                    outcome.answered.append(seconds)
                elif status == 429:
                    outcome.refused.append(seconds)
                else:
                    outcome.errors[str(status)] = outcome.errors.get(str(status), 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        outcome.wall_s = time.perf_counter() - started
    return outcome


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def refused_by_server(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("supertiny_requests_refused_total{") and 'reason="queue_full"' in line:
            return float(line.split()[-1])
    return 0.0


def run_one(model: Path, port: int, args: argparse.Namespace, max_queue: int) -> dict:
    server = Server(model, port, args, max_queue)
    try:
        server.wait_healthy()
        httpx.post(f"{server.url}/v1/chat/completions", json=body(3), timeout=120)  # warm-up
        before = rss_mib(server.proc.pid)
        with PeakRSS(server.proc.pid) as peak:
            outcome = asyncio.run(load(server.url, args.requests, args.concurrency))
        after = rss_mib(server.proc.pid)
        started = time.perf_counter()
        healthy = httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        health_ms = (time.perf_counter() - started) * 1000
        counted = refused_by_server(server.url)
    finally:
        server.stop()
    return {
        "max_queue": max_queue,
        "outcome": asdict(outcome),
        "rss_mib": {"before": before, "peak": peak.peak, "after": after},
        "healthy_after": healthy,
        "health_ms": health_ms,
        "refused_by_server": counted,
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=8, help="= requests run at once")
    parser.add_argument("--queues", default="64,8", help="--max-queue of each server, in turn")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import tiny_student

    model = tiny_student(Path(tempfile.mkdtemp(prefix="serve-load-")) / "model", seed=11)
    rows = [
        run_one(model, args.port + i, args, int(q)) for i, q in enumerate(args.queues.split(","))
    ]

    console = Console(width=150)
    table = Table(
        title=f"supertiny serve under load: {args.requests} requests, {args.concurrency} "
        f"concurrent clients, {args.max_batch_size} admitted at once (tiny torch model, 1 thread)"
    )
    columns = [
        "max queue",
        "answered",
        "refused 429",
        "errors",
        "p50 / p99 answered",
        "p50 / p99 refused",
        "answered/s",
        "RSS before / peak / after",
        "/health after",
    ]
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        out, rss = row["outcome"], row["rss_mib"]
        errors = sum(out["errors"].values())
        table.add_row(
            str(row["max_queue"]),
            str(len(out["answered"])),
            str(len(out["refused"])),
            str(errors) + (f" {out['errors']}" if errors else ""),
            f"{ms(percentile(out['answered'], 50))} / {ms(percentile(out['answered'], 99))}",
            f"{ms(percentile(out['refused'], 50))} / {ms(percentile(out['refused'], 99))}",
            f"{len(out['answered']) / out['wall_s']:.1f}",
            f"{rss['before']:.0f} / {rss['peak']:.0f} / {rss['after']:.0f} MiB",
            f"{'200' if row['healthy_after'] else 'FAILED'} in {row['health_ms']:.0f} ms",
        )
    console.print(table)
    console.print(f"CPU: {cpu_name()}, {os.cpu_count()} cores (client and server share them)")
    for row in rows:
        console.print(
            f"max queue {row['max_queue']}: the server counted {row['refused_by_server']:.0f} "
            "refusals (supertiny_requests_refused_total)"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=2))
    if not all(row["healthy_after"] for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
