"""How much of everything one run does: the default run (about 10 minutes on 2 cores) and
`--quick`, a smoke run under a minute that exercises every code path with small counts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

MEASURED_DEFAULTS = ("WEB_CONCURRENCY", "GUNICORN_THREADS")  # what the run measures: never inherited from a shell


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    model_latencies_ms: tuple[float, ...] = (0.0, 1000.0)
    reference_model_latency_ms: float = 1000.0  # the latency the baseline targets and the capacity steps use

    # 1. pipeline: concurrent conversations, and measured messages in total per level (split over them)
    pipeline_concurrency: tuple[int, ...] = (1, 16, 64)
    pipeline_messages_fast: int = 300  # at a 0 ms model
    pipeline_messages_slow_sequential: int = 12  # concurrency 1 at a slow model
    pipeline_rounds_slow: int = 3  # messages per conversation at a slow model, concurrency > 1

    # 2 and 3. direct callers and the baseline, side by side, alternating, `comparison_repeats` times
    comparison_concurrency: tuple[int, ...] = (1, 16, 64)
    comparison_requests_fast: int = 200  # per level and side at a 0 ms model, split over the users
    comparison_requests_slow_sequential: int = 16  # concurrency 1 at a slow model
    comparison_rounds_slow: int = 3  # requests per user at a slow model, concurrency > 1
    comparison_repeats: int = 2
    capacity_steps: tuple[int, ...] = (50, 100, 200, 300, 400, 500, 600)
    capacity_rounds: int = 3
    capacity_p99_overhead_ms: float = 100.0

    # 4. memory
    memory_requests: int = 10_000
    memory_concurrency: int = 32

    # 5. history
    history_sizes: tuple[int, ...] = (10, 1_000, 100_000)
    history_calls: int = 50
    history_background_conversations: int = 2_000  # 10 messages each: a table of many conversations

    settle_timeout_seconds: float = 75.0  # a cut-off step's backlog: sweep grace 30 s + interval 15 s + work

    @property
    def virtual_users_needed(self) -> int:
        return max(*self.capacity_steps, *self.comparison_concurrency, self.memory_concurrency)

    def with_model_latencies(self, latencies: tuple[float, ...]) -> BenchConfig:
        return replace(self, model_latencies_ms=latencies)


QUICK = BenchConfig(
    quick=True,
    pipeline_concurrency=(1, 4),
    pipeline_messages_fast=20,
    pipeline_messages_slow_sequential=2,
    pipeline_rounds_slow=1,
    comparison_concurrency=(1, 4),
    comparison_requests_fast=12,
    comparison_requests_slow_sequential=2,
    comparison_rounds_slow=1,
    comparison_repeats=1,
    capacity_steps=(8, 16),
    capacity_rounds=1,
    memory_requests=200,
    memory_concurrency=8,
    history_sizes=(10, 1_000, 100_000),
    history_calls=10,
    settle_timeout_seconds=20.0,
)


def service_setting(text: str) -> tuple[str, str]:
    """One NAME=VALUE for the service's environment; a malformed one is refused before anything starts."""
    name, separator, value = text.partition("=")
    if not separator or not name.isidentifier() or name in MEASURED_DEFAULTS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=VALUE (and not {' or '.join(MEASURED_DEFAULTS)}, which the run measures)"
        )
    return name, value
