"""The eval stage's rows: the metrics of one model from its scored answers, and what it is.

Used by ``supertiny.evaluate.stage`` (the stage): exact match and the other accuracy figures come
from the Task's scorer (``core.metrics.summarize_scores`` over ``Task.evaluate`` scores); this
module adds latency percentiles, cost per 1,000 requests, exact match per category, sample
errors, parameters and bytes on disk, and the machine the figures were measured on.

    python -m pytest tests/unit/evaluate/test_eval.py -q
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supertiny.core.metrics import percentile, summarize_scores
from supertiny.core.task import input_text
from supertiny.evaluate.config import EvalConfig
from supertiny.runtime import measure
from supertiny.runtime.backend import available_cores


@dataclass(frozen=True)
class Target:
    """One model to measure: a local file or folder, or the teacher pipeline."""

    name: str
    kind: str  # "teacher" | "gguf" | "hf" | "torchao"
    path: Path | None
    reference: str
    n_threads: int | None = None

    @property
    def runtime(self) -> str:
        return {
            "teacher": "pipeline",
            "gguf": "llama.cpp",
            "hf": "PyTorch",
            "torchao": "PyTorch + torchao",
        }[self.kind]


# ----- rows ----------------------------------------------------------------------------------------


def answer_row(record, prediction, score, seconds, tokens_in, tokens_out, requests, cost) -> dict:
    return {
        "id": record["id"],
        "input": input_text(record),
        "category": (record.get("meta") or {}).get("category"),
        "gold": record["gold"],
        "prediction": prediction,
        "score": {k: v for k, v in score.items() if k != "calls"},
        "latency_s": None if seconds is None else round(seconds, 4),
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "requests": requests,
        "cost_usd": cost,
    }


def message_label(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI assistant message as a label: calls with decoded arguments, and content."""
    calls = []
    for call in message.get("tool_calls") or []:
        arguments = call["function"].get("arguments")
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            pass
        calls.append({"name": call["function"]["name"], "arguments": arguments})
    return {"tool_calls": calls, "content": message.get("content")}


def summarize(
    target: Target,
    answers: list[dict],
    throughput: dict | None,
    size: dict,
    conf: EvalConfig,
) -> dict[str, Any]:
    """The table row of one model from its scored answers."""
    scores = [a["score"] for a in answers]
    latencies = [a["latency_s"] for a in answers if a["latency_s"] is not None]
    rps = (throughput or {}).get("requests_per_s")
    row = {
        "name": target.name,
        "kind": target.kind,
        "runtime": target.runtime,
        "path": str(target.path) if target.path else target.reference,
        **summarize_scores(scores),
        "by_category": by_category(answers),
        "latency_s": latency_stats(latencies),
        "concurrency": (throughput or {}).get("concurrency"),
        "requests_per_s": rps,
        **size,
        "tokens_in": _mean(a["prompt_tokens"] for a in answers),
        "tokens_out": _mean(a["completion_tokens"] for a in answers),
        "requests_per_input": _mean(a["requests"] for a in answers),
        "errors": sample_errors(answers, conf.errors_shown),
    }
    row.update(cost(answers, rps, row["latency_s"]["mean"], conf.hourly_price_usd))
    return row


def cost(answers: list[dict], rps: float | None, mean_s: float | None, hourly: float) -> dict:
    """Cost per 1,000 inputs: the endpoint's prices when they were paid, else machine time."""
    paid = [a["cost_usd"] for a in answers if a.get("cost_usd")]
    if paid:
        per_input = sum(paid) / len(answers)
        return {
            "cost_per_1k_usd": round(1000 * per_input, 4),
            "cost_basis": "endpoint prices per token",
        }
    seconds = 1 / rps if rps else mean_s
    if seconds is None:
        return {"cost_per_1k_usd": None, "cost_basis": "not measured"}
    how = "at its measured requests/s" if rps else "per request, one at a time"
    return {
        "cost_per_1k_usd": round(1000 * seconds * hourly / 3600, 5),
        "cost_basis": f"{seconds:.2f} s of machine time {how} x ${hourly}/h",
    }


def by_category(answers: list[dict]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[bool]] = {}
    for a in answers:
        if a.get("category"):
            groups.setdefault(a["category"], []).append(bool(a["score"]["exact"]))
    return {k: {"n": len(v), "exact": round(sum(v) / len(v), 4)} for k, v in sorted(groups.items())}


def latency_stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    return {
        "p50": round(percentile(values, 0.50), 4),
        "p95": round(percentile(values, 0.95), 4),
        "p99": round(percentile(values, 0.99), 4),
        "mean": round(sum(values) / len(values), 4),
    }


def sample_errors(answers: list[dict], limit: int) -> list[dict[str, Any]]:
    wrong = [a for a in answers if not a["score"]["exact"]][:limit]
    return [
        {
            "id": a["id"],
            "input": a["input"],
            "gold": calls_text(a["gold"]),
            "prediction": calls_text(a["prediction"]),
            "reason": a["score"].get("reason"),
        }
        for a in wrong
    ]


def calls_text(label: dict[str, Any] | None) -> str:
    """``set_power(device_id=light.x, on=false); ...`` for a label, or its text."""
    if not label:
        return ""
    calls = label.get("tool_calls") or []
    parts = []
    for call in calls:
        arguments = call.get("arguments")
        if isinstance(arguments, dict):
            args = ", ".join(
                f"{k}={json.dumps(v, ensure_ascii=False).strip(chr(34))}"
                for k, v in arguments.items()
            )
        else:
            args = str(arguments)
        parts.append(f"{call.get('name')}({args})")
    text = "; ".join(parts)
    if label.get("content"):
        text = (text + " | " if text else "") + str(label["content"])[:200]
    return text or "(nothing)"


def model_size(target: Target) -> dict[str, Any]:
    """Parameters and bytes on disk of a local model (None where they cannot be read)."""
    try:
        if target.kind == "gguf":
            params = measure.gguf_param_counts(target.path)["total"]
        else:
            params = measure.config_param_counts(target.path)["total"]
    except Exception:  # noqa: BLE001 - e.g. the gguf package is missing
        params = None
    return {"params": params, "bytes": measure.artifact_bytes(target.path)}


def machine() -> dict[str, Any]:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": available_cores(), "gpu": None}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 2) if values else None


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def local_path(ref: str) -> Path:
    """The file or folder a model reference names (a bundled alias: its assembled GGUF)."""
    from supertiny.core import models

    if ref in models.BUNDLED:
        return models.resolve_gguf(ref)
    return Path(ref).expanduser()
