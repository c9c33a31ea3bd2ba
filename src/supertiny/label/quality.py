"""Quality control for teacher labels: schema validation, self-consistency voting,
LLM-as-judge grading, and de-duplication of near-identical inputs.

Pure functions over pipeline results and input texts, plus one async judge call; the label
stage (``label/stage.py``) strings them together. Exercised by ``supertiny label``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from supertiny.core import toolcalls
from supertiny.label.client import TeacherClient
from supertiny.label.prototype import PipelineResult

# ----- self-consistency --------------------------------------------------------------------


@dataclass
class Sample:
    """One validated pipeline sample: its vote key, or why it has none."""

    result: PipelineResult
    key: str | None
    calls: list[toolcalls.ToolCall]
    problem: str | None


def check_sample(result: PipelineResult, tools: list[dict], allow_plain_answer: bool) -> Sample:
    """Validate a pipeline result against the final tools and give it a canonical vote key."""
    if result.error:
        return Sample(result, None, [], result.error)
    if not result.calls:
        if allow_plain_answer and result.content:
            return Sample(result, "text:" + normalise_text(result.content), [], None)
        return Sample(result, None, [], "no final call")
    calls, errors = toolcalls.validate(result.calls, tools)
    if errors:
        return Sample(result, None, calls, "schema: " + "; ".join(errors))
    return Sample(result, toolcalls.canonical_key(calls, tools), calls, None)


@dataclass
class Vote:
    """The outcome of majority voting over samples."""

    winner: Sample | None
    votes: int
    samples: int
    agreement: float  # votes for the winner / samples drawn (invalid samples count)
    counts: dict[str, int] = field(default_factory=dict)


def vote(samples: list[Sample]) -> Vote:
    """Majority vote over canonical keys; ties go to the earliest sample (the greedy one)."""
    counts = Counter(s.key for s in samples if s.key is not None)
    if not counts:
        return Vote(None, 0, len(samples), 0.0, {})
    best = max(counts.values())
    winner = next(s for s in samples if s.key is not None and counts[s.key] == best)
    return Vote(winner, best, len(samples), best / len(samples), dict(counts))


def decided(samples: list[Sample], planned: int, min_agreement: float) -> bool:
    """True when more samples cannot change whether the leader passes the agreement bar.

    With ``planned`` samples, stop early once the leader's agreement is secured even if
    every remaining sample disagrees, or once no outcome can reach the bar.
    """
    remaining = planned - len(samples)
    if remaining <= 0:
        return True
    counts = Counter(s.key for s in samples if s.key is not None)
    lead = max(counts.values(), default=0)
    secured = lead / planned >= min_agreement and lead > (len(samples) - lead) + remaining
    hopeless = (lead + remaining) / planned < min_agreement
    return secured or hopeless


def preference_pairs(record_id: str, chosen: Sample, samples: list[Sample]) -> list[dict[str, Any]]:
    """DPO pairs: chosen = the voted call; rejected = each distinct disagreeing or invalid output."""
    pairs, seen = [], {chosen.key}
    for sample in samples:
        if sample.key in seen and sample.key is not None:
            continue
        if sample.key is None:
            rejected = _raw_output(sample.result)
            marker = "raw:" + json.dumps(rejected, sort_keys=True)
            if marker in seen or rejected is None:
                continue
            seen.add(marker)
        else:
            seen.add(sample.key)
            rejected = {
                "tool_calls": [c.to_dict() for c in sample.calls],
                "content": sample.result.content,
            }
        pairs.append(
            {
                "id": f"{record_id}-p{len(pairs)}",
                "source_id": record_id,
                "chosen": chosen.result.label()
                if not chosen.calls
                else {
                    "tool_calls": [c.to_dict() for c in chosen.calls],
                    "content": chosen.result.content,
                },
                "rejected": rejected,
                "reason": sample.problem or "disagrees with the majority",
            }
        )
    return pairs


def _raw_output(result: PipelineResult) -> dict[str, Any] | None:
    """The final assistant message of a failed sample, as the student could have produced it."""
    if not result.trace:
        return None
    message = result.trace[-1]["message"]
    return {"raw": message.get("content"), "tool_calls": message.get("tool_calls")}


# ----- LLM-as-judge ------------------------------------------------------------------------

DEFAULT_RUBRIC = """You grade the output of a function-calling assistant.
Given the available tools, the user's request, and the assistant's final function call(s),
decide whether the call(s) do exactly what the user asked: right function(s), right
arguments and values, nothing missing, nothing extra.
Reply with JSON only: {"score": <number from 0 to 1>, "reason": "<one sentence>"}"""


def judge_messages(
    rubric: str,
    tools: list[dict],
    conversation: list[dict],
    label: dict[str, Any],
    trace: list[dict] | None = None,
) -> list[dict[str, str]]:
    """The judge prompt: rubric as system; tools, request, helper results and label as user."""
    request = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in conversation)
    looked_up = [r for step in trace or [] for r in step.get("tool_results", [])]
    parts = [
        "Tools:\n" + json.dumps([t["function"] for t in tools], ensure_ascii=False),
        "Conversation:\n" + request,
    ]
    if looked_up:
        parts.append(
            "Facts looked up by helper tools:\n" + json.dumps(looked_up, ensure_ascii=False)
        )
    parts.append("Assistant's final output:\n" + json.dumps(label, ensure_ascii=False))
    return [{"role": "system", "content": rubric}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_judgement(text: str | None) -> tuple[float | None, str]:
    """Read ``{"score": x, "reason": ...}`` (or a bare number) from a judge reply."""
    text = text or ""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
            score = float(data.get("score"))
            return max(0.0, min(1.0, score)), str(data.get("reason", ""))[:300]
        except (ValueError, TypeError, AttributeError, json.JSONDecodeError):
            pass
    number = re.search(r"\b(0(?:\.\d+)?|1(?:\.0+)?)\b", text)
    if number:
        return float(number.group(1)), text.strip()[:300]
    return None, f"unreadable judge reply: {text.strip()[:120]!r}"


async def judge(
    client: TeacherClient,
    rubric: str,
    tools: list[dict],
    conversation: list[dict],
    label: dict[str, Any],
    trace: list[dict] | None = None,
    max_tokens: int = 128,
) -> tuple[float | None, str, float]:
    """Grade one label; returns (score or None if unreadable, reason, cost in USD)."""
    completion = await client.chat(
        judge_messages(rubric, tools, conversation, label, trace),
        temperature=0.0,
        max_tokens=max_tokens,
    )
    score, reason = parse_judgement(completion.message.get("content"))
    return score, reason, completion.cost_usd


# ----- de-duplication ----------------------------------------------------------------------


def normalise_text(text: str) -> str:
    """Casefold, strip accents and punctuation, collapse whitespace."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def _edit_distance_at_most_one(a: str, b: str) -> bool:
    """True when ``a`` becomes ``b`` with at most one insertion, deletion, substitution or swap."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        swapped = a[i + 1 : i + 2] + a[i : i + 1] + a[i + 2 :] == b[i:]
        return a[i + 1 :] == b[i + 1 :] or swapped
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[i + 1 :] == shorter[i:]


def near_identical(a: list[str], b: list[str]) -> bool:
    """Same words in the same order, up to typos: each differing word pair is at least 4
    letters, not a number, and one edit apart; at most one such pair per 8 words.

    Stricter than a similarity threshold on purpose: "turn on" vs "turn off" or "21" vs
    "22" change the label, so those inputs are never merged.
    """
    if len(a) != len(b):
        return False
    differing = 0
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        if (
            min(len(x), len(y)) < 4
            or x.isdigit()
            or y.isdigit()
            or not _edit_distance_at_most_one(x, y)
        ):
            return False
        differing += 1
    return differing <= max(1, len(a) // 8)


def find_duplicates(texts: dict[str, str], mode: str = "near") -> dict[str, str]:
    """Map each duplicate id to the id it duplicates (the first one seen).

    ``exact``: identical after ``normalise_text`` (case, accents, punctuation, spacing).
    ``near``: also ``near_identical`` word sequences (typos). ``off``: nothing is merged.
    Near candidates are compared only within buckets of equal word count and equal numbers.
    """
    if mode == "off":
        return {}
    exact: dict[str, str] = {}
    buckets: dict[tuple, list[tuple[str, list[str]]]] = defaultdict(list)
    duplicates: dict[str, str] = {}
    for record_id, text in texts.items():
        norm = normalise_text(text)
        if norm in exact:
            duplicates[record_id] = exact[norm]
            continue
        words = norm.split()
        bucket = buckets[(len(words), tuple(w for w in words if w.isdigit()))]
        if mode == "near":
            match = next((other for other, seen in bucket if near_identical(words, seen)), None)
            if match is not None:
                duplicates[record_id] = match
                continue
        exact[norm] = record_id
        bucket.append((record_id, words))
    return duplicates
