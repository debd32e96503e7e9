"""The issue's targets, checked against one run's figures. Each check says what it compared, so a
MISS can be read without the code: which level, which model latency, which side."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    target: str
    passed: bool | None  # None: not measured in this run
    informational: bool = False  # printed with its verdict, but not what the target is judged on

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def nearest(levels: list[dict[str, Any]], concurrency: int, model_ms: float) -> dict[str, Any] | None:
    """The level at this model latency whose concurrency is closest to the one asked for (a
    --quick run has no 16; it checks its nearest)."""
    candidates = [level for level in levels if level["model_latency_ms"] == model_ms]
    return min(candidates, key=lambda level: abs(level["concurrency"] - concurrency), default=None)


def within(value: float, bound: float) -> bool:
    return not math.isnan(value) and value <= bound


SATURATION_NOTE = (
    "informational: with a 0 ms model, N conversations that each send on the previous reply are a closed loop that"
    " runs the machine flat out, so their latency is N / (messages per second): a throughput figure, not overhead."
    " The pipeline target is judged at the reference model latency."
)


def evaluate(results: dict[str, Any], model_latencies: tuple[float, ...], reference_ms: float) -> list[Check]:
    checks: list[Check] = []
    pipeline = results.get("pipeline") or []
    for model_ms in sorted(model_latencies, key=lambda ms: ms != reference_ms):
        level = nearest(pipeline, 16, model_ms)
        if level is None:
            continue
        overhead, errors = level["overhead_ms"], sum(level["errors"].values())
        checks.append(Check(
            f"pipeline overhead @{level['concurrency']} conversations, model {model_ms:.0f} ms",
            f"p50 {overhead['p50']:.1f} ms, p99 {overhead['p99']:.1f} ms, {errors} errors",
            "p50 <= 10 ms, p99 <= 50 ms",
            within(overhead["p50"], 10) and within(overhead["p99"], 50) and errors == 0,
            informational=model_ms != reference_ms and reference_ms in model_latencies,
        ))
    direct = results.get("direct") or []
    for model_ms in model_latencies:
        level = nearest(direct, 1, model_ms)
        if level is None:
            continue
        overhead = level["service"]["overhead_ms"]
        checks.append(Check(
            f"POST /api/chat overhead @{level['concurrency']} caller, model {model_ms:.0f} ms",
            f"p50 {overhead['p50']:.1f} ms (p99 {overhead['p99']:.1f} ms)",
            "p50 <= 15 ms",
            within(overhead["p50"], 15) and level["service"]["error_count"] == 0,
        ))
    capacity = results.get("capacity")
    if capacity:
        held = capacity["largest_passing"]["service"]
        tried = max((step["concurrency"] for step in capacity["steps"]), default=0)
        checks.append(Check(
            f"concurrent waiting requests, model {capacity['model_latency_ms']:.0f} ms",
            f"{held} held (baseline {capacity['largest_passing']['baseline']}; steps tried up to {tried})",
            f">= 500, p99 overhead <= {capacity['p99_overhead_bound_ms']:.0f} ms, zero errors",
            held >= 500,
        ))
    reference = [level for level in direct if level["model_latency_ms"] == reference_ms]
    if reference:
        worst_latency = max(max(level["ratio"]["latency_p50"], level["ratio"]["latency_p99"]) for level in reference)
        worst_throughput = min(level["ratio"]["throughput"] for level in reference)
        where = ", ".join(f"@{level['concurrency']}: p50 x{level['ratio']['latency_p50']:.2f}"
                          f" p99 x{level['ratio']['latency_p99']:.2f} rps x{level['ratio']['throughput']:.2f}"
                          for level in reference)
        checks.append(Check(f"vs baseline, model {reference_ms:.0f} ms: latency ratio (worst level)",
                            f"x{worst_latency:.3f} ({where})", "<= 1.05", within(worst_latency, 1.05)))
        checks.append(Check(f"vs baseline, model {reference_ms:.0f} ms: throughput ratio (worst level)",
                            f"x{worst_throughput:.3f}", ">= 0.95", not math.isnan(worst_throughput) and worst_throughput >= 0.95))
    memory = results.get("memory")
    if memory and memory.get("max_worker_growth_pct") is not None:
        growth = memory["max_worker_growth_pct"]
        checks.append(Check(
            f"worker RSS growth after {memory['ok']:,} requests",
            f"{growth:+.1f}% (worst worker; all workers {memory['total_growth_pct']:+.1f}%)",
            "<= 10%",
            growth <= 10 and not memory["replaced_workers"],
        ))
    history = results.get("history")
    if history:
        sizes = [entry["messages"] for entry in history["sizes"]]
        checks.append(Check(
            f"context building, {max(sizes):,} vs {min(sizes):,} messages",
            f"x{history['ratio_largest_to_smallest']:.2f} (in SQL alone x{history['sql_ratio_largest_to_smallest']:.2f})",
            "<= 1.5x",
            within(history["ratio_largest_to_smallest"], 1.5),
        ))
    for phase, error in (results.get("phase_errors") or {}).items():
        checks.append(Check(f"{phase} (did not complete)", error[:80], "completes", False))
    return checks
