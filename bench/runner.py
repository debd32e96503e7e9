"""Runs one load generator job in its own process and returns what it printed."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from devstack.service_process import REPO_ROOT

SPAWN_MARGIN_SECONDS = 60.0  # start-up, connecting and tearing down, beyond the job's own deadline


class LoadgenFailed(RuntimeError):
    """The load generator crashed or printed no result: the run measured nothing."""


def run_loadgen(job: dict[str, Any]) -> dict[str, Any]:
    """Blocks without holding the GIL, so the stand-ins this process hosts run freely meanwhile."""
    timeout = float(job.get("deadline_seconds", 120)) + SPAWN_MARGIN_SECONDS
    completed = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(job), capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout, check=False,
    )
    if completed.returncode != 0 or not completed.stdout.strip():
        raise LoadgenFailed(f"load generator exited {completed.returncode}: {completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result
