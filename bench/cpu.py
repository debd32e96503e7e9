"""Where the CPU went during a run: the service's workers, the baseline's, Postgres, and the
stand-ins this process hosts (gateway, pg_net, fake model).

On a 2-core machine every component competes for the same cores, so a latency figure alone
cannot say whether the design or the test rig ran out of CPU. CPU seconds per component over a
run, and per answered request, can: they show which process was busy and how close the machine
was to saturation, without attaching a profiler to anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil


def process_seconds(process: psutil.Process, with_reaped_children: bool = False) -> float:
    """User + system CPU of one process; with its exited children's (how Postgres's short-lived
    backends stay counted after their connection closes: the postmaster reaps them)."""
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    seconds = times.user + times.system
    if with_reaped_children:
        seconds += times.children_user + times.children_system
    return seconds


def tree_seconds(pid: int | None, with_reaped_children: bool = False) -> tuple[float, dict[int, float]]:
    """A process and its live children: the total, and each child's own (gunicorn's workers)."""
    if pid is None:
        return 0.0, {}
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0, {}
    per_child = {child.pid: process_seconds(child) for child in children}
    return process_seconds(root, with_reaped_children) + sum(per_child.values()), per_child


def machine_busy_seconds() -> float:
    """Every core's non-idle time since boot: what our components used plus anything else running
    (another job on a shared machine shows up as the difference)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass
class CpuMeter:
    service_pid: int | None
    baseline_pid: int | None
    postgres_pid: int | None

    def snapshot(self) -> dict[str, Any]:
        service, workers = tree_seconds(self.service_pid)
        baseline, _ = tree_seconds(self.baseline_pid)
        postgres, _ = tree_seconds(self.postgres_pid, with_reaped_children=True)
        stack = process_seconds(psutil.Process(os.getpid()))
        return {"service": service, "service_workers": workers, "baseline": baseline, "postgres": postgres,
                "stack": stack, "machine": machine_busy_seconds()}

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any], loadgen_seconds: float, wall_seconds: float,
              answered: int) -> dict[str, Any]:
        """CPU seconds per component between two snapshots, the machine's busy share, and the
        milliseconds of CPU each answered request cost per component."""
        seconds = {key: round(after[key] - before[key], 3) for key in ("service", "baseline", "postgres", "stack")}
        seconds["loadgen"] = round(loadgen_seconds, 3)
        ours = sum(seconds.values())
        seconds["other"] = round(max(0.0, after["machine"] - before["machine"] - ours), 3)
        workers = {str(pid): round(value - before["service_workers"].get(pid, 0.0), 3)
                   for pid, value in after["service_workers"].items()}
        return summarize({"seconds": seconds, "service_worker_seconds": workers, "window_seconds": round(wall_seconds, 3),
                          "answered": answered})


def summarize(cpu: dict[str, Any]) -> dict[str, Any]:
    """Add the machine's busy share over the window (everything, "other" processes included) and the
    CPU milliseconds per answered request."""
    cores = os.cpu_count() or 1
    seconds, wall, answered = cpu["seconds"], cpu["window_seconds"], cpu["answered"]
    return {
        **cpu,
        "machine_busy_share": round(sum(seconds.values()) / (wall * cores), 3) if wall else 0.0,
        "ms_per_request": {key: round(value * 1000 / answered, 2) for key, value in seconds.items()} if answered else {},
    }


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' CPU as one."""
    seconds = {key: round(sum(run["seconds"][key] for run in runs), 3) for key in runs[0]["seconds"]}
    workers: dict[str, float] = {}
    for run in runs:
        for pid, value in run["service_worker_seconds"].items():
            workers[pid] = round(workers.get(pid, 0.0) + value, 3)
    return summarize({"seconds": seconds, "service_worker_seconds": workers,
                      "window_seconds": round(sum(run["window_seconds"] for run in runs), 3),
                      "answered": sum(run["answered"] for run in runs)})
