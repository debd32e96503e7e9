"""Runs one load generator job in its own process and returns what it printed."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

from bench.cpu import CpuMeter
from devstack.service_process import REPO_ROOT

SPAWN_MARGIN_SECONDS = 60.0  # start-up, connecting and tearing down, beyond the job's own deadline


class LoadgenFailed(RuntimeError):
    """The load generator crashed or printed no result: the run measured nothing."""


def run_loadgen(job: dict[str, Any], meter: CpuMeter | None = None) -> dict[str, Any]:
    """Blocks without holding the GIL, so the stand-ins this process hosts run freely meanwhile.
    With a meter, the result says where the CPU went while the job ran (under "cpu")."""
    timeout = float(job.get("deadline_seconds", 120)) + SPAWN_MARGIN_SECONDS
    before, started, children_before = (meter.snapshot() if meter else None), time.monotonic(), children_cpu_seconds()
    completed = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(job), capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout, check=False,
    )
    if completed.returncode != 0 or not completed.stdout.strip():
        raise LoadgenFailed(f"load generator exited {completed.returncode}: {completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout)
    if meter is not None and before is not None:
        # The load generator's whole CPU, interpreter start-up included: it is the one child reaped meanwhile.
        loadgen_seconds = children_cpu_seconds() - children_before
        result["cpu"] = CpuMeter.delta(before, meter.snapshot(), loadgen_seconds, time.monotonic() - started, result["ok"])
    return result


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loadgen_stats(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The load generator's own busiest moments over these runs: evidence it was not the bottleneck."""
    return {
        "cpu_share": max(run["loadgen_cpu_share"] for run in runs),
        "loop_lag_p99_ms": max(run["loop_lag_p99_ms"] for run in runs),
        "loop_lag_max_ms": max(run["loop_lag_max_ms"] for run in runs),
    }
