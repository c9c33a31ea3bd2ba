"""Summary figures every stage reports the same way: a percentile, the mean scores of a
set of scored answers, and the 95% interval of a proportion.

    percentile([0.4, 0.5, 2.0], 0.95)        # 2.0 (the nearest rank; None for no values)
    wilson_interval(9, 40)                   # (0.123, 0.375): 9 of 40 right, 95% Wilson
    summarize_scores(rows)                   # {"n", "exact", "valid", "similarity", "f1"}

``rows`` are ``Task.evaluate`` scores as dicts (or rows holding those keys); a similarity of
-1 (malformed output) counts as 0 in the mean.
"""

from __future__ import annotations

import math
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


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95% for z = 1.96).

    Unlike the normal approximation it stays inside [0, 1] and is sound for small n and for
    proportions near 0 or 1 (0 of 10 gives [0, 0.28], not [0, 0]). ``n = 0`` gives (0, 1).
    """
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion_text(k: int, n: int) -> str:
    """``"9/40 = 22.5% [12-38]"``: a count, its share and its 95% Wilson interval in points."""
    low, high = wilson_interval(k, n)
    return f"{k}/{n} = {100 * k / max(n, 1):.1f}% [{100 * low:.0f}-{100 * high:.0f}]"
