"""Figures 2 and 3: POST /api/chat/<id> for direct callers, and the original design beside it.

Both sides get the same load from the same load generator: N virtual users, each with its own
conversation and keep-alive connection, each sending its next request when the previous one is
answered. They run alternately (ours, baseline, baseline, ours, ...) so drift on a noisy machine
falls on both. While the baseline runs the webhook is unconfigured (the original design had
none), so its saved messages cost the service nothing.

Capacity: at the reference model latency (1 s), concurrency is stepped up; a step passes when no
request fails and p99 overhead stays within the bound. Each side stops at its first failing step.
"""

from __future__ import annotations

import math
from typing import Any

from bench import cpu
from bench.config import BenchConfig
from bench.fixtures import VirtualUser
from bench.harness import BenchEnvironment
from bench.runner import loadgen_stats, run_loadgen
from bench.stats import ratio, summarize

SIDES = ("service", "baseline")
PATHS = {"service": "/api/chat/{conversation_id}", "baseline": "/baseline/chat/{conversation_id}"}
REQUEST_TIMEOUT_SECONDS = 65.0  # past CHAT_REPLY_TIMEOUT_SECONDS, so the service's own 504 is seen


def run_side(
    environment: BenchEnvironment, side: str, users: list[VirtualUser], rounds: int, model_ms: float, label: str
) -> dict[str, Any]:
    """One run of one side; returns the load generator's figures."""
    server = environment.service if side == "service" else environment.baseline
    assert server is not None
    environment.enable_webhook(side == "service")
    return run_loadgen(
        {
            "kind": "http",
            "host": server.host,
            "port": server.port,
            "path_template": PATHS[side],
            "users": [user.to_job() for user in users],
            "rounds": rounds,
            "ramp_seconds": model_ms / 1000,  # one model latency: users then arrive evenly, not in lockstep
            "deadline_seconds": max(30.0, 10 + (rounds + 1) * (model_ms / 1000 + 0.5) * 4),
            "request_timeout_seconds": REQUEST_TIMEOUT_SECONDS,
            "label": label,
        },
        environment.cpu_meter,
    )


def merge(runs: list[dict[str, Any]], model_ms: float) -> dict[str, Any]:
    """Several runs of one side at one level, as one sample."""
    latencies = [value for run in runs for value in run["latencies_ms"]]
    errors: dict[str, int] = {}
    for run in runs:
        for kind, count in run["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    wall = sum(run["wall_seconds"] for run in runs)
    return {
        "latency_ms": summarize(latencies),
        "overhead_ms": summarize(latencies, model_ms),
        "throughput_rps": round(len(latencies) / wall, 3) if wall else 0.0,
        "errors": errors,
        "error_count": sum(errors.values()),
        "loadgen": loadgen_stats(runs),
        "cpu": cpu.merge([run["cpu"] for run in runs]),
        "latencies_ms": latencies,
    }


def compare(ours: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    return {
        "latency_p50": ratio(ours["latency_ms"]["p50"], baseline["latency_ms"]["p50"]),
        "latency_p99": ratio(ours["latency_ms"]["p99"], baseline["latency_ms"]["p99"]),
        "throughput": ratio(ours["throughput_rps"], baseline["throughput_rps"]),
    }


def comparison_rounds(config: BenchConfig, model_ms: float, concurrency: int) -> int:
    if model_ms <= 0:
        return max(1, math.ceil(config.comparison_requests_fast / config.comparison_repeats / concurrency))
    if concurrency == 1:
        return max(1, math.ceil(config.comparison_requests_slow_sequential / config.comparison_repeats))
    return config.comparison_rounds_slow


def run_comparison(
    environment: BenchEnvironment, config: BenchConfig, ours: list[VirtualUser], theirs: list[VirtualUser]
) -> list[dict[str, Any]]:
    levels = []
    for model_ms in config.model_latencies_ms:
        environment.set_model_latency(model_ms)
        for concurrency in config.comparison_concurrency:
            rounds = comparison_rounds(config, model_ms, concurrency)
            runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
            for repeat in range(config.comparison_repeats):
                order = SIDES if repeat % 2 == 0 else tuple(reversed(SIDES))
                for side in order:
                    if side == "service":
                        environment.wait_until_settled(config.settle_timeout_seconds)
                    users = (ours if side == "service" else theirs)[:concurrency]
                    runs[side].append(run_side(environment, side, users, rounds, model_ms,
                                               f"compare {side} c{concurrency} m{model_ms:.0f} r{repeat}"))
            level: dict[str, Any] = {"model_latency_ms": model_ms, "concurrency": concurrency, "rounds": rounds,
                     **{side: merge(runs[side], model_ms) for side in SIDES}}
            level["ratio"] = compare(level["service"], level["baseline"])
            print_level("direct", level)
            levels.append(level)
    environment.enable_webhook(True)
    return levels


def step_passes(side_result: dict[str, Any], config: BenchConfig) -> bool:
    return side_result["error_count"] == 0 and side_result["overhead_ms"]["p99"] <= config.capacity_p99_overhead_ms


def run_capacity(
    environment: BenchEnvironment, config: BenchConfig, ours: list[VirtualUser], theirs: list[VirtualUser]
) -> dict[str, Any]:
    model_ms = config.reference_model_latency_ms
    environment.set_model_latency(model_ms)
    steps: list[dict[str, Any]] = []
    still_passing = dict.fromkeys(SIDES, True)
    for concurrency in config.capacity_steps:
        if not any(still_passing.values()):
            break
        step: dict[str, Any] = {"model_latency_ms": model_ms, "concurrency": concurrency}
        for side in SIDES:
            if not still_passing[side]:
                continue
            left = environment.wait_until_settled(config.settle_timeout_seconds) if side == "service" else 0
            users = (ours if side == "service" else theirs)[:concurrency]
            run = run_side(environment, side, users, config.capacity_rounds, model_ms, f"capacity {side} c{concurrency}")
            step[side] = {**merge([run], model_ms), "unsettled_before": left}
            step[side]["passed"] = still_passing[side] = step_passes(step[side], config)
        if "service" in step and "baseline" in step:
            step["ratio"] = compare(step["service"], step["baseline"])
        print_level("capacity", step)
        steps.append(step)
    environment.enable_webhook(True)
    largest = {
        side: max((s["concurrency"] for s in steps if s.get(side, {}).get("passed")), default=0) for side in SIDES
    }
    return {
        "model_latency_ms": model_ms,
        "p99_overhead_bound_ms": config.capacity_p99_overhead_ms,
        "rounds": config.capacity_rounds,
        "steps": steps,
        "largest_passing": largest,
        "unsettled_after": environment.wait_until_settled(config.settle_timeout_seconds),
    }


def print_level(kind: str, level: dict[str, Any]) -> None:
    parts = [f"  {kind:<10s} model {level['model_latency_ms']:6.0f} ms  c={level['concurrency']:<4d}"]
    for side in SIDES:
        if side in level:
            result = level[side]
            parts.append(f"{side} overhead p50 {result['overhead_ms']['p50']:8.1f} p99 {result['overhead_ms']['p99']:8.1f}"
                         f" {result['throughput_rps']:7.1f}/s err={result['error_count']}")
    print("  ".join(parts), flush=True)
