"""Figure 4, memory: the resident size of each gunicorn worker of the service at rest and after
10,000 POST /api/chat requests (0 ms model, moderate concurrency), and the growth in percent.

"At rest" is measured idle after a warm-up of the same load (a fifth of the measured requests, at
the same concurrency), so one-off costs (imports done on first use, connection pools, the stacks
of the request and reply threads that this concurrency needs, which are created on demand) are
already paid, and what grows afterwards is what a long-running worker would keep growing: a leak.
The RSS right after start-up is recorded too, for reference.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from bench.config import BenchConfig
from bench.fixtures import VirtualUser
from bench.harness import BenchEnvironment
from bench.runner import loadgen_stats, run_loadgen
from bench.stats import summarize

QUIET_SECONDS = 2.0  # let request threads finish and allocators settle before reading RSS


def worker_rss(environment: BenchEnvironment) -> dict[int, int]:
    """RSS in bytes of every worker: the children of the gunicorn master the Procfile started."""
    assert environment.service.process is not None
    master = psutil.Process(environment.service.process.pid)
    return {child.pid: child.memory_info().rss for child in master.children()}


def _chat_load(
    environment: BenchEnvironment, config: BenchConfig, users: list[VirtualUser], requests: int, label: str
) -> dict[str, Any]:
    return run_loadgen(
        {
            "kind": "http",
            "host": environment.service.host,
            "port": environment.service.port,
            "path_template": "/api/chat/{conversation_id}",
            "users": [user.to_job() for user in users[: config.memory_concurrency]],
            "requests": requests,
            "deadline_seconds": max(120.0, requests / config.memory_concurrency * 1.0),
            "request_timeout_seconds": 65.0,
            "label": label,
        },
        environment.cpu_meter,
    )


def run(environment: BenchEnvironment, config: BenchConfig, users: list[VirtualUser], at_start: dict[int, int]) -> dict[str, Any]:
    environment.set_model_latency(0)
    environment.enable_webhook(True)
    unsettled = environment.wait_until_settled(config.settle_timeout_seconds)
    _chat_load(environment, config, users, max(config.memory_requests // 5, config.memory_concurrency), "memory-warm-up")
    environment.wait_until_settled(config.settle_timeout_seconds)
    time.sleep(QUIET_SECONDS)
    at_rest = worker_rss(environment)
    result = _chat_load(environment, config, users, config.memory_requests, "memory")
    environment.wait_until_settled(config.settle_timeout_seconds)
    time.sleep(QUIET_SECONDS)
    after = worker_rss(environment)
    workers = []
    for pid, rest in at_rest.items():
        end = after.get(pid)
        workers.append({
            "pid": pid,
            "rss_at_start_mb": round(at_start[pid] / 2**20, 1) if pid in at_start else None,
            "rss_at_rest_mb": round(rest / 2**20, 1),
            "rss_after_mb": round(end / 2**20, 1) if end is not None else None,
            "growth_pct": round((end / rest - 1) * 100, 2) if end is not None else None,
        })
    replaced = sorted(set(after) - set(at_rest))  # a worker restarted mid-run: its growth is unknown
    total_rest, total_after = sum(at_rest.values()), sum(after.get(pid, 0) for pid in at_rest)
    summary = {
        "requests": config.memory_requests,
        "concurrency": config.memory_concurrency,
        "ok": result["ok"],
        "errors": result["errors"],
        "throughput_rps": result["throughput_rps"],
        "overhead_ms": summarize(result["latencies_ms"]),
        "unsettled_before": unsettled,
        "loadgen": loadgen_stats([result]),
        "cpu": result["cpu"],
        "workers": workers,
        "replaced_workers": replaced,
        "total_growth_pct": round((total_after / total_rest - 1) * 100, 2) if total_rest else None,
        "max_worker_growth_pct": max((w["growth_pct"] for w in workers if w["growth_pct"] is not None), default=None),
    }
    print(f"  memory     {result['ok']} requests at {result['throughput_rps']:.0f}/s, errors={result['error_count']},"
          f" worker RSS growth max {summary['max_worker_growth_pct']}%", flush=True)
    return summary
