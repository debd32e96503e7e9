"""Figure 1, the pipeline: from the user row's commit to the reply row's commit, minus the model.

This is the path every frontend message takes: insert under RLS, trigger, pg_net, webhook, the
reply workers, the model, complete_message. The user row is inserted as `authenticated` with real
JWT claims through psycopg; its commit time is the wall clock when COMMIT returns; the reply's is
its created_at (the start of complete_message's one-statement transaction, well under 1 ms before
its commit, same host clock). Each conversation sends its next message when the previous one is
answered, so N conversations keep at most N messages in flight.
"""

from __future__ import annotations

import math
from typing import Any

from bench.config import BenchConfig
from bench.fixtures import VirtualUser
from bench.harness import BenchEnvironment
from bench.runner import loadgen_stats, run_loadgen
from bench.stats import summarize

REPLY_WORKERS_PER_INSTANCE_GUESS = 16  # only sizes the deadline of a run: 2 workers x REPLY_CONCURRENCY 8


def messages_per_conversation(config: BenchConfig, model_ms: float, concurrency: int) -> int:
    if model_ms <= 0:
        return max(2, math.ceil(config.pipeline_messages_fast / concurrency))
    return config.pipeline_messages_slow_sequential if concurrency == 1 else config.pipeline_rounds_slow


def run(environment: BenchEnvironment, config: BenchConfig, conversations: list[VirtualUser]) -> list[dict[str, Any]]:
    levels = []
    for model_ms in config.model_latencies_ms:
        environment.set_model_latency(model_ms)
        for concurrency in config.pipeline_concurrency:
            levels.append(run_level(environment, config, conversations[:concurrency], model_ms))
    return levels


def run_level(
    environment: BenchEnvironment, config: BenchConfig, conversations: list[VirtualUser], model_ms: float
) -> dict[str, Any]:
    concurrency = len(conversations)
    messages = messages_per_conversation(config, model_ms, concurrency)
    warmup = 1 if model_ms <= 0 or concurrency == 1 else 0  # first messages pay for connections and imports
    per_message = max(model_ms / 1000, 0.05) * max(1.0, concurrency / REPLY_WORKERS_PER_INSTANCE_GUESS)
    left = environment.wait_until_settled(config.settle_timeout_seconds)
    result = run_loadgen(
        {
            "kind": "pipeline",
            "database_url": environment.database_url,
            "conversations": [{"user_id": c.user_id, "conversation_id": c.conversation_id} for c in conversations],
            "messages": messages,
            "warmup": warmup,
            "ramp_seconds": model_ms / 1000,  # one model latency: conversations then arrive evenly, not in lockstep
            "deadline_seconds": 30 + 3 * (warmup + messages) * per_message,
            "label": f"pipeline c{concurrency} m{model_ms:.0f}",
        },
        environment.cpu_meter,
    )
    level = {
        "model_latency_ms": model_ms,
        "concurrency": concurrency,
        "messages_per_conversation": messages,
        "unsettled_before": left,
        "overhead_ms": summarize(result["latencies_ms"], model_ms),
        "throughput_rps": result["throughput_rps"],
        "errors": result["errors"],
        "loadgen": loadgen_stats([result]),
        "cpu": result["cpu"],
        "latencies_ms": result["latencies_ms"],
    }
    print(f"  pipeline   model {model_ms:6.0f} ms  c={concurrency:<4d} overhead p50 {level['overhead_ms']['p50']:8.1f}"
          f"  p99 {level['overhead_ms']['p99']:8.1f} ms  n={level['overhead_ms']['n']}  errors={result['error_count']}",
          flush=True)
    return level
