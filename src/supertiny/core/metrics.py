"""Summary figures every stage reports the same way: a percentile, and the mean scores of a
set of scored answers.

    percentile([0.4, 0.5, 2.0], 0.95)        # 2.0 (the nearest rank; None for no values)
    summarize_scores(rows)                   # {"n", "exact", "valid", "similarity", "f1"}

``rows`` are ``Task.evaluate`` scores as dicts (or rows holding those keys); a similarity of
-1 (malformed output) counts as 0 in the mean.
"""

from __future__ import annotations

from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """The value at rank ``round(q * (n - 1))`` of the sorted ``values`` (None if empty)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize_scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean exact match, validity, similarity and argument F1 of scored rows, with their n."""
    n = len(rows)
    if not n:
        return {"n": 0, "exact": None, "valid": None, "similarity": None, "f1": None}
    return {
        "n": n,
        "exact": sum(r["exact"] for r in rows) / n,
        "valid": sum(r["valid"] for r in rows) / n,
        "similarity": sum(max(r["similarity"], 0.0) for r in rows) / n,
        "f1": sum(r["f1"] for r in rows) / n,
    }
