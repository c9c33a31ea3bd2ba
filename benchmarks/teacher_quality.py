"""Measure the teacher pipeline (the label stage's Labeler) against gold on a task's test set.

Starts the bundled teacher server once, runs ``Labeler.decide`` on the first N gold test
records one at a time, and prints exact match with n and a 95% Wilson interval (overall and
per ``meta.category``), the precision and accept rate of accepted labels, and s/record
(the sum of the teacher's request latencies, the original ones for cached responses).

    python benchmarks/teacher_quality.py examples/smart_home/task.yaml \
        --n 40 --out /tmp/tq/verified --set quality.samples=1

It drives the label stage's own ``Labeler`` (the same prompts, dry-runs, votes and judge as
``supertiny label``), so its numbers are the label stage's; gold only scores, never selects.

Each record is appended to OUT/records.jsonl as it ends (a re-run resumes), the summary is
OUT/summary.json. ``--cache`` shares one response cache between configurations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path

from supertiny.core.config import parse_overrides
from supertiny.core.metrics import proportion_text
from supertiny.core.task import Task
from supertiny.label.config import load_config
from supertiny.label.endpoint import endpoint, make_client
from supertiny.label.stage import Labeler


def summarise(rows: list[dict]) -> dict:
    n = len(rows)
    exact = sum(r["exact"] for r in rows)
    acc = [r for r in rows if not r["rejected"]]
    acc_exact = sum(r["exact"] for r in acc)
    cats: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        cats[r["category"]].append(r["exact"])
    return {
        "n": n,
        "exact": exact,
        "exact_str": proportion_text(exact, n),
        "accepted": len(acc),
        "accept_rate": round(len(acc) / max(n, 1), 3),
        "precision_str": proportion_text(acc_exact, len(acc)),
        "s_per_record": round(sum(r["latency_s"] for r in rows) / max(n, 1), 2),
        "requests_per_record": round(sum(r["requests"] for r in rows) / max(n, 1), 2),
        "wall_per_record": round(sum(r["wall_s"] for r in rows) / max(n, 1), 2),
        "per_category": {c: f"{sum(v)}/{len(v)}" for c, v in sorted(cats.items())},
    }


async def main_async(args) -> None:
    task = Task.load(args.task)
    conf = load_config(args.config, None, parse_overrides(args.set))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "records.jsonl"
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            done[row["id"]] = row
    records = [r for r in task.records("test") if r.get("gold") is not None]
    records = records[args.offset : args.offset + args.n]
    todo = [r for r in records if r["id"] not in done]
    cache = Path(args.cache) if args.cache else out / "cache.sqlite"
    with endpoint(conf.teacher, out / "server.log") as (base_url, model, check):
        client = make_client(conf.teacher, base_url, model, cache, check)
        judge = client if conf.quality.judge.enabled else None
        labeler = Labeler(task, conf, client, judge)
        with path.open("a") as handle:
            for record in todo:
                start = time.perf_counter()
                labelled, reason, _ = await labeler.decide(record)
                wall = time.perf_counter() - start
                prediction = labelled.get("label") or {"tool_calls": [], "content": None}
                score = task.evaluate(prediction, record["gold"], record.get("tools"))
                meta = labelled["meta"]
                row = {
                    "id": record["id"],
                    "input": record["messages"][-1]["content"],
                    "category": record["meta"].get("category"),
                    "exact": bool(score.exact),
                    "rejected": reason is not None,
                    "reason": reason and reason[1],
                    "label": prediction,
                    "gold": record["gold"],
                    "agreement": meta.get("agreement"),
                    "vote_counts": meta.get("vote_counts"),
                    "judge": meta.get("judge"),
                    "judge_reason": meta.get("judge_reason"),
                    "latency_s": meta.get("latency_s", 0.0),
                    "requests": meta.get("requests", 0),
                    "wall_s": round(wall, 2),
                    "problems": meta.get("problems"),
                    "trace": meta.get("trace"),
                }
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                done[record["id"]] = row
                mark = "OK " if row["exact"] else "BAD"
                print(
                    f"{mark} {record['id']} [{row['category']}] {row['latency_s']:.1f}s "
                    f"{row['requests']}req {row['input'][:60]!r}",
                    flush=True,
                )
        await client.aclose()
    rows = [done[r["id"]] for r in records]
    summary = {"task": args.task, "sets": args.set, **summarise(rows)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--config")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache")
    parser.add_argument("--set", action="append", default=[])
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
