"""Percentiles and summaries, the one definition every figure uses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), so p99 of few samples
    leans on the worst one instead of jumping to it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(latencies_ms: Sequence[float], minus_ms: float = 0.0) -> dict[str, Any]:
    """p50/p95/p99/max of latency minus a constant (the model's latency: what is left is ours)."""
    shifted = [value - minus_ms for value in latencies_ms]
    return {
        "n": len(shifted),
        "p50": round(percentile(shifted, 0.50), 2),
        "p95": round(percentile(shifted, 0.95), 2),
        "p99": round(percentile(shifted, 0.99), 2),
        "max": round(max(shifted), 2) if shifted else math.nan,
        "mean": round(sum(shifted) / len(shifted), 2) if shifted else math.nan,
    }


def ratio(numerator: float, denominator: float) -> float:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return round(numerator / denominator, 3)
